//! CreateTable's LocalSecondaryIndexes and GlobalSecondaryIndexes: parsed and checked with
//! DynamoDB's rules and messages, in DynamoDB's order (the shape of each index first, then the
//! table's key schema, then each LSI, then each GSI, then the attribute definitions every index
//! uses, then the projection and throughput rules).
//!
//! Sources of the wording: dynalite's validations/createTable.js (its suite runs against
//! DynamoDB), moto's `_throw_attr_error` (moto/dynamodb/responses.py), and recorded DynamoDB
//! responses quoted in public issue threads (router/server/README.md).

use serde_json::Value as Json;
use shoal_model::index::global::{GSI_PARTITION_KEY_ATTRIBUTES_MAX, GSI_SORT_KEY_ATTRIBUTES_MAX};
use shoal_model::index::{
    GLOBAL_SECONDARY_INDEXES_MAX, INDEX_NAME_BYTES_MAX, INDEX_NAME_BYTES_MIN,
    LOCAL_SECONDARY_INDEXES_MAX, LocalIndex, PROJECTED_NON_KEY_ATTRIBUTES_MAX, Projection,
};
use shoal_model::key::{KeyAttribute, KeySchema, KeyType};

use crate::error::DynamoError;
use crate::metadata::Billing;
use crate::on_demand::{OnDemandRequest, Owner};
use crate::validate::{Throughput, constraint_violations, provisioned_throughput};

const INVALID: &str = "One or more parameter values were invalid: ";

/// A global secondary index as CreateTable asked for it, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalIndex {
    pub name: String,
    /// The partition key's attributes, 1 to [`GSI_PARTITION_KEY_ATTRIBUTES_MAX`].
    pub partition_keys: Vec<KeyAttribute>,
    /// The sort key's attributes, 0 to [`GSI_SORT_KEY_ATTRIBUTES_MAX`].
    pub sort_keys: Vec<KeyAttribute>,
    pub projection: Projection,
    pub throughput: Option<Throughput>,
    /// OnDemandThroughput as asked: checked against the table's billing where it is known
    /// (at CreateTable here; at UpdateTable when the change is applied).
    pub on_demand: Option<OnDemandRequest>,
}

/// The checked secondary indexes of a CreateTable request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecondaryIndexes {
    pub local: Vec<LocalIndex>,
    pub global: Vec<GlobalIndex>,
}

/// One index as the request gives it, after the shape checks.
struct IndexRequest<'body> {
    name: String,
    /// (attribute name, key type name) as listed.
    elements: Vec<(String, String)>,
    projection_type: Option<&'body str>,
    non_key_attributes: Option<Vec<String>>,
    body: &'body Json,
}

/// Which list an index came from: the request member and its path in constraint messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Local,
    Global,
}

impl Kind {
    fn member(self) -> &'static str {
        match self {
            Kind::Local => "LocalSecondaryIndexes",
            Kind::Global => "GlobalSecondaryIndexes",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::Local => "localSecondaryIndexes",
            Kind::Global => "globalSecondaryIndexes",
        }
    }
}

fn list(body: &Json, kind: Kind) -> Result<Option<&Vec<Json>>, DynamoError> {
    match body.get(kind.member()) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Array(list)) => Ok(Some(list)),
        Some(_) => Err(DynamoError::serialization(&format!(
            "{} must be a list",
            kind.member()
        ))),
    }
}

/// A GSI's WarmThroughput, like a table's, is refused rather than ignored: Shoal has no
/// pre-warming (an on-demand table or index serves DynamoDB's initial 12,000 read and 4,000
/// write units at once without it).
fn refuse_warm_throughput(index: &Json) -> Result<(), DynamoError> {
    match index.get("WarmThroughput") {
        None | Some(Json::Null) => Ok(()),
        Some(_) => Err(crate::validate::not_built("WarmThroughput")),
    }
}

