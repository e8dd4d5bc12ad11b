//! The single-item operations, Query and Scan: each request is prepared once here and sent
//! to the partition that owns its key (a Scan page walks partitions in hash order).

use super::*;

/// Partitions one Scan page visits at most: more than any table has (each split doubles a
/// range's partitions, and a page stops at its first partition that fills it).
const SCAN_PARTITION_STEPS_MAX: usize = 1 << 16;

/// The partition hash a Query reads: its key condition names one partition key, so both of its
/// storage-key bounds start with that key's hash.
fn query_hash(range: &RangeRequest) -> Result<u64, DynamoError> {
    match &range.lower {
        // An index Query's bounds are entry keys, which carry their items' hash.
        Bound::Included(key) | Bound::Excluded(key) if range.index.is_some() => {
            shoal_model::index::entry_key_hash(key)
        }
        Bound::Included(key) | Bound::Excluded(key) => storage_key_hash(key),
        Bound::Unbounded => None,
    }
    .ok_or_else(|| DynamoError::validation(shoal_model::messages::KEY_DOES_NOT_MATCH_SCHEMA))
}

/// The hash range of a Scan's segment (all of it without Segment/TotalSegments), with the
/// partition's own checks of the pair so the router never routes a request it will refuse;
/// and the segment's numbers, for messages.
fn scan_segment(body: &Json) -> Result<(HashRange, Option<(u64, u64)>), DynamoError> {
    let segment = body.get("Segment").and_then(Json::as_u64);
    let total = body.get("TotalSegments").and_then(Json::as_u64);
    match shoal_model::messages::scan_segment(segment, total).map_err(DynamoError::validation)? {
        None => Ok((HashRange::ALL, None)),
        Some((segment, total)) => {
            // `total` <= TOTAL_SEGMENTS_MAX fits u32.
            let index = u32::try_from(segment).unwrap_or(0);
            let count = u32::try_from(total).unwrap_or(1);
            Ok((even_range(index, count), Some((segment, total))))
        }
    }
}

/// The hash a Scan page starts at: its ExclusiveStartKey's (which the prepared range starts
/// after), or the segment's first. A start key of another segment is refused with DynamoDB's
/// message (verified on the real service by ScyllaDB's Alternator tests,
/// scylladb/scylladb#9270).
fn scan_start_hash(
    body: &Json,
    range: &RangeRequest,
    segment: HashRange,
    segment_numbers: Option<(u64, u64)>,
) -> Result<u64, DynamoError> {
    if body.get("ExclusiveStartKey").is_none_or(Json::is_null) {
        return Ok(segment.first);
    }
    let hash = match &range.lower {
        // An index Scan resumes at an entry key, which carries its item's hash.
        Bound::Excluded(key) if range.index.is_some() => shoal_model::index::entry_key_hash(key),
        Bound::Excluded(key) => storage_key_hash(key),
        _ => None,
    }
    .ok_or_else(|| {
        DynamoError::validation(
            "The provided starting key is invalid: The provided key element does not match the schema",
        )
    })?;
    if !segment.contains(hash) {
        let (segment, total) = segment_numbers.unwrap_or((0, 1));
        return Err(DynamoError::validation(format!(
            "The provided starting key is invalid: Invalid ExclusiveStartKey. Please use ExclusiveStartKey with correct Segment. TotalSegments: {total} Segment: {segment}"
        )));
    }
    Ok(hash)
}

/// ReturnItemCollectionMetrics: whether SIZE was asked for (tables with local secondary
/// indexes then answer ItemCollectionMetrics; others have no item collections to report).
pub(super) fn item_collection_metrics(body: &Json) -> Result<bool, DynamoError> {
    match body.get("ReturnItemCollectionMetrics") {
        None | Some(Json::Null) => Ok(false),
        Some(Json::String(value)) if value == "SIZE" => Ok(true),
        Some(Json::String(value)) if value == "NONE" => Ok(false),
        Some(Json::String(other)) => Err(DynamoError::validation(format!(
            "1 validation error detected: Value '{other}' at 'returnItemCollectionMetrics' failed to satisfy constraint: Member must satisfy enum value set: [SIZE, NONE]"
        ))),
        Some(_) => Err(DynamoError::serialization(
            "ReturnItemCollectionMetrics must be a string",
        )),
    }
}

