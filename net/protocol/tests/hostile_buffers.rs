//! Buffers a hostile or broken peer could send: the decoders answer with errors, never panic,
//! never recurse without bound, never build a huge tree from a small buffer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use flatbuffers::{FlatBufferBuilder, WIPOffset};
use proptest::prelude::*;
use serde_json::json;
use shoal_protocol::generated::shoal::client::v_2 as wire;
use shoal_protocol::limits::ATTRIBUTE_NESTING_DEPTH_MAX;
use shoal_protocol::{
    Operation, ServiceError, decode_request, decode_response, encode_request, encode_response,
    split_frame,
};

fn body_of(frame: &[u8]) -> Vec<u8> {
    split_frame(frame).unwrap().unwrap().0.to_vec()
}

/// Valid request and response buffers with most of the schema in them.
fn samples() -> Vec<Vec<u8>> {
    let item = json!({
        "pk": {"S": "p"}, "n": {"N": "1"}, "b": {"B": "AAEC"}, "t": {"BOOL": true},
        "z": {"NULL": true}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1"]}, "bs": {"BS": ["AQ=="]},
        "m": {"M": {"l": {"L": [{"N": "1"}, {"M": {}}]}}},
    });
    vec![
        body_of(
            &encode_request(
                1,
                Operation::PutItem,
                &json!({
                    "TableName": "t", "Item": item, "ConditionExpression": "a = :a",
                    "ExpressionAttributeNames": {"#a": "a"},
                    "ExpressionAttributeValues": {":a": {"S": "x"}},
                    "Expected": {"a": {"Value": {"S": "x"}, "Exists": true}},
                    "ConsistentRead": true, "Limit": 3,
                }),
            )
            .unwrap(),
        ),
        body_of(
            &encode_request(
                2,
                Operation::BatchWriteItem,
                &json!({"RequestItems": {"t": [{"PutRequest": {"Item": item}},
                    {"DeleteRequest": {"Key": {"pk": {"S": "p"}}}}]}}),
            )
            .unwrap(),
        ),
        body_of(
            &encode_request(
                3,
                Operation::CreateTable,
                &json!({"TableName": "t",
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
                    "Tags": [{"Key": "k", "Value": "v"}]}),
            )
            .unwrap(),
        ),
        body_of(
            &encode_response(
                4,
                Ok(&json!({"Items": [item], "Count": 1, "ScannedCount": 1,
                    "LastEvaluatedKey": {"pk": {"S": "p"}},
                    "ConsumedCapacity": {"TableName": "t", "CapacityUnits": 0.5}})),
            )
            .unwrap(),
        ),
        body_of(
            &encode_response(
                5,
                Ok(&json!({"Table": {"TableName": "t", "CreationDateTime": 1.5,
                    "ProvisionedThroughput": {"ReadCapacityUnits": 1},
                    "BillingModeSummary": {"BillingMode": "PROVISIONED"}}})),
            )
            .unwrap(),
        ),
        body_of(
            &encode_response(
                6,
                Err(&ServiceError {
                    type_name: "E".to_string(),
                    message: "m".to_string(),
                    item: Some(item),
                }),
            )
            .unwrap(),
        ),
    ]
}

/// Runs both decoders to the end; only a panic fails.
fn decode_everything(buffer: &[u8]) {
    if let Ok(request) = decode_request(buffer) {
        let _ = request.body();
    }
    let _ = decode_response(buffer);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_buffers_never_panic_the_decoders(
        sample in 0usize..6,
        writes in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut buffer = samples().swap_remove(sample);
        for (index, byte) in writes {
            let position = index.index(buffer.len());
            buffer[position] = byte;
        }
        if let Some(cut) = cut {
            buffer.truncate(cut.index(buffer.len()));
        }
        decode_everything(&buffer);
    }
}

#[test]
fn every_truncation_and_single_byte_change_is_safe() {
    for sample in samples() {
        for length in 0..sample.len() {
            decode_everything(&sample[..length]);
        }
        for position in 0..sample.len() {
            for byte in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                let mut buffer = sample.clone();
                buffer[position] = byte;
                decode_everything(&buffer);
            }
        }
    }
}

/// A request whose Key is one attribute holding `value`.
fn request_with_value<'a>(
    builder: &mut FlatBufferBuilder<'a>,
    value: WIPOffset<wire::AttributeValue<'a>>,
) -> Vec<u8> {
    let name = builder.create_string("k");
    let attribute = wire::Attribute::create(
        builder,
        &wire::AttributeArgs {
            name: Some(name),
            value: Some(value),
        },
    );
    let key = builder.create_vector(&[attribute]);
    let request = wire::Request::create(
        builder,
        &wire::RequestArgs {
            request_id: 1,
            operation: wire::Operation::GetItem,
            key: Some(key),
            ..Default::default()
        },
    );
    wire::finish_request_buffer(builder, request);
    builder.finished_data().to_vec()
}

