//! Request checks the router makes before touching metadata or a partition, with DynamoDB's
//! messages. Item parameters (expressions, attribute values) are checked again by the partition
//! leader with the model's parsers; what is here is what routing itself needs, and the checks
//! of the control-plane operations (CreateTable, UpdateTable, the tag operations).
//!
//! Sources of the wording: botocore's service-2.json (members, limits, enums), the texts that
//! emulators checked against DynamoDB reproduce (dynalite's test suite, which runs against
//! DynamoDB, and moto's), and recorded DynamoDB responses (router/server/README.md lists which
//! text came from where).

use std::collections::BTreeMap;

use serde_json::Value as Json;
use shoal_model::index::LocalIndex;
use shoal_model::key::{KeyAttribute, KeySchema, KeyType};

use crate::error::{DynamoError, LIMIT_EXCEEDED};
use crate::index_definitions;
use crate::metadata::{Billing, key_type_from_name};
use crate::on_demand::{OnDemandMaximum, OnDemandRequest, Owner};
use crate::table_settings::{self, CreateSettings, UpdateSettings};

/// Key attribute names (KeySchema, AttributeDefinitions) are 1 to 255 characters
/// (service-2.json `KeySchemaAttributeName`; ScyllaDB's test_limits.py, run against DynamoDB,
/// finds 255 accepted and 256 refused for hash and range keys).
pub const KEY_ATTRIBUTE_NAME_CHARS_MIN: usize = 1;
pub const KEY_ATTRIBUTE_NAME_CHARS_MAX: usize = 255;
const _: () = assert!(KEY_ATTRIBUTE_NAME_CHARS_MIN <= KEY_ATTRIBUTE_NAME_CHARS_MAX);

/// DynamoDB's table name limits.
pub const TABLE_NAME_BYTES_MIN: usize = 3;
pub const TABLE_NAME_BYTES_MAX: usize = 255;
/// ListTables returns at most this many names per page.
pub const LIST_TABLES_LIMIT_MAX: u64 = 100;
/// Provisioned capacity units at least (DynamoDB's `PositiveLongObject`).
pub const CAPACITY_UNITS_MIN: u64 = 1;
/// DynamoDB's default per-table quotas: DescribeLimits reports them, CreateTable and
/// UpdateTable refuse more with LimitExceededException.
pub const TABLE_READ_CAPACITY_UNITS_MAX: u64 = 40_000;
pub const TABLE_WRITE_CAPACITY_UNITS_MAX: u64 = 40_000;
/// DynamoDB's default account quotas, which DescribeLimits reports. Not enforced: enforcing
/// them would read every table item on each CreateTable and UpdateTable (README.md).
pub const ACCOUNT_READ_CAPACITY_UNITS_MAX: u64 = 80_000;
pub const ACCOUNT_WRITE_CAPACITY_UNITS_MAX: u64 = 80_000;
const _: () = assert!(CAPACITY_UNITS_MIN <= TABLE_READ_CAPACITY_UNITS_MAX);
const _: () = assert!(CAPACITY_UNITS_MIN <= TABLE_WRITE_CAPACITY_UNITS_MAX);
const _: () = assert!(TABLE_READ_CAPACITY_UNITS_MAX <= ACCOUNT_READ_CAPACITY_UNITS_MAX);
const _: () = assert!(TABLE_WRITE_CAPACITY_UNITS_MAX <= ACCOUNT_WRITE_CAPACITY_UNITS_MAX);

/// DynamoDB's tag limits: tags per table, key and value lengths in Unicode characters.
pub const TAGS_PER_RESOURCE_MAX: usize = 50;
pub const TAG_KEY_CHARS_MIN: usize = 1;
pub const TAG_KEY_CHARS_MAX: usize = 128;
pub const TAG_VALUE_CHARS_MAX: usize = 256;
/// Tag keys with this prefix (in any case) are AWS's own and refused.
pub const TAG_KEY_RESERVED_PREFIX: &str = "aws:";
/// Tags may hold Unicode letters, numbers and spaces, and these.
const TAG_PUNCTUATION: &str = "+-=._:/@";
/// ResourceArn's length limits (service-2.json `ResourceArnString`).
pub const RESOURCE_ARN_BYTES_MIN: usize = 1;
pub const RESOURCE_ARN_BYTES_MAX: usize = 1283;
/// TimeToLiveSpecification.AttributeName's length in bytes (the service model's
/// TimeToLiveAttributeName: 1 to 255).
pub const TIME_TO_LIVE_ATTRIBUTE_NAME_BYTES_MIN: usize = 1;
pub const TIME_TO_LIVE_ATTRIBUTE_NAME_BYTES_MAX: usize = 255;
const _: () = assert!(TAG_KEY_CHARS_MIN <= TAG_KEY_CHARS_MAX);
const _: () = assert!(TAG_KEY_RESERVED_PREFIX.len() <= TAG_KEY_CHARS_MAX);

const PAY_PER_REQUEST_WITH_THROUGHPUT: &str = "One or more parameter values were invalid: Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST";
const CREATE_PROVISIONED_WITHOUT_THROUGHPUT: &str = "One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED";
const UPDATE_PROVISIONED_WITHOUT_THROUGHPUT: &str = "One or more parameter values were invalid: ProvisionedThroughput must be specified when BillingMode is PROVISIONED";
/// UpdateTable without a member that changes anything. DynamoDB's list names members of its
/// own that are not in the public model; it is kept as DynamoDB sends it.
const UPDATE_TABLE_NOTHING_TO_DO: &str = "At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, GlobalSecondaryIndexUpdates, SSESpecification, ReplicaUpdates, MultiAccountReplicaReady, ReplicaTransitRoleArn, MultiRegionConsistency, DeletionProtectionEnabled, OnDemandThroughput, WarmThroughput or TableClass is required";
const INVALID_TABLE_CLASS: &str = "Invalid table-class parameter provided. Please try again with a valid table-class value: [STANDARD, STANDARD_INFREQUENT_ACCESS].";
const TAG_LIMIT_EXCEEDED: &str =
    "Number of Tags exceed the current limit for the provided ResourceArn";
/// "Atleast" is DynamoDB's spelling.
const NO_TAGS: &str = "Atleast one Tag needs to be provided as Input.";
const NO_TAG_KEYS: &str = "Atleast one Tag Key needs to be provided as Input.";
/// No ResourceArn at all (dynalite's tests, which run against DynamoDB).
const NO_TABLE_ARN: &str = "Invalid TableArn";

