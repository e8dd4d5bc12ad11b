//! Flatbuffers to DynamoDB JSON value trees: requests (the router) and responses (the
//! clients). In memory: no JSON text is read or written. Runs on buffers the flatbuffers
//! verifier accepted, so every offset is in bounds; what the verifier does not check is
//! checked here, as values: an entry without its name, an attribute type this version does not
//! know, nesting deeper than [`ATTRIBUTE_NESTING_DEPTH_MAX`] (checked before recursing), and
//! the size of the tree made ([`DECODED_BYTES_MAX`]: flatbuffers lets many offsets share one
//! object, so a small buffer could otherwise describe a huge tree).
//!
//! A field the schema allows to be absent inside a value it carries (the text of an `S`, the
//! value of an ExpressionAttributeNames entry) decodes to JSON `null`, which the router
//! refuses with DynamoDB's message, as it would the same JSON over HTTP.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use flatbuffers::{Follow, ForwardsUOffset, Vector};
use serde_json::{Map, Value as Json};

use crate::encode::Path;
use crate::generated::shoal::client::v_2 as wire;
use crate::limits::{ATTRIBUTE_NESTING_DEPTH_MAX, DECODED_BYTES_MAX, ENCODED_NODE_BYTES};

/// Why a verified buffer does not describe a request or response: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    pub path: String,
    pub problem: String,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.path, self.problem)
    }
}

impl std::error::Error for ConvertError {}

fn problem(path: Path<'_>, problem: impl Into<String>) -> ConvertError {
    ConvertError {
        path: path.to_string(),
        problem: problem.into(),
    }
}

type Entries<'a, T> = Vector<'a, ForwardsUOffset<T>>;

/// The members of an object being built; absent values are left out.
#[derive(Default)]
struct Object(Map<String, Json>);

impl Object {
    fn set(&mut self, name: &str, value: Option<Json>) {
        if let Some(value) = value {
            self.0.insert(name.to_string(), value);
        }
    }

    fn done(self) -> Json {
        Json::Object(self.0)
    }
}

/// Counts what it makes against [`DECODED_BYTES_MAX`].
pub(crate) struct Decoder {
    bytes_counted: usize,
}

impl Decoder {
    pub(crate) fn new() -> Decoder {
        Decoder { bytes_counted: 0 }
    }

    fn count(&mut self, bytes: usize, path: Path<'_>) -> Result<(), ConvertError> {
        self.bytes_counted = self
            .bytes_counted
            .saturating_add(bytes + ENCODED_NODE_BYTES);
        if self.bytes_counted > DECODED_BYTES_MAX {
            return Err(problem(
                path,
                format!("the buffer describes more than {DECODED_BYTES_MAX} bytes of values"),
            ));
        }
        Ok(())
    }

    fn string(&mut self, text: &str, path: Path<'_>) -> Result<Json, ConvertError> {
        self.count(text.len(), path)?;
        Ok(Json::String(text.to_string()))
    }

    fn text(&mut self, text: Option<&str>, path: Path<'_>) -> Result<Option<Json>, ConvertError> {
        text.map(|text| self.string(text, path)).transpose()
    }

    fn binary(&mut self, bytes: &[u8], path: Path<'_>) -> Result<Json, ConvertError> {
        // base64's length, counted before the text is made.
        self.count(bytes.len().div_ceil(3) * 4, path)?;
        Ok(Json::String(BASE64.encode(bytes)))
    }

