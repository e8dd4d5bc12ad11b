//! The versioned binary item encoding. FORMAT.md documents it byte by byte.
//!
//! Invariants:
//! 1. The encoding is canonical: equal items encode to equal bytes (names and set members are
//!    written in ascending order, numbers in their normalised form).
//! 2. The decoder accepts only canonical encodings, so `encode(decode(bytes)) == bytes` for
//!    every accepted input, and it never panics, allocates beyond the input's size, or recurses
//!    deeper than [`NESTING_DEPTH_MAX`].
//!
//! The value encoding and its [`Reader`] are shared with the typed request encoding
//! (`request_codec`), so that an attribute value has one binary form everywhere; the reader
//! takes the error constructor, because a bad stored item is corrupt data while a bad request is
//! a malformed message.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::number::Number;
use crate::value::{AttributeValue, Item, NESTING_DEPTH_MAX};

/// The version byte written first; a decoder refuses versions it does not know.
pub const ITEM_FORMAT_VERSION: u8 = 1;

const TAG_STRING: u8 = 0x01;
const TAG_NUMBER: u8 = 0x02;
const TAG_BINARY: u8 = 0x03;
const TAG_FALSE: u8 = 0x04;
const TAG_TRUE: u8 = 0x05;
const TAG_NULL: u8 = 0x06;
const TAG_MAP: u8 = 0x07;
const TAG_LIST: u8 = 0x08;
const TAG_STRING_SET: u8 = 0x09;
const TAG_NUMBER_SET: u8 = 0x0A;
const TAG_BINARY_SET: u8 = 0x0B;

/// The sign bit in a number's header byte.
const NUMBER_NEGATIVE_BIT: u8 = 0x80;
/// The low bits of a number's header byte: the coefficient's length in bytes.
const NUMBER_LENGTH_MASK: u8 = 0x1F;
/// A u128 coefficient needs at most 16 bytes.
const NUMBER_COEFFICIENT_BYTES_MAX: usize = 16;

/// The most elements a decoder reserves room for before decoding them. A count field may claim
/// up to the bytes left, and each level of nested containers may claim that again, so reserving
/// the full count at every level could reserve many times the input's size; past this cap a
/// vector grows only as its elements actually decode.
pub(crate) const PREALLOCATED_ELEMENTS_MAX: usize = 64;

/// Encodes an item. Lengths and counts are u32 little-endian; see FORMAT.md.
pub fn encode_item(item: &Item) -> Vec<u8> {
    let mut output = Vec::with_capacity(64);
    output.push(ITEM_FORMAT_VERSION);
    encode_map_body(item, &mut output);
    output
}

pub(crate) fn encode_length(length: usize, output: &mut Vec<u8>) {
    // Items are bounded by ITEM_BYTES_MAX long before a length reaches u32::MAX.
    let length = u32::try_from(length).unwrap_or(u32::MAX);
    output.extend_from_slice(&length.to_le_bytes());
}

pub(crate) fn encode_bytes(bytes: &[u8], output: &mut Vec<u8>) {
    encode_length(bytes.len(), output);
    output.extend_from_slice(bytes);
}

pub(crate) fn encode_map_body(map: &BTreeMap<String, AttributeValue>, output: &mut Vec<u8>) {
    encode_length(map.len(), output);
    for (name, value) in map {
        encode_bytes(name.as_bytes(), output);
        encode_value(value, output);
    }
}

fn encode_number(number: &Number, output: &mut Vec<u8>) {
    let coefficient_bytes = number.coefficient().to_le_bytes();
    let length = NUMBER_COEFFICIENT_BYTES_MAX
        - coefficient_bytes
            .iter()
            .rev()
            .take_while(|&&byte| byte == 0)
            .count();
    let mut header = length as u8;
    if number.is_negative() {
        header |= NUMBER_NEGATIVE_BIT;
    }
    output.push(header);
    // The exponent lies in -167..=125 (FORMAT.md), so it fits an i16.
    let exponent = i16::try_from(number.exponent()).unwrap_or(i16::MAX);
    output.extend_from_slice(&exponent.to_le_bytes());
    output.extend_from_slice(&coefficient_bytes[..length]);
}

/// Encodes one value: a tag byte, then the type's body.
pub fn encode_value(value: &AttributeValue, output: &mut Vec<u8>) {
    match value {
        AttributeValue::String(text) => {
            output.push(TAG_STRING);
            encode_bytes(text.as_bytes(), output);
        }
        AttributeValue::Number(number) => {
            output.push(TAG_NUMBER);
            encode_number(number, output);
        }
        AttributeValue::Binary(bytes) => {
            output.push(TAG_BINARY);
            encode_bytes(bytes, output);
        }
        AttributeValue::Boolean(false) => output.push(TAG_FALSE),
        AttributeValue::Boolean(true) => output.push(TAG_TRUE),
        AttributeValue::Null => output.push(TAG_NULL),
        AttributeValue::Map(map) => {
            output.push(TAG_MAP);
            encode_map_body(map, output);
        }
        AttributeValue::List(list) => {
            output.push(TAG_LIST);
            encode_length(list.len(), output);
            for element in list {
                encode_value(element, output);
            }
        }
        AttributeValue::StringSet(set) => {
            output.push(TAG_STRING_SET);
            encode_length(set.len(), output);
            for member in set {
                encode_bytes(member.as_bytes(), output);
            }
        }
        AttributeValue::NumberSet(set) => {
            output.push(TAG_NUMBER_SET);
            encode_length(set.len(), output);
            for member in set {
                encode_number(member, output);
            }
        }
        AttributeValue::BinarySet(set) => {
            output.push(TAG_BINARY_SET);
            encode_length(set.len(), output);
            for member in set {
                encode_bytes(member, output);
            }
        }
    }
}