/// The shape checks of one list (the generic validator's "N validation errors detected"),
/// reported together as DynamoDB reports them.
fn shaped<'body>(list: &'body [Json], kind: Kind) -> Result<Vec<IndexRequest<'body>>, DynamoError> {
    let mut problems = Vec::new();
    let mut indexes = Vec::with_capacity(list.len());
    for (position, index) in list.iter().enumerate() {
        if kind == Kind::Global {
            refuse_warm_throughput(index)?;
        }
        let at = format!("{}.{}.member", kind.path(), position + 1);
        let name = match index.get("IndexName") {
            Some(Json::String(name)) => name.clone(),
            None | Some(Json::Null) => {
                problems.push(format!(
                    "Value null at '{at}.indexName' failed to satisfy constraint: Member must not be null"
                ));
                String::new()
            }
            Some(_) => return Err(DynamoError::serialization("IndexName must be a string")),
        };
        if !name.is_empty() || index.get("IndexName").is_some_and(Json::is_string) {
            if !name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
            {
                problems.push(format!(
                    "Value '{name}' at '{at}.indexName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
                ));
            }
            if name.len() < INDEX_NAME_BYTES_MIN {
                problems.push(format!(
                    "Value '{name}' at '{at}.indexName' failed to satisfy constraint: Member must have length greater than or equal to {INDEX_NAME_BYTES_MIN}"
                ));
            }
            if name.len() > INDEX_NAME_BYTES_MAX {
                problems.push(format!(
                    "Value '{name}' at '{at}.indexName' failed to satisfy constraint: Member must have length less than or equal to {INDEX_NAME_BYTES_MAX}"
                ));
            }
        }
        let mut elements = Vec::new();
        match index.get("KeySchema") {
            None | Some(Json::Null) => problems.push(format!(
                "Value null at '{at}.keySchema' failed to satisfy constraint: Member must not be null"
            )),
            Some(Json::Array(schema)) => {
                // A GSI key may have up to four attributes in each part (checked with the
                // key types, in check_common); an LSI's has the table's partition key and one
                // sort key.
                if schema.is_empty() || (kind == Kind::Local && schema.len() > 2) {
                    let bound = if schema.is_empty() {
                        "Member must have length greater than or equal to 1"
                    } else {
                        "Member must have length less than or equal to 2"
                    };
                    problems.push(format!(
                        "Value '{}' at '{at}.keySchema' failed to satisfy constraint: {bound}",
                        Json::Array(schema.clone())
                    ));
                }
                for (element_position, element) in schema.iter().enumerate() {
                    let element_at = format!("{at}.keySchema.{}.member", element_position + 1);
                    let attribute = element.get("AttributeName").and_then(Json::as_str);
                    let key_type = element.get("KeyType").and_then(Json::as_str);
                    if attribute.is_none() {
                        problems.push(format!(
                            "Value null at '{element_at}.attributeName' failed to satisfy constraint: Member must not be null"
                        ));
                    }
                    match key_type {
                        None => problems.push(format!(
                            "Value null at '{element_at}.keyType' failed to satisfy constraint: Member must not be null"
                        )),
                        Some(key_type) if key_type != "HASH" && key_type != "RANGE" => {
                            problems.push(format!(
                                "Value '{key_type}' at '{element_at}.keyType' failed to satisfy constraint: Member must satisfy enum value set: [HASH, RANGE]"
                            ))
                        }
                        Some(_) => {}
                    }
                    if let (Some(attribute), Some(key_type)) = (attribute, key_type) {
                        elements.push((attribute.to_string(), key_type.to_string()));
                    }
                }
            }
            Some(_) => return Err(DynamoError::serialization("KeySchema must be a list")),
        }
        let mut projection_type = None;
        let mut non_key_attributes = None;
        match index.get("Projection") {
            None | Some(Json::Null) => problems.push(format!(
                "Value null at '{at}.projection' failed to satisfy constraint: Member must not be null"
            )),
            Some(Json::Object(projection)) => {
                match projection.get("ProjectionType") {
                    None | Some(Json::Null) => {}
                    Some(Json::String(name)) => {
                        if !matches!(name.as_str(), "ALL" | "KEYS_ONLY" | "INCLUDE") {
                            problems.push(format!(
                                "Value '{name}' at '{at}.projection.projectionType' failed to satisfy constraint: Member must satisfy enum value set: [ALL, INCLUDE, KEYS_ONLY]"
                            ));
                        }
                        projection_type = Some(name.as_str());
                    }
                    Some(_) => {
                        return Err(DynamoError::serialization("ProjectionType must be a string"));
                    }
                }
                match projection.get("NonKeyAttributes") {
                    None | Some(Json::Null) => {}
                    Some(Json::Array(names)) => {
                        if names.is_empty() {
                            problems.push(format!(
                                "Value '[]' at '{at}.projection.nonKeyAttributes' failed to satisfy constraint: Member must have length greater than or equal to 1"
                            ));
                        }
                        let names = names
                            .iter()
                            .map(|name| name.as_str().map(str::to_string))
                            .collect::<Option<Vec<String>>>()
                            .ok_or_else(|| {
                                DynamoError::serialization("NonKeyAttributes must be strings")
                            })?;
                        non_key_attributes = Some(names);
                    }
                    Some(_) => {
                        return Err(DynamoError::serialization("NonKeyAttributes must be a list"));
                    }
                }
            }
            Some(_) => return Err(DynamoError::serialization("Projection must be a structure")),
        }
        indexes.push(IndexRequest {
            name,
            elements,
            projection_type,
            non_key_attributes,
            body: index,
        });
    }
    constraint_violations(problems)?;
    Ok(indexes)
}

