//! Conversion between attribute values and DynamoDB JSON (`{"S": "x"}`, base64 for binary).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map as JsonMap, Value as Json};

use crate::error::{Error, Result, validation};
use crate::messages;
use crate::number::Number;
use crate::value::{AttributeValue, Item, NESTING_DEPTH_MAX};

fn serialization(context: &str) -> Error {
    Error::Serialization(messages::unexpected_json(context))
}

/// The members of an AttributeValue that name a type.
const ATTRIBUTE_VALUE_TYPES: [&str; 10] =
    ["S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"];

/// Converts DynamoDB JSON for one attribute value, such as `{"N": "1.5"}`.
pub fn value_from_json(json: &Json) -> Result<AttributeValue> {
    value_from_json_at_depth(json, 1)
}

fn value_from_json_at_depth(json: &Json, depth: usize) -> Result<AttributeValue> {
    // Checked before recursing, so hostile nesting cannot exhaust the stack.
    if depth > NESTING_DEPTH_MAX {
        return Err(validation(messages::NESTING_TOO_DEEP));
    }
    let Json::Object(object) = json else {
        return Err(serialization("AttributeValue must be an object"));
    };
    // Members that name no type are ignored, as DynamoDB's JSON reader ignores unknown
    // members: `{"a": ""}` is an empty AttributeValue (dynalite's test/putItem.js, "should
    // return ValidationException for unsupported datatype in Item"; its README: tested
    // against the live DynamoDB instances, error messages included).
    let mut entries = object
        .iter()
        .filter(|(type_name, _)| ATTRIBUTE_VALUE_TYPES.contains(&type_name.as_str()));
    let Some((type_name, inner)) = entries.next() else {
        return Err(validation(messages::ATTRIBUTE_VALUE_EMPTY));
    };
    if entries.next().is_some() {
        return Err(validation(messages::ATTRIBUTE_VALUE_MANY_TYPES));
    }
    match type_name.as_str() {
        "S" => Ok(AttributeValue::String(json_string(inner, "S")?.to_string())),
        "N" => Ok(AttributeValue::Number(Number::parse(json_string(
            inner, "N",
        )?)?)),
        "B" => Ok(AttributeValue::Binary(decode_base64(json_string(
            inner, "B",
        )?)?)),
        "BOOL" => match inner {
            Json::Bool(flag) => Ok(AttributeValue::Boolean(*flag)),
            _ => Err(serialization("BOOL must be a boolean")),
        },
        "NULL" => match inner {
            Json::Bool(true) => Ok(AttributeValue::Null),
            Json::Bool(false) => Err(validation(messages::NULL_MUST_BE_TRUE)),
            _ => Err(serialization("NULL must be a boolean")),
        },
        "M" => {
            let Json::Object(members) = inner else {
                return Err(serialization("M must be an object"));
            };
            let mut map = BTreeMap::new();
            for (name, member) in members {
                map.insert(name.clone(), value_from_json_at_depth(member, depth + 1)?);
            }
            Ok(AttributeValue::Map(map))
        }
        "L" => {
            let Json::Array(elements) = inner else {
                return Err(serialization("L must be an array"));
            };
            let list = elements
                .iter()
                .map(|element| value_from_json_at_depth(element, depth + 1))
                .collect::<Result<Vec<_>>>()?;
            Ok(AttributeValue::List(list))
        }
        "SS" => {
            let members = json_string_array(inner, "SS")?;
            let set = collect_set(&members, "string", |text| Ok(text.to_string()))?;
            Ok(AttributeValue::StringSet(set))
        }
        "NS" => {
            let members = json_string_array(inner, "NS")?;
            Ok(AttributeValue::NumberSet(collect_set(
                &members,
                "number",
                Number::parse,
            )?))
        }
        "BS" => {
            let members = json_string_array(inner, "BS")?;
            Ok(AttributeValue::BinarySet(collect_set(
                &members,
                "binary",
                decode_base64,
            )?))
        }
        // Unreachable: `entries` yields type names only.
        _ => Err(serialization("unknown AttributeValue type")),
    }
}

fn json_string<'json>(json: &'json Json, type_name: &str) -> Result<&'json str> {
    match json {
        Json::String(text) => Ok(text),
        _ => Err(serialization(&format!("{type_name} must be a string"))),
    }
}