/// The index a read charges alone: a GSI read, or an LSI read that fetches nothing from the
/// table (one that fetches is reported as the table's in INDEXES: the answer does not split
/// the two yet). The flag says whether the index is global.
fn index_only_read(range: &RangeRequest) -> Option<(String, bool)> {
    if let Some(index) = &range.global_index {
        return Some((index.name.clone(), true));
    }
    range
        .index
        .as_ref()
        .filter(|read| !read.fetch_base)
        .map(|read| (read.index.name.clone(), false))
}

/// ConsumedCapacity INDEXES of a read of one index only: the table's part is 0.
fn index_read_units(consumed: &mut Json, (index, global): &(String, bool), units_milli: u64) {
    let units = CapacityUnits::from_milli(units_milli).as_f64();
    consumed["Table"] = json!({ "CapacityUnits": 0.0 });
    let member = if *global {
        "GlobalSecondaryIndexes"
    } else {
        "LocalSecondaryIndexes"
    };
    consumed[member] = json!({ index: { "CapacityUnits": units } });
}

/// ConsumedCapacity INDEXES for a write to a table with secondary indexes: the units each
/// index's changes cost (`LocalSecondaryIndexes` and `GlobalSecondaryIndexes`, by name), and
/// the rest as the table's. `units` names each index by kind and number.
pub(super) fn split_index_units(
    consumed: &mut Json,
    total_milli: u64,
    indexes: &IndexDefinitions,
    units: impl Iterator<Item = (bool, u8, u64)>,
) {
    let mut local = serde_json::Map::new();
    let mut global = serde_json::Map::new();
    let mut index_milli = 0u64;
    for (is_global, number, milli) in units.filter(|(_, _, milli)| *milli > 0) {
        let name = if is_global {
            indexes
                .global
                .iter()
                .find(|index| index.number == number)
                .map(|index| index.name.clone())
        } else {
            indexes
                .local
                .iter()
                .find(|index| index.number == number)
                .map(|index| index.name.clone())
        };
        let Some(name) = name else { continue };
        index_milli += milli;
        let by_name = if is_global { &mut global } else { &mut local };
        by_name.insert(
            name,
            json!({ "CapacityUnits": CapacityUnits::from_milli(milli).as_f64() }),
        );
    }
    if local.is_empty() && global.is_empty() {
        return;
    }
    let table_milli = total_milli.saturating_sub(index_milli);
    consumed["Table"] = json!({ "CapacityUnits": CapacityUnits::from_milli(table_milli).as_f64() });
    if !local.is_empty() {
        consumed["LocalSecondaryIndexes"] = Json::Object(local);
    }
    if !global.is_empty() {
        consumed["GlobalSecondaryIndexes"] = Json::Object(global);
    }
}

impl Router {
    //
    // Each operation parses its request once, here, into a prepared request (every check it
    // needs before reading an item happens in `prepare`, before admission), and sends that to
    // the partitions, which only evaluate it. Their typed answers are rendered as DynamoDB JSON
    // here too.