/// The rules every index shares, in DynamoDB's order: key attributes defined, distinct, HASH
/// then RANGE (for a GSI, one to four HASH attributes, then up to four RANGE ones); the
/// projection. The key attributes come back split into the partition key's and the sort key's.
fn check_common(
    index: &IndexRequest<'_>,
    definitions: &[(String, KeyType)],
    kind: Kind,
) -> Result<(IndexKey, Projection), DynamoError> {
    let mut attributes: Vec<KeyAttribute> = Vec::with_capacity(index.elements.len());
    for (name, _) in &index.elements {
        match definitions.iter().find(|(defined, _)| defined == name) {
            Some((_, key_type)) => attributes.push(KeyAttribute {
                name: name.clone(),
                key_type: *key_type,
            }),
            None => {
                let keys: Vec<&str> = index
                    .elements
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect();
                let defined: Vec<&str> =
                    definitions.iter().map(|(name, _)| name.as_str()).collect();
                return Err(DynamoError::validation(format!(
                    "{INVALID}Some index key attributes are not defined in AttributeDefinitions. Keys: [{}], AttributeDefinitions: [{}]",
                    keys.join(", "),
                    defined.join(", ")
                )));
            }
        }
    }
    // DynamoDB's text for a HASH and a RANGE element of one name; a GSI's two HASH elements
    // of one name are a repeated attribute of a multi-attribute key (below).
    if let [first, second] = &index.elements[..]
        && first.0 == second.0
        && (kind == Kind::Local || second.1 == "RANGE")
    {
        return Err(DynamoError::validation(
            "Both the Hash Key and the Range Key element in the KeySchema have the same name",
        ));
    }
    if index
        .elements
        .first()
        .is_some_and(|(_, key_type)| key_type != "HASH")
    {
        return Err(DynamoError::validation(
            "Invalid KeySchema: The first KeySchemaElement is not a HASH key type",
        ));
    }
    let hash_count = index
        .elements
        .iter()
        .take_while(|(_, key_type)| key_type == "HASH")
        .count();
    if kind == Kind::Local || index.elements.len() <= 2 && hash_count == 1 {
        if index
            .elements
            .get(1)
            .is_some_and(|(_, key_type)| key_type != "RANGE")
        {
            return Err(DynamoError::validation(
                "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type",
            ));
        }
    } else {
        check_multi_attribute_key(index, hash_count)?;
    }
    let sort = attributes.split_off(hash_count);
    Ok((
        IndexKey {
            partition: attributes,
            sort,
        },
        projection(index)?,
    ))
}

/// The key attributes of an index, split by key type.
struct IndexKey {
    partition: Vec<KeyAttribute>,
    sort: Vec<KeyAttribute>,
}

