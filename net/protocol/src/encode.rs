//! DynamoDB JSON value trees to flatbuffers: requests (the clients) and responses (the
//! router). In memory: no JSON text is read or written.
//!
//! A value the schema cannot carry (`"Item": 5`, an AttributeValue with two types, a member
//! the schema does not have, base64 that does not decode) is refused with an
//! [`EncodeError::Unrepresentable`] naming the member's path, e.g. `Item.year.N`. Everything
//! the schema can carry is encoded, valid for DynamoDB or not: the router answers DynamoDB's
//! errors.
//!
//! Bounds: attribute values nest at most [`ATTRIBUTE_NESTING_DEPTH_MAX`] levels (checked
//! before recursing); the bytes written are counted as they are added and refused past
//! [`DYNAMODB_BODY_BYTES_MAX`], so a huge value fails fast instead of growing the builder.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};
use serde_json::{Map, Value as Json};

use crate::generated::shoal::client::v_2 as wire;
use crate::limits::{ATTRIBUTE_NESTING_DEPTH_MAX, DYNAMODB_BODY_BYTES_MAX, ENCODED_NODE_BYTES};
use crate::message::{EncodeError, Operation};

/// Where a member is in the value tree, rendered only when an error names it.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    Root,
    Member(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    pub(crate) fn member(&'a self, name: &'a str) -> Path<'a> {
        Path::Member(self, name)
    }

    pub(crate) fn index(&'a self, index: usize) -> Path<'a> {
        Path::Index(self, index)
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => formatter.write_str("(the body)"),
            Path::Member(Path::Root, name) => formatter.write_str(name),
            Path::Member(parent, name) => write!(formatter, "{parent}.{name}"),
            Path::Index(parent, index) => write!(formatter, "{parent}[{index}]"),
        }
    }
}

fn unrepresentable(path: Path<'_>, reason: impl Into<String>) -> EncodeError {
    EncodeError::Unrepresentable {
        path: path.to_string(),
        reason: reason.into(),
    }
}

type Offsets<'fbb, T> = WIPOffset<Vector<'fbb, ForwardsUOffset<T>>>;

/// A builder and the bytes it may still take.
pub(crate) struct Encoder<'fbb> {
    pub(crate) builder: FlatBufferBuilder<'fbb>,
    bytes_counted: usize,
}

