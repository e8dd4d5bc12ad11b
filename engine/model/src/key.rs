//! Key schemas, key validation, the order-preserving sort-key encoding and the partition hash.
//!
//! The partition hash and the sort-key encoding are written in FORMAT.md and can never change:
//! partitions own ranges of the hash space and B-trees are ordered by the encoded sort key.

use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Result, validation};
use crate::messages;
use crate::value::{AttributeValue, Item};

/// The largest partition key value, in bytes.
pub const PARTITION_KEY_BYTES_MAX: usize = 2048;
/// The largest sort key value, in bytes.
pub const SORT_KEY_BYTES_MAX: usize = 1024;
// A sort key is the smaller of the two in DynamoDB; B-tree pages are sized on that assumption.
const _: () = assert!(SORT_KEY_BYTES_MAX <= PARTITION_KEY_BYTES_MAX);

/// The type tag hashed before a partition key's bytes: 'S'.
pub const HASH_TAG_STRING: u8 = b'S';
/// The type tag hashed before a partition key's bytes: 'N'.
pub const HASH_TAG_NUMBER: u8 = b'N';
/// The type tag hashed before a partition key's bytes: 'B'.
pub const HASH_TAG_BINARY: u8 = b'B';

/// The scalar types a key attribute may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `S`.
    String,
    /// `N`.
    Number,
    /// `B`.
    Binary,
}

impl KeyType {
    /// DynamoDB's name: "S", "N" or "B".
    pub fn type_name(self) -> &'static str {
        match self {
            KeyType::String => "S",
            KeyType::Number => "N",
            KeyType::Binary => "B",
        }
    }

    /// Whether `value` has this type.
    pub fn matches(self, value: &AttributeValue) -> bool {
        matches!(
            (self, value),
            (KeyType::String, AttributeValue::String(_))
                | (KeyType::Number, AttributeValue::Number(_))
                | (KeyType::Binary, AttributeValue::Binary(_))
        )
    }
}

/// One key attribute: its name and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyAttribute {
    /// The attribute name.
    pub name: String,
    /// The attribute type.
    pub key_type: KeyType,
}

/// A table's primary key: a partition key and an optional sort key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySchema {
    /// The partition (hash) key.
    pub partition: KeyAttribute,
    /// The sort (range) key, if the table has one.
    pub sort: Option<KeyAttribute>,
}

/// The attributes of a key as a query reads them: a partition key of one attribute or more,
/// then a sort key of none or more. A table's or a local index's key has one and at most one;
/// a GSI's may have up to four of each (DynamoDB's multi-attribute keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyParts<'a> {
    pub partition: &'a [KeyAttribute],
    pub sort: &'a [KeyAttribute],
}

impl KeyParts<'_> {
    /// Every key attribute, partition key attributes first, each group in key order.
    pub fn attributes(&self) -> impl Iterator<Item = &KeyAttribute> {
        self.partition.iter().chain(self.sort)
    }

    /// Whether `name` is one of the key attributes.
    pub fn is_key_attribute(&self, name: &str) -> bool {
        self.attributes().any(|attribute| attribute.name == name)
    }
}

impl KeySchema {
    /// A schema with only a partition key.
    pub fn partition_only(name: &str, key_type: KeyType) -> KeySchema {
        KeySchema {
            partition: KeyAttribute {
                name: name.to_string(),
                key_type,
            },
            sort: None,
        }
    }

    /// A schema with a partition key and a sort key.
    pub fn with_sort(
        partition_name: &str,
        partition_type: KeyType,
        sort_name: &str,
        sort_type: KeyType,
    ) -> KeySchema {
        KeySchema {
            partition: KeyAttribute {
                name: partition_name.to_string(),
                key_type: partition_type,
            },
            sort: Some(KeyAttribute {
                name: sort_name.to_string(),
                key_type: sort_type,
            }),
        }
    }

    /// The key attributes, partition key first.
    pub fn attributes(&self) -> impl Iterator<Item = &KeyAttribute> {
        std::iter::once(&self.partition).chain(self.sort.as_ref())
    }