/// The rules of a GSI's multi-attribute key (developer guide, "Multi-attribute keys pattern";
/// the botocore model: "Global secondary index supports up to 4 partition and up to 4 sort
/// keys"). DynamoDB's texts for these refusals are not published; these say what is wrong in
/// the style of its other KeySchema messages.
fn check_multi_attribute_key(
    index: &IndexRequest<'_>,
    hash_count: usize,
) -> Result<(), DynamoError> {
    if index.elements[hash_count..]
        .iter()
        .any(|(_, key_type)| key_type == "HASH")
    {
        return Err(DynamoError::validation(
            "Invalid KeySchema: Every HASH KeySchemaElement must come before the RANGE KeySchemaElements",
        ));
    }
    if hash_count > GSI_PARTITION_KEY_ATTRIBUTES_MAX {
        return Err(DynamoError::validation(format!(
            "Invalid KeySchema: A global secondary index key has at most {GSI_PARTITION_KEY_ATTRIBUTES_MAX} HASH KeySchemaElements, found {hash_count}"
        )));
    }
    let range_count = index.elements.len() - hash_count;
    if range_count > GSI_SORT_KEY_ATTRIBUTES_MAX {
        return Err(DynamoError::validation(format!(
            "Invalid KeySchema: A global secondary index key has at most {GSI_SORT_KEY_ATTRIBUTES_MAX} RANGE KeySchemaElements, found {range_count}"
        )));
    }
    for (position, (name, _)) in index.elements.iter().enumerate() {
        if index.elements[..position]
            .iter()
            .any(|(earlier, _)| earlier == name)
        {
            return Err(DynamoError::validation(format!(
                "Invalid KeySchema: The attribute {name} appears more than once in the KeySchema"
            )));
        }
    }
    Ok(())
}

fn projection(index: &IndexRequest<'_>) -> Result<Projection, DynamoError> {
    let Some(projection_type) = index.projection_type else {
        return Err(DynamoError::validation(format!(
            "{INVALID}Unknown ProjectionType: null"
        )));
    };
    match (projection_type, &index.non_key_attributes) {
        ("INCLUDE", None) => Err(DynamoError::validation(format!(
            "{INVALID}ProjectionType is INCLUDE, but NonKeyAttributes is not specified"
        ))),
        ("INCLUDE", Some(names)) => {
            for (position, name) in names.iter().enumerate() {
                if names[..position].contains(name) {
                    return Err(DynamoError::validation(format!(
                        "{INVALID}Duplicate element in NonKeyAttributes: {name}"
                    )));
                }
            }
            Ok(Projection::Include(names.clone()))
        }
        (other, Some(_)) => Err(DynamoError::validation(format!(
            "{INVALID}ProjectionType is {other}, but NonKeyAttributes is specified"
        ))),
        ("KEYS_ONLY", None) => Ok(Projection::KeysOnly),
        _ => Ok(Projection::All),
    }
}

fn check_unique_name(names: &mut Vec<String>, name: &str) -> Result<(), DynamoError> {
    if names.iter().any(|existing| existing == name) {
        return Err(DynamoError::validation(format!(
            "{INVALID}Duplicate index name: {name}"
        )));
    }
    names.push(name.to_string());
    Ok(())
}

/// Whether the request names any secondary index (DynamoDB words its attribute-definition
/// rules differently then).
pub fn requested(body: &Json) -> bool {
    [Kind::Local, Kind::Global].iter().any(|kind| {
        body.get(kind.member())
            .is_some_and(|value| !value.is_null())
    })
}

/// The shape checks of both lists, which DynamoDB makes before any rule about keys.
pub fn check_shapes(body: &Json) -> Result<(), DynamoError> {
    for kind in [Kind::Local, Kind::Global] {
        if let Some(list) = list(body, kind)? {
            shaped(list, kind)?;
        }
    }
    Ok(())
}