impl<'fbb> Encoder<'fbb> {
    pub(crate) fn with_capacity(capacity: usize) -> Encoder<'fbb> {
        Encoder {
            builder: FlatBufferBuilder::with_capacity(capacity),
            bytes_counted: 0,
        }
    }

    /// Counts `bytes` more against the limit.
    fn count(&mut self, bytes: usize) -> Result<(), EncodeError> {
        self.bytes_counted = self.bytes_counted.saturating_add(bytes);
        if self.bytes_counted > DYNAMODB_BODY_BYTES_MAX {
            return Err(EncodeError::BodyTooLarge {
                body_bytes: self.bytes_counted,
            });
        }
        Ok(())
    }

    fn text(&mut self, text: &str) -> Result<WIPOffset<&'fbb str>, EncodeError> {
        self.count(text.len() + ENCODED_NODE_BYTES)?;
        Ok(self.builder.create_string(text))
    }

    fn string(&mut self, json: &Json, path: Path<'_>) -> Result<WIPOffset<&'fbb str>, EncodeError> {
        match json {
            Json::String(text) => self.text(text),
            _ => Err(unrepresentable(path, "must be a string")),
        }
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<WIPOffset<Vector<'fbb, u8>>, EncodeError> {
        self.count(bytes.len() + ENCODED_NODE_BYTES)?;
        Ok(self.builder.create_vector(bytes))
    }

    /// A base64 string (DynamoDB JSON's binary) as its bytes.
    fn binary(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<WIPOffset<Vector<'fbb, u8>>, EncodeError> {
        let Json::String(text) = json else {
            return Err(unrepresentable(path, "must be a base64 string"));
        };
        // Counted before decoding, so a huge string fails before its copy is made.
        self.count(text.len() / 4 * 3)?;
        let bytes = BASE64
            .decode(text)
            .map_err(|error| unrepresentable(path, format!("is not base64: {error}")))?;
        self.bytes(&bytes)
    }

    fn strings(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Offsets<'fbb, &'fbb str>, EncodeError> {
        let elements = array(json, path)?;
        let mut offsets = Vec::with_capacity(elements.len());
        for (index, element) in elements.iter().enumerate() {
            offsets.push(self.string(element, path.index(index))?);
        }
        Ok(self.builder.create_vector(&offsets))
    }

    fn list<T>(
        &mut self,
        json: &Json,
        path: Path<'_>,
        mut element: impl FnMut(&mut Self, &Json, Path<'_>) -> Result<WIPOffset<T>, EncodeError>,
    ) -> Result<Offsets<'fbb, T>, EncodeError> {
        let elements = array(json, path)?;
        let mut offsets = Vec::with_capacity(elements.len());
        for (index, json) in elements.iter().enumerate() {
            self.count(ENCODED_NODE_BYTES)?;
            offsets.push(element(self, json, path.index(index))?);
        }
        Ok(self.builder.create_vector(&offsets))
    }

    /// A JSON object as a vector of named entries.
    fn entries<T>(
        &mut self,
        json: &Json,
        path: Path<'_>,
        mut entry: impl FnMut(
            &mut Self,
            WIPOffset<&'fbb str>,
            &Json,
            Path<'_>,
        ) -> Result<WIPOffset<T>, EncodeError>,
    ) -> Result<Offsets<'fbb, T>, EncodeError> {
        let members = object(json, path)?;
        let mut offsets = Vec::with_capacity(members.len());
        for (name, value) in members {
            let name_offset = self.text(name)?;
            offsets.push(entry(self, name_offset, value, path.member(name))?);
        }
        Ok(self.builder.create_vector(&offsets))
    }

    /// One DynamoDB JSON attribute value (`{"S": "x"}`), `depth` levels deep (1 at the top).
    pub(crate) fn attribute_value(
        &mut self,
        json: &Json,
        path: Path<'_>,
        depth: usize,
    ) -> Result<WIPOffset<wire::AttributeValue<'fbb>>, EncodeError> {
        if depth > ATTRIBUTE_NESTING_DEPTH_MAX {
            return Err(unrepresentable(
                path,
                format!("attribute values nest deeper than {ATTRIBUTE_NESTING_DEPTH_MAX} levels"),
            ));
        }
        self.count(ENCODED_NODE_BYTES)?;
        let members = object(json, path)
            .map_err(|_| unrepresentable(path, "an AttributeValue must be an object"))?;
        let mut types = members.iter();
        let mut args = wire::AttributeValueArgs::default();
        let Some((type_name, inner)) = types.next() else {
            // `{}`: carried as Empty, for the router to refuse with DynamoDB's message.
            return Ok(wire::AttributeValue::create(&mut self.builder, &args));
        };
        if types.next().is_some() {
            return Err(unrepresentable(
                path,
                format!(
                    "an AttributeValue has exactly one type, this one has {}",
                    members.len()
                ),
            ));
        }
        let inner_path = path.member(type_name);
        match type_name.as_str() {
            "S" => {
                args.type_ = wire::AttributeType::S;
                args.text = Some(self.string(inner, inner_path)?);
            }
            "N" => {
                args.type_ = wire::AttributeType::N;
                args.text = Some(self.string(inner, inner_path)?);
            }
            "B" => {
                args.type_ = wire::AttributeType::B;
                args.bytes = Some(self.binary(inner, inner_path)?);
            }
            "BOOL" | "NULL" => {
                args.type_ = if type_name == "BOOL" {
                    wire::AttributeType::Bool
                } else {
                    wire::AttributeType::Null
                };
                args.flag = inner
                    .as_bool()
                    .ok_or_else(|| unrepresentable(inner_path, "must be a boolean"))?;
            }
            "SS" | "NS" => {
                args.type_ = if type_name == "SS" {
                    wire::AttributeType::SS
                } else {
                    wire::AttributeType::NS
                };
                args.texts = Some(self.strings(inner, inner_path)?);
            }
            "BS" => {
                args.type_ = wire::AttributeType::BS;
                args.binaries = Some(self.list(inner, inner_path, |encoder, json, path| {
                    let bytes = encoder.binary(json, path)?;
                    Ok(wire::Binary::create(
                        &mut encoder.builder,
                        &wire::BinaryArgs { bytes: Some(bytes) },
                    ))
                })?);
            }
            "M" => {
                args.type_ = wire::AttributeType::M;
                args.map = Some(self.attributes(inner, inner_path, depth + 1)?);
            }
            "L" => {
                args.type_ = wire::AttributeType::L;
                args.list = Some(self.list(inner, inner_path, |encoder, json, path| {
                    encoder.attribute_value(json, path, depth + 1)
                })?);
            }
            other => {
                return Err(unrepresentable(
                    path,
                    format!(
                        "unknown AttributeValue type {other:?} (S, N, B, SS, NS, BS, M, L, NULL, BOOL)"
                    ),
                ));
            }
        }
        Ok(wire::AttributeValue::create(&mut self.builder, &args))
    }

    /// Named attribute values: an item, a key, a map's members, ExpressionAttributeValues.
    /// Their values are `depth` levels deep.
    fn attributes(
        &mut self,
        json: &Json,
        path: Path<'_>,
        depth: usize,
    ) -> Result<Offsets<'fbb, wire::Attribute<'fbb>>, EncodeError> {
        self.entries(json, path, |encoder, name, json, path| {
            let value = encoder.attribute_value(json, path, depth)?;
            Ok(wire::Attribute::create(
                &mut encoder.builder,
                &wire::AttributeArgs {
                    name: Some(name),
                    value: Some(value),
                },
            ))
        })
    }

    pub(crate) fn item(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Offsets<'fbb, wire::Attribute<'fbb>>, EncodeError> {
        self.attributes(json, path, 1)
    }

    fn items(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Offsets<'fbb, wire::Item<'fbb>>, EncodeError> {
        self.list(json, path, |encoder, json, path| {
            let attributes = encoder.item(json, path)?;
            Ok(wire::Item::create(
                &mut encoder.builder,
                &wire::ItemArgs {
                    attributes: Some(attributes),
                },
            ))
        })
    }

    fn attribute_values(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Offsets<'fbb, wire::AttributeValue<'fbb>>, EncodeError> {
        self.list(json, path, |encoder, json, path| {
            encoder.attribute_value(json, path, 1)
        })
    }

    fn names(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Offsets<'fbb, wire::NameEntry<'fbb>>, EncodeError> {
        self.entries(json, path, |encoder, name, json, path| {
            let value = encoder.string(json, path)?;
            Ok(wire::NameEntry::create(
                &mut encoder.builder,
                &wire::NameEntryArgs {
                    name: Some(name),
                    value: Some(value),
                },
            ))
        })
    }

    fn expected(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Offsets<'fbb, wire::ExpectedEntry<'fbb>>, EncodeError> {
        self.entries(json, path, |encoder, name, json, path| {
            let mut args = wire::ExpectedAttributeValueArgs::default();
            for (member, value) in present_members(json, path)? {
                let path = path.member(member);
                match member.as_str() {
                    "Value" => args.value = Some(encoder.attribute_value(value, path, 1)?),
                    "Exists" => args.exists = Some(boolean(value, path)?),
                    "ComparisonOperator" => {
                        args.comparison_operator = Some(encoder.string(value, path)?);
                    }
                    "AttributeValueList" => {
                        args.attribute_value_list = Some(encoder.attribute_values(value, path)?);
                    }
                    _ => return Err(not_a_member(path)),
                }
            }
            let value = wire::ExpectedAttributeValue::create(&mut encoder.builder, &args);
            Ok(wire::ExpectedEntry::create(
                &mut encoder.builder,
                &wire::ExpectedEntryArgs {
                    name: Some(name),
                    value: Some(value),
                },
            ))
        })
    }

    fn conditions(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Offsets<'fbb, wire::ConditionEntry<'fbb>>, EncodeError> {
        self.entries(json, path, |encoder, name, json, path| {
            let mut args = wire::ConditionArgs::default();
            for (member, value) in present_members(json, path)? {
                let path = path.member(member);
                match member.as_str() {
                    "ComparisonOperator" => {
                        args.comparison_operator = Some(encoder.string(value, path)?);
                    }
                    "AttributeValueList" => {
                        args.attribute_value_list = Some(encoder.attribute_values(value, path)?);
                    }
                    _ => return Err(not_a_member(path)),
                }
            }
            let value = wire::Condition::create(&mut encoder.builder, &args);
            Ok(wire::ConditionEntry::create(
                &mut encoder.builder,
                &wire::ConditionEntryArgs {
                    name: Some(name),
                    value: Some(value),
                },
            ))
        })
    }

    fn attribute_updates(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Offsets<'fbb, wire::AttributeUpdateEntry<'fbb>>, EncodeError> {
        self.entries(json, path, |encoder, name, json, path| {
            let mut args = wire::AttributeValueUpdateArgs::default();
            for (member, value) in present_members(json, path)? {
                let path = path.member(member);
                match member.as_str() {
                    "Value" => args.value = Some(encoder.attribute_value(value, path, 1)?),
                    "Action" => args.action = Some(encoder.string(value, path)?),
                    _ => return Err(not_a_member(path)),
                }
            }
            let value = wire::AttributeValueUpdate::create(&mut encoder.builder, &args);
            Ok(wire::AttributeUpdateEntry::create(
                &mut encoder.builder,
                &wire::AttributeUpdateEntryArgs {
                    name: Some(name),
                    value: Some(value),
                },
            ))
        })
    }

    /// BatchGetItem's RequestItems, and UnprocessedKeys.
    fn keys_and_attributes(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Offsets<'fbb, wire::KeysAndAttributesEntry<'fbb>>, EncodeError> {
        self.entries(json, path, |encoder, table_name, json, path| {
            let mut args = wire::KeysAndAttributesArgs::default();
            for (member, value) in present_members(json, path)? {
                let path = path.member(member);
                match member.as_str() {
                    "Keys" => args.keys = Some(encoder.items(value, path)?),
                    "ProjectionExpression" => {
                        args.projection_expression = Some(encoder.string(value, path)?);
                    }
                    "ExpressionAttributeNames" => {
                        args.expression_attribute_names = Some(encoder.names(value, path)?);
                    }
                    "ConsistentRead" => args.consistent_read = Some(boolean(value, path)?),
                    "AttributesToGet" => {
                        args.attributes_to_get = Some(encoder.strings(value, path)?);
                    }
                    _ => return Err(not_a_member(path)),
                }
            }
            let value = wire::KeysAndAttributes::create(&mut encoder.builder, &args);
            Ok(wire::KeysAndAttributesEntry::create(
                &mut encoder.builder,
                &wire::KeysAndAttributesEntryArgs {
                    table_name: Some(table_name),
                    value: Some(value),
                },
            ))
        })
    }

    /// BatchWriteItem's RequestItems, and UnprocessedItems.
    fn write_requests(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Offsets<'fbb, wire::WriteRequestsEntry<'fbb>>, EncodeError> {
        self.entries(json, path, |encoder, table_name, json, path| {
            let requests = encoder.list(json, path, |encoder, json, path| {
                let mut args = wire::WriteRequestArgs::default();
                for (member, value) in present_members(json, path)? {
                    let path = path.member(member);
                    match member.as_str() {
                        "PutRequest" => {
                            let mut item = None;
                            for (member, value) in present_members(value, path)? {
                                let path = path.member(member);
                                match member.as_str() {
                                    "Item" => item = Some(encoder.item(value, path)?),
                                    _ => return Err(not_a_member(path)),
                                }
                            }
                            args.put_request = Some(wire::PutRequest::create(
                                &mut encoder.builder,
                                &wire::PutRequestArgs { item },
                            ));
                        }
                        "DeleteRequest" => {
                            let mut key = None;
                            for (member, value) in present_members(value, path)? {
                                let path = path.member(member);
                                match member.as_str() {
                                    "Key" => key = Some(encoder.item(value, path)?),
                                    _ => return Err(not_a_member(path)),
                                }
                            }
                            args.delete_request = Some(wire::DeleteRequest::create(
                                &mut encoder.builder,
                                &wire::DeleteRequestArgs { key },
                            ));
                        }
                        _ => return Err(not_a_member(path)),
                    }
                }
                Ok(wire::WriteRequest::create(&mut encoder.builder, &args))
            })?;
            Ok(wire::WriteRequestsEntry::create(
                &mut encoder.builder,
                &wire::WriteRequestsEntryArgs {
                    table_name: Some(table_name),
                    requests: Some(requests),
                },
            ))
        })
    }

    fn key_schema(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Offsets<'fbb, wire::KeySchemaElement<'fbb>>, EncodeError> {
        self.list(json, path, |encoder, json, path| {
            let mut args = wire::KeySchemaElementArgs::default();
            for (member, value) in present_members(json, path)? {
                let path = path.member(member);
                match member.as_str() {
                    "AttributeName" => args.attribute_name = Some(encoder.string(value, path)?),
                    "KeyType" => args.key_type = Some(encoder.string(value, path)?),
                    _ => return Err(not_a_member(path)),
                }
            }
            Ok(wire::KeySchemaElement::create(&mut encoder.builder, &args))
        })
    }

    fn attribute_definitions(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Offsets<'fbb, wire::AttributeDefinition<'fbb>>, EncodeError> {
        self.list(json, path, |encoder, json, path| {
            let mut args = wire::AttributeDefinitionArgs::default();
            for (member, value) in present_members(json, path)? {
                let path = path.member(member);
                match member.as_str() {
                    "AttributeName" => args.attribute_name = Some(encoder.string(value, path)?),
                    "AttributeType" => args.attribute_type = Some(encoder.string(value, path)?),
                    _ => return Err(not_a_member(path)),
                }
            }
            Ok(wire::AttributeDefinition::create(
                &mut encoder.builder,
                &args,
            ))
        })
    }

    fn provisioned_throughput(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<WIPOffset<wire::ProvisionedThroughput<'fbb>>, EncodeError> {
        let mut args = wire::ProvisionedThroughputArgs::default();
        for (member, value) in present_members(json, path)? {
            let path = path.member(member);
            match member.as_str() {
                "ReadCapacityUnits" => args.read_capacity_units = Some(signed(value, path)?),
                "WriteCapacityUnits" => args.write_capacity_units = Some(signed(value, path)?),
                _ => return Err(not_a_member(path)),
            }
        }
        Ok(wire::ProvisionedThroughput::create(
            &mut self.builder,
            &args,
        ))
    }

    fn tags(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<Offsets<'fbb, wire::Tag<'fbb>>, EncodeError> {
        self.list(json, path, |encoder, json, path| {
            let mut args = wire::TagArgs::default();
            for (member, value) in present_members(json, path)? {
                let path = path.member(member);
                match member.as_str() {
                    "Key" => args.key = Some(encoder.string(value, path)?),
                    "Value" => args.value = Some(encoder.string(value, path)?),
                    _ => return Err(not_a_member(path)),
                }
            }
            Ok(wire::Tag::create(&mut encoder.builder, &args))
        })
    }

    /// A request's members. `operation` picks the form of RequestItems (BatchWriteItem's or
    /// BatchGetItem's).
    pub(crate) fn request(
        &mut self,
        request_id: u64,
        operation: Operation,
        body: &Json,
    ) -> Result<WIPOffset<wire::Request<'fbb>>, EncodeError> {
        let root = Path::Root;
        let mut args = wire::RequestArgs {
            request_id,
            operation: wire::Operation(operation.wire_value()),
            ..Default::default()
        };
        let members = object(body, root)
            .map_err(|_| unrepresentable(root, "the request body must be a JSON object"))?;
        for (name, value) in members {
            // DynamoDB reads a null member as an absent one.
            if value.is_null() {
                continue;
            }
            let path = root.member(name);
            match name.as_str() {
                "TableName" => args.table_name = Some(self.string(value, path)?),
                "Item" => args.item = Some(self.item(value, path)?),
                "Key" => args.key = Some(self.item(value, path)?),
                "ConditionExpression" => {
                    args.condition_expression = Some(self.string(value, path)?)
                }
                "UpdateExpression" => args.update_expression = Some(self.string(value, path)?),
                "ProjectionExpression" => {
                    args.projection_expression = Some(self.string(value, path)?);
                }
                "FilterExpression" => args.filter_expression = Some(self.string(value, path)?),
                "KeyConditionExpression" => {
                    args.key_condition_expression = Some(self.string(value, path)?);
                }
                "ExpressionAttributeNames" => {
                    args.expression_attribute_names = Some(self.names(value, path)?);
                }
                "ExpressionAttributeValues" => {
                    args.expression_attribute_values = Some(self.item(value, path)?);
                }
                "ReturnValues" => args.return_values = Some(self.string(value, path)?),
                "ReturnValuesOnConditionCheckFailure" => {
                    args.return_values_on_condition_check_failure = Some(self.string(value, path)?);
                }
                "ReturnConsumedCapacity" => {
                    args.return_consumed_capacity = Some(self.string(value, path)?);
                }
                "ReturnItemCollectionMetrics" => {
                    args.return_item_collection_metrics = Some(self.string(value, path)?);
                }
                "ConsistentRead" => args.consistent_read = Some(boolean(value, path)?),
                "Limit" => args.limit = Some(signed(value, path)?),
                "ScanIndexForward" => args.scan_index_forward = Some(boolean(value, path)?),
                "ExclusiveStartKey" => args.exclusive_start_key = Some(self.item(value, path)?),
                "Select" => args.select = Some(self.string(value, path)?),
                "Segment" => args.segment = Some(signed(value, path)?),
                "TotalSegments" => args.total_segments = Some(signed(value, path)?),
                "IndexName" => args.index_name = Some(self.string(value, path)?),
                "AttributesToGet" => args.attributes_to_get = Some(self.strings(value, path)?),
                "Expected" => args.expected = Some(self.expected(value, path)?),
                "KeyConditions" => args.key_conditions = Some(self.conditions(value, path)?),
                "QueryFilter" => args.query_filter = Some(self.conditions(value, path)?),
                "ScanFilter" => args.scan_filter = Some(self.conditions(value, path)?),
                "AttributeUpdates" => {
                    args.attribute_updates = Some(self.attribute_updates(value, path)?);
                }
                "ConditionalOperator" => {
                    args.conditional_operator = Some(self.string(value, path)?)
                }
                "RequestItems" if operation == Operation::BatchWriteItem => {
                    args.request_items_write = Some(self.write_requests(value, path)?);
                }
                "RequestItems" => {
                    args.request_items_get = Some(self.keys_and_attributes(value, path)?);
                }
                "KeySchema" => args.key_schema = Some(self.key_schema(value, path)?),
                "AttributeDefinitions" => {
                    args.attribute_definitions = Some(self.attribute_definitions(value, path)?);
                }
                "BillingMode" => args.billing_mode = Some(self.string(value, path)?),
                "ProvisionedThroughput" => {
                    args.provisioned_throughput = Some(self.provisioned_throughput(value, path)?);
                }
                "Tags" => args.tags = Some(self.tags(value, path)?),
                "DeletionProtectionEnabled" => {
                    args.deletion_protection_enabled = Some(boolean(value, path)?);
                }
                "TableClass" => args.table_class = Some(self.string(value, path)?),
                "ExclusiveStartTableName" => {
                    args.exclusive_start_table_name = Some(self.string(value, path)?);
                }
                _ => return Err(not_a_member(path)),
            }
        }
        Ok(wire::Request::create(&mut self.builder, &args))
    }

    fn consumed_capacity(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<WIPOffset<wire::ConsumedCapacity<'fbb>>, EncodeError> {
        let mut args = wire::ConsumedCapacityArgs::default();
        for (member, value) in present_members(json, path)? {
            let path = path.member(member);
            match member.as_str() {
                "TableName" => args.table_name = Some(self.string(value, path)?),
                "CapacityUnits" => args.capacity_units = Some(float(value, path)?),
                "Table" => {
                    let mut capacity = wire::CapacityArgs::default();
                    for (member, value) in present_members(value, path)? {
                        let path = path.member(member);
                        match member.as_str() {
                            "CapacityUnits" => capacity.capacity_units = Some(float(value, path)?),
                            _ => return Err(not_a_member(path)),
                        }
                    }
                    args.table = Some(wire::Capacity::create(&mut self.builder, &capacity));
                }
                _ => return Err(not_a_member(path)),
            }
        }
        Ok(wire::ConsumedCapacity::create(&mut self.builder, &args))
    }

    fn table_description(
        &mut self,
        json: &Json,
        path: Path<'_>,
    ) -> Result<WIPOffset<wire::TableDescription<'fbb>>, EncodeError> {
        let mut args = wire::TableDescriptionArgs::default();
        for (member, value) in present_members(json, path)? {
            let path = path.member(member);
            match member.as_str() {
                "TableName" => args.table_name = Some(self.string(value, path)?),
                "TableStatus" => args.table_status = Some(self.string(value, path)?),
                "AttributeDefinitions" => {
                    args.attribute_definitions = Some(self.attribute_definitions(value, path)?);
                }
                "KeySchema" => args.key_schema = Some(self.key_schema(value, path)?),
                "CreationDateTime" => args.creation_date_time = Some(float(value, path)?),
                "ProvisionedThroughput" => {
                    let mut throughput = wire::ProvisionedThroughputDescriptionArgs::default();
                    for (member, value) in present_members(value, path)? {
                        let path = path.member(member);
                        match member.as_str() {
                            "NumberOfDecreasesToday" => {
                                throughput.number_of_decreases_today = Some(unsigned(value, path)?);
                            }
                            "ReadCapacityUnits" => {
                                throughput.read_capacity_units = Some(unsigned(value, path)?);
                            }
                            "WriteCapacityUnits" => {
                                throughput.write_capacity_units = Some(unsigned(value, path)?);
                            }
                            "LastIncreaseDateTime" => {
                                throughput.last_increase_date_time = Some(float(value, path)?);
                            }
                            "LastDecreaseDateTime" => {
                                throughput.last_decrease_date_time = Some(float(value, path)?);
                            }
                            _ => return Err(not_a_member(path)),
                        }
                    }
                    args.provisioned_throughput =
                        Some(wire::ProvisionedThroughputDescription::create(
                            &mut self.builder,
                            &throughput,
                        ));
                }
                "TableSizeBytes" => args.table_size_bytes = Some(unsigned(value, path)?),
                "ItemCount" => args.item_count = Some(unsigned(value, path)?),
                "TableArn" => args.table_arn = Some(self.string(value, path)?),
                "TableId" => args.table_id = Some(self.string(value, path)?),
                "DeletionProtectionEnabled" => {
                    args.deletion_protection_enabled = Some(boolean(value, path)?);
                }
                "BillingModeSummary" => {
                    let mut summary = wire::BillingModeSummaryArgs::default();
                    for (member, value) in present_members(value, path)? {
                        let path = path.member(member);
                        match member.as_str() {
                            "BillingMode" => summary.billing_mode = Some(self.string(value, path)?),
                            "LastUpdateToPayPerRequestDateTime" => {
                                summary.last_update_to_pay_per_request_date_time =
                                    Some(float(value, path)?);
                            }
                            _ => return Err(not_a_member(path)),
                        }
                    }
                    args.billing_mode_summary = Some(wire::BillingModeSummary::create(
                        &mut self.builder,
                        &summary,
                    ));
                }
                _ => return Err(not_a_member(path)),
            }
        }
        Ok(wire::TableDescription::create(&mut self.builder, &args))
    }

    /// A success response's members (the router's answer).
    pub(crate) fn response_body(
        &mut self,
        args: &mut wire::ResponseArgs<'fbb>,
        body: &Json,
    ) -> Result<(), EncodeError> {
        let root = Path::Root;
        let members = object(body, root)
            .map_err(|_| unrepresentable(root, "a response body must be a JSON object"))?;
        for (name, value) in members {
            if value.is_null() {
                continue;
            }
            let path = root.member(name);
            match name.as_str() {
                "Item" => args.item = Some(self.item(value, path)?),
                "Attributes" => args.attributes = Some(self.item(value, path)?),
                "Items" => args.items = Some(self.items(value, path)?),
                "Count" => args.count = Some(unsigned(value, path)?),
                "ScannedCount" => args.scanned_count = Some(unsigned(value, path)?),
                "LastEvaluatedKey" => args.last_evaluated_key = Some(self.item(value, path)?),
                "ConsumedCapacity" if value.is_array() => {
                    args.consumed_capacities =
                        Some(self.list(value, path, |encoder, json, path| {
                            encoder.consumed_capacity(json, path)
                        })?);
                }
                "ConsumedCapacity" => {
                    args.consumed_capacity = Some(self.consumed_capacity(value, path)?);
                }
                "Responses" => {
                    args.responses =
                        Some(self.entries(value, path, |encoder, name, json, path| {
                            let items = encoder.items(json, path)?;
                            Ok(wire::ItemsEntry::create(
                                &mut encoder.builder,
                                &wire::ItemsEntryArgs {
                                    table_name: Some(name),
                                    items: Some(items),
                                },
                            ))
                        })?);
                }
                "UnprocessedKeys" => {
                    args.unprocessed_keys = Some(self.keys_and_attributes(value, path)?);
                }
                "UnprocessedItems" => {
                    args.unprocessed_items = Some(self.write_requests(value, path)?);
                }
                "TableDescription" => {
                    args.table_description = Some(self.table_description(value, path)?);
                }
                "Table" => args.table = Some(self.table_description(value, path)?),
                "TableNames" => args.table_names = Some(self.strings(value, path)?),
                "LastEvaluatedTableName" => {
                    args.last_evaluated_table_name = Some(self.string(value, path)?);
                }
                _ => return Err(not_a_member(path)),
            }
        }
        Ok(())
    }

    /// An error's members.
    pub(crate) fn error(
        &mut self,
        type_name: &str,
        message: &str,
        item: Option<&Json>,
    ) -> Result<WIPOffset<wire::Error<'fbb>>, EncodeError> {
        let item = match item {
            Some(item) => Some(self.item(item, Path::Root.member("Item"))?),
            None => None,
        };
        let type_name = self.text(type_name)?;
        let message = self.text(message)?;
        Ok(wire::Error::create(
            &mut self.builder,
            &wire::ErrorArgs {
                type_name: Some(type_name),
                message: Some(message),
                item,
            },
        ))
    }
}

fn not_a_member(path: Path<'_>) -> EncodeError {
    unrepresentable(
        path,
        "is not a member native protocol version 2 carries (net/protocol/FORMAT.md lists them)",
    )
}

fn object<'json>(
    json: &'json Json,
    path: Path<'_>,
) -> Result<&'json Map<String, Json>, EncodeError> {
    json.as_object()
        .ok_or_else(|| unrepresentable(path, "must be an object"))
}

fn array<'json>(json: &'json Json, path: Path<'_>) -> Result<&'json Vec<Json>, EncodeError> {
    json.as_array()
        .ok_or_else(|| unrepresentable(path, "must be an array"))
}

/// An object's members that are not null (DynamoDB reads a null member as absent).
fn present_members<'json>(
    json: &'json Json,
    path: Path<'_>,
) -> Result<impl Iterator<Item = (&'json String, &'json Json)>, EncodeError> {
    Ok(object(json, path)?
        .iter()
        .filter(|(_, value)| !value.is_null()))
}

fn boolean(json: &Json, path: Path<'_>) -> Result<bool, EncodeError> {
    json.as_bool()
        .ok_or_else(|| unrepresentable(path, "must be a boolean"))
}

fn signed(json: &Json, path: Path<'_>) -> Result<i64, EncodeError> {
    json.as_i64()
        .ok_or_else(|| unrepresentable(path, "must be an integer from -2^63 to 2^63 - 1"))
}

fn unsigned(json: &Json, path: Path<'_>) -> Result<u64, EncodeError> {
    json.as_u64()
        .ok_or_else(|| unrepresentable(path, "must be an integer from 0 to 2^64 - 1"))
}

fn float(json: &Json, path: Path<'_>) -> Result<f64, EncodeError> {
    json.as_f64()
        .ok_or_else(|| unrepresentable(path, "must be a number"))
}