/// Decodes an item written by [`encode_item`]; any other input is an [`Error::Corrupt`].
pub fn decode_item(bytes: &[u8]) -> Result<Item> {
    let mut reader = Reader::new(bytes, corrupt);
    let version = reader.byte()?;
    if version != ITEM_FORMAT_VERSION {
        return Err(corrupt(&format!("unknown item format version {version}")));
    }
    let item = reader.map_body(0)?;
    if reader.position != bytes.len() {
        return Err(corrupt("trailing bytes after the item"));
    }
    Ok(item)
}

fn corrupt(reason: &str) -> Error {
    Error::Corrupt(format!("stored item is corrupt: {reason}"))
}

/// A bounds-checked cursor over encoded bytes. Every method fails with `failure` instead of
/// panicking, and no method allocates more than the bytes it consumes justify.
pub(crate) struct Reader<'bytes> {
    bytes: &'bytes [u8],
    position: usize,
    /// Builds the error for a decoding failure from its reason.
    failure: fn(&str) -> Error,
}

impl<'bytes> Reader<'bytes> {
    pub(crate) fn new(bytes: &'bytes [u8], failure: fn(&str) -> Error) -> Reader<'bytes> {
        Reader {
            bytes,
            position: 0,
            failure,
        }
    }

    /// The error for a decoding failure.
    pub(crate) fn fail(&self, reason: &str) -> Error {
        (self.failure)(reason)
    }

    /// The offset of the next byte to read.
    pub(crate) fn position(&self) -> usize {
        self.position
    }

    /// The bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub(crate) fn take(&mut self, length: usize) -> Result<&'bytes [u8]> {
        let end = self
            .position
            .checked_add(length)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.fail("truncated"))?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    pub(crate) fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn length(&mut self) -> Result<usize> {
        let mut field = [0u8; 4];
        field.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(field) as usize)
    }

    /// A count of elements, each of which takes at least one byte, so a count above the bytes
    /// left is corrupt; checking it here keeps allocations bounded by the input.
    pub(crate) fn count(&mut self) -> Result<usize> {
        let count = self.length()?;
        if count > self.remaining() {
            return Err(self.fail("count exceeds the remaining bytes"));
        }
        Ok(count)
    }

    pub(crate) fn byte_string(&mut self) -> Result<&'bytes [u8]> {
        let length = self.length()?;
        self.take(length)
    }

    pub(crate) fn text(&mut self) -> Result<String> {
        let bytes = self.byte_string()?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| self.fail("invalid UTF-8"))
    }

    /// A map whose values sit at nesting level `depth + 1` (`depth` 0 for an item).
    pub(crate) fn map_body(&mut self, depth: usize) -> Result<BTreeMap<String, AttributeValue>> {
        let count = self.count()?;
        let mut map = BTreeMap::new();
        for _ in 0..count {
            let name = self.text()?;
            if map
                .last_key_value()
                .is_some_and(|(previous, _)| *previous >= name)
            {
                return Err(self.fail("names out of order"));
            }
            let value = self.value(depth + 1)?;
            map.insert(name, value);
        }
        Ok(map)
    }

    fn number(&mut self) -> Result<Number> {
        let header = self.byte()?;
        let length = usize::from(header & NUMBER_LENGTH_MASK);
        if header & !(NUMBER_NEGATIVE_BIT | NUMBER_LENGTH_MASK) != 0
            || length > NUMBER_COEFFICIENT_BYTES_MAX
        {
            return Err(self.fail("invalid number header"));
        }
        let mut exponent_field = [0u8; 2];
        exponent_field.copy_from_slice(self.take(2)?);
        let exponent = i16::from_le_bytes(exponent_field);
        let mut coefficient_field = [0u8; NUMBER_COEFFICIENT_BYTES_MAX];
        coefficient_field[..length].copy_from_slice(self.take(length)?);
        if length > 0 && coefficient_field[length - 1] == 0 {
            return Err(self.fail("number coefficient not minimal"));
        }
        let coefficient = u128::from_le_bytes(coefficient_field);
        Number::from_parts(
            header & NUMBER_NEGATIVE_BIT != 0,
            coefficient,
            i32::from(exponent),
        )
        .ok_or_else(|| self.fail("number not canonical"))
    }

    fn set_count(&mut self) -> Result<usize> {
        let count = self.count()?;
        if count == 0 {
            return Err(self.fail("empty set"));
        }
        Ok(count)
    }

    /// One value at nesting level `depth` (1 for an item's attribute, as [`AttributeValue::depth`]
    /// counts), refused beyond [`NESTING_DEPTH_MAX`].
    pub(crate) fn value(&mut self, depth: usize) -> Result<AttributeValue> {
        if depth > NESTING_DEPTH_MAX {
            return Err(self.fail("nested too deeply"));
        }
        let tag = self.byte()?;
        Ok(match tag {
            TAG_STRING => AttributeValue::String(self.text()?),
            TAG_NUMBER => AttributeValue::Number(self.number()?),
            TAG_BINARY => AttributeValue::Binary(self.byte_string()?.to_vec()),
            TAG_FALSE => AttributeValue::Boolean(false),
            TAG_TRUE => AttributeValue::Boolean(true),
            TAG_NULL => AttributeValue::Null,
            TAG_MAP => AttributeValue::Map(self.map_body(depth)?),
            TAG_LIST => {
                let count = self.count()?;
                let mut list = Vec::with_capacity(count.min(PREALLOCATED_ELEMENTS_MAX));
                for _ in 0..count {
                    list.push(self.value(depth + 1)?);
                }
                AttributeValue::List(list)
            }
            TAG_STRING_SET => {
                let count = self.set_count()?;
                let mut set = BTreeSet::new();
                for _ in 0..count {
                    let member = self.text()?;
                    self.insert_ascending(&mut set, member)?;
                }
                AttributeValue::StringSet(set)
            }
            TAG_NUMBER_SET => {
                let count = self.set_count()?;
                let mut set = BTreeSet::new();
                for _ in 0..count {
                    let member = self.number()?;
                    self.insert_ascending(&mut set, member)?;
                }
                AttributeValue::NumberSet(set)
            }
            TAG_BINARY_SET => {
                let count = self.set_count()?;
                let mut set = BTreeSet::new();
                for _ in 0..count {
                    let member = self.byte_string()?.to_vec();
                    self.insert_ascending(&mut set, member)?;
                }
                AttributeValue::BinarySet(set)
            }
            other => return Err(self.fail(&format!("unknown value tag {other:#04x}"))),
        })
    }

    fn insert_ascending<T: Ord>(&self, set: &mut BTreeSet<T>, member: T) -> Result<()> {
        if set.last().is_some_and(|last| *last >= member) {
            return Err(self.fail("set members out of order"));
        }
        set.insert(member);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_encoding_of_a_small_item() {
        // Pinned bytes: changing them breaks every stored item (FORMAT.md, version 1).
        let item = Item::from([
            (
                "a".to_string(),
                AttributeValue::Number(Number::parse("-1.5").unwrap()),
            ),
            ("b".to_string(), AttributeValue::String("hi".to_string())),
        ]);
        let expected: Vec<u8> = vec![
            0x01, // version
            0x02, 0x00, 0x00, 0x00, // two attributes
            0x01, 0x00, 0x00, 0x00, b'a', // name "a"
            0x02, 0x81, 0xFF, 0xFF, 0x0F, // N: negative, 1 byte, exponent -1, coefficient 15
            0x01, 0x00, 0x00, 0x00, b'b', // name "b"
            0x01, 0x02, 0x00, 0x00, 0x00, b'h', b'i', // S "hi"
        ];
        assert_eq!(encode_item(&item), expected);
        assert_eq!(decode_item(&expected).unwrap(), item);
    }

    #[test]
    fn rejects_non_canonical_and_truncated_input() {
        let item = Item::from([("x".to_string(), AttributeValue::Boolean(true))]);
        let bytes = encode_item(&item);
        for length in 0..bytes.len() {
            assert!(decode_item(&bytes[..length]).is_err());
        }
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 2;
        assert!(decode_item(&wrong_version).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_item(&trailing).is_err());
        // Names out of order.
        let unordered = vec![1, 2, 0, 0, 0, 1, 0, 0, 0, b'b', 6, 1, 0, 0, 0, b'a', 6];
        assert!(decode_item(&unordered).is_err());
        // A number with a trailing zero in its coefficient (10 instead of 1 × 10^1).
        let unnormalised = vec![1, 1, 0, 0, 0, 1, 0, 0, 0, b'n', 2, 0x01, 0, 0, 10];
        assert!(decode_item(&unnormalised).is_err());
        // A huge count with no bytes behind it must not allocate.
        let huge_count = vec![1, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(decode_item(&huge_count).is_err());
        assert_eq!(
            decode_item(&huge_count).unwrap_err().exception_name(),
            "InternalServerError"
        );
    }

    #[test]
    fn deep_nesting_is_rejected_without_recursion_overflow() {
        let mut bytes = vec![1, 1, 0, 0, 0, 1, 0, 0, 0, b'x'];
        for _ in 0..100_000 {
            bytes.extend_from_slice(&[TAG_LIST, 1, 0, 0, 0]);
        }
        bytes.push(TAG_NULL);
        assert!(decode_item(&bytes).is_err());
    }
}
