//! Property tests of the typed item request encoding (`request_codec`): every request the
//! strategies build round-trips, and no input (arbitrary bytes, or a valid encoding truncated or
//! with one byte changed) panics the decoder or is accepted in a non-canonical form.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::Bound;

use proptest::prelude::*;
use shoal_model::encoding::encode_item;
use shoal_model::expression::ast::{
    Comparator, Condition, DocumentPath, Operand, PathElement, SetValue, Update, UpdateAction,
    UpdateOperand,
};
use shoal_model::expression::update::ReturnValues;
use shoal_model::index::global::{
    EntryChange, GlobalIndex, GlobalIndexChange, OutboxPosition, PositionedChange,
};
use shoal_model::index::{LocalIndex, Projection};
use shoal_model::key::{KeyAttribute, KeyType};
use shoal_model::request::{
    GetRequest, IndexRead, PreparedRequest, RangeRequest, WriteKind, WriteRequest,
};
use shoal_model::request_codec::{decode_request, encode_request};
use shoal_model::value::TYPE_NAMES;
use shoal_model::{AttributeValue, Item, Number};

fn number_strategy() -> impl Strategy<Value = Number> {
    prop_oneof![
        (any::<bool>(), 1u128..10u128.pow(38), -160i32..120).prop_filter_map(
            "in range",
            |(negative, coefficient, exponent)| {
                let sign = if negative { "-" } else { "" };
                Number::parse(&format!("{sign}{coefficient}e{exponent}")).ok()
            }
        ),
        Just(Number::ZERO),
        (0u64..1000).prop_map(Number::from),
    ]
}

fn value_strategy() -> impl Strategy<Value = AttributeValue> {
    let leaf = prop_oneof![
        any::<String>().prop_map(AttributeValue::String),
        number_strategy().prop_map(AttributeValue::Number),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(AttributeValue::Binary),
        any::<bool>().prop_map(AttributeValue::Boolean),
        Just(AttributeValue::Null),
        prop::collection::btree_set("[a-z]{0,4}", 1..3).prop_map(AttributeValue::StringSet),
        prop::collection::btree_set(number_strategy(), 1..3).prop_map(AttributeValue::NumberSet),
        prop::collection::btree_set(prop::collection::vec(any::<u8>(), 0..4), 1..3)
            .prop_map(AttributeValue::BinarySet),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(AttributeValue::List),
            prop::collection::btree_map("[a-z]{0,4}", inner, 0..3).prop_map(AttributeValue::Map),
        ]
    })
}

fn item_strategy() -> impl Strategy<Value = Item> {
    prop::collection::btree_map(any::<String>(), value_strategy(), 0..4)
}

fn name_strategy() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z]{1,6}", 1 => any::<String>()]
}

fn path_strategy() -> impl Strategy<Value = DocumentPath> {
    let element = prop_oneof![
        name_strategy().prop_map(PathElement::Attribute),
        prop_oneof![0usize..10, any::<usize>()].prop_map(PathElement::Index),
    ];
    (name_strategy(), prop::collection::vec(element, 0..4)).prop_map(|(first, rest)| DocumentPath {
        elements: std::iter::once(PathElement::Attribute(first))
            .chain(rest)
            .collect(),
    })
}

fn operand_strategy() -> impl Strategy<Value = Operand> {
    prop_oneof![
        path_strategy().prop_map(Operand::Path),
        value_strategy().prop_map(Operand::Value),
        path_strategy().prop_map(Operand::Size),
    ]
}

fn comparator_strategy() -> impl Strategy<Value = Comparator> {
    prop_oneof![
        Just(Comparator::Equal),
        Just(Comparator::NotEqual),
        Just(Comparator::Less),
        Just(Comparator::LessOrEqual),
        Just(Comparator::Greater),
        Just(Comparator::GreaterOrEqual),
    ]
}

fn condition_strategy() -> impl Strategy<Value = Condition> {
    let leaf = prop_oneof![
        (
            operand_strategy(),
            comparator_strategy(),
            operand_strategy()
        )
            .prop_map(|(left, comparator, right)| Condition::Comparison {
                left,
                comparator,
                right
            }),
        (operand_strategy(), operand_strategy(), operand_strategy()).prop_map(
            |(value, lower, upper)| Condition::Between {
                value,
                lower,
                upper
            }
        ),
        (
            operand_strategy(),
            prop::collection::vec(operand_strategy(), 0..4)
        )
            .prop_map(|(value, candidates)| Condition::In { value, candidates }),
        path_strategy().prop_map(Condition::AttributeExists),
        path_strategy().prop_map(Condition::AttributeNotExists),
        (path_strategy(), prop::sample::select(TYPE_NAMES.as_slice()))
            .prop_map(|(path, type_name)| Condition::AttributeType(path, type_name.to_string())),
        (operand_strategy(), operand_strategy())
            .prop_map(|(left, right)| Condition::BeginsWith(left, right)),
        (operand_strategy(), operand_strategy())
            .prop_map(|(left, right)| Condition::Contains(left, right)),
    ];
    leaf.prop_recursive(6, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Condition::And),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Condition::Or),
            inner.prop_map(|condition| Condition::Not(Box::new(condition))),
        ]
    })
}