/// Parses and checks CreateTable's secondary indexes for a table with `table` as its key
/// schema and `definitions` as its attribute definitions, then that every definition is used.
pub fn secondary_indexes(
    body: &Json,
    table: &KeySchema,
    definitions: &[(String, KeyType)],
    billing: Billing,
) -> Result<SecondaryIndexes, DynamoError> {
    let mut names = Vec::new();
    let mut indexes = SecondaryIndexes::default();
    let mut used: Vec<String> = table.attributes().map(|key| key.name.clone()).collect();
    if let Some(list) = list(body, Kind::Local)? {
        if list.is_empty() {
            return Err(DynamoError::validation(format!(
                "{INVALID}List of LocalSecondaryIndexes is empty"
            )));
        }
        if table.sort.is_none() {
            return Err(DynamoError::validation(format!(
                "{INVALID}Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex"
            )));
        }
        for (position, index) in shaped(list, Kind::Local)?.iter().enumerate() {
            let (key, projection) = check_common(index, definitions, Kind::Local)?;
            let ([hash], [sort]) = (&key.partition[..], &key.sort[..]) else {
                return Err(DynamoError::validation(format!(
                    "{INVALID}Index KeySchema does not have a range key for index: {}",
                    index.name
                )));
            };
            if hash.name != table.partition.name {
                return Err(DynamoError::validation(format!(
                    "{INVALID}Index KeySchema does not have the same leading hash key as table KeySchema for index: {}. index hash key: {}, table hash key: {}",
                    index.name, hash.name, table.partition.name
                )));
            }
            check_unique_name(&mut names, &index.name)?;
            used.push(sort.name.clone());
            indexes.local.push(LocalIndex {
                name: index.name.clone(),
                // At most LOCAL_SECONDARY_INDEXES_MAX (checked below, before anything is kept).
                number: u8::try_from(position).unwrap_or(u8::MAX),
                sort_key: sort.clone(),
                projection,
            });
        }
        if list.len() > LOCAL_SECONDARY_INDEXES_MAX {
            return Err(DynamoError::validation(format!(
                "{INVALID}Number of LocalSecondaryIndexes exceeds per-table limit of {LOCAL_SECONDARY_INDEXES_MAX}"
            )));
        }
    }
    if let Some(list) = list(body, Kind::Global)? {
        if list.is_empty() {
            return Err(DynamoError::validation(format!(
                "{INVALID}List of GlobalSecondaryIndexes is empty"
            )));
        }
        for index in shaped(list, Kind::Global)? {
            let (key, projection) = check_common(&index, definitions, Kind::Global)?;
            check_unique_name(&mut names, &index.name)?;
            used.extend(
                key.partition
                    .iter()
                    .chain(&key.sort)
                    .map(|key| key.name.clone()),
            );
            if key.partition.is_empty() {
                return Err(DynamoError::missing_member(
                    "globalSecondaryIndexes.member.keySchema",
                ));
            }
            indexes.global.push(GlobalIndex {
                name: index.name.clone(),
                partition_keys: key.partition,
                sort_keys: key.sort,
                projection,
                throughput: provisioned_throughput(index.body)?,
                on_demand: crate::on_demand::request(index.body)?,
            });
        }
        if list.len() > GLOBAL_SECONDARY_INDEXES_MAX {
            return Err(DynamoError::validation(format!(
                "{INVALID}GlobalSecondaryIndex count exceeds the per-table limit of {GLOBAL_SECONDARY_INDEXES_MAX}"
            )));
        }
    }
    let mut keys_used: Vec<&str> = Vec::new();
    for name in &used {
        if !keys_used.contains(&name.as_str()) {
            keys_used.push(name);
        }
    }
    if definitions.len() > keys_used.len() {
        let defined: Vec<&str> = definitions.iter().map(|(name, _)| name.as_str()).collect();
        return Err(DynamoError::validation(format!(
            "{INVALID}Some AttributeDefinitions are not used. AttributeDefinitions: [{}], keys used: [{}]",
            defined.join(", "),
            keys_used.join(", ")
        )));
    }
    let projected: usize = indexes
        .local
        .iter()
        .map(|index| &index.projection)
        .chain(indexes.global.iter().map(|index| &index.projection))
        .map(|projection| match projection {
            Projection::Include(names) => names.len(),
            _ => 0,
        })
        .sum();
    if projected > PROJECTED_NON_KEY_ATTRIBUTES_MAX {
        return Err(DynamoError::validation(format!(
            "{INVALID}Number of projected attributes in all indexes exceeds limit of {PROJECTED_NON_KEY_ATTRIBUTES_MAX}"
        )));
    }
    for index in &indexes.global {
        if let Some(on_demand) = index.on_demand {
            on_demand.for_create(billing, Owner::Index(&index.name))?;
        }
        match (billing, index.throughput) {
            (Billing::PayPerRequest, Some(_)) => {
                return Err(DynamoError::validation(format!(
                    "{INVALID}ProvisionedThroughput should not be specified for index: {} when BillingMode is PAY_PER_REQUEST",
                    index.name
                )));
            }
            (Billing::Provisioned { .. }, None) => {
                return Err(DynamoError::validation(format!(
                    "{INVALID}ProvisionedThroughput is not specified for index: {}",
                    index.name
                )));
            }
            _ => {}
        }
    }
    Ok(indexes)
}