    async fn single_item(&self, body: Json, operation: ItemOperation) -> Result<Json, DynamoError> {
        let name = validate::table_name(&body)?.to_string();
        let report = capacity_report(&body)?;
        let metrics = item_collection_metrics(&body)?;
        let deadline = self.deadline();
        let (key_schema, indexes, _) = self.table_with_indexes(&name, deadline).await?;
        let (key_member, is_item) = match operation {
            ItemOperation::PutItem => ("Item", true),
            _ => ("Key", false),
        };
        let key = body
            .get(key_member)
            .filter(|key| !key.is_null())
            .ok_or_else(|| DynamoError::missing_member(&key_member.to_ascii_lowercase()))?;
        // The partition key's own checks first, with their messages; then everything else.
        let hash = key_hash(&key_schema, key, is_item)?;
        let prepared =
            prepare_for_table(operation, &body, &key_schema, indexes.as_table_indexes())?;
        let estimate = match &prepared {
            PreparedRequest::Write(write) => {
                (Operation::Write, write_units(write_estimate_bytes(write)))
            }
            _ => (Operation::Read, read_units(1, consistency(&body))),
        };
        let outcome = self
            .route(&name, hash, &ItemCall::new(&prepared), estimate, deadline)
            .await;
        if prepared.is_write() {
            // Its GSI changes (if any, and if it took effect) wait in the partition's outbox.
            self.request_propagation(&name, hash);
        }
        if let Err(error) = &outcome
            && error.type_name == "TransactionConflictException"
        {
            // A transaction holds the item: if its coordinator died, the repair pass finds
            // the lock there once it is stale (transactions.rs).
            self.suspect_lock(&name, hash);
        }
        let reply = outcome?;
        let mut response = render_result(&reply.result, false)?;
        if report != CapacityReport::None {
            let total = units_of(&reply, estimate.0);
            response["ConsumedCapacity"] = consumed_capacity_json(&name, total, report);
            if report == CapacityReport::Indexes {
                let consumed = &mut response["ConsumedCapacity"];
                match &reply.result {
                    ItemResult::WriteInCollection {
                        index_write_units_milli,
                        ..
                    } => split_index_units(
                        consumed,
                        total,
                        &indexes,
                        (0u8..)
                            .zip(index_write_units_milli)
                            .map(|(number, milli)| (false, number, *milli)),
                    ),
                    ItemResult::WriteWithIndexes {
                        index_write_units_milli,
                        ..
                    } => split_index_units(
                        consumed,
                        total,
                        &indexes,
                        index_write_units_milli
                            .iter()
                            .map(|units| (units.global, units.number, units.milli)),
                    ),
                    _ => {}
                }
            }
        }
        let collection = match &reply.result {
            ItemResult::WriteInCollection {
                collection_key,
                collection_bytes,
                ..
            } => Some((collection_key, *collection_bytes)),
            ItemResult::WriteWithIndexes {
                collection: Some(collection),
                ..
            } => Some((&collection.key, collection.bytes)),
            _ => None,
        };
        if metrics && let Some((key, bytes)) = collection {
            response["ItemCollectionMetrics"] = json!({
                "ItemCollectionKey": item_json(key)?,
                "SizeEstimateRangeGB": shoal_model::index::size_estimate_range_gb(bytes),
            });
        }
        Ok(response)
    }

    pub async fn put_item(&self, body: Json) -> Result<Json, DynamoError> {
        self.single_item(body, ItemOperation::PutItem).await
    }

    pub async fn get_item(&self, body: Json) -> Result<Json, DynamoError> {
        self.single_item(body, ItemOperation::GetItem).await
    }

    pub async fn update_item(&self, body: Json) -> Result<Json, DynamoError> {
        self.single_item(body, ItemOperation::UpdateItem).await
    }

    pub async fn delete_item(&self, body: Json) -> Result<Json, DynamoError> {
        self.single_item(body, ItemOperation::DeleteItem).await
    }

    /// Query: one partition key, so one partition; its page and LastEvaluatedKey pass through.
    pub async fn query(&self, body: Json) -> Result<Json, DynamoError> {
        let name = validate::table_name(&body)?.to_string();
        let report = capacity_report(&body)?;
        let deadline = self.deadline();
        let (key_schema, indexes, _) = self.table_with_indexes(&name, deadline).await?;
        let prepared = prepare_for_table(
            ItemOperation::Query,
            &body,
            &key_schema,
            indexes.as_table_indexes(),
        )?;
        let PreparedRequest::Range(range) = &prepared else {
            return Err(DynamoError::internal(
                "Internal server error (a Query prepared as something else)",
            ));
        };
        indexes.check_readable(range)?;
        if range.global_index.is_some() && range.consistent {
            self.drain_outboxes(&name, deadline).await?;
        }
        let hash = query_hash(range)?;
        let count_only = range.count_only;
        let index_only = index_only_read(range);
        let global = range.global_index.as_ref().map(|index| index.name.clone());
        let estimate = (Operation::Read, read_units(1, consistency(&body)));
        let reply = self
            .route_in(
                &name,
                global.as_deref(),
                hash,
                &ItemCall::new(&prepared),
                estimate,
                deadline,
            )
            .await?;
        let mut response = render_result(&reply.result, count_only)?;
        if report != CapacityReport::None {
            response["ConsumedCapacity"] =
                consumed_capacity_json(&name, reply.read_units_milli, report);
            if report == CapacityReport::Indexes
                && let Some(index) = &index_only
            {
                index_read_units(
                    &mut response["ConsumedCapacity"],
                    index,
                    reply.read_units_milli,
                );
            }
        }
        Ok(response)
    }