fn update_operand_strategy() -> impl Strategy<Value = UpdateOperand> {
    let leaf = prop_oneof![
        path_strategy().prop_map(UpdateOperand::Path),
        value_strategy().prop_map(UpdateOperand::Value),
    ];
    leaf.prop_recursive(5, 12, 2, |inner| {
        prop_oneof![
            (path_strategy(), inner.clone())
                .prop_map(|(path, fallback)| UpdateOperand::IfNotExists(path, Box::new(fallback))),
            (inner.clone(), inner).prop_map(|(first, second)| UpdateOperand::ListAppend(
                Box::new(first),
                Box::new(second)
            )),
        ]
    })
}

fn update_strategy() -> impl Strategy<Value = Update> {
    let set_value = prop_oneof![
        update_operand_strategy().prop_map(SetValue::Operand),
        (update_operand_strategy(), update_operand_strategy())
            .prop_map(|(left, right)| SetValue::Plus(left, right)),
        (update_operand_strategy(), update_operand_strategy())
            .prop_map(|(left, right)| SetValue::Minus(left, right)),
    ];
    let action = prop_oneof![
        (path_strategy(), set_value).prop_map(|(path, value)| UpdateAction::Set(path, value)),
        path_strategy().prop_map(UpdateAction::Remove),
        (path_strategy(), value_strategy())
            .prop_map(|(path, value)| UpdateAction::Add(path, value)),
        (path_strategy(), value_strategy())
            .prop_map(|(path, value)| UpdateAction::Delete(path, value)),
    ];
    prop::collection::vec(action, 0..5).prop_map(|actions| Update { actions })
}

fn bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..24)
}

fn bound_strategy() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        bytes_strategy().prop_map(Bound::Included),
        bytes_strategy().prop_map(Bound::Excluded),
    ]
}

fn projection_strategy() -> impl Strategy<Value = Option<Vec<DocumentPath>>> {
    prop::option::of(prop::collection::vec(path_strategy(), 0..4))
}

fn return_values_strategy() -> impl Strategy<Value = ReturnValues> {
    prop_oneof![
        Just(ReturnValues::None),
        Just(ReturnValues::AllOld),
        Just(ReturnValues::UpdatedOld),
        Just(ReturnValues::AllNew),
        Just(ReturnValues::UpdatedNew),
    ]
}

fn write_strategy() -> impl Strategy<Value = WriteRequest> {
    let kind = prop_oneof![
        item_strategy().prop_map(WriteKind::Put),
        update_strategy().prop_map(WriteKind::Update),
        Just(WriteKind::Delete),
    ];
    (
        item_strategy(),
        bytes_strategy(),
        kind,
        prop::option::of(condition_strategy()),
        return_values_strategy(),
        any::<bool>(),
        prop::collection::vec(local_index_strategy(), 0..3),
        prop::collection::vec(global_index_strategy(), 0..3),
    )
        .prop_map(
            |(
                key,
                storage_key,
                kind,
                condition,
                return_values,
                return_old,
                local_indexes,
                global_indexes,
            )| {
                WriteRequest {
                    key,
                    storage_key,
                    kind,
                    condition,
                    return_values,
                    return_old_on_condition_failure: return_old,
                    local_indexes,
                    global_indexes,
                }
            },
        )
}

fn key_attribute_strategy() -> impl Strategy<Value = KeyAttribute> {
    (
        "[a-z]{1,4}",
        prop_oneof![
            Just(KeyType::String),
            Just(KeyType::Number),
            Just(KeyType::Binary)
        ],
    )
        .prop_map(|(name, key_type)| KeyAttribute { name, key_type })
}

fn global_index_strategy() -> impl Strategy<Value = GlobalIndex> {
    let projection = prop_oneof![
        Just(Projection::All),
        Just(Projection::KeysOnly),
        prop::collection::vec("[a-z]{1,4}", 0..3).prop_map(Projection::Include),
    ];
    (
        "[a-z]{3,6}",
        any::<u8>(),
        // Multi-attribute keys: up to four attributes in each part.
        prop::collection::vec(key_attribute_strategy(), 1..=4),
        prop::collection::vec(key_attribute_strategy(), 0..=4),
        projection,
    )
        .prop_map(
            |(name, number, partition_keys, sort_keys, projection)| GlobalIndex {
                name,
                number,
                partition_keys,
                sort_keys,
                projection,
            },
        )
}

fn position_strategy() -> impl Strategy<Value = OutboxPosition> {
    (any::<u64>(), any::<u32>()).prop_map(|(slot, ordinal)| OutboxPosition { slot, ordinal })
}

fn index_apply_strategy() -> impl Strategy<Value = PreparedRequest> {
    let change = (
        position_strategy(),
        any::<u8>(),
        bytes_strategy(),
        prop::option::of(item_strategy()),
    )
        .prop_map(
            |(position, index_number, entry_key, item)| PositionedChange {
                position,
                change: GlobalIndexChange {
                    index_number,
                    entry_key,
                    change: match item {
                        Some(item) => EntryChange::Put(encode_item(&item)),
                        None => EntryChange::Delete,
                    },
                },
            },
        );
    (any::<u64>(), prop::collection::vec(change, 0..4))
        .prop_map(|(source, changes)| PreparedRequest::IndexApply { source, changes })
}

