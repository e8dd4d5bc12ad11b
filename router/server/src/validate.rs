//! Request checks the router makes before touching metadata or a partition, with DynamoDB's
//! messages. Item parameters (expressions, attribute values) are checked again by the partition
//! leader with the model's parsers; what is here is what routing itself needs.

use serde_json::Value as Json;
use shoal_model::key::{KeyAttribute, KeySchema, KeyType};

use crate::error::DynamoError;
use crate::metadata::{Billing, key_type_from_name};

/// DynamoDB's table name limits.
pub const TABLE_NAME_BYTES_MIN: usize = 3;
pub const TABLE_NAME_BYTES_MAX: usize = 255;
/// ListTables returns at most this many names per page.
pub const LIST_TABLES_LIMIT_MAX: u64 = 100;
/// Provisioned capacity per table at most (DynamoDB's default account quota is 40,000).
pub const CAPACITY_UNITS_MAX: u64 = 40_000;

/// The `TableName` of a request, checked by DynamoDB's rules.
pub fn table_name(body: &Json) -> Result<&str, DynamoError> {
    let name = match body.get("TableName") {
        None | Some(Json::Null) => return Err(DynamoError::missing_member("tableName")),
        Some(Json::String(name)) => name.as_str(),
        Some(_) => {
            return Err(DynamoError::new(
                crate::error::SERIALIZATION,
                "Unexpected value type in payload: TableName must be a string",
            ));
        }
    };
    check_table_name(name)?;
    Ok(name)
}

