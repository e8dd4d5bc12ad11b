//! The DynamoDB requests the simulated clients send to the real partition replicas, and the
//! reading of their answers.
//!
//! A simulated key `k` is the item whose partition key `pk` is the string `k<k>`; its register
//! value is the number attribute `v`. Every write in a run writes a value no other write writes,
//! so a value names the operation that wrote it.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

/// What a client asks a group to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Put {
        key: u64,
        value: u64,
    },
    /// Writes `new` only if the key currently holds `expected` (None: the key was never written).
    CompareAndSet {
        key: u64,
        expected: Option<u64>,
        new: u64,
    },
}

/// The exception a PutItem whose condition is false answers: the write was not applied.
pub const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

fn key_attribute(key: u64) -> Json {
    json!({ "S": format!("k{key}") })
}

impl Command {
    pub fn key(&self) -> u64 {
        match *self {
            Command::Put { key, .. } | Command::CompareAndSet { key, .. } => key,
        }
    }

    pub fn written_value(&self) -> u64 {
        match *self {
            Command::Put { value, .. } => value,
            Command::CompareAndSet { new, .. } => new,
        }
    }

    /// The PutItem parameters: a blind put, or a put conditioned on the current value.
    pub fn parameters_json(&self) -> String {
        let item = json!({
            "pk": key_attribute(self.key()),
            "v": { "N": self.written_value().to_string() },
        });
        let parameters = match *self {
            Command::Put { .. } => json!({ "Item": item }),
            Command::CompareAndSet { expected: None, .. } => json!({
                "Item": item,
                "ConditionExpression": "attribute_not_exists(pk)",
            }),
            Command::CompareAndSet {
                expected: Some(expected),
                ..
            } => json!({
                "Item": item,
                "ConditionExpression": "v = :expected",
                "ExpressionAttributeValues": { ":expected": { "N": expected.to_string() } },
            }),
        };
        parameters.to_string()
    }
}

/// GetItem parameters for `key`, strongly consistent or not.
pub fn get_parameters(key: u64, consistent: bool) -> String {
    json!({ "Key": { "pk": key_attribute(key) }, "ConsistentRead": consistent }).to_string()
}

/// Scan parameters that read the whole partition at any replica (its applied state).
pub const SCAN_PARAMETERS: &str = "{}";

/// The simulated key and value of one item in DynamoDB JSON.
fn key_and_value(item: &Json) -> Result<(u64, u64), String> {
    let key = item["pk"]["S"]
        .as_str()
        .and_then(|name| name.strip_prefix('k'))
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| format!("item without a simulated key: {item}"))?;
    let value = item["v"]["N"]
        .as_str()
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| format!("item without a numeric v: {item}"))?;
    Ok((key, value))
}

/// The value a GetItem answer holds: None when the item does not exist.
pub fn parse_get_body(body_json: &str) -> Result<Option<u64>, String> {
    let body: Json = serde_json::from_str(body_json).map_err(|error| error.to_string())?;
    match body.get("Item") {
        None => Ok(None),
        Some(item) => key_and_value(item).map(|(_, value)| Some(value)),
    }
}

/// Every item of a Scan answer, by simulated key.
pub fn parse_scan_body(body_json: &str) -> Result<BTreeMap<u64, u64>, String> {
    let body: Json = serde_json::from_str(body_json).map_err(|error| error.to_string())?;
    if body.get("LastEvaluatedKey").is_some() {
        return Err("a scan of a few small items stopped early".to_string());
    }
    let items = body["Items"]
        .as_array()
        .ok_or_else(|| format!("scan answer without Items: {body}"))?;
    items.iter().map(key_and_value).collect()
}

/// FNV-1a over the applied items in key order: equal states give equal digests everywhere.
pub fn digest(state: &BTreeMap<u64, u64>) -> u64 {
    state
        .iter()
        .fold(crate::FNV_OFFSET_BASIS, |hash, (key, value)| {
            crate::fnv1a(crate::fnv1a(hash, &key.to_le_bytes()), &value.to_le_bytes())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_key_the_value_and_the_condition() {
        let put: Json = serde_json::from_str(&Command::Put { key: 3, value: 9 }.parameters_json())
            .expect("json");
        assert_eq!(put["Item"]["pk"]["S"], "k3");
        assert_eq!(put["Item"]["v"]["N"], "9");
        assert!(put.get("ConditionExpression").is_none());
        let unwritten: Json = serde_json::from_str(
            &Command::CompareAndSet {
                key: 1,
                expected: None,
                new: 4,
            }
            .parameters_json(),
        )
        .expect("json");
        assert_eq!(unwritten["ConditionExpression"], "attribute_not_exists(pk)");
        let expecting: Json = serde_json::from_str(
            &Command::CompareAndSet {
                key: 1,
                expected: Some(7),
                new: 5,
            }
            .parameters_json(),
        )
        .expect("json");
        assert_eq!(expecting["ConditionExpression"], "v = :expected");
        assert_eq!(
            expecting["ExpressionAttributeValues"][":expected"]["N"],
            "7"
        );
    }

    #[test]
    fn answers_parse_and_malformed_ones_are_refused() {
        assert_eq!(parse_get_body("{}"), Ok(None));
        assert_eq!(
            parse_get_body(r#"{"Item":{"pk":{"S":"k2"},"v":{"N":"11"}}}"#),
            Ok(Some(11))
        );
        assert!(parse_get_body(r#"{"Item":{"pk":{"S":"k2"}}}"#).is_err());
        let state = parse_scan_body(
            r#"{"Items":[{"pk":{"S":"k2"},"v":{"N":"11"}},{"pk":{"S":"k0"},"v":{"N":"3"}}],"Count":2}"#,
        )
        .expect("scan");
        assert_eq!(state, BTreeMap::from([(0, 3), (2, 11)]));
        assert!(parse_scan_body(r#"{"Items":[],"LastEvaluatedKey":{}}"#).is_err());
        let mut changed = state.clone();
        changed.insert(2, 12);
        assert_ne!(digest(&state), digest(&changed));
    }
}