fn json_string_array<'json>(json: &'json Json, type_name: &str) -> Result<Vec<&'json str>> {
    let Json::Array(elements) = json else {
        return Err(serialization(&format!("{type_name} must be an array")));
    };
    elements
        .iter()
        .map(|element| json_string(element, type_name))
        .collect()
}

/// Builds a set, rejecting an empty set and duplicates (after normalisation, so `1` and `1.0`
/// are duplicates in a number set), with DynamoDB's messages.
fn collect_set<T: Ord>(
    members: &[&str],
    kind: &str,
    convert: impl Fn(&str) -> Result<T>,
) -> Result<BTreeSet<T>> {
    if members.is_empty() {
        return Err(validation(messages::set_empty(kind)));
    }
    let mut set = BTreeSet::new();
    for member in members {
        if !set.insert(convert(member)?) {
            return Err(validation(messages::set_duplicates(&format!(
                "[{}]",
                members.join(", ")
            ))));
        }
    }
    Ok(set)
}

fn decode_base64(text: &str) -> Result<Vec<u8>> {
    BASE64
        .decode(text)
        .map_err(|_| Error::Serialization(messages::BASE64_INVALID.to_string()))
}

/// Converts an attribute value to DynamoDB JSON.
pub fn value_to_json(value: &AttributeValue) -> Json {
    let (type_name, inner) = match value {
        AttributeValue::String(text) => ("S", Json::String(text.clone())),
        AttributeValue::Number(number) => ("N", Json::String(number.to_string())),
        AttributeValue::Binary(bytes) => ("B", Json::String(BASE64.encode(bytes))),
        AttributeValue::Boolean(flag) => ("BOOL", Json::Bool(*flag)),
        AttributeValue::Null => ("NULL", Json::Bool(true)),
        AttributeValue::Map(map) => ("M", Json::Object(item_to_json_object(map))),
        AttributeValue::List(list) => ("L", Json::Array(list.iter().map(value_to_json).collect())),
        AttributeValue::StringSet(set) => (
            "SS",
            Json::Array(set.iter().map(|text| Json::String(text.clone())).collect()),
        ),
        AttributeValue::NumberSet(set) => (
            "NS",
            Json::Array(
                set.iter()
                    .map(|number| Json::String(number.to_string()))
                    .collect(),
            ),
        ),
        AttributeValue::BinarySet(set) => (
            "BS",
            Json::Array(
                set.iter()
                    .map(|bytes| Json::String(BASE64.encode(bytes)))
                    .collect(),
            ),
        ),
    };
    let mut object = JsonMap::new();
    object.insert(type_name.to_string(), inner);
    Json::Object(object)
}

/// Converts a DynamoDB JSON item (`{"name": {"S": "x"}, ...}`).
pub fn item_from_json(json: &Json) -> Result<Item> {
    let Json::Object(object) = json else {
        return Err(serialization("an item must be an object"));
    };
    let mut item = Item::new();
    for (name, value) in object {
        if name.is_empty() {
            return Err(validation(messages::ATTRIBUTE_NAME_EMPTY));
        }
        crate::value::check_attribute_name_length(name)?;
        item.insert(name.clone(), value_from_json(value)?);
    }
    Ok(item)
}

fn item_to_json_object(item: &BTreeMap<String, AttributeValue>) -> JsonMap<String, Json> {
    item.iter()
        .map(|(name, value)| (name.clone(), value_to_json(value)))
        .collect()
}

/// Converts an item to DynamoDB JSON.
pub fn item_to_json(item: &Item) -> Json {
    Json::Object(item_to_json_object(item))
}