/// One entry of UpdateTable's GlobalSecondaryIndexUpdates, checked against the request alone
/// (the table's own rules are the router's: index_updates.rs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlobalIndexUpdate {
    Create(GlobalIndex),
    Update {
        name: String,
        throughput: Option<Throughput>,
        on_demand: Option<OnDemandRequest>,
    },
    Delete {
        name: String,
    },
}

impl GlobalIndexUpdate {
    pub fn index_name(&self) -> &str {
        match self {
            GlobalIndexUpdate::Create(index) => &index.name,
            GlobalIndexUpdate::Update { name, .. } | GlobalIndexUpdate::Delete { name } => name,
        }
    }
}

/// UpdateTable's GlobalSecondaryIndexUpdates: each entry holds exactly one action, an index
/// is named once, and a Create's key attributes are defined in this request's own
/// AttributeDefinitions (`definitions`), with the messages DynamoDB gives (recorded from the
/// service; router/server README.md cites them). `None` when the member is absent.
pub fn global_index_updates(
    body: &Json,
    definitions: &[(String, KeyType)],
) -> Result<Option<Vec<GlobalIndexUpdate>>, DynamoError> {
    let list = match body.get("GlobalSecondaryIndexUpdates") {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Array(list)) => list,
        Some(_) => {
            return Err(DynamoError::serialization(
                "GlobalSecondaryIndexUpdates must be a list",
            ));
        }
    };
    if list.is_empty() {
        return Err(DynamoError::validation(format!(
            "{INVALID}List of GlobalSecondaryIndexUpdates is empty"
        )));
    }
    let mut updates = Vec::with_capacity(list.len());
    for entry in list {
        let actions: Vec<&str> = ["Create", "Update", "Delete"]
            .into_iter()
            .filter(|action| entry.get(*action).is_some_and(|value| !value.is_null()))
            .collect();
        let update = match actions[..] {
            [] => {
                return Err(DynamoError::validation(format!(
                    "{INVALID}One of GlobalSecondaryIndexUpdate.Update, GlobalSecondaryIndexUpdate.Create, GlobalSecondaryIndexUpdate.Delete must not be null"
                )));
            }
            [_, _, ..] => {
                return Err(DynamoError::validation(format!(
                    "{INVALID}Only one global secondary index action is allowed per GlobalSecondaryIndexUpdate object"
                )));
            }
            ["Create"] => {
                let create = std::slice::from_ref(&entry["Create"]);
                let shaped = shaped(create, Kind::Global)?;
                let index = &shaped[0];
                let missing: Vec<&str> = index
                    .elements
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .filter(|name| !definitions.iter().any(|(defined, _)| defined == name))
                    .collect();
                if !missing.is_empty() {
                    let defined: Vec<&str> =
                        definitions.iter().map(|(name, _)| name.as_str()).collect();
                    return Err(DynamoError::validation(format!(
                        "{INVALID}Some index key attributes are not defined in AttributeDefinitions. Keys: [{}], AttributeDefinitions: [{}]",
                        missing.join(", "),
                        defined.join(", ")
                    )));
                }
                let (key, projection) = check_common(index, definitions, Kind::Global)?;
                if key.partition.is_empty() {
                    return Err(DynamoError::missing_member(
                        "globalSecondaryIndexUpdates.member.create.keySchema",
                    ));
                }
                GlobalIndexUpdate::Create(GlobalIndex {
                    name: index.name.clone(),
                    partition_keys: key.partition,
                    sort_keys: key.sort,
                    projection,
                    throughput: provisioned_throughput(index.body)?,
                    on_demand: crate::on_demand::request(index.body)?,
                })
            }
            [action] => {
                refuse_warm_throughput(&entry[action])?;
                let name = entry[action]
                    .get("IndexName")
                    .and_then(Json::as_str)
                    .ok_or_else(|| {
                        DynamoError::missing_member(&format!(
                            "globalSecondaryIndexUpdates.member.{}.indexName",
                            action.to_ascii_lowercase()
                        ))
                    })?
                    .to_string();
                if action == "Delete" {
                    GlobalIndexUpdate::Delete { name }
                } else {
                    GlobalIndexUpdate::Update {
                        name,
                        throughput: provisioned_throughput(&entry[action])?,
                        on_demand: crate::on_demand::request(&entry[action])?,
                    }
                }
            }
        };
        if updates
            .iter()
            .any(|earlier: &GlobalIndexUpdate| earlier.index_name() == update.index_name())
        {
            return Err(DynamoError::validation(format!(
                "{INVALID}Only one global secondary index update per index is allowed simultaneously. Index: {}",
                update.index_name()
            )));
        }
        updates.push(update);
    }
    Ok(Some(updates))
}