fn list_of<'a>(
    builder: &mut FlatBufferBuilder<'a>,
    elements: &[WIPOffset<wire::AttributeValue<'a>>],
) -> WIPOffset<wire::AttributeValue<'a>> {
    let list = builder.create_vector(elements);
    wire::AttributeValue::create(
        builder,
        &wire::AttributeValueArgs {
            type_: wire::AttributeType::L,
            list: Some(list),
            ..Default::default()
        },
    )
}

fn nested_lists(levels: usize) -> Vec<u8> {
    let mut builder = FlatBufferBuilder::new();
    let mut value = wire::AttributeValue::create(
        &mut builder,
        &wire::AttributeValueArgs {
            type_: wire::AttributeType::Bool,
            flag: true,
            ..Default::default()
        },
    );
    for _ in 1..levels {
        value = list_of(&mut builder, &[value]);
    }
    request_with_value(&mut builder, value)
}

#[test]
fn nesting_is_bounded() {
    // Up to the limit, decoded.
    let body = decode_request(&nested_lists(ATTRIBUTE_NESTING_DEPTH_MAX))
        .unwrap()
        .body()
        .unwrap();
    assert!(body["Key"]["k"]["L"].is_array());
    // Past it: refused by the decoder, with the path.
    let error = decode_request(&nested_lists(ATTRIBUTE_NESTING_DEPTH_MAX + 1))
        .unwrap()
        .body()
        .unwrap_err();
    assert!(error.problem.contains("nest deeper"), "{error}");
    assert!(error.path.starts_with("Key.k.L[0].L[0]"), "{error}");
    // Far past it: refused by the verifier's depth limit before any decoding.
    assert!(decode_request(&nested_lists(10_000)).is_err());
}

#[test]
fn shared_offsets_cannot_make_a_huge_tree() {
    // Each level is a list of 1,000 offsets to the level below: 1,000^3 strings of 1 KiB
    // described by a buffer of about 10 KB.
    let mut builder = FlatBufferBuilder::new();
    let text = builder.create_string(&"x".repeat(1024));
    let mut value = wire::AttributeValue::create(
        &mut builder,
        &wire::AttributeValueArgs {
            type_: wire::AttributeType::S,
            text: Some(text),
            ..Default::default()
        },
    );
    for _ in 0..3 {
        let elements = vec![value; 1000];
        value = list_of(&mut builder, &elements);
    }
    let buffer = request_with_value(&mut builder, value);
    assert!(buffer.len() < 20_000, "{}", buffer.len());
    let started = std::time::Instant::now();
    let refused = match decode_request(&buffer) {
        Err(_) => true,
        Ok(request) => request.body().is_err(),
    };
    assert!(refused, "a tree of 1 TB was decoded");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn entries_without_names_and_unknown_types_are_errors() {
    let mut builder = FlatBufferBuilder::new();
    let value = wire::AttributeValue::create(
        &mut builder,
        &wire::AttributeValueArgs {
            type_: wire::AttributeType(200),
            ..Default::default()
        },
    );
    let buffer = request_with_value(&mut builder, value);
    let error = decode_request(&buffer).unwrap().body().unwrap_err();
    assert_eq!(error.to_string(), "Key.k: unknown AttributeValue type 200");

    let mut builder = FlatBufferBuilder::new();
    let attribute = wire::Attribute::create(&mut builder, &wire::AttributeArgs::default());
    let item = builder.create_vector(&[attribute]);
    let request = wire::Request::create(
        &mut builder,
        &wire::RequestArgs {
            operation: wire::Operation::PutItem,
            item: Some(item),
            ..Default::default()
        },
    );
    wire::finish_request_buffer(&mut builder, request);
    let error = decode_request(builder.finished_data())
        .unwrap()
        .body()
        .unwrap_err();
    assert_eq!(error.to_string(), "Item[0]: an entry without its name");

    // A value whose type's field is missing decodes to JSON null inside its type, which the
    // router refuses as it refuses `{"S": null}` over HTTP.
    let mut builder = FlatBufferBuilder::new();
    let value = wire::AttributeValue::create(
        &mut builder,
        &wire::AttributeValueArgs {
            type_: wire::AttributeType::S,
            ..Default::default()
        },
    );
    let buffer = request_with_value(&mut builder, value);
    let body = decode_request(&buffer).unwrap().body().unwrap();
    assert_eq!(body, json!({"Key": {"k": {"S": null}}}));
}