fn local_index_strategy() -> impl Strategy<Value = LocalIndex> {
    let projection = prop_oneof![
        Just(Projection::All),
        Just(Projection::KeysOnly),
        prop::collection::vec("[a-z]{1,4}", 0..3).prop_map(Projection::Include),
    ];
    (
        "[a-z]{3,6}",
        0u8..5,
        "[a-z]{1,4}",
        prop_oneof![
            Just(KeyType::String),
            Just(KeyType::Number),
            Just(KeyType::Binary)
        ],
        projection,
    )
        .prop_map(
            |(name, number, sort_name, key_type, projection)| LocalIndex {
                name,
                number,
                sort_key: KeyAttribute {
                    name: sort_name,
                    key_type,
                },
                projection,
            },
        )
}

fn get_strategy() -> impl Strategy<Value = GetRequest> {
    (
        item_strategy(),
        bytes_strategy(),
        any::<bool>(),
        projection_strategy(),
    )
        .prop_map(|(key, storage_key, consistent, projection)| GetRequest {
            key,
            storage_key,
            consistent,
            projection,
        })
}

fn range_strategy() -> impl Strategy<Value = RangeRequest> {
    (
        (bound_strategy(), bound_strategy(), any::<bool>()),
        prop::option::of(condition_strategy()),
        projection_strategy(),
        prop::option::of(any::<usize>()),
        (any::<bool>(), any::<bool>(), any::<u64>()),
        prop_oneof![
            Just((None, None)),
            (local_index_strategy(), any::<bool>())
                .prop_map(|(index, fetch_base)| (Some(IndexRead { index, fetch_base }), None)),
            global_index_strategy().prop_map(|index| (None, Some(index))),
        ],
    )
        .prop_map(
            |(
                (lower, upper, forward),
                filter,
                projection,
                limit,
                (consistent, count_only, page_bytes_max),
                (index, global_index),
            )| RangeRequest {
                lower,
                upper,
                forward,
                filter,
                projection,
                limit,
                consistent,
                count_only,
                page_bytes_max,
                index: index.map(Box::new),
                global_index: global_index.map(Box::new),
            },
        )
}

fn request_strategy() -> impl Strategy<Value = PreparedRequest> {
    prop_oneof![
        write_strategy().prop_map(PreparedRequest::Write),
        get_strategy().prop_map(PreparedRequest::Get),
        range_strategy().prop_map(PreparedRequest::Range),
        prop::collection::vec(get_strategy(), 0..4).prop_map(PreparedRequest::BatchGet),
        prop::collection::vec(write_strategy(), 0..4).prop_map(PreparedRequest::BatchWrite),
        prop::option::of(position_strategy())
            .prop_map(|after| PreparedRequest::OutboxRead { after }),
        position_strategy().prop_map(|through| PreparedRequest::OutboxTrim { through }),
        index_apply_strategy(),
        (global_index_strategy(), prop::option::of(bytes_strategy()))
            .prop_map(|(index, after)| PreparedRequest::IndexBackfill { index, after }),
    ]
}

/// Decoding must not panic; what it accepts must be canonical, encoding back to the same bytes.
fn check_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(request) = decode_request(bytes) {
        prop_assert_eq!(encode_request(&request), bytes);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn requests_round_trip(request in request_strategy()) {
        let bytes = encode_request(&request);
        prop_assert_eq!(decode_request(&bytes), Ok(request));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        kind in 1u8..=5,
    ) {
        check_decode(&bytes)?;
        // The same bytes behind a valid header reach the decoder's inner parts.
        let mut framed = vec![1, kind];
        framed.extend_from_slice(&bytes);
        check_decode(&framed)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn truncated_and_mutated_encodings_never_panic_the_decoder(
        request in request_strategy(),
        replacement in any::<u8>(),
    ) {
        let bytes = encode_request(&request);
        for length in 0..bytes.len() {
            prop_assert!(decode_request(&bytes[..length]).is_err());
        }
        let mut mutated = bytes.clone();
        for position in 0..bytes.len() {
            let original = bytes[position];
            for byte in [original ^ 0x01, original ^ 0x80, 0x00, 0xFF, replacement] {
                mutated[position] = byte;
                check_decode(&mutated)?;
            }
            mutated[position] = original;
        }
    }
}

/// The fuzz target's seeds are valid encodings, so the fuzzer starts from inside the format.
#[test]
fn fuzz_seeds_decode() {
    for seed in [
        include_bytes!("../fuzz/seeds/request_decoder/seed1").as_slice(),
        include_bytes!("../fuzz/seeds/request_decoder/seed2").as_slice(),
        include_bytes!("../fuzz/seeds/request_decoder/seed3").as_slice(),
    ] {
        let request = decode_request(seed).unwrap();
        assert_eq!(encode_request(&request), seed);
    }
}