    /// Scan: one page fills across partitions, as DynamoDB's does. It walks the partitions
    /// overlapping the segment in hash order from where the page starts, each asked for what
    /// is left of the page (Limit, and the 1 MB of data read). The page ends where a partition
    /// stops inside its range (its LastEvaluatedKey, the key of the last item evaluated, is the
    /// page's) or at the end of the segment.
    pub async fn scan(&self, body: Json) -> Result<Json, DynamoError> {
        let name = validate::table_name(&body)?.to_string();
        let report = capacity_report(&body)?;
        let deadline = self.deadline();
        let (key_schema, indexes, _) = self.table_with_indexes(&name, deadline).await?;
        let (segment, segment_numbers) = scan_segment(&body)?;
        let prepared = prepare_for_table(
            ItemOperation::Scan,
            &body,
            &key_schema,
            indexes.as_table_indexes(),
        )?;
        let PreparedRequest::Range(range) = prepared else {
            return Err(DynamoError::internal(
                "Internal server error (a Scan prepared as something else)",
            ));
        };
        indexes.check_readable(&range)?;
        if range.global_index.is_some() && range.consistent {
            self.drain_outboxes(&name, deadline).await?;
        }
        let mut resume_hash = scan_start_hash(&body, &range, segment, segment_numbers)?;
        // A GSI Scan walks the index's partitions (the map is read now so that an index being
        // deleted is refused before anything is read).
        let global = range.global_index.as_ref().map(|index| index.name.clone());
        if let Some(index) = &global {
            self.route_map(&name, Some(index), deadline).await?;
        }
        let mut items: Vec<Json> = Vec::new();
        let mut count = 0u64;
        let mut scanned = 0u64;
        let mut scanned_bytes = 0u64;
        let mut consumed_milli = 0u64;
        let mut last_evaluated: Option<Json> = None;
        // Each step moves past the partition that answered, whose range comes with its answer:
        // the map may change under the Scan (a split routes children for a partition it started
        // with), and going on after the range the Scan started with would skip a child. The
        // walk ends within the hash space; the bound only guards against a loop.
        for _step in 0..SCAN_PARTITION_STEPS_MAX {
            let mut part = range.clone();
            part.limit = range
                .limit
                .map(|limit| limit.saturating_sub(usize::try_from(scanned).unwrap_or(limit)));
            part.page_bytes_max = range.page_bytes_max.saturating_sub(scanned_bytes);
            // Past the first step, nothing below the hash this step starts at is read again,
            // whatever partition answers (a replica routed with an older map holds more than
            // the range left). Table and GSI keys start with their hash; an LSI's do not.
            if resume_hash > 0 && part.index.is_none() {
                let floor = resume_hash.to_be_bytes().to_vec();
                let below_floor = match &part.lower {
                    Bound::Unbounded => true,
                    Bound::Included(key) | Bound::Excluded(key) => *key < floor,
                };
                if below_floor {
                    part.lower = Bound::Included(floor);
                }
            }
            let reply = self
                .route_in(
                    &name,
                    global.as_deref(),
                    resume_hash,
                    &ItemCall::new(&PreparedRequest::Range(part)),
                    (Operation::Read, read_units(1, consistency(&body))),
                    deadline,
                )
                .await?;
            consumed_milli = consumed_milli.saturating_add(reply.read_units_milli);
            let ItemResult::Range {
                items: page,
                count: page_count,
                scanned_count,
                scanned_bytes: page_bytes,
                last_evaluated_key,
            } = reply.result
            else {
                return Err(DynamoError::internal(
                    "Internal server error (a partition answered a Scan with another result)",
                ));
            };
            let answered_last = reply.range_last;
            count += page_count;
            scanned += scanned_count;
            scanned_bytes = scanned_bytes.saturating_add(page_bytes);
            for item in &page {
                items.push(item_json(item)?);
            }
            if let Some(key) = last_evaluated_key {
                last_evaluated = Some(item_json(&key)?);
                break;
            }
            match answered_last
                .checked_add(1)
                .filter(|first| *first <= segment.last)
            {
                None => break,
                Some(first) => resume_hash = first,
            }
        }
        let mut response = json!({ "Count": count, "ScannedCount": scanned });
        if !range.count_only {
            response["Items"] = Json::Array(items);
        }
        if let Some(key) = last_evaluated {
            response["LastEvaluatedKey"] = key;
        }
        if report != CapacityReport::None {
            // DynamoDB rounds a page's reads up once, over all it read; each partition's
            // answer was rounded on its own (what admission settled), which would report up
            // to a unit per partition too many.
            let page_milli = read_units(scanned_bytes, consistency(&body)).as_milli();
            let units = page_milli.min(consumed_milli);
            response["ConsumedCapacity"] = consumed_capacity_json(&name, units, report);
            if report == CapacityReport::Indexes
                && let Some(index) = index_only_read(&range)
            {
                index_read_units(&mut response["ConsumedCapacity"], &index, units);
            }
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::AttributeValue;
    use shoal_model::key::KeyType;
    use shoal_model::request::prepare;

    #[test]
    fn keys_hash_by_their_partition_key_only() {
        let schema = KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number);
        let a = key_hash(&schema, &json!({"pk": {"S": "a"}, "sk": {"N": "1"}}), false).unwrap();
        let b = key_hash(&schema, &json!({"pk": {"S": "a"}, "sk": {"N": "2"}}), false).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a,
            partition_hash(&AttributeValue::String("a".to_string())).unwrap()
        );
        let missing = key_hash(&schema, &json!({"x": {"S": "a"}}), true).unwrap_err();
        assert_eq!(missing.type_name, "ValidationException");
        assert_eq!(
            key_hash(&schema, &json!({"pk": {"N": "1"}}), false)
                .unwrap_err()
                .message,
            "The provided key element does not match the schema"
        );
    }