/// CreateTable members of features Shoal does not have yet: refused, never ignored.
/// SSESpecification and StreamSpecification (disabled) are table settings (table_settings.rs);
/// LocalSecondaryIndexes and GlobalSecondaryIndexes are built (index_definitions.rs).
const CREATE_TABLE_NOT_BUILT: [&str; 5] = [
    "WarmThroughput",
    "ResourcePolicy",
    "GlobalTableSourceArn",
    "GlobalTableSettingsReplicationMode",
    "VectorIndexes",
];
/// UpdateTable members of features Shoal does not have yet: refused, never ignored.
/// SSESpecification and StreamSpecification are table settings (table_settings.rs).
const UPDATE_TABLE_NOT_BUILT: [&str; 7] = [
    "ReplicaUpdates",
    "MultiRegionConsistency",
    "GlobalTableWitnessUpdates",
    "WarmThroughput",
    "GlobalTableSettingsReplicationMode",
    "DisassociationProtectionEnabled",
    "VectorIndexUpdates",
];

pub(crate) fn not_built(member: &str) -> DynamoError {
    DynamoError::validation(format!("{member} is not supported by this server yet"))
}

fn present(body: &Json, member: &str) -> bool {
    body.get(member).is_some_and(|value| !value.is_null())
}

/// Constraint violations of the request's shape, reported together as DynamoDB reports them.
pub(crate) fn constraint_violations(problems: Vec<String>) -> Result<(), DynamoError> {
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
    constraint_violations(problems)
}

/// A checked CreateTable request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateTable {
    pub name: String,
    pub key_schema: KeySchema,
    pub attribute_definitions: Vec<(String, KeyType)>,
    pub billing: Billing,
    /// OnDemandThroughput's maximums (on_demand.rs).
    pub on_demand: OnDemandMaximum,
    pub tags: BTreeMap<String, String>,
    /// Encryption, table class and deletion protection as asked (table_settings.rs).
    pub settings: CreateSettings,
    /// LocalSecondaryIndexes, numbered in request order.
    pub local_indexes: Vec<LocalIndex>,
    /// GlobalSecondaryIndexes, in request order.
    pub global_indexes: Vec<index_definitions::GlobalIndex>,
    /// StreamSpecification's view type when it enables a stream.
    pub stream: Option<shoal_model::stream::ViewType>,
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
        check_key_attribute_name(
            name,
            &format!("attributeDefinitions.{}.member.attributeName", index + 1),
        )?;
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

/// A key attribute name's length, with DynamoDB's generic constraint text at `path`.
fn check_key_attribute_name(name: &str, path: &str) -> Result<(), DynamoError> {
    let chars = name.chars().count();
    let bound = if chars < KEY_ATTRIBUTE_NAME_CHARS_MIN {
        format!("Member must have length greater than or equal to {KEY_ATTRIBUTE_NAME_CHARS_MIN}")
    } else if chars > KEY_ATTRIBUTE_NAME_CHARS_MAX {
        format!("Member must have length less than or equal to {KEY_ATTRIBUTE_NAME_CHARS_MAX}")
    } else {
        return Ok(());
    };
    Err(DynamoError::validation(format!(
        "1 validation error detected: Value '{name}' at '{path}' failed to satisfy constraint: {bound}"
    )))
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
            check_key_attribute_name(
                name,
                &format!("keySchema.{}.member.attributeName", index + 1),
            )?;
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

/// Provisioned read and write capacity as a request gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throughput {
    pub read_capacity_units: u64,
    pub write_capacity_units: u64,
}

impl Throughput {
    pub fn billing(self) -> Billing {
        Billing::Provisioned {
            read_capacity_units: self.read_capacity_units,
            write_capacity_units: self.write_capacity_units,
        }
    }
}

/// ProvisionedThroughput's members, in the order DynamoDB reports their violations.
const THROUGHPUT_MEMBERS: [(&str, &str); 2] = [
    (
        "WriteCapacityUnits",
        "provisionedThroughput.writeCapacityUnits",
    ),
    (
        "ReadCapacityUnits",
        "provisionedThroughput.readCapacityUnits",
    ),
];

/// A request's ProvisionedThroughput, `None` when absent. Both members must be present and at
/// least [`CAPACITY_UNITS_MIN`]; every violation is reported at once, before any rule about the
/// billing mode (DynamoDB checks the request's shape first).
pub(crate) fn provisioned_throughput(body: &Json) -> Result<Option<Throughput>, DynamoError> {
    let throughput = match body.get("ProvisionedThroughput") {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Object(throughput)) => throughput,
        Some(_) => {
            return Err(DynamoError::serialization(
                "ProvisionedThroughput must be a structure",
            ));
        }
    };
    let mut values = [0u64; THROUGHPUT_MEMBERS.len()];
    let mut problems = Vec::new();
    for ((member, path), value) in THROUGHPUT_MEMBERS.iter().zip(values.iter_mut()) {
        match throughput.get(*member) {
            None | Some(Json::Null) => problems.push(format!(
                "Value null at '{path}' failed to satisfy constraint: Member must not be null"
            )),
            Some(Json::Number(number)) => match (number.as_u64(), number.as_i64()) {
                (Some(units), _) if units >= CAPACITY_UNITS_MIN => *value = units,
                (_, Some(units)) => problems.push(format!(
                    "Value '{units}' at '{path}' failed to satisfy constraint: Member must have value greater than or equal to {CAPACITY_UNITS_MIN}"
                )),
                _ => {
                    return Err(DynamoError::serialization(&format!(
                        "{member} must be an integer"
                    )));
                }
            },
            Some(_) => {
                return Err(DynamoError::serialization(&format!(
                    "{member} must be a number"
                )));
            }
        }
    }
    constraint_violations(problems)?;
    Ok(Some(Throughput {
        write_capacity_units: values[0],
        read_capacity_units: values[1],
    }))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BillingModeName {
    Provisioned,
    PayPerRequest,
}

fn billing_mode(body: &Json) -> Result<Option<BillingModeName>, DynamoError> {
    match body.get("BillingMode") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(mode)) => match mode.as_str() {
            "PROVISIONED" => Ok(Some(BillingModeName::Provisioned)),
            "PAY_PER_REQUEST" => Ok(Some(BillingModeName::PayPerRequest)),
            other => Err(DynamoError::validation(format!(
                "1 validation error detected: Value '{other}' at 'billingMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]"
            ))),
        },
        Some(_) => Err(DynamoError::serialization("BillingMode must be a string")),
    }
}

/// CreateTable's billing: PROVISIONED (the default) needs both capacities, PAY_PER_REQUEST
/// takes none.
fn billing(body: &Json) -> Result<Billing, DynamoError> {
    let mode = billing_mode(body)?.unwrap_or(BillingModeName::Provisioned);
    let throughput = provisioned_throughput(body)?;
    match (mode, throughput) {
        (BillingModeName::PayPerRequest, None) => Ok(Billing::PayPerRequest),
        (BillingModeName::PayPerRequest, Some(_)) => {
            Err(DynamoError::validation(PAY_PER_REQUEST_WITH_THROUGHPUT))
        }
        (BillingModeName::Provisioned, Some(throughput)) => Ok(throughput.billing()),
        (BillingModeName::Provisioned, None) => Err(DynamoError::validation(
            CREATE_PROVISIONED_WITHOUT_THROUGHPUT,
        )),
    }
}