/// The metadata item's `local_indexes` member (metadata invariant 2: absent in items of tables
/// without indexes and in items written before indexes existed): a list of maps
/// `{name: S, number: N, sort_name: S, sort_type: S, projection: S, non_key: L of S}`.
pub fn local_indexes_json(indexes: &[LocalIndex]) -> Json {
    let list: Vec<Json> = indexes
        .iter()
        .map(|index| {
            let mut map = serde_json::json!({
                "name": {"S": index.name},
                "number": {"N": index.number.to_string()},
                "sort_name": {"S": index.sort_key.name},
                "sort_type": {"S": index.sort_key.key_type.type_name()},
            });
            projection_json(&index.projection, &mut map);
            serde_json::json!({"M": map})
        })
        .collect();
    serde_json::json!({"L": list})
}

fn corrupt(what: &str) -> DynamoError {
    DynamoError::internal(format!(
        "Internal server error (metadata item: secondary index {what})"
    ))
}

fn text<'item>(map: &'item Json, name: &str) -> Result<&'item str, DynamoError> {
    map.get(name)
        .and_then(|value| value.get("S"))
        .and_then(Json::as_str)
        .ok_or_else(|| corrupt(&format!("{name} is not a string")))
}

/// Reads [`local_indexes_json`]'s form back; `None` (no member) is a table without LSIs.
pub fn local_indexes_from(member: Option<&Json>) -> Result<Vec<LocalIndex>, DynamoError> {
    let Some(member) = member else {
        return Ok(Vec::new());
    };
    let list = member
        .get("L")
        .and_then(Json::as_array)
        .ok_or_else(|| corrupt("is not a list"))?;
    list.iter()
        .map(|entry| {
            let map = entry
                .get("M")
                .ok_or_else(|| corrupt("entry is not a map"))?;
            Ok(LocalIndex {
                name: text(map, "name")?.to_string(),
                number: index_number(map)?,
                sort_key: key_attribute(map, "sort")?,
                projection: projection_from(map)?,
            })
        })
        .collect()
}

/// A global index's definition in its metadata map (metadata.rs adds its partitions):
/// `{name: S, number: N, hash_name: S, hash_type: S, sort_name: S?, sort_type: S?,
/// more_hash: L?, more_sort: L?, projection: S, non_key: L of S?}`: the first partition and
/// sort key attributes as before multi-attribute keys, and a multi-attribute key's other
/// attributes in key order as `{name: S, type: S}` maps in `more_hash` and `more_sort`
/// (absent when there are none, so a record of an index of one attribute per part is what an
/// older router wrote and reads).
pub fn global_index_json(index: &shoal_model::index::global::GlobalIndex) -> Json {
    let mut map = serde_json::json!({
        "name": {"S": index.name},
        "number": {"N": index.number.to_string()},
    });
    for (attributes, prefix, more) in [
        (&index.partition_keys, "hash", "more_hash"),
        (&index.sort_keys, "sort", "more_sort"),
    ] {
        let Some((first, rest)) = attributes.split_first() else {
            continue;
        };
        map[format!("{prefix}_name")] = serde_json::json!({"S": first.name});
        map[format!("{prefix}_type")] = serde_json::json!({"S": first.key_type.type_name()});
        if !rest.is_empty() {
            let list: Vec<Json> = rest
                .iter()
                .map(|key| {
                    serde_json::json!({"M": {
                        "name": {"S": key.name},
                        "type": {"S": key.key_type.type_name()},
                    }})
                })
                .collect();
            map[more] = serde_json::json!({ "L": list });
        }
    }
    projection_json(&index.projection, &mut map);
    map
}