pub fn check_table_name(name: &str) -> Result<(), DynamoError> {
    let mut problems = Vec::new();
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
    {
        problems.push(format!(
            "Value '{name}' at 'tableName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        ));
    }
    if name.len() < TABLE_NAME_BYTES_MIN {
        problems.push(format!(
            "Value '{name}' at 'tableName' failed to satisfy constraint: Member must have length greater than or equal to {TABLE_NAME_BYTES_MIN}"
        ));
    }
    if name.len() > TABLE_NAME_BYTES_MAX {
        problems.push(format!(
            "Value '{name}' at 'tableName' failed to satisfy constraint: Member must have length less than or equal to {TABLE_NAME_BYTES_MAX}"
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let count = problems.len();
    let noun = if count == 1 { "error" } else { "errors" };
    Err(DynamoError::validation(format!(
        "{count} validation {noun} detected: {}",
        problems.join("; ")
    )))
}

/// A checked CreateTable request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateTable {
    pub name: String,
    pub key_schema: KeySchema,
    pub attribute_definitions: Vec<(String, KeyType)>,
    pub billing: Billing,
}

fn attribute_definitions(body: &Json) -> Result<Vec<(String, KeyType)>, DynamoError> {
    let list = match body.get("AttributeDefinitions") {
        None | Some(Json::Null) => return Err(DynamoError::missing_member("attributeDefinitions")),
        Some(Json::Array(list)) => list,
        Some(_) => {
            return Err(DynamoError::new(
                crate::error::SERIALIZATION,
                "Unexpected value type in payload: AttributeDefinitions must be a list",
            ));
        }
    };
    let mut definitions = Vec::with_capacity(list.len());
    for (index, definition) in list.iter().enumerate() {
        let name = definition
            .get("AttributeName")
            .and_then(Json::as_str)
            .ok_or_else(|| {
                DynamoError::missing_member(&format!(
                    "attributeDefinitions.{}.member.attributeName",
                    index + 1
                ))
            })?;
        let type_name = definition
            .get("AttributeType")
            .and_then(Json::as_str)
            .ok_or_else(|| {
                DynamoError::missing_member(&format!(
                    "attributeDefinitions.{}.member.attributeType",
                    index + 1
                ))
            })?;
        let key_type = key_type_from_name(type_name).ok_or_else(|| {
            DynamoError::validation(format!(
                "1 validation error detected: Value '{type_name}' at 'attributeDefinitions.{}.member.attributeType' failed to satisfy constraint: Member must satisfy enum value set: [B, N, S]",
                index + 1
            ))
        })?;
        if definitions
            .iter()
            .any(|(existing, _): &(String, KeyType)| existing == name)
        {
            return Err(DynamoError::validation(format!(
                "Cannot have two attributes with the same name. Attribute: {name}"
            )));
        }
        definitions.push((name.to_string(), key_type));
    }
    Ok(definitions)
}

fn key_elements(body: &Json) -> Result<Vec<(String, String)>, DynamoError> {
    let list = match body.get("KeySchema") {
        None | Some(Json::Null) => return Err(DynamoError::missing_member("keySchema")),
        Some(Json::Array(list)) => list,
        Some(_) => {
            return Err(DynamoError::new(
                crate::error::SERIALIZATION,
                "Unexpected value type in payload: KeySchema must be a list",
            ));
        }
    };
    if list.is_empty() || list.len() > 2 {
        let bound = if list.is_empty() {
            "Member must have length greater than or equal to 1"
        } else {
            "Member must have length less than or equal to 2"
        };
        return Err(DynamoError::validation(format!(
            "1 validation error detected: Value '{}' at 'keySchema' failed to satisfy constraint: {bound}",
            Json::Array(list.clone())
        )));
    }
    list.iter()
        .enumerate()
        .map(|(index, element)| {
            let name = element
                .get("AttributeName")
                .and_then(Json::as_str)
                .ok_or_else(|| {
                    DynamoError::missing_member(&format!(
                        "keySchema.{}.member.attributeName",
                        index + 1
                    ))
                })?;
            let key_type = element
                .get("KeyType")
                .and_then(Json::as_str)
                .ok_or_else(|| {
                    DynamoError::missing_member(&format!("keySchema.{}.member.keyType", index + 1))
                })?;
            if key_type != "HASH" && key_type != "RANGE" {
                return Err(DynamoError::validation(format!(
                    "1 validation error detected: Value '{key_type}' at 'keySchema.{}.member.keyType' failed to satisfy constraint: Member must satisfy enum value set: [HASH, RANGE]",
                    index + 1
                )));
            }
            Ok((name.to_string(), key_type.to_string()))
        })
        .collect()
}

fn capacity(body: &Json, member: &str) -> Option<u64> {
    body.get("ProvisionedThroughput")
        .and_then(|throughput| throughput.get(member))
        .and_then(Json::as_u64)
}

fn billing(body: &Json) -> Result<Billing, DynamoError> {
    let mode = match body.get("BillingMode") {
        None | Some(Json::Null) => "PROVISIONED",
        Some(Json::String(mode)) => mode.as_str(),
        Some(_) => {
            return Err(DynamoError::new(
                crate::error::SERIALIZATION,
                "Unexpected value type in payload: BillingMode must be a string",
            ));
        }
    };
    let throughput_given = matches!(
        body.get("ProvisionedThroughput"),
        Some(value) if !value.is_null()
    );
    match mode {
        "PAY_PER_REQUEST" => {
            if throughput_given {
                return Err(DynamoError::validation(
                    "One or more parameter values were invalid: Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST",
                ));
            }
            Ok(Billing::PayPerRequest)
        }
        "PROVISIONED" => {
            if !throughput_given {
                return Err(DynamoError::validation(
                    "One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED",
                ));
            }
            let read = capacity(body, "ReadCapacityUnits");
            let write = capacity(body, "WriteCapacityUnits");
            let (Some(read), Some(write)) = (read, write) else {
                return Err(DynamoError::validation(
                    "One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED",
                ));
            };
            for (value, member) in [(read, "readCapacityUnits"), (write, "writeCapacityUnits")] {
                if value < 1 {
                    return Err(DynamoError::validation(format!(
                        "1 validation error detected: Value '{value}' at 'provisionedThroughput.{member}' failed to satisfy constraint: Member must have value greater than or equal to 1"
                    )));
                }
                if value > CAPACITY_UNITS_MAX {
                    return Err(DynamoError::validation(format!(
                        "One or more parameter values were invalid: {member} {value} exceeds the per-table maximum of {CAPACITY_UNITS_MAX}"
                    )));
                }
            }
            Ok(Billing::Provisioned {
                read_capacity_units: read,
                write_capacity_units: write,
            })
        }
        other => Err(DynamoError::validation(format!(
            "1 validation error detected: Value '{other}' at 'billingMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]"
        ))),
    }
}

/// Checks a CreateTable request. Secondary indexes, streams and the other options are not
/// supported yet and are refused rather than ignored.
pub fn create_table(body: &Json) -> Result<CreateTable, DynamoError> {
    let name = table_name(body)?.to_string();
    for unsupported in [
        "GlobalSecondaryIndexes",
        "LocalSecondaryIndexes",
        "StreamSpecification",
    ] {
        if body.get(unsupported).is_some_and(|value| !value.is_null()) {
            return Err(DynamoError::validation(format!(
                "{unsupported} is not supported by this server yet"
            )));
        }
    }
    let elements = key_elements(body)?;
    let definitions = attribute_definitions(body)?;
    if elements[0].1 != "HASH" {
        return Err(DynamoError::validation(
            "Invalid KeySchema: The first KeySchemaElement is not a HASH key type",
        ));
    }
    if let Some(second) = elements.get(1) {
        if second.1 != "RANGE" {
            return Err(DynamoError::validation(
                "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type",
            ));
        }
        if second.0 == elements[0].0 {
            return Err(DynamoError::validation(
                "Both the Hash Key and the Range Key element in the KeySchema have the same name",
            ));
        }
    }
    let defined_names = || {
        definitions
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut attributes = Vec::with_capacity(elements.len());
    for (name, _) in &elements {
        let Some((_, key_type)) = definitions.iter().find(|(defined, _)| defined == name) else {
            let keys = elements
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(DynamoError::validation(format!(
                "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [{keys}], AttributeDefinitions: [{}]",
                defined_names()
            )));
        };
        attributes.push(KeyAttribute {
            name: name.clone(),
            key_type: *key_type,
        });
    }
    if definitions.len() != elements.len() {
        return Err(DynamoError::validation(
            "One or more parameter values were invalid: Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions",
        ));
    }
    let mut attributes = attributes.into_iter();
    let key_schema = match (attributes.next(), attributes.next()) {
        (Some(partition), sort) => KeySchema { partition, sort },
        (None, _) => return Err(DynamoError::missing_member("keySchema")),
    };
    Ok(CreateTable {
        name,
        key_schema,
        attribute_definitions: definitions,
        billing: billing(body)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> Json {
        json!({
            "TableName": "orders",
            "AttributeDefinitions": [
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"}
            ],
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"}
            ],
            "BillingMode": "PAY_PER_REQUEST"
        })
    }

    fn message(body: &Json) -> String {
        create_table(body).unwrap_err().message
    }

    #[test]
    fn accepts_a_well_formed_request() {
        let table = create_table(&request()).unwrap();
        assert_eq!(
            table.key_schema,
            KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number)
        );
        assert_eq!(table.billing, Billing::PayPerRequest);
        let mut provisioned = request();
        provisioned["BillingMode"] = json!("PROVISIONED");
        provisioned["ProvisionedThroughput"] =
            json!({"ReadCapacityUnits": 5, "WriteCapacityUnits": 6});
        assert_eq!(
            create_table(&provisioned).unwrap().billing,
            Billing::Provisioned {
                read_capacity_units: 5,
                write_capacity_units: 6
            }
        );
    }

    #[test]
    fn table_names_follow_dynamodb_rules() {
        assert!(check_table_name("a.b-c_D9").is_ok());
        let error = check_table_name("ab").unwrap_err();
        assert_eq!(error.type_name, "ValidationException");
        assert!(error.message.contains("length greater than or equal to 3"));
        let error = check_table_name("a b!").unwrap_err();
        assert!(error.message.contains("regular expression pattern"));
        let both = check_table_name("!").unwrap_err();
        assert!(both.message.starts_with("2 validation errors detected"));
        assert_eq!(
            table_name(&json!({})).unwrap_err().message,
            "1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null"
        );
    }

    #[test]
    fn refuses_bad_key_schemas_with_dynamodb_messages() {
        let mut body = request();
        body["KeySchema"][0]["KeyType"] = json!("RANGE");
        assert_eq!(
            message(&body),
            "Invalid KeySchema: The first KeySchemaElement is not a HASH key type"
        );
        let mut body = request();
        body["AttributeDefinitions"] = json!([{"AttributeName": "pk", "AttributeType": "S"}]);
        assert_eq!(
            message(&body),
            "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [pk, sk], AttributeDefinitions: [pk]"
        );
        let mut body = request();
        body["AttributeDefinitions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"AttributeName": "x", "AttributeType": "S"}));
        assert!(
            message(&body).contains("Number of attributes in KeySchema does not exactly match")
        );
        let mut body = request();
        body["AttributeDefinitions"][1]["AttributeType"] = json!("BOOL");
        assert!(message(&body).contains("Member must satisfy enum value set: [B, N, S]"));
        let mut body = request();
        body["KeySchema"][1]["AttributeName"] = json!("pk");
        assert!(message(&body).contains("have the same name"));
    }

    #[test]
    fn billing_modes_need_the_right_throughput() {
        let mut body = request();
        body["ProvisionedThroughput"] = json!({"ReadCapacityUnits": 1, "WriteCapacityUnits": 1});
        assert!(message(&body).contains("when BillingMode is PAY_PER_REQUEST"));
        let mut body = request();
        body.as_object_mut().unwrap().remove("BillingMode");
        assert!(message(&body).contains("when BillingMode is PROVISIONED"));
        body["ProvisionedThroughput"] = json!({"ReadCapacityUnits": 0, "WriteCapacityUnits": 1});
        assert!(message(&body).contains("greater than or equal to 1"));
    }
}