/// Refuses provisioned capacity above the per-table quotas, as DynamoDB does (a quota, so
/// LimitExceededException, named with the router's region).
pub fn check_table_maximum(billing: Billing, region: &str) -> Result<(), DynamoError> {
    let Billing::Provisioned {
        read_capacity_units,
        write_capacity_units,
    } = billing
    else {
        return Ok(());
    };
    for (member, requested, maximum) in [
        (
            "ReadCapacityUnits",
            read_capacity_units,
            TABLE_READ_CAPACITY_UNITS_MAX,
        ),
        (
            "WriteCapacityUnits",
            write_capacity_units,
            TABLE_WRITE_CAPACITY_UNITS_MAX,
        ),
    ] {
        if requested > maximum {
            return Err(DynamoError::new(
                LIMIT_EXCEEDED,
                format!(
                    "The requested {member}, {requested}, is above the per table maximum for the account in {region}. Per table maximum: {maximum}. Refer to the Amazon DynamoDB Developer Guide for current limits and how to request higher limits."
                ),
            ));
        }
    }
    Ok(())
}

/// A table class. Shoal stores and reports it; both classes are served alike (DynamoDB's
/// classes differ in price, not in behaviour or performance).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableClass {
    Standard,
    StandardInfrequentAccess,
}

impl TableClass {
    pub fn name(self) -> &'static str {
        match self {
            TableClass::Standard => "STANDARD",
            TableClass::StandardInfrequentAccess => "STANDARD_INFREQUENT_ACCESS",
        }
    }

    pub fn parse(name: &str) -> Option<TableClass> {
        match name {
            "STANDARD" => Some(TableClass::Standard),
            "STANDARD_INFREQUENT_ACCESS" => Some(TableClass::StandardInfrequentAccess),
            _ => None,
        }
    }
}

fn table_class(body: &Json) -> Result<Option<TableClass>, DynamoError> {
    match body.get("TableClass") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(class)) => TableClass::parse(class)
            .map(Some)
            .ok_or_else(|| DynamoError::validation(INVALID_TABLE_CLASS)),
        Some(_) => Err(DynamoError::serialization("TableClass must be a string")),
    }
}

fn deletion_protection(body: &Json) -> Result<Option<bool>, DynamoError> {
    match body.get("DeletionProtectionEnabled") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Bool(enabled)) => Ok(Some(*enabled)),
        Some(_) => Err(DynamoError::serialization(
            "DeletionProtectionEnabled must be a boolean",
        )),
    }
}

/// Checks a CreateTable request. Secondary indexes, enabled streams and the other options
/// are not supported yet and are refused rather than ignored; encryption, the table class,
/// deletion protection and a disabled stream are table settings (table_settings.rs).
pub fn create_table(body: &Json) -> Result<CreateTable, DynamoError> {
    let name = table_name(body)?.to_string();
    if let Some(member) = CREATE_TABLE_NOT_BUILT
        .iter()
        .find(|member| present(body, member))
    {
        return Err(not_built(member));
    }
    let settings = CreateSettings {
        encryption: table_settings::encryption_request(body)?,
        table_class: table_class(body)?,
        deletion_protection: deletion_protection(body)?,
    };
    let stream = match table_settings::stream_specification(body)? {
        Some(stream) => table_settings::check_create_stream(&stream)?,
        None => None,
    };
    index_definitions::check_shapes(body)?;
    let indexed = index_definitions::requested(body);
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
    // With indexes, unused definitions are reported with the keys every index uses (below).
    if !indexed && definitions.len() != elements.len() {
        return Err(DynamoError::validation(
            "One or more parameter values were invalid: Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions",
        ));
    }
    let mut attributes = attributes.into_iter();
    let key_schema = match (attributes.next(), attributes.next()) {
        (Some(partition), sort) => KeySchema { partition, sort },
        (None, _) => return Err(DynamoError::missing_member("keySchema")),
    };
    let billing = billing(body)?;
    let on_demand = match crate::on_demand::request(body)? {
        Some(request) => request.for_create(billing, Owner::Table)?,
        None => OnDemandMaximum::default(),
    };
    let indexes = index_definitions::secondary_indexes(body, &key_schema, &definitions, billing)?;
    let tags = match body.get("Tags") {
        None | Some(Json::Null) => BTreeMap::new(),
        // CreateTable may name no tags at all, unlike TagResource.
        Some(Json::Array(list)) if list.is_empty() => BTreeMap::new(),
        Some(list) => tags(list)?,
    };
    Ok(CreateTable {
        name,
        key_schema,
        attribute_definitions: definitions,
        billing,
        on_demand,
        tags,
        settings,
        local_indexes: indexes.local,
        global_indexes: indexes.global,
        stream,
    })
}

/// A checked UpdateTable request: what it asks of the table's billing, and of its settings
/// (at most one of them, with nothing else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateTable {
    pub name: String,
    pub billing_mode: Option<BillingModeName>,
    pub throughput: Option<Throughput>,
    /// OnDemandThroughput, merged over the table's maximums (on_demand.rs).
    pub on_demand: Option<OnDemandRequest>,
    pub settings: UpdateSettings,
    /// GlobalSecondaryIndexUpdates, checked against the request (index_definitions.rs).
    pub global_index_updates: Option<Vec<index_definitions::GlobalIndexUpdate>>,
}