    /// The schema as a query reads it.
    pub fn parts(&self) -> KeyParts<'_> {
        KeyParts {
            partition: std::slice::from_ref(&self.partition),
            sort: self.sort.as_slice(),
        }
    }

    /// Whether `name` is one of the key attributes.
    pub fn is_key_attribute(&self, name: &str) -> bool {
        self.attributes().any(|attribute| attribute.name == name)
    }

    /// Validates the key attributes of an item to be written (PutItem), with PutItem's messages.
    pub fn validate_item(&self, item: &Item) -> Result<()> {
        for attribute in self.attributes() {
            let Some(value) = item.get(&attribute.name) else {
                return Err(validation(messages::key_missing_in_item(&attribute.name)));
            };
            if !attribute.key_type.matches(value) {
                return Err(validation(messages::key_type_mismatch(
                    &attribute.name,
                    attribute.key_type.type_name(),
                    value.type_name(),
                )));
            }
            self.validate_key_value(attribute, value)?;
        }
        Ok(())
    }

    /// Validates a Key parameter (GetItem, UpdateItem, DeleteItem): exactly the key attributes,
    /// with the schema's types.
    pub fn validate_key(&self, key: &Item) -> Result<()> {
        let expected_count = self.attributes().count();
        if key.len() != expected_count {
            return Err(validation(messages::KEY_DOES_NOT_MATCH_SCHEMA));
        }
        for attribute in self.attributes() {
            match key.get(&attribute.name) {
                Some(value) if attribute.key_type.matches(value) => {
                    self.validate_key_value(attribute, value)?;
                }
                _ => return Err(validation(messages::KEY_DOES_NOT_MATCH_SCHEMA)),
            }
        }
        Ok(())
    }

    fn validate_key_value(&self, attribute: &KeyAttribute, value: &AttributeValue) -> Result<()> {
        let length = match value {
            AttributeValue::String(text) if text.is_empty() => {
                return Err(validation(messages::key_empty_string(&attribute.name)));
            }
            AttributeValue::Binary(bytes) if bytes.is_empty() => {
                return Err(validation(messages::key_empty_binary(&attribute.name)));
            }
            AttributeValue::String(text) => text.len(),
            AttributeValue::Binary(bytes) => bytes.len(),
            _ => 0,
        };
        if attribute.name == self.partition.name {
            if length > PARTITION_KEY_BYTES_MAX {
                return Err(validation(messages::PARTITION_KEY_TOO_LARGE));
            }
        } else if length > SORT_KEY_BYTES_MAX {
            return Err(validation(messages::SORT_KEY_TOO_LARGE));
        }
        Ok(())
    }

    /// The key attributes of an item, as a Key parameter would name them.
    pub fn key_of(&self, item: &Item) -> Item {
        self.attributes()
            .filter_map(|attribute| {
                item.get(&attribute.name)
                    .map(|value| (attribute.name.clone(), value.clone()))
            })
            .collect()
    }
}

/// The order-preserving encoding of a key value: for two values of the same key type, byte
/// order equals DynamoDB's order. Strings are their UTF-8 bytes, binaries their bytes, numbers
/// the 18-byte encoding of [`crate::Number::sort_key_bytes`]. `None` for non-key types.
pub fn sort_key_bytes(value: &AttributeValue) -> Option<Vec<u8>> {
    match value {
        AttributeValue::String(text) => Some(text.as_bytes().to_vec()),
        AttributeValue::Binary(bytes) => Some(bytes.clone()),
        AttributeValue::Number(number) => Some(number.sort_key_bytes().to_vec()),
        _ => None,
    }
}

/// The stable 64-bit partition hash: xxh3-64 (seed 0) over a type tag byte followed by the
/// key's sort-key bytes. Written in FORMAT.md; it can never change. `None` for non-key types.
pub fn partition_hash(value: &AttributeValue) -> Option<u64> {
    let tag = match value {
        AttributeValue::String(_) => HASH_TAG_STRING,
        AttributeValue::Number(_) => HASH_TAG_NUMBER,
        AttributeValue::Binary(_) => HASH_TAG_BINARY,
        _ => return None,
    };
    let key_bytes = sort_key_bytes(value)?;
    let mut input = Vec::with_capacity(1 + key_bytes.len());
    input.push(tag);
    input.extend_from_slice(&key_bytes);
    Some(xxh3_64(&input))
}