/// A compact rendering of a value for error messages, such as `{N:5}`, as DynamoDB prints
/// attribute values inside its messages.
pub fn value_for_message(value: &AttributeValue) -> String {
    match value {
        AttributeValue::String(text) => format!("{{S:{text}}}"),
        AttributeValue::Number(number) => format!("{{N:{number}}}"),
        AttributeValue::Binary(bytes) => format!("{{B:{}}}", BASE64.encode(bytes)),
        other => {
            let json = value_to_json(other);
            json.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error_of(json: Json) -> Error {
        value_from_json(&json).unwrap_err()
    }

    #[test]
    fn round_trips_every_type() {
        let item = json!({
            "s": {"S": "text"}, "n": {"N": "-1.5"}, "b": {"B": "AAEC"}, "t": {"BOOL": true},
            "z": {"NULL": true}, "m": {"M": {"inner": {"L": [{"N": "1"}, {"S": ""}]}}},
            "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]}, "bs": {"BS": ["AQ==", "Ag=="]}
        });
        let decoded = item_from_json(&item).unwrap();
        assert_eq!(decoded["b"], AttributeValue::Binary(vec![0, 1, 2]));
        assert_eq!(item_to_json(&decoded), item);
    }

    #[test]
    fn numbers_are_returned_normalised() {
        let value = value_from_json(&json!({"N": "10E-1"})).unwrap();
        assert_eq!(value_to_json(&value), json!({"N": "1"}));
    }

    #[test]
    fn sets_must_be_non_empty_and_unique() {
        assert_eq!(
            error_of(json!({"SS": []})).message(),
            "One or more parameter values were invalid: An string set  may not be empty"
        );
        assert_eq!(
            error_of(json!({"NS": []})).message(),
            "One or more parameter values were invalid: An number set  may not be empty"
        );
        assert_eq!(
            error_of(json!({"BS": []})).message(),
            "One or more parameter values were invalid: An binary set  may not be empty"
        );
        assert_eq!(
            error_of(json!({"SS": ["a", "a"]})).message(),
            "One or more parameter values were invalid: Input collection [a, a] contains duplicates."
        );
        assert_eq!(
            error_of(json!({"NS": ["1", "1.0"]})).message(),
            "One or more parameter values were invalid: Input collection [1, 1.0] contains duplicates."
        );
    }

    #[test]
    fn malformed_values_are_rejected() {
        assert_eq!(
            error_of(json!({})).message(),
            messages::ATTRIBUTE_VALUE_EMPTY
        );
        assert_eq!(
            error_of(json!({"S": "a", "N": "1"})).message(),
            messages::ATTRIBUTE_VALUE_MANY_TYPES
        );
        assert_eq!(
            error_of(json!({"NULL": false})).message(),
            messages::NULL_MUST_BE_TRUE
        );
        assert_eq!(
            error_of(json!({"N": "x"})).message(),
            "The parameter cannot be converted to a numeric value: x"
        );
        assert_eq!(
            error_of(json!({"S": 1})).exception_name(),
            "SerializationException"
        );
        assert_eq!(
            error_of(json!({"B": "!!"})).exception_name(),
            "SerializationException"
        );
        // An unknown member is ignored: alone, it leaves the value empty.
        assert_eq!(
            error_of(json!({"X": "1"})).message(),
            messages::ATTRIBUTE_VALUE_EMPTY
        );
        assert_eq!(
            value_from_json(&json!({"X": "1", "S": "s"})).unwrap(),
            AttributeValue::String("s".to_string())
        );
        assert_eq!(
            error_of(json!("S")).exception_name(),
            "SerializationException"
        );
    }

    #[test]
    fn items_need_named_attributes() {
        let error = item_from_json(&json!({"": {"S": "x"}})).unwrap_err();
        assert_eq!(error.message(), messages::ATTRIBUTE_NAME_EMPTY);
        let error = item_from_json(&json!([])).unwrap_err();
        assert_eq!(error.exception_name(), "SerializationException");
        // Names of up to 65,535 bytes, not one more.
        let longest = "n".repeat(crate::value::ATTRIBUTE_NAME_BYTES_MAX);
        assert!(item_from_json(&json!({ longest.clone(): {"N": "1"} })).is_ok());
        let error = item_from_json(&json!({ format!("{longest}n"): {"N": "1"} })).unwrap_err();
        assert_eq!(error.message(), messages::ATTRIBUTE_NAME_TOO_LONG);
        assert_eq!(error.exception_name(), "ValidationException");
    }

    #[test]
    fn nesting_is_limited() {
        let mut json = json!({"NULL": true});
        for _ in 0..NESTING_DEPTH_MAX - 1 {
            json = json!({"L": [json]});
        }
        assert!(value_from_json(&json).is_ok());
        let json = json!({"L": [json]});
        assert_eq!(error_of(json).message(), messages::NESTING_TOO_DEEP);
    }
}