/// Checks an UpdateTable request on its own (before the table is read): its shape, that it asks
/// for something, DynamoDB's rule that a TableClass or deletion protection change is the only
/// change of its request, features not built, and the billing rules that need no table.
/// AttributeDefinitions are accepted and change nothing, as in DynamoDB without index changes.
pub fn update_table(body: &Json) -> Result<UpdateTable, DynamoError> {
    let name = table_name(body)?.to_string();
    let throughput = provisioned_throughput(body)?;
    let billing_mode = billing_mode(body)?;
    let on_demand = crate::on_demand::request(body)?;
    let class = table_class(body)?;
    let protection = deletion_protection(body)?;
    let encryption = table_settings::encryption_request(body)?;
    let stream = table_settings::stream_specification(body)?;
    // A new index's key attributes are defined in this request's own AttributeDefinitions.
    let definitions = match body.get("AttributeDefinitions") {
        None | Some(Json::Null) => Vec::new(),
        Some(_) => attribute_definitions(body)?,
    };
    let global_index_updates = index_definitions::global_index_updates(body, &definitions)?;
    let features_not_built = UPDATE_TABLE_NOT_BUILT
        .iter()
        .filter(|member| present(body, member));
    let changes = usize::from(throughput.is_some())
        + usize::from(billing_mode.is_some())
        + usize::from(on_demand.is_some())
        + usize::from(class.is_some())
        + usize::from(protection.is_some())
        + usize::from(encryption.is_some())
        + usize::from(stream.is_some())
        + usize::from(global_index_updates.is_some())
        + features_not_built.clone().count();
    if changes == 0 {
        return Err(DynamoError::validation(UPDATE_TABLE_NOTHING_TO_DO));
    }
    // DynamoDB names the first of these that is not alone: encryption, class, protection.
    for (asked, change) in [
        (encryption.is_some(), "Server-Side Encryption"),
        (class.is_some(), "TableClass"),
        (protection.is_some(), "DeletionProtection"),
    ] {
        if asked && changes > 1 {
            return Err(DynamoError::validation(format!(
                "One or more parameter values were invalid: {change} modification must be the only operation in the request"
            )));
        }
    }
    // A stream change combines with PAY_PER_REQUEST only (ack-api-quirks DDB-TABLE-433).
    if stream.is_some()
        && (throughput.is_some() || billing_mode == Some(BillingModeName::Provisioned))
    {
        return Err(DynamoError::validation(
            "One or more parameter values were invalid: You cannot modify stream status while updating table IOPS",
        ));
    }
    if stream.is_some() && global_index_updates.is_some() {
        return Err(DynamoError::validation(
            "One or more parameter values were invalid: You cannot create or delete index while changing stream status",
        ));
    }
    if let Some(member) = features_not_built.clone().next() {
        return Err(not_built(member));
    }
    let settings = UpdateSettings {
        encryption,
        table_class: class,
        deletion_protection: protection,
        stream,
    };
    match (billing_mode, throughput) {
        (Some(BillingModeName::PayPerRequest), Some(_)) => {
            Err(DynamoError::validation(PAY_PER_REQUEST_WITH_THROUGHPUT))
        }
        (Some(BillingModeName::Provisioned), None) => Err(DynamoError::validation(
            UPDATE_PROVISIONED_WITHOUT_THROUGHPUT,
        )),
        _ => Ok(UpdateTable {
            name,
            billing_mode,
            throughput,
            on_demand,
            settings,
            global_index_updates,
        }),
    }
}

/// The billing an UpdateTable leaves the table with, given its billing now; `None` when the
/// request changes no billing (PAY_PER_REQUEST asked of an on-demand table, or only a table
/// setting). Throughput equal to the current throughput is
/// refused, as DynamoDB refuses it.
pub fn updated_billing(
    current: Billing,
    request: &UpdateTable,
) -> Result<Option<Billing>, DynamoError> {
    let mode = request.billing_mode.unwrap_or(match current {
        Billing::PayPerRequest => BillingModeName::PayPerRequest,
        Billing::Provisioned { .. } => BillingModeName::Provisioned,
    });
    match (mode, request.throughput) {
        (BillingModeName::PayPerRequest, Some(_)) => {
            Err(DynamoError::validation(PAY_PER_REQUEST_WITH_THROUGHPUT))
        }
        (BillingModeName::PayPerRequest, None) => {
            Ok((current != Billing::PayPerRequest).then_some(Billing::PayPerRequest))
        }
        // update_table refused PROVISIONED without throughput: no billing change was asked.
        (BillingModeName::Provisioned, None) => Ok(None),
        (BillingModeName::Provisioned, Some(throughput)) => {
            if let Billing::Provisioned {
                read_capacity_units,
                write_capacity_units,
            } = current
                && throughput.billing() == current
            {
                return Err(DynamoError::validation(format!(
                    "The provisioned throughput for the table will not change. The requested value equals the current value. Current ReadCapacityUnits provisioned for the table: {read_capacity_units}. Requested ReadCapacityUnits: {}. Current WriteCapacityUnits provisioned for the table: {write_capacity_units}. Requested WriteCapacityUnits: {}. Refer to the Amazon DynamoDB Developer Guide for current limits and how to request higher limits.",
                    throughput.read_capacity_units, throughput.write_capacity_units
                )));
            }
            Ok(Some(throughput.billing()))
        }
    }
}

// ---- Tags --------------------------------------------------------------------------------

fn tag_text_allowed(text: &str) -> bool {
    text.chars().all(|character| {
        character.is_alphabetic()
            || character.is_numeric()
            // Unicode spaces (\p{Z}), not control characters such as tab or newline.
            || (character.is_whitespace() && !character.is_control())
            || TAG_PUNCTUATION.contains(character)
    })
}

fn invalid_tag_key(key: &str) -> DynamoError {
    DynamoError::validation(format!("The Tag Key provided is invalid, Key: {key}"))
}

fn check_tag_key(key: &str) -> Result<(), DynamoError> {
    let length = key.chars().count();
    if !(TAG_KEY_CHARS_MIN..=TAG_KEY_CHARS_MAX).contains(&length) || !tag_text_allowed(key) {
        return Err(invalid_tag_key(key));
    }
    Ok(())
}

fn tag_string<'json>(tag: &'json Json, member: &str) -> Result<Option<&'json str>, DynamoError> {
    match tag.get(member) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(text)) => Ok(Some(text)),
        Some(_) => Err(DynamoError::serialization(&format!(
            "Tag {member} must be a string"
        ))),
    }
}

/// The Tags of TagResource or CreateTable: at least one, at most [`TAGS_PER_RESOURCE_MAX`],
/// each key valid, not AWS's and given once, each value valid. All or nothing: one bad tag
/// refuses the request.
pub fn tags(list: &Json) -> Result<BTreeMap<String, String>, DynamoError> {
    let list = match list {
        Json::Array(list) => list,
        Json::Null => return Err(DynamoError::missing_member("tags")),
        _ => return Err(DynamoError::serialization("Tags must be a list")),
    };
    if list.is_empty() {
        return Err(DynamoError::validation(NO_TAGS));
    }
    if list.len() > TAGS_PER_RESOURCE_MAX {
        return Err(DynamoError::validation(TAG_LIMIT_EXCEEDED));
    }
    let mut tags = BTreeMap::new();
    for tag in list {
        if !tag.is_object() {
            return Err(DynamoError::serialization("Tag must be a structure"));
        }
        let key = tag_string(tag, "Key")?.ok_or_else(|| invalid_tag_key("null"))?;
        check_tag_key(key)?;
        if key
            .get(..TAG_KEY_RESERVED_PREFIX.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(TAG_KEY_RESERVED_PREFIX))
        {
            return Err(DynamoError::validation(format!(
                "Tag Key cannot be prefixed with {TAG_KEY_RESERVED_PREFIX}, Key: {key}"
            )));
        }
        let value = tag_string(tag, "Value")?.ok_or_else(|| {
            DynamoError::validation("The Tag Value provided is invalid, Value: null")
        })?;
        if value.chars().count() > TAG_VALUE_CHARS_MAX || !tag_text_allowed(value) {
            return Err(DynamoError::validation(format!(
                "The Tag Value provided is invalid, Value: {value}"
            )));
        }
        if tags.insert(key.to_string(), value.to_string()).is_some() {
            return Err(DynamoError::validation(format!(
                "Duplicate Tag Keys provided as input: Duplicate Tag Key found {key}"
            )));
        }
    }
    Ok(tags)
}