    fn strings(
        &mut self,
        texts: Option<Entries<'_, &str>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        let Some(texts) = texts else {
            return Ok(None);
        };
        let mut elements = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            elements.push(self.string(text, path.index(index))?);
        }
        Ok(Some(Json::Array(elements)))
    }

    fn list<'a, T: Follow<'a> + 'a>(
        &mut self,
        elements: Option<Entries<'a, T>>,
        path: Path<'_>,
        mut element: impl FnMut(&mut Self, T::Inner, Path<'_>) -> Result<Json, ConvertError>,
    ) -> Result<Option<Json>, ConvertError> {
        let Some(elements) = elements else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(elements.len());
        for (index, value) in elements.iter().enumerate() {
            let path = path.index(index);
            self.count(0, path)?;
            out.push(element(self, value, path)?);
        }
        Ok(Some(Json::Array(out)))
    }

    /// A vector of named entries as an object: `name` gives each entry's name, `value` its
    /// value.
    fn entries<'a, T: Follow<'a> + 'a>(
        &mut self,
        entries: Option<Entries<'a, T>>,
        path: Path<'_>,
        name: impl Fn(&T::Inner) -> Option<&'a str>,
        mut value: impl FnMut(&mut Self, &T::Inner, Path<'_>) -> Result<Json, ConvertError>,
    ) -> Result<Option<Json>, ConvertError> {
        let Some(entries) = entries else {
            return Ok(None);
        };
        let mut members = Map::new();
        for (index, entry) in entries.iter().enumerate() {
            let Some(name) = name(&entry) else {
                return Err(problem(path.index(index), "an entry without its name"));
            };
            let entry_path = path.member(name);
            self.count(name.len(), entry_path)?;
            let value = value(self, &entry, entry_path)?;
            members.insert(name.to_string(), value);
        }
        Ok(Some(Json::Object(members)))
    }

    /// One attribute value, `depth` levels deep (1 at the top).
    fn attribute_value(
        &mut self,
        value: &wire::AttributeValue<'_>,
        path: Path<'_>,
        depth: usize,
    ) -> Result<Json, ConvertError> {
        if depth > ATTRIBUTE_NESTING_DEPTH_MAX {
            return Err(problem(
                path,
                format!("attribute values nest deeper than {ATTRIBUTE_NESTING_DEPTH_MAX} levels"),
            ));
        }
        self.count(0, path)?;
        let null = || Json::Null;
        let type_path = |name| path.member(name);
        let (type_name, inner) = match value.type_() {
            wire::AttributeType::Empty => return Ok(Json::Object(Map::new())),
            wire::AttributeType::S => (
                "S",
                self.text(value.text(), type_path("S"))?
                    .unwrap_or_else(null),
            ),
            wire::AttributeType::N => (
                "N",
                self.text(value.text(), type_path("N"))?
                    .unwrap_or_else(null),
            ),
            wire::AttributeType::B => (
                "B",
                match value.bytes() {
                    Some(bytes) => self.binary(bytes.bytes(), type_path("B"))?,
                    None => Json::Null,
                },
            ),
            wire::AttributeType::Bool => ("BOOL", Json::Bool(value.flag())),
            wire::AttributeType::Null => ("NULL", Json::Bool(value.flag())),
            wire::AttributeType::SS => (
                "SS",
                self.strings(value.texts(), type_path("SS"))?
                    .unwrap_or_else(null),
            ),
            wire::AttributeType::NS => (
                "NS",
                self.strings(value.texts(), type_path("NS"))?
                    .unwrap_or_else(null),
            ),
            wire::AttributeType::BS => (
                "BS",
                self.list(
                    value.binaries(),
                    type_path("BS"),
                    |decoder, binary, path| match binary.bytes() {
                        Some(bytes) => decoder.binary(bytes.bytes(), path),
                        None => Ok(Json::Null),
                    },
                )?
                .unwrap_or_else(null),
            ),
            wire::AttributeType::M => (
                "M",
                self.attributes(value.map(), type_path("M"), depth + 1)?
                    .unwrap_or_else(null),
            ),
            wire::AttributeType::L => (
                "L",
                self.list(value.list(), type_path("L"), |decoder, value, path| {
                    decoder.attribute_value(&value, path, depth + 1)
                })?
                .unwrap_or_else(null),
            ),
            other => {
                return Err(problem(
                    path,
                    format!("unknown AttributeValue type {}", other.0),
                ));
            }
        };
        let mut object = Map::new();
        object.insert(type_name.to_string(), inner);
        Ok(Json::Object(object))
    }

    fn optional_value(
        &mut self,
        value: Option<wire::AttributeValue<'_>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        value
            .map(|value| self.attribute_value(&value, path, 1))
            .transpose()
    }

    /// Named attribute values (an item, a key, a map's members), `depth` levels deep.
    fn attributes<'a>(
        &mut self,
        attributes: Option<Entries<'a, wire::Attribute<'a>>>,
        path: Path<'_>,
        depth: usize,
    ) -> Result<Option<Json>, ConvertError> {
        self.entries(
            attributes,
            path,
            |attribute| attribute.name(),
            |decoder, attribute, path| match attribute.value() {
                Some(value) => decoder.attribute_value(&value, path, depth),
                None => Ok(Json::Null),
            },
        )
    }

    fn item<'a>(
        &mut self,
        attributes: Option<Entries<'a, wire::Attribute<'a>>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        self.attributes(attributes, path, 1)
    }

    fn items<'a>(
        &mut self,
        items: Option<Entries<'a, wire::Item<'a>>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        self.list(items, path, |decoder, item, path| {
            Ok(decoder
                .item(item.attributes(), path)?
                .unwrap_or_else(|| Json::Object(Map::new())))
        })
    }

    fn attribute_values<'a>(
        &mut self,
        values: Option<Entries<'a, wire::AttributeValue<'a>>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        self.list(values, path, |decoder, value, path| {
            decoder.attribute_value(&value, path, 1)
        })
    }

    fn names<'a>(
        &mut self,
        names: Option<Entries<'a, wire::NameEntry<'a>>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        self.entries(
            names,
            path,
            |entry| entry.name(),
            |decoder, entry, path| Ok(decoder.text(entry.value(), path)?.unwrap_or(Json::Null)),
        )
    }

    fn expected<'a>(
        &mut self,
        entries: Option<Entries<'a, wire::ExpectedEntry<'a>>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        self.entries(
            entries,
            path,
            |entry| entry.name(),
            |decoder, entry, path| {
                let mut object = Object::default();
                if let Some(expected) = entry.value() {
                    object.set("Value", decoder.optional_value(expected.value(), path)?);
                    object.set("Exists", expected.exists().map(Json::Bool));
                    object.set(
                        "ComparisonOperator",
                        decoder.text(expected.comparison_operator(), path)?,
                    );
                    object.set(
                        "AttributeValueList",
                        decoder.attribute_values(expected.attribute_value_list(), path)?,
                    );
                }
                Ok(object.done())
            },
        )
    }

    fn conditions<'a>(
        &mut self,
        entries: Option<Entries<'a, wire::ConditionEntry<'a>>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        self.entries(
            entries,
            path,
            |entry| entry.name(),
            |decoder, entry, path| {
                let mut object = Object::default();
                if let Some(condition) = entry.value() {
                    object.set(
                        "ComparisonOperator",
                        decoder.text(condition.comparison_operator(), path)?,
                    );
                    object.set(
                        "AttributeValueList",
                        decoder.attribute_values(condition.attribute_value_list(), path)?,
                    );
                }
                Ok(object.done())
            },
        )
    }

    fn attribute_updates<'a>(
        &mut self,
        entries: Option<Entries<'a, wire::AttributeUpdateEntry<'a>>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        self.entries(
            entries,
            path,
            |entry| entry.name(),
            |decoder, entry, path| {
                let mut object = Object::default();
                if let Some(update) = entry.value() {
                    object.set("Value", decoder.optional_value(update.value(), path)?);
                    object.set("Action", decoder.text(update.action(), path)?);
                }
                Ok(object.done())
            },
        )
    }

    fn keys_and_attributes<'a>(
        &mut self,
        entries: Option<Entries<'a, wire::KeysAndAttributesEntry<'a>>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        self.entries(
            entries,
            path,
            |entry| entry.table_name(),
            |decoder, entry, path| {
                let mut object = Object::default();
                if let Some(request) = entry.value() {
                    object.set("Keys", decoder.items(request.keys(), path)?);
                    object.set(
                        "ProjectionExpression",
                        decoder.text(request.projection_expression(), path)?,
                    );
                    object.set(
                        "ExpressionAttributeNames",
                        decoder.names(request.expression_attribute_names(), path)?,
                    );
                    object.set("ConsistentRead", request.consistent_read().map(Json::Bool));
                    object.set(
                        "AttributesToGet",
                        decoder.strings(request.attributes_to_get(), path)?,
                    );
                }
                Ok(object.done())
            },
        )
    }

    fn write_requests<'a>(
        &mut self,
        entries: Option<Entries<'a, wire::WriteRequestsEntry<'a>>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        self.entries(
            entries,
            path,
            |entry| entry.table_name(),
            |decoder, entry, path| {
                let requests = decoder.list(entry.requests(), path, |decoder, request, path| {
                    let mut object = Object::default();
                    if let Some(put) = request.put_request() {
                        let mut inner = Object::default();
                        inner.set("Item", decoder.item(put.item(), path)?);
                        object.set("PutRequest", Some(inner.done()));
                    }
                    if let Some(delete) = request.delete_request() {
                        let mut inner = Object::default();
                        inner.set("Key", decoder.item(delete.key(), path)?);
                        object.set("DeleteRequest", Some(inner.done()));
                    }
                    Ok(object.done())
                })?;
                Ok(requests.unwrap_or(Json::Null))
            },
        )
    }

    fn key_schema<'a>(
        &mut self,
        elements: Option<Entries<'a, wire::KeySchemaElement<'a>>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        self.list(elements, path, |decoder, element, path| {
            let mut object = Object::default();
            object.set(
                "AttributeName",
                decoder.text(element.attribute_name(), path)?,
            );
            object.set("KeyType", decoder.text(element.key_type(), path)?);
            Ok(object.done())
        })
    }

    fn attribute_definitions<'a>(
        &mut self,
        definitions: Option<Entries<'a, wire::AttributeDefinition<'a>>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        self.list(definitions, path, |decoder, definition, path| {
            let mut object = Object::default();
            object.set(
                "AttributeName",
                decoder.text(definition.attribute_name(), path)?,
            );
            object.set(
                "AttributeType",
                decoder.text(definition.attribute_type(), path)?,
            );
            Ok(object.done())
        })
    }

    fn tags<'a>(
        &mut self,
        tags: Option<Entries<'a, wire::Tag<'a>>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        self.list(tags, path, |decoder, tag, path| {
            let mut object = Object::default();
            object.set("Key", decoder.text(tag.key(), path)?);
            object.set("Value", decoder.text(tag.value(), path)?);
            Ok(object.done())
        })
    }

    /// A request's members as DynamoDB JSON, the body the HTTP API would have parsed.
    pub(crate) fn request(&mut self, request: &wire::Request<'_>) -> Result<Json, ConvertError> {
        let root = Path::Root;
        let mut object = Object::default();
        let r = request;
        object.set(
            "TableName",
            self.text(r.table_name(), root.member("TableName"))?,
        );
        object.set("Item", self.item(r.item(), root.member("Item"))?);
        object.set("Key", self.item(r.key(), root.member("Key"))?);
        for (name, text) in [
            ("ConditionExpression", r.condition_expression()),
            ("UpdateExpression", r.update_expression()),
            ("ProjectionExpression", r.projection_expression()),
            ("FilterExpression", r.filter_expression()),
            ("KeyConditionExpression", r.key_condition_expression()),
            ("ReturnValues", r.return_values()),
            (
                "ReturnValuesOnConditionCheckFailure",
                r.return_values_on_condition_check_failure(),
            ),
            ("ReturnConsumedCapacity", r.return_consumed_capacity()),
            (
                "ReturnItemCollectionMetrics",
                r.return_item_collection_metrics(),
            ),
            ("Select", r.select()),
            ("IndexName", r.index_name()),
            ("ConditionalOperator", r.conditional_operator()),
            ("BillingMode", r.billing_mode()),
            ("TableClass", r.table_class()),
            ("ExclusiveStartTableName", r.exclusive_start_table_name()),
        ] {
            object.set(name, self.text(text, root.member(name))?);
        }
        object.set(
            "ExpressionAttributeNames",
            self.names(
                r.expression_attribute_names(),
                root.member("ExpressionAttributeNames"),
            )?,
        );
        object.set(
            "ExpressionAttributeValues",
            self.item(
                r.expression_attribute_values(),
                root.member("ExpressionAttributeValues"),
            )?,
        );
        for (name, flag) in [
            ("ConsistentRead", r.consistent_read()),
            ("ScanIndexForward", r.scan_index_forward()),
            ("DeletionProtectionEnabled", r.deletion_protection_enabled()),
        ] {
            object.set(name, flag.map(Json::Bool));
        }
        for (name, number) in [
            ("Limit", r.limit()),
            ("Segment", r.segment()),
            ("TotalSegments", r.total_segments()),
        ] {
            object.set(name, number.map(Json::from));
        }
        object.set(
            "ExclusiveStartKey",
            self.item(r.exclusive_start_key(), root.member("ExclusiveStartKey"))?,
        );
        object.set(
            "AttributesToGet",
            self.strings(r.attributes_to_get(), root.member("AttributesToGet"))?,
        );
        object.set(
            "Expected",
            self.expected(r.expected(), root.member("Expected"))?,
        );
        for (name, conditions) in [
            ("KeyConditions", r.key_conditions()),
            ("QueryFilter", r.query_filter()),
            ("ScanFilter", r.scan_filter()),
        ] {
            object.set(name, self.conditions(conditions, root.member(name))?);
        }
        object.set(
            "AttributeUpdates",
            self.attribute_updates(r.attribute_updates(), root.member("AttributeUpdates"))?,
        );
        let request_items = root.member("RequestItems");
        match (r.request_items_get(), r.request_items_write()) {
            (Some(_), Some(_)) => {
                return Err(problem(
                    request_items,
                    "both request_items_get and request_items_write are set",
                ));
            }
            (gets, None) => {
                object.set(
                    "RequestItems",
                    self.keys_and_attributes(gets, request_items)?,
                );
            }
            (None, writes) => {
                object.set("RequestItems", self.write_requests(writes, request_items)?);
            }
        }
        object.set(
            "KeySchema",
            self.key_schema(r.key_schema(), root.member("KeySchema"))?,
        );
        object.set(
            "AttributeDefinitions",
            self.attribute_definitions(
                r.attribute_definitions(),
                root.member("AttributeDefinitions"),
            )?,
        );
        if let Some(throughput) = r.provisioned_throughput() {
            let mut inner = Object::default();
            inner.set(
                "ReadCapacityUnits",
                throughput.read_capacity_units().map(Json::from),
            );
            inner.set(
                "WriteCapacityUnits",
                throughput.write_capacity_units().map(Json::from),
            );
            object.set("ProvisionedThroughput", Some(inner.done()));
        }
        object.set("Tags", self.tags(r.tags(), root.member("Tags"))?);
        Ok(object.done())
    }

    fn consumed_capacity(
        &mut self,
        capacity: &wire::ConsumedCapacity<'_>,
        path: Path<'_>,
    ) -> Result<Json, ConvertError> {
        let mut object = Object::default();
        object.set("TableName", self.text(capacity.table_name(), path)?);
        object.set("CapacityUnits", capacity.capacity_units().map(Json::from));
        if let Some(table) = capacity.table() {
            let mut inner = Object::default();
            inner.set("CapacityUnits", table.capacity_units().map(Json::from));
            object.set("Table", Some(inner.done()));
        }
        Ok(object.done())
    }

    fn table_description(
        &mut self,
        description: Option<wire::TableDescription<'_>>,
        path: Path<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        let Some(d) = description else {
            return Ok(None);
        };
        let mut object = Object::default();
        object.set("TableName", self.text(d.table_name(), path)?);
        object.set("TableStatus", self.text(d.table_status(), path)?);
        object.set(
            "AttributeDefinitions",
            self.attribute_definitions(d.attribute_definitions(), path)?,
        );
        object.set("KeySchema", self.key_schema(d.key_schema(), path)?);
        object.set("CreationDateTime", d.creation_date_time().map(date));
        if let Some(throughput) = d.provisioned_throughput() {
            let mut inner = Object::default();
            inner.set(
                "NumberOfDecreasesToday",
                throughput.number_of_decreases_today().map(Json::from),
            );
            inner.set(
                "ReadCapacityUnits",
                throughput.read_capacity_units().map(Json::from),
            );
            inner.set(
                "WriteCapacityUnits",
                throughput.write_capacity_units().map(Json::from),
            );
            inner.set(
                "LastIncreaseDateTime",
                throughput.last_increase_date_time().map(date),
            );
            inner.set(
                "LastDecreaseDateTime",
                throughput.last_decrease_date_time().map(date),
            );
            object.set("ProvisionedThroughput", Some(inner.done()));
        }
        object.set("TableSizeBytes", d.table_size_bytes().map(Json::from));
        object.set("ItemCount", d.item_count().map(Json::from));
        object.set("TableArn", self.text(d.table_arn(), path)?);
        object.set("TableId", self.text(d.table_id(), path)?);
        object.set(
            "DeletionProtectionEnabled",
            d.deletion_protection_enabled().map(Json::Bool),
        );
        if let Some(summary) = d.billing_mode_summary() {
            let mut inner = Object::default();
            inner.set("BillingMode", self.text(summary.billing_mode(), path)?);
            inner.set(
                "LastUpdateToPayPerRequestDateTime",
                summary.last_update_to_pay_per_request_date_time().map(date),
            );
            object.set("BillingModeSummary", Some(inner.done()));
        }
        Ok(Some(object.done()))
    }

    /// A success response's members as DynamoDB JSON, the body the HTTP API would have sent.
    pub(crate) fn response_body(
        &mut self,
        response: &wire::Response<'_>,
    ) -> Result<Json, ConvertError> {
        let root = Path::Root;
        let r = response;
        let mut object = Object::default();
        object.set("Item", self.item(r.item(), root.member("Item"))?);
        object.set(
            "Attributes",
            self.item(r.attributes(), root.member("Attributes"))?,
        );
        object.set("Items", self.items(r.items(), root.member("Items"))?);
        object.set("Count", r.count().map(Json::from));
        object.set("ScannedCount", r.scanned_count().map(Json::from));
        object.set(
            "LastEvaluatedKey",
            self.item(r.last_evaluated_key(), root.member("LastEvaluatedKey"))?,
        );
        let capacity_path = root.member("ConsumedCapacity");
        if let Some(capacity) = r.consumed_capacity() {
            object.set(
                "ConsumedCapacity",
                Some(self.consumed_capacity(&capacity, capacity_path)?),
            );
        }
        if let Some(capacities) = r.consumed_capacities() {
            object.set(
                "ConsumedCapacity",
                self.list(
                    Some(capacities),
                    capacity_path,
                    |decoder, capacity, path| decoder.consumed_capacity(&capacity, path),
                )?,
            );
        }
        object.set(
            "Responses",
            self.entries(
                r.responses(),
                root.member("Responses"),
                |entry| entry.table_name(),
                |decoder, entry, path| {
                    Ok(decoder.items(entry.items(), path)?.unwrap_or(Json::Null))
                },
            )?,
        );
        object.set(
            "UnprocessedKeys",
            self.keys_and_attributes(r.unprocessed_keys(), root.member("UnprocessedKeys"))?,
        );
        object.set(
            "UnprocessedItems",
            self.write_requests(r.unprocessed_items(), root.member("UnprocessedItems"))?,
        );
        object.set(
            "TableDescription",
            self.table_description(r.table_description(), root.member("TableDescription"))?,
        );
        object.set(
            "Table",
            self.table_description(r.table(), root.member("Table"))?,
        );
        object.set(
            "TableNames",
            self.strings(r.table_names(), root.member("TableNames"))?,
        );
        object.set(
            "LastEvaluatedTableName",
            self.text(
                r.last_evaluated_table_name(),
                root.member("LastEvaluatedTableName"),
            )?,
        );
        Ok(object.done())
    }

    /// An error's old item.
    pub(crate) fn error_item(
        &mut self,
        error: &wire::Error<'_>,
    ) -> Result<Option<Json>, ConvertError> {
        self.item(error.item(), Path::Root.member("Item"))
    }
}

/// A date (seconds since the epoch) as DynamoDB JSON writes it: a whole number of seconds as an
/// integer, otherwise with its fraction.
fn date(seconds: f64) -> Json {
    if seconds.fract() == 0.0 && (0.0..=(u64::MAX as f64)).contains(&seconds) {
        Json::from(seconds as u64)
    } else {
        Json::from(seconds)
    }
}