    #[test]
    fn query_routes_by_the_key_condition() {
        let schema = KeySchema::with_sort("pk", KeyType::String, "sk", KeyType::Number);
        let hash_of = |body: &Json| {
            let Ok(PreparedRequest::Range(range)) = prepare(ItemOperation::Query, body, &schema)
            else {
                panic!("not a query: {body}");
            };
            query_hash(&range).unwrap()
        };
        let user = partition_hash(&AttributeValue::String("user".to_string())).unwrap();
        for forward in [true, false] {
            let body = json!({
                "KeyConditionExpression": "#p = :v AND sk > :s",
                "ExpressionAttributeNames": {"#p": "pk"},
                "ExpressionAttributeValues": {":v": {"S": "user"}, ":s": {"N": "3"}},
                "ScanIndexForward": forward,
                "ExclusiveStartKey": {"pk": {"S": "user"}, "sk": {"N": "9"}},
            });
            assert_eq!(hash_of(&body), user);
        }
        let legacy = json!({"KeyConditions": {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "u2"}]}}});
        assert_eq!(
            hash_of(&legacy),
            partition_hash(&AttributeValue::String("u2".to_string())).unwrap()
        );
    }

    #[test]
    fn scan_segments_and_start_keys() {
        assert_eq!(scan_segment(&json!({})).unwrap(), (HashRange::ALL, None));
        assert_eq!(
            scan_segment(&json!({"Segment": 1, "TotalSegments": 4})).unwrap(),
            (even_range(1, 4), Some((1, 4)))
        );
        assert!(scan_segment(&json!({"Segment": 4, "TotalSegments": 4})).is_err());
        assert!(scan_segment(&json!({"Segment": 0})).is_err());
        let schema = KeySchema::partition_only("pk", KeyType::String);
        let start = |body: &Json| {
            let Ok(PreparedRequest::Range(range)) = prepare(ItemOperation::Scan, body, &schema)
            else {
                panic!("not a scan: {body}");
            };
            let (segment, numbers) = scan_segment(body).unwrap();
            scan_start_hash(body, &range, segment, numbers)
        };
        let k = partition_hash(&AttributeValue::String("k".to_string())).unwrap();
        assert_eq!(start(&json!({})).unwrap(), 0);
        assert_eq!(
            start(&json!({"ExclusiveStartKey": {"pk": {"S": "k"}}})).unwrap(),
            k
        );
        // A start key of another segment is refused, as DynamoDB refuses it.
        let total = 4u64;
        let own = u64::try_from((u128::from(k) * u128::from(total)) >> 64).unwrap();
        let other = (own + 1) % total;
        assert_eq!(
            start(&json!({"ExclusiveStartKey": {"pk": {"S": "k"}}, "Segment": own, "TotalSegments": total}))
                .unwrap(),
            k
        );
        assert_eq!(
            start(&json!({"ExclusiveStartKey": {"pk": {"S": "k"}}, "Segment": other, "TotalSegments": total}))
                .unwrap_err()
                .message,
            format!("The provided starting key is invalid: Invalid ExclusiveStartKey. Please use ExclusiveStartKey with correct Segment. TotalSegments: {total} Segment: {other}")
        );
    }
}