/// TagResource's Tags member.
pub fn tag_resource_tags(body: &Json) -> Result<BTreeMap<String, String>, DynamoError> {
    tags(body.get("Tags").unwrap_or(&Json::Null))
}

/// Refuses a tag set that would exceed [`TAGS_PER_RESOURCE_MAX`] once merged into a table's.
pub fn check_tag_count(count: usize) -> Result<(), DynamoError> {
    if count > TAGS_PER_RESOURCE_MAX {
        return Err(DynamoError::validation(TAG_LIMIT_EXCEEDED));
    }
    Ok(())
}

/// UntagResource's TagKeys: at least one, at most [`TAGS_PER_RESOURCE_MAX`], each a valid key.
/// A key the table does not have is not an error.
pub fn tag_keys(body: &Json) -> Result<Vec<String>, DynamoError> {
    let list = match body.get("TagKeys") {
        None | Some(Json::Null) => return Err(DynamoError::missing_member("tagKeys")),
        Some(Json::Array(list)) => list,
        Some(_) => return Err(DynamoError::serialization("TagKeys must be a list")),
    };
    if list.is_empty() {
        return Err(DynamoError::validation(NO_TAG_KEYS));
    }
    check_tag_count(list.len())?;
    list.iter()
        .map(|key| match key {
            Json::String(key) => check_tag_key(key).map(|()| key.clone()),
            Json::Null => Err(invalid_tag_key("null")),
            _ => Err(DynamoError::serialization("TagKeys must be strings")),
        })
        .collect()
}

/// UpdateTimeToLive's TimeToLiveSpecification: both members are required (the service model),
/// every violation reported at once as DynamoDB reports its constraint violations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeToLiveSpecification {
    pub enabled: bool,
    pub attribute_name: String,
}

pub fn time_to_live_specification(body: &Json) -> Result<TimeToLiveSpecification, DynamoError> {
    let specification = match body.get("TimeToLiveSpecification") {
        None | Some(Json::Null) => {
            return Err(DynamoError::missing_member("timeToLiveSpecification"));
        }
        Some(Json::Object(specification)) => specification,
        Some(_) => {
            return Err(DynamoError::serialization(
                "TimeToLiveSpecification must be a structure",
            ));
        }
    };
    let mut problems = Vec::new();
    let enabled = match specification.get("Enabled") {
        None | Some(Json::Null) => {
            problems.push(
                "Value null at 'timeToLiveSpecification.enabled' failed to satisfy constraint: Member must not be null"
                    .to_string(),
            );
            false
        }
        Some(Json::Bool(enabled)) => *enabled,
        Some(_) => return Err(DynamoError::serialization("Enabled must be a boolean")),
    };
    let attribute_name = match specification.get("AttributeName") {
        None | Some(Json::Null) => {
            problems.push(
                "Value null at 'timeToLiveSpecification.attributeName' failed to satisfy constraint: Member must not be null"
                    .to_string(),
            );
            String::new()
        }
        Some(Json::String(name)) => {
            if name.len() < TIME_TO_LIVE_ATTRIBUTE_NAME_BYTES_MIN {
                problems.push(format!(
                    "Value '{name}' at 'timeToLiveSpecification.attributeName' failed to satisfy constraint: Member must have length greater than or equal to {TIME_TO_LIVE_ATTRIBUTE_NAME_BYTES_MIN}"
                ));
            }
            if name.len() > TIME_TO_LIVE_ATTRIBUTE_NAME_BYTES_MAX {
                problems.push(format!(
                    "Value '{name}' at 'timeToLiveSpecification.attributeName' failed to satisfy constraint: Member must have length less than or equal to {TIME_TO_LIVE_ATTRIBUTE_NAME_BYTES_MAX}"
                ));
            }
            name.clone()
        }
        Some(_) => return Err(DynamoError::serialization("AttributeName must be a string")),
    };
    constraint_violations(problems)?;
    Ok(TimeToLiveSpecification {
        enabled,
        attribute_name,
    })
}

/// The table a tag operation's ResourceArn names. The ARN must be a table ARN of this router's
/// region and account, `arn:aws:dynamodb:<region>:<account>:table/<name>`, with DynamoDB's
/// messages for each way it is not. Whether the table exists is the caller's check.
pub fn table_of_arn<'body>(
    body: &'body Json,
    region: &str,
    account: &str,
) -> Result<(&'body str, &'body str), DynamoError> {
    let arn = match body.get("ResourceArn") {
        None | Some(Json::Null) => return Err(DynamoError::validation(NO_TABLE_ARN)),
        Some(Json::String(arn)) => arn.as_str(),
        Some(_) => return Err(DynamoError::serialization("ResourceArn must be a string")),
    };
    let length = arn.len();
    if length < RESOURCE_ARN_BYTES_MIN {
        return Err(DynamoError::validation(format!(
            "1 validation error detected: Value '{arn}' at 'resourceArn' failed to satisfy constraint: Member must have length greater than or equal to {RESOURCE_ARN_BYTES_MIN}"
        )));
    }
    if length > RESOURCE_ARN_BYTES_MAX {
        return Err(DynamoError::validation(format!(
            "1 validation error detected: Value '{arn}' at 'resourceArn' failed to satisfy constraint: Member must have length less than or equal to {RESOURCE_ARN_BYTES_MAX}"
        )));
    }
    if !arn.starts_with("arn:") {
        return Err(DynamoError::validation(format!(
            "One or more parameter values were invalid: ARNs must start with 'arn:': {arn}"
        )));
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, partition, service, arn_region, arn_account, resource] = parts[..] else {
        return Err(DynamoError::validation(format!(
            "One or more parameter values were invalid: Provided Arn is not a DynamoDB resource arn: {arn}"
        )));
    };
    if service != "dynamodb" {
        return Err(DynamoError::validation(format!(
            "One or more parameter values were invalid: Provided Arn is not a DynamoDB resource arn: {arn}"
        )));
    }
    let invalid = || {
        DynamoError::validation(format!(
            "Invalid TableArn: Invalid ResourceArn provided as input {arn}"
        ))
    };
    let Some(path) = resource.strip_prefix("table/") else {
        return Err(invalid());
    };
    let (name, rest) = path.split_once('/').unwrap_or((path, ""));
    if rest.starts_with("index/") {
        return Err(DynamoError::validation(format!(
            "One or more parameter values were invalid: Invalid resource arn provided, only table or stream is accepted. Provided resource arn: {arn}"
        )));
    }
    if partition != "aws"
        || arn_region != region
        || arn_account != account
        || !rest.is_empty()
        || check_table_name(name).is_err()
    {
        return Err(invalid());
    }
    Ok((arn, name))
}