/// The bytes before the partition key in a storage key: the hash (u64) and the key's length
/// (u16), both big-endian.
pub const STORAGE_KEY_PREFIX_BYTES: usize = 8 + 2;
// The u16 length field must hold the longest encoded partition key.
const _: () = assert!(PARTITION_KEY_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(crate::number::NUMBER_SORT_KEY_BYTES <= PARTITION_KEY_BYTES_MAX);

/// The start of every storage key of one partition key: its hash, then the encoded partition
/// key with its length. All items of a partition key share it, so a Query is one range scan;
/// the hash first makes a Scan walk hash order. `None` for a non-key type. Layout in FORMAT.md.
pub fn storage_key_prefix(partition_value: &AttributeValue) -> Option<Vec<u8>> {
    let hash = partition_hash(partition_value)?;
    let partition_bytes = sort_key_bytes(partition_value)?;
    let length = u16::try_from(partition_bytes.len()).ok()?;
    let mut key = Vec::with_capacity(STORAGE_KEY_PREFIX_BYTES + partition_bytes.len() + 32);
    key.extend_from_slice(&hash.to_be_bytes());
    key.extend_from_slice(&length.to_be_bytes());
    key.extend_from_slice(&partition_bytes);
    Some(key)
}

/// The partition hash a storage key starts with (see [`storage_key_prefix`]); `None` for bytes
/// too short to be a storage key.
pub fn storage_key_hash(storage_key: &[u8]) -> Option<u64> {
    let hash: [u8; 8] = storage_key.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(hash))
}

impl KeySchema {
    /// The storage key of the item with these key attributes: [`storage_key_prefix`] followed
    /// by the encoded sort key, if the table has one. Items of one partition key sort by sort
    /// key. `None` if a key attribute is missing or not a key type (validate first).
    pub fn storage_key(&self, key: &Item) -> Option<Vec<u8>> {
        let mut storage_key = storage_key_prefix(key.get(&self.partition.name)?)?;
        if let Some(sort) = &self.sort {
            storage_key.extend_from_slice(&sort_key_bytes(key.get(&sort.name)?)?);
        }
        Some(storage_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Number;

    fn string(text: &str) -> AttributeValue {
        AttributeValue::String(text.to_string())
    }

    fn number(text: &str) -> AttributeValue {
        AttributeValue::Number(Number::parse(text).unwrap())
    }

    fn schema() -> KeySchema {
        KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number)
    }

    #[test]
    fn item_validation_uses_put_item_messages() {
        let mut item = Item::from([("pk".to_string(), string("a"))]);
        assert_eq!(
            schema().validate_item(&item).unwrap_err().message(),
            "One or more parameter values were invalid: Missing the key sk in the item"
        );
        item.insert("sk".to_string(), string("1"));
        assert_eq!(
            schema().validate_item(&item).unwrap_err().message(),
            "One or more parameter values were invalid: Type mismatch for key sk expected: N actual: S"
        );
        item.insert("sk".to_string(), number("1"));
        assert!(schema().validate_item(&item).is_ok());
        item.insert("pk".to_string(), string(""));
        assert_eq!(
            schema().validate_item(&item).unwrap_err().message(),
            messages::key_empty_string("pk")
        );
        item.insert(
            "pk".to_string(),
            string(&"x".repeat(PARTITION_KEY_BYTES_MAX)),
        );
        assert!(schema().validate_item(&item).is_ok());
        item.insert(
            "pk".to_string(),
            string(&"x".repeat(PARTITION_KEY_BYTES_MAX + 1)),
        );
        assert_eq!(
            schema().validate_item(&item).unwrap_err().message(),
            messages::PARTITION_KEY_TOO_LARGE
        );
        let binary_schema = KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Binary);
        let mut item = Item::from([
            ("pk".to_string(), string("a")),
            (
                "sk".to_string(),
                AttributeValue::Binary(vec![0; SORT_KEY_BYTES_MAX + 1]),
            ),
        ]);
        assert_eq!(
            binary_schema.validate_item(&item).unwrap_err().message(),
            messages::SORT_KEY_TOO_LARGE
        );
        item.insert("sk".to_string(), AttributeValue::Binary(vec![]));
        assert_eq!(
            binary_schema.validate_item(&item).unwrap_err().message(),
            messages::key_empty_binary("sk")
        );
    }