/// Reads [`global_index_json`]'s form back.
pub fn global_index_from(
    map: &Json,
) -> Result<shoal_model::index::global::GlobalIndex, DynamoError> {
    let mut partition_keys = vec![key_attribute(map, "hash")?];
    partition_keys.extend(more_key_attributes(map, "more_hash")?);
    let mut sort_keys = Vec::new();
    if map.get("sort_name").is_some() {
        sort_keys.push(key_attribute(map, "sort")?);
        sort_keys.extend(more_key_attributes(map, "more_sort")?);
    }
    if partition_keys.len() > GSI_PARTITION_KEY_ATTRIBUTES_MAX
        || sort_keys.len() > GSI_SORT_KEY_ATTRIBUTES_MAX
    {
        return Err(corrupt("key has too many attributes"));
    }
    Ok(shoal_model::index::global::GlobalIndex {
        name: text(map, "name")?.to_string(),
        number: index_number(map)?,
        partition_keys,
        sort_keys,
        projection: projection_from(map)?,
    })
}

/// The `{name: S, type: S}` maps of [`global_index_json`]'s `more_hash` or `more_sort`.
fn more_key_attributes(map: &Json, member: &str) -> Result<Vec<KeyAttribute>, DynamoError> {
    let Some(list) = map.get(member) else {
        return Ok(Vec::new());
    };
    list.get("L")
        .and_then(Json::as_array)
        .ok_or_else(|| corrupt(&format!("{member} is not a list")))?
        .iter()
        .map(|entry| {
            let entry = entry
                .get("M")
                .ok_or_else(|| corrupt(&format!("{member} holds a non-map")))?;
            Ok(KeyAttribute {
                name: text(entry, "name")?.to_string(),
                key_type: crate::metadata::key_type_from_name(text(entry, "type")?)
                    .ok_or_else(|| corrupt(&format!("{member} holds an unknown type")))?,
            })
        })
        .collect()
}

fn index_number(map: &Json) -> Result<u8, DynamoError> {
    map.get("number")
        .and_then(|value| value.get("N"))
        .and_then(Json::as_str)
        .and_then(|text| text.parse::<u8>().ok())
        .ok_or_else(|| corrupt("number is not a small number"))
}

/// The key attribute stored as `{prefix}_name` and `{prefix}_type`.
fn key_attribute(map: &Json, prefix: &str) -> Result<KeyAttribute, DynamoError> {
    Ok(KeyAttribute {
        name: text(map, &format!("{prefix}_name"))?.to_string(),
        key_type: crate::metadata::key_type_from_name(text(map, &format!("{prefix}_type"))?)
            .ok_or_else(|| corrupt(&format!("{prefix}_type is unknown")))?,
    })
}

fn projection_json(projection: &Projection, map: &mut Json) {
    map["projection"] = serde_json::json!({"S": projection.type_name()});
    if let Projection::Include(names) = projection {
        let names: Vec<Json> = names
            .iter()
            .map(|name| serde_json::json!({"S": name}))
            .collect();
        map["non_key"] = serde_json::json!({"L": names});
    }
}

fn projection_from(map: &Json) -> Result<Projection, DynamoError> {
    Ok(match text(map, "projection")? {
        "ALL" => Projection::All,
        "KEYS_ONLY" => Projection::KeysOnly,
        "INCLUDE" => Projection::Include(
            map.get("non_key")
                .and_then(|value| value.get("L"))
                .and_then(Json::as_array)
                .ok_or_else(|| corrupt("non_key is not a list"))?
                .iter()
                .map(|name| {
                    name.get("S")
                        .and_then(Json::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| corrupt("non_key holds a non-string"))
                })
                .collect::<Result<Vec<String>, DynamoError>>()?,
        ),
        _ => return Err(corrupt("projection is unknown")),
    })
}

#[cfg(test)]
mod tests;