/// ListTagsOfResource's NextToken: the key after which the page starts.
pub fn next_token(body: &Json) -> Result<Option<&str>, DynamoError> {
    match body.get("NextToken") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(token)) => Ok(Some(token)),
        Some(_) => Err(DynamoError::serialization("NextToken must be a string")),
    }
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

    #[test]
    fn throughput_violations_are_reported_together_write_first() {
        let mut body = request();
        body.as_object_mut().unwrap().remove("BillingMode");
        body["ProvisionedThroughput"] = json!({"ReadCapacityUnits": 0, "WriteCapacityUnits": -1});
        assert_eq!(
            message(&body),
            "2 validation errors detected: Value '-1' at 'provisionedThroughput.writeCapacityUnits' failed to satisfy constraint: Member must have value greater than or equal to 1; Value '0' at 'provisionedThroughput.readCapacityUnits' failed to satisfy constraint: Member must have value greater than or equal to 1"
        );
        body["ProvisionedThroughput"] = json!({"ReadCapacityUnits": 4});
        assert_eq!(
            message(&body),
            "1 validation error detected: Value null at 'provisionedThroughput.writeCapacityUnits' failed to satisfy constraint: Member must not be null"
        );
        // The shape is checked before the billing rule (DynamoDB: PAY_PER_REQUEST with 0/0).
        let mut body = request();
        body["ProvisionedThroughput"] = json!({"ReadCapacityUnits": 0, "WriteCapacityUnits": 0});
        assert!(message(&body).starts_with("2 validation errors detected"));
        body["ProvisionedThroughput"] = json!({"ReadCapacityUnits": 1.5, "WriteCapacityUnits": 1});
        assert_eq!(
            create_table(&body).unwrap_err().type_name,
            crate::error::SERIALIZATION
        );
    }

    #[test]
    fn table_maxima_are_limit_exceeded_with_dynamodb_wording() {
        let at_maximum = Billing::Provisioned {
            read_capacity_units: TABLE_READ_CAPACITY_UNITS_MAX,
            write_capacity_units: TABLE_WRITE_CAPACITY_UNITS_MAX,
        };
        assert!(check_table_maximum(at_maximum, "eu-west-1").is_ok());
        assert!(check_table_maximum(Billing::PayPerRequest, "eu-west-1").is_ok());
        let error = check_table_maximum(
            Billing::Provisioned {
                read_capacity_units: 1,
                write_capacity_units: TABLE_WRITE_CAPACITY_UNITS_MAX + 1,
            },
            "eu-west-1",
        )
        .unwrap_err();
        assert_eq!(error.type_name, "LimitExceededException");
        assert_eq!(
            error.message,
            "The requested WriteCapacityUnits, 40001, is above the per table maximum for the account in eu-west-1. Per table maximum: 40000. Refer to the Amazon DynamoDB Developer Guide for current limits and how to request higher limits."
        );
    }

    #[test]
    fn create_table_refuses_features_not_built_and_takes_tags() {
        for member in CREATE_TABLE_NOT_BUILT {
            let mut body = request();
            body[member] = json!({"Enabled": true});
            assert_eq!(
                message(&body),
                format!("{member} is not supported by this server yet")
            );
        }
        let mut body = request();
        body["TableClass"] = json!("STANDARD");
        body["DeletionProtectionEnabled"] = json!(false);
        body["Tags"] = json!([{"Key": "team", "Value": "shoal"}]);
        let table = create_table(&body).unwrap();
        assert_eq!(
            table.tags,
            BTreeMap::from([("team".to_string(), "shoal".to_string())])
        );
        body["Tags"] = json!([]);
        assert!(create_table(&body).unwrap().tags.is_empty());
        // The settings tools send on every table are taken (table_settings.rs).
        body["DeletionProtectionEnabled"] = json!(true);
        body["TableClass"] = json!("STANDARD_INFREQUENT_ACCESS");
        body["SSESpecification"] = json!({"Enabled": true});
        body["StreamSpecification"] = json!({"StreamEnabled": false});
        let settings = create_table(&body).unwrap().settings;
        assert_eq!(settings.deletion_protection, Some(true));
        assert_eq!(
            settings.table_class,
            Some(TableClass::StandardInfrequentAccess)
        );
        assert_eq!(
            settings.encryption,
            Some(table_settings::EncryptionRequest::Kms { key: None })
        );
        body["StreamSpecification"] = json!({"StreamEnabled": true, "StreamViewType": "KEYS_ONLY"});
        assert_eq!(
            create_table(&body).unwrap().stream,
            Some(shoal_model::stream::ViewType::KeysOnly)
        );
        // Key attribute names of 1 to 255 characters, in the key schema and the definitions.
        for (schema_name, definition_name, path) in [
            (
                "k".repeat(256),
                "k".repeat(256),
                "keySchema.1.member.attributeName",
            ),
            (
                "pk".to_string(),
                "k".repeat(256),
                "attributeDefinitions.1.member.attributeName",
            ),
            (
                String::new(),
                "pk".to_string(),
                "keySchema.1.member.attributeName",
            ),
        ] {
            let mut body = request();
            body["KeySchema"] = json!([{"AttributeName": schema_name, "KeyType": "HASH"}]);
            body["AttributeDefinitions"] =
                json!([{"AttributeName": definition_name, "AttributeType": "S"}]);
            let text = message(&body);
            assert!(
                text.starts_with("1 validation error detected: Value '"),
                "{text}"
            );
            assert!(
                text.contains(&format!(
                    "at '{path}' failed to satisfy constraint: Member must have length"
                )),
                "{text}"
            );
        }
        let mut body = request();
        body["KeySchema"] = json!([{"AttributeName": "k".repeat(255), "KeyType": "HASH"}]);
        body["AttributeDefinitions"] =
            json!([{"AttributeName": "k".repeat(255), "AttributeType": "S"}]);
        assert!(create_table(&body).is_ok());
        let mut body = request();
        body["TableClass"] = json!("GLACIER");
        assert_eq!(message(&body), INVALID_TABLE_CLASS);
        let mut body = request();
        body["Tags"] = json!([{"Key": "aws:owner", "Value": "x"}]);
        assert_eq!(
            message(&body),
            "Tag Key cannot be prefixed with aws:, Key: aws:owner"
        );
    }

    fn update(body: Json) -> Result<UpdateTable, DynamoError> {
        let mut request = json!({"TableName": "orders"});
        for (member, value) in body.as_object().unwrap() {
            request[member] = value.clone();
        }
        update_table(&request)
    }

    fn update_message(body: Json) -> String {
        update(body).unwrap_err().message
    }

    #[test]
    fn update_table_must_change_something_and_only_what_is_built() {
        assert_eq!(update_message(json!({})), UPDATE_TABLE_NOTHING_TO_DO);
        // AttributeDefinitions alone change nothing in DynamoDB either.
        assert_eq!(
            update_message(json!({"AttributeDefinitions": []})),
            UPDATE_TABLE_NOTHING_TO_DO
        );
        for member in UPDATE_TABLE_NOT_BUILT {
            assert_eq!(
                update_message(json!({member: {"Enabled": true}})),
                format!("{member} is not supported by this server yet")
            );
        }
        assert_eq!(
            update_message(
                json!({"DeletionProtectionEnabled": false, "BillingMode": "PAY_PER_REQUEST"})
            ),
            "One or more parameter values were invalid: DeletionProtection modification must be the only operation in the request"
        );
        // DynamoDB names encryption first, then the class, then protection (DDB-TABLE-433).
        assert_eq!(
            update_message(json!({"TableClass": "STANDARD", "SSESpecification": {}})),
            "One or more parameter values were invalid: Server-Side Encryption modification must be the only operation in the request"
        );
        assert_eq!(
            update_message(json!({"TableClass": "STANDARD", "DeletionProtectionEnabled": true})),
            "One or more parameter values were invalid: TableClass modification must be the only operation in the request"
        );
        assert_eq!(
            update_message(json!({
                "StreamSpecification": {"StreamEnabled": false},
                "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
            })),
            "One or more parameter values were invalid: You cannot modify stream status while updating table IOPS"
        );
        // A setting asked alone is accepted and changes no billing.
        for body in [
            json!({"TableClass": "STANDARD_INFREQUENT_ACCESS"}),
            json!({"DeletionProtectionEnabled": true}),
            json!({"SSESpecification": {"Enabled": true}}),
        ] {
            let request = update(body).unwrap();
            assert_eq!(
                updated_billing(Billing::PayPerRequest, &request).unwrap(),
                None
            );
        }
        assert_eq!(
            update(json!({"ProvisionedThroughput": {"ReadCapacityUnits": 0}}))
                .unwrap_err()
                .message,
            "2 validation errors detected: Value null at 'provisionedThroughput.writeCapacityUnits' failed to satisfy constraint: Member must not be null; Value '0' at 'provisionedThroughput.readCapacityUnits' failed to satisfy constraint: Member must have value greater than or equal to 1"
        );
        assert!(
            update_message(json!({"BillingMode": "FREE"}))
                .contains("Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]")
        );
    }

    #[test]
    fn update_table_billing_rules() {
        let throughput =
            |read, write| json!({"ReadCapacityUnits": read, "WriteCapacityUnits": write});
        assert_eq!(
            update_message(
                json!({"BillingMode": "PAY_PER_REQUEST", "ProvisionedThroughput": throughput(1, 1)})
            ),
            PAY_PER_REQUEST_WITH_THROUGHPUT
        );
        assert_eq!(
            update_message(json!({"BillingMode": "PROVISIONED"})),
            UPDATE_PROVISIONED_WITHOUT_THROUGHPUT
        );
        let provisioned = Billing::Provisioned {
            read_capacity_units: 5,
            write_capacity_units: 7,
        };
        // Throughput alone on an on-demand table.
        let request = update(json!({"ProvisionedThroughput": throughput(1, 1)})).unwrap();
        assert_eq!(
            updated_billing(Billing::PayPerRequest, &request)
                .unwrap_err()
                .message,
            PAY_PER_REQUEST_WITH_THROUGHPUT
        );
        // The same throughput again.
        let request = update(json!({"ProvisionedThroughput": throughput(5, 7)})).unwrap();
        assert_eq!(
            updated_billing(provisioned, &request).unwrap_err().message,
            "The provisioned throughput for the table will not change. The requested value equals the current value. Current ReadCapacityUnits provisioned for the table: 5. Requested ReadCapacityUnits: 5. Current WriteCapacityUnits provisioned for the table: 7. Requested WriteCapacityUnits: 7. Refer to the Amazon DynamoDB Developer Guide for current limits and how to request higher limits."
        );
        let request = update(
            json!({"BillingMode": "PROVISIONED", "ProvisionedThroughput": throughput(5, 7)}),
        )
        .unwrap();
        assert!(updated_billing(provisioned, &request).is_err());
        // A change, a switch each way, and PAY_PER_REQUEST asked of an on-demand table.
        let request = update(json!({"ProvisionedThroughput": throughput(6, 7)})).unwrap();
        assert_eq!(
            updated_billing(provisioned, &request).unwrap(),
            Some(Billing::Provisioned {
                read_capacity_units: 6,
                write_capacity_units: 7
            })
        );
        let request = update(
            json!({"BillingMode": "PROVISIONED", "ProvisionedThroughput": throughput(5, 7)}),
        )
        .unwrap();
        assert_eq!(
            updated_billing(Billing::PayPerRequest, &request).unwrap(),
            Some(provisioned)
        );
        let request = update(json!({"BillingMode": "PAY_PER_REQUEST"})).unwrap();
        assert_eq!(
            updated_billing(provisioned, &request).unwrap(),
            Some(Billing::PayPerRequest)
        );
        assert_eq!(
            updated_billing(Billing::PayPerRequest, &request).unwrap(),
            None
        );
    }

    fn tag_list(pairs: &[(&str, &str)]) -> Json {
        Json::Array(
            pairs
                .iter()
                .map(|(key, value)| json!({"Key": key, "Value": value}))
                .collect(),
        )
    }

    fn tag_message(list: Json) -> String {
        tags(&list).unwrap_err().message
    }

    #[test]
    fn tags_follow_dynamodb_rules() {
        let accepted = tags(&tag_list(&[
            ("team", ""),
            ("ключ", "café 表"),
            ("a+b-c=d.e_f:g/h@i", "x y"),
        ]))
        .unwrap();
        assert_eq!(accepted.len(), 3);
        assert_eq!(accepted["team"], "");
        let longest_key = "ק".repeat(TAG_KEY_CHARS_MAX);
        let longest_value = "ק".repeat(TAG_VALUE_CHARS_MAX);
        assert!(tags(&tag_list(&[(&longest_key, &longest_value)])).is_ok());
        let key = "k".repeat(TAG_KEY_CHARS_MAX + 1);
        assert_eq!(
            tag_message(tag_list(&[(&key, "v")])),
            format!("The Tag Key provided is invalid, Key: {key}")
        );
        let value = "v".repeat(TAG_VALUE_CHARS_MAX + 1);
        assert_eq!(
            tag_message(tag_list(&[("k", &value)])),
            format!("The Tag Value provided is invalid, Value: {value}")
        );
        assert_eq!(
            tag_message(tag_list(&[("", "v")])),
            "The Tag Key provided is invalid, Key: "
        );
        for bad in ["hi!", "100%", "a,b", "\"q\"", "a\tb", "🔑"] {
            assert!(
                tag_message(tag_list(&[(bad, "v")])).starts_with("The Tag Key provided is invalid")
            );
            assert!(
                tag_message(tag_list(&[("k", bad)]))
                    .starts_with("The Tag Value provided is invalid")
            );
        }
        assert_eq!(
            tag_message(tag_list(&[("AWS:x", "v")])),
            "Tag Key cannot be prefixed with aws:, Key: AWS:x"
        );
        assert_eq!(
            tag_message(json!([{"Key": "k"}])),
            "The Tag Value provided is invalid, Value: null"
        );
        assert_eq!(
            tag_message(json!([{"Value": "v"}])),
            "The Tag Key provided is invalid, Key: null"
        );
        assert_eq!(
            tag_message(tag_list(&[("dup", "1"), ("dup", "2")])),
            "Duplicate Tag Keys provided as input: Duplicate Tag Key found dup"
        );
        assert_eq!(tag_message(json!([])), NO_TAGS);
        let many: Vec<(String, String)> = (0..=TAGS_PER_RESOURCE_MAX)
            .map(|index| (format!("k{index}"), String::new()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(tag_message(tag_list(&many)), TAG_LIMIT_EXCEEDED);
        assert!(tags(&tag_list(&many[..TAGS_PER_RESOURCE_MAX])).is_ok());
        assert_eq!(
            tag_resource_tags(&json!({})).unwrap_err().message,
            "1 validation error detected: Value null at 'tags' failed to satisfy constraint: Member must not be null"
        );
        assert!(check_tag_count(TAGS_PER_RESOURCE_MAX).is_ok());
        assert_eq!(
            check_tag_count(TAGS_PER_RESOURCE_MAX + 1)
                .unwrap_err()
                .message,
            TAG_LIMIT_EXCEEDED
        );
    }

    #[test]
    fn time_to_live_specifications_need_both_members() {
        let good = json!({"TimeToLiveSpecification": {"Enabled": true, "AttributeName": "ttl"}});
        assert_eq!(
            time_to_live_specification(&good).unwrap(),
            TimeToLiveSpecification {
                enabled: true,
                attribute_name: "ttl".to_string()
            }
        );
        assert_eq!(
            time_to_live_specification(&json!({})).unwrap_err().message,
            "1 validation error detected: Value null at 'timeToLiveSpecification' failed to satisfy constraint: Member must not be null"
        );
        assert_eq!(
            time_to_live_specification(&json!({"TimeToLiveSpecification": {}}))
                .unwrap_err()
                .message,
            "2 validation errors detected: Value null at 'timeToLiveSpecification.enabled' failed to satisfy constraint: Member must not be null; Value null at 'timeToLiveSpecification.attributeName' failed to satisfy constraint: Member must not be null"
        );
        let empty = json!({"TimeToLiveSpecification": {"Enabled": false, "AttributeName": ""}});
        assert_eq!(
            time_to_live_specification(&empty).unwrap_err().message,
            "1 validation error detected: Value '' at 'timeToLiveSpecification.attributeName' failed to satisfy constraint: Member must have length greater than or equal to 1"
        );
        let longest = "a".repeat(TIME_TO_LIVE_ATTRIBUTE_NAME_BYTES_MAX);
        let body = json!({"TimeToLiveSpecification": {"Enabled": true, "AttributeName": longest}});
        assert!(time_to_live_specification(&body).is_ok());
        let too_long = "a".repeat(TIME_TO_LIVE_ATTRIBUTE_NAME_BYTES_MAX + 1);
        let body = json!({"TimeToLiveSpecification": {"Enabled": true, "AttributeName": too_long}});
        assert!(
            time_to_live_specification(&body)
                .unwrap_err()
                .message
                .ends_with("Member must have length less than or equal to 255")
        );
        let wrong = json!({"TimeToLiveSpecification": {"Enabled": "yes", "AttributeName": "ttl"}});
        assert_eq!(
            time_to_live_specification(&wrong).unwrap_err().type_name,
            crate::error::SERIALIZATION
        );
    }

    #[test]
    fn tag_keys_to_remove() {
        assert_eq!(
            tag_keys(&json!({"TagKeys": ["a", "b"]})).unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(
            tag_keys(&json!({"TagKeys": []})).unwrap_err().message,
            NO_TAG_KEYS
        );
        assert_eq!(
            tag_keys(&json!({"TagKeys": [""]})).unwrap_err().message,
            "The Tag Key provided is invalid, Key: "
        );
        let many: Vec<String> = (0..=TAGS_PER_RESOURCE_MAX)
            .map(|i| format!("k{i}"))
            .collect();
        assert_eq!(
            tag_keys(&json!({"TagKeys": many})).unwrap_err().message,
            TAG_LIMIT_EXCEEDED
        );
        assert!(
            tag_keys(&json!({}))
                .unwrap_err()
                .message
                .contains("'tagKeys'")
        );
    }

    #[test]
    fn table_arns_of_this_region_and_account_only() {
        let arn_of = |arn: &str| json!({"ResourceArn": arn});
        let region = "us-east-1";
        let account = "000000000000";
        let body = arn_of("arn:aws:dynamodb:us-east-1:000000000000:table/orders");
        assert_eq!(
            table_of_arn(&body, region, account).unwrap(),
            (
                "arn:aws:dynamodb:us-east-1:000000000000:table/orders",
                "orders"
            )
        );
        let message = |arn: &str| {
            table_of_arn(&arn_of(arn), region, account)
                .unwrap_err()
                .message
        };
        assert_eq!(
            table_of_arn(&json!({}), region, account)
                .unwrap_err()
                .message,
            NO_TABLE_ARN
        );
        assert_eq!(
            message("orders"),
            "One or more parameter values were invalid: ARNs must start with 'arn:': orders"
        );
        assert_eq!(
            message("arn:aws:s3:::bucket"),
            "One or more parameter values were invalid: Provided Arn is not a DynamoDB resource arn: arn:aws:s3:::bucket"
        );
        assert_eq!(
            message("arn:not/a/good/format"),
            "One or more parameter values were invalid: Provided Arn is not a DynamoDB resource arn: arn:not/a/good/format"
        );
        let index = "arn:aws:dynamodb:us-east-1:000000000000:table/orders/index/by-date";
        assert_eq!(
            message(index),
            format!(
                "One or more parameter values were invalid: Invalid resource arn provided, only table or stream is accepted. Provided resource arn: {index}"
            )
        );
        for invalid in [
            "arn:aws:dynamodb:eu-west-1:000000000000:table/orders",
            "arn:aws:dynamodb:us-east-1:111111111111:table/orders",
            "arn:aws-cn:dynamodb:us-east-1:000000000000:table/orders",
            "arn:aws:dynamodb:us-east-1:000000000000:table/ab",
            "arn:aws:dynamodb:us-east-1:000000000000:backup/orders",
            "arn:aws:dynamodb:us-east-1:000000000000:table/orders/stream/2024",
        ] {
            assert_eq!(
                message(invalid),
                format!("Invalid TableArn: Invalid ResourceArn provided as input {invalid}")
            );
        }
        assert!(message("").contains("Member must have length greater than or equal to 1"));
        let long = format!("arn:{}", "x".repeat(RESOURCE_ARN_BYTES_MAX));
        assert!(message(&long).contains("Member must have length less than or equal to 1283"));
    }
}