    #[test]
    fn key_validation_requires_exactly_the_schema() {
        let key = Item::from([
            ("pk".to_string(), string("a")),
            ("sk".to_string(), number("1")),
        ]);
        assert!(schema().validate_key(&key).is_ok());
        let mut extra = key.clone();
        extra.insert("other".to_string(), string("x"));
        assert_eq!(
            schema().validate_key(&extra).unwrap_err().message(),
            messages::KEY_DOES_NOT_MATCH_SCHEMA
        );
        let wrong_type = Item::from([
            ("pk".to_string(), number("1")),
            ("sk".to_string(), number("1")),
        ]);
        assert_eq!(
            schema().validate_key(&wrong_type).unwrap_err().message(),
            messages::KEY_DOES_NOT_MATCH_SCHEMA
        );
    }

    #[test]
    fn partition_hash_is_pinned() {
        // Golden values: these must never change (FORMAT.md). They were computed once by this
        // implementation and checked against xxh3-64 of the documented input bytes.
        let mut input = vec![HASH_TAG_STRING];
        input.extend_from_slice(b"user#1");
        assert_eq!(partition_hash(&string("user#1")), Some(xxh3_64(&input)));
        assert_eq!(partition_hash(&string("user#1")), Some(PINNED_STRING_HASH));
        assert_eq!(partition_hash(&number("42")), Some(PINNED_NUMBER_HASH));
        // Equal numbers hash equally, whatever their spelling.
        assert_eq!(
            partition_hash(&number("42")),
            partition_hash(&number("4.2E1"))
        );
        // The type tag separates a string from a binary with the same bytes.
        assert_ne!(
            partition_hash(&string("a")),
            partition_hash(&AttributeValue::Binary(b"a".to_vec()))
        );
        assert_eq!(partition_hash(&AttributeValue::Null), None);
    }

    #[test]
    fn storage_keys_group_a_partition_and_order_it_by_sort_key() {
        let key = |partition: &str, sort: &str| {
            Item::from([
                ("pk".to_string(), string(partition)),
                ("sk".to_string(), number(sort)),
            ])
        };
        let schema = schema();
        let prefix = storage_key_prefix(&string("a")).unwrap();
        let mut expected = PINNED_A_HASH.to_be_bytes().to_vec();
        expected.extend_from_slice(&[0x00, 0x01, b'a']);
        assert_eq!(prefix, expected);
        let low = schema.storage_key(&key("a", "-5")).unwrap();
        let high = schema.storage_key(&key("a", "10")).unwrap();
        assert!(low.starts_with(&prefix) && high.starts_with(&prefix));
        assert!(low < high);
        // A partition key that extends another's bytes still gets its own group, as the length
        // field separates them.
        let longer = storage_key_prefix(&string("ab")).unwrap();
        assert!(!longer.starts_with(&prefix));
        assert_eq!(
            schema.storage_key(&Item::from([("pk".to_string(), string("a"))])),
            None
        );
        let partition_only = KeySchema::partition_only("pk", KeyType::String);
        assert_eq!(partition_only.storage_key(&key("a", "1")), Some(prefix));
    }

    const PINNED_A_HASH: u64 = 0x0bb5_b3e1_e859_7f12;
    const PINNED_STRING_HASH: u64 = 3480828512661454471;
    const PINNED_NUMBER_HASH: u64 = 15132425340275858372;
}
