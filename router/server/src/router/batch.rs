//! BatchGetItem and BatchWriteItem: requests grouped per partition and sent concurrently.

use super::*;
use shoal_model::Item;
use shoal_model::encoding::decode_item;
use shoal_model::json::item_to_json;

/// The most item data one BatchGetItem answers: "A single operation can retrieve up to 16 MB
/// of data ... BatchGetItem returns a partial result if the response size limit is exceeded",
/// the rest in UnprocessedKeys (API reference, BatchGetItem). Sizes are DynamoDB's item sizes.
const BATCH_GET_RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A batch with no table in RequestItems: the map's length constraint, as DynamoDB words it.
const REQUEST_ITEMS_EMPTY: &str = "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1";

impl Router {
    /// BatchGetItem: keys grouped per partition, one BatchGet per group, the groups sent
    /// concurrently ([`BATCH_PARTITIONS_IN_FLIGHT_MAX`] at a time); the keys of a group that
    /// could not be read come back in UnprocessedKeys.
    pub async fn batch_get_item(&self, body: Json) -> Result<Json, DynamoError> {
        let report = capacity_report(&body)?;
        let request_items = body
            .get("RequestItems")
            .and_then(Json::as_object)
            .ok_or_else(|| DynamoError::missing_member("requestItems"))?;
        if request_items.is_empty() {
            return Err(DynamoError::validation(REQUEST_ITEMS_EMPTY));
        }
        let total: usize = request_items
            .values()
            .map(|table| {
                table
                    .get("Keys")
                    .and_then(Json::as_array)
                    .map_or(0, Vec::len)
            })
            .sum();
        if total > BATCH_GET_KEYS_MAX {
            return Err(DynamoError::validation(
                "Too many items requested for the BatchGetItem call",
            ));
        }
        let deadline = self.deadline();
        // Every table and key is checked before anything is read, as DynamoDB checks the whole
        // request first.
        let mut tables: Vec<(&String, &Json)> = Vec::with_capacity(request_items.len());
        let mut groups = Vec::new();
        let mut calls = Vec::new();
        for (name, table_request) in request_items {
            validate::check_table_name(name)?;
            let keys = table_request
                .get("Keys")
                .and_then(Json::as_array)
                .filter(|keys| !keys.is_empty())
                .ok_or_else(|| {
                    DynamoError::validation(format!(
                        "1 validation error detected: Value at 'requestItems.{name}.member.keys' failed to satisfy constraint: Member must have length greater than or equal to 1"
                    ))
                })?;
            let (key_schema, indexes, map) = self.table_with_indexes(name, deadline).await?;
            for key in keys {
                key_hash(&key_schema, key, false)?;
            }
            let PreparedRequest::BatchGet(gets) = prepare_for_table(
                ItemOperation::BatchGet,
                table_request,
                &key_schema,
                indexes.as_table_indexes(),
            )?
            else {
                return Err(DynamoError::internal(
                    "Internal server error (a BatchGetItem prepared as something else)",
                ));
            };
            let per_key = read_units(1, consistency(table_request));
            let mut by_partition: BTreeMap<usize, (u64, Vec<Json>, Vec<GetRequest>)> =
                BTreeMap::new();
            for (key, get) in keys.iter().zip(gets) {
                let hash = storage_key_hash(&get.storage_key).ok_or_else(|| {
                    DynamoError::validation(shoal_model::messages::KEY_DOES_NOT_MATCH_SCHEMA)
                })?;
                let group = by_partition
                    .entry(map.index_of(hash))
                    .or_insert_with(|| (hash, Vec::new(), Vec::new()));
                group.1.push(key.clone());
                group.2.push(get);
            }
            for (hash, members, gets) in by_partition.into_values() {
                let keys = u64::try_from(gets.len()).unwrap_or(u64::MAX);
                let estimate = CapacityUnits::from_milli(per_key.as_milli().saturating_mul(keys));
                calls.push((ItemCall::new(&PreparedRequest::BatchGet(gets)), estimate));
                groups.push(BatchGroup {
                    table: tables.len(),
                    hash,
                    members,
                });
            }
            tables.push((name, table_request));
        }
        let results = join_bounded(
            groups
                .iter()
                .zip(&calls)
                .map(|(group, (call, estimate))| {
                    let (name, _) = tables[group.table];
                    self.route(
                        name,
                        group.hash,
                        call,
                        (Operation::Read, *estimate),
                        deadline,
                    )
                })
                .collect(),
            BATCH_PARTITIONS_IN_FLIGHT_MAX,
        )
        .await;
        let outcomes = settle_batch(
            tables.len(),
            groups,
            results,
            Operation::Read,
            BATCH_GET_RESPONSE_BYTES_MAX,
        )?;
        let mut responses = Map::new();
        let mut unprocessed = Map::new();
        let mut capacity = Vec::new();
        for ((name, table_request), outcome) in tables.into_iter().zip(outcomes) {
            responses.insert(name.clone(), Json::Array(outcome.items));
            if !outcome.unprocessed.is_empty() {
                let mut request = table_request.as_object().cloned().unwrap_or_default();
                request.insert("Keys".to_string(), Json::Array(outcome.unprocessed));
                unprocessed.insert(name.clone(), Json::Object(request));
            }
            if report != CapacityReport::None {
                capacity.push(consumed_capacity_json(name, outcome.units_milli, report));
            }
        }
        let mut response = json!({ "Responses": responses, "UnprocessedKeys": unprocessed });
        if report != CapacityReport::None {
            response["ConsumedCapacity"] = Json::Array(capacity);
        }
        Ok(response)
    }

    /// BatchWriteItem: requests grouped per partition, one BatchWrite per group, the groups
    /// sent concurrently ([`BATCH_PARTITIONS_IN_FLIGHT_MAX`] at a time); a group that failed,
    /// or whose outcome is unknown, comes back in UnprocessedItems (puts and deletes without
    /// conditions are safe to apply twice).
    pub async fn batch_write_item(&self, body: Json) -> Result<Json, DynamoError> {
        let report = capacity_report(&body)?;
        let metrics = super::items::item_collection_metrics(&body)?;
        let request_items = body
            .get("RequestItems")
            .and_then(Json::as_object)
            .ok_or_else(|| DynamoError::missing_member("requestItems"))?;
        if request_items.is_empty() {
            return Err(DynamoError::validation(REQUEST_ITEMS_EMPTY));
        }
        let total: usize = request_items
            .values()
            .map(|requests| requests.as_array().map_or(0, Vec::len))
            .sum();
        if total > BATCH_WRITE_REQUESTS_MAX {
            return Err(DynamoError::validation(format!(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to {BATCH_WRITE_REQUESTS_MAX}, Member must have length greater than or equal to 1]"
            )));
        }
        let deadline = self.deadline();
        // Every request of every table is checked before anything is written: DynamoDB
        // refuses an invalid batch as a whole, and a group written before a later group failed
        // its checks could not be taken back.
        let mut tables: Vec<&String> = Vec::with_capacity(request_items.len());
        let mut groups = Vec::new();
        let mut calls = Vec::new();
        for (name, requests) in request_items {
            validate::check_table_name(name)?;
            let requests = requests.as_array().filter(|r| !r.is_empty()).ok_or_else(|| {
                DynamoError::validation(format!(
                    "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to {BATCH_WRITE_REQUESTS_MAX}, Member must have length greater than or equal to 1]"
                ))
            })?;
            let (key_schema, indexes, map) = self.table_with_indexes(name, deadline).await?;
            // The partition key's own checks first, with their messages, as for single items.
            for request in requests {
                let (key, is_item) = match (request.get("PutRequest"), request.get("DeleteRequest"))
                {
                    (Some(put), None) => (put.get("Item"), true),
                    (None, Some(delete)) => (delete.get("Key"), false),
                    _ => {
                        return Err(DynamoError::validation(
                            "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
                        ));
                    }
                };
                let key = key.ok_or_else(|| {
                    DynamoError::validation(shoal_model::messages::KEY_DOES_NOT_MATCH_SCHEMA)
                })?;
                key_hash(&key_schema, key, is_item)?;
            }
            let list = Json::Array(requests.clone());
            let PreparedRequest::BatchWrite(writes) = prepare_for_table(
                ItemOperation::BatchWrite,
                &list,
                &key_schema,
                indexes.as_table_indexes(),
            )?
            else {
                return Err(DynamoError::internal(
                    "Internal server error (a BatchWriteItem prepared as something else)",
                ));
            };
            let mut by_partition: BTreeMap<usize, (u64, Vec<Json>, Vec<WriteRequest>)> =
                BTreeMap::new();
            for (request, write) in requests.iter().zip(writes) {
                let hash = storage_key_hash(&write.storage_key).ok_or_else(|| {
                    DynamoError::validation(shoal_model::messages::KEY_DOES_NOT_MATCH_SCHEMA)
                })?;
                let group = by_partition
                    .entry(map.index_of(hash))
                    .or_insert_with(|| (hash, Vec::new(), Vec::new()));
                group.1.push(request.clone());
                group.2.push(write);
            }
            for (hash, members, writes) in by_partition.into_values() {
                let bytes = writes
                    .iter()
                    .map(write_estimate_bytes)
                    .fold(0u64, u64::saturating_add);
                calls.push((
                    ItemCall::new(&PreparedRequest::BatchWrite(writes)),
                    write_units(bytes),
                ));
                groups.push(BatchGroup {
                    table: tables.len(),
                    hash,
                    members,
                });
            }
            tables.push(name);
        }
        let results = join_bounded(
            groups
                .iter()
                .zip(&calls)
                .map(|(group, (call, estimate))| {
                    self.route(
                        tables[group.table],
                        group.hash,
                        call,
                        (Operation::Write, *estimate),
                        deadline,
                    )
                })
                .collect(),
            BATCH_PARTITIONS_IN_FLIGHT_MAX,
        )
        .await;
        for group in &groups {
            self.request_propagation(tables[group.table], group.hash);
        }
        let outcomes = settle_batch(tables.len(), groups, results, Operation::Write, usize::MAX)?;
        let mut unprocessed = Map::new();
        let mut capacity = Vec::new();
        let mut collection_metrics = Map::new();
        for (name, outcome) in tables.into_iter().zip(outcomes) {
            if !outcome.unprocessed.is_empty() {
                unprocessed.insert(name.clone(), Json::Array(outcome.unprocessed));
            }
            if report != CapacityReport::None {
                capacity.push(consumed_capacity_json(name, outcome.units_milli, report));
            }
            if metrics && !outcome.collections.is_empty() {
                let list: Vec<Json> = outcome
                    .collections
                    .into_iter()
                    .map(|(key, bytes)| {
                        json!({
                            "ItemCollectionKey": key,
                            "SizeEstimateRangeGB": shoal_model::index::size_estimate_range_gb(bytes),
                        })
                    })
                    .collect();
                collection_metrics.insert(name.clone(), Json::Array(list));
            }
        }
        let mut response = json!({ "UnprocessedItems": unprocessed });
        if !collection_metrics.is_empty() {
            response["ItemCollectionMetrics"] = Json::Object(collection_metrics);
        }
        if report != CapacityReport::None {
            response["ConsumedCapacity"] = Json::Array(capacity);
        }
        Ok(response)
    }
}

/// One partition's share of a batch: its table (the index in the batch's table order), a hash
/// that routes to the partition, and the keys or write requests for it, in request order.
#[derive(Clone, Debug, PartialEq)]
struct BatchGroup {
    table: usize,
    hash: u64,
    members: Vec<Json>,
}

/// What one table of a batch came to.
#[derive(Clone, Debug, Default, PartialEq)]
struct TableOutcome {
    /// The items its partitions returned (BatchGetItem), group after group.
    items: Vec<Json>,
    /// The keys or requests of its groups that failed for capacity or availability.
    unprocessed: Vec<Json>,
    /// The capacity its served groups consumed, in thousandths of a unit.
    units_milli: u64,
    /// BatchWriteItem to a table with local indexes: the collections written, with their sizes.
    collections: Vec<(Json, u64)>,
}

/// Folds the answers of a batch's groups (in the order of `groups`, which the answers follow)
/// into one outcome per table, by DynamoDB's rules, and with the answer a walk of the groups one
/// after another gave before they were sent concurrently: a group refused for capacity or
/// availability goes back as unprocessed; any other error fails the whole call, the first such
/// error in group order (the groups after it were sent too, where the walk stopped: the request
/// checks run before anything is sent, so such an error is rare, and a batch is not atomic
/// either way); and when no group was served and some were throttled, the call fails with the
/// last throttling error, as DynamoDB answers a batch of which nothing could be processed for
/// lack of throughput with ProvisionedThroughputExceededException.
///
/// Read items are answered up to `response_bytes_max`; past it, the keys of the items left out
/// (and every key of the groups after) go back as unprocessed, as DynamoDB's 16 MB limit does.
fn settle_batch(
    table_count: usize,
    groups: Vec<BatchGroup>,
    results: Vec<Result<Reply, DynamoError>>,
    operation: Operation,
    response_bytes_max: usize,
) -> Result<Vec<TableOutcome>, DynamoError> {
    let mut outcomes = vec![TableOutcome::default(); table_count];
    let mut response_bytes = 0usize;
    let mut processed_any = false;
    let mut throttled: Option<DynamoError> = None;
    for (group, result) in groups.into_iter().zip(results) {
        let Some(outcome) = outcomes.get_mut(group.table) else {
            continue;
        };
        match result {
            Ok(reply) => {
                processed_any = true;
                outcome.units_milli = outcome
                    .units_milli
                    .saturating_add(units_of(&reply, operation));
                if let ItemResult::BatchWriteInCollections { collections }
                | ItemResult::BatchWriteWithIndexes { collections, .. } = &reply.result
                {
                    for collection in collections {
                        outcome.collections.push((
                            item_to_json(&decode_batch_item(&collection.key)?),
                            collection.bytes,
                        ));
                    }
                }
                if let ItemResult::BatchGet { items } = &reply.result {
                    let mut decoded = Vec::with_capacity(items.len());
                    for bytes in items {
                        decoded.push(decode_batch_item(bytes)?);
                    }
                    let answered = answer_within_limit(
                        &decoded,
                        &group.members,
                        &mut response_bytes,
                        response_bytes_max,
                    );
                    match answered {
                        Some(left_out) => {
                            let kept = decoded.len() - left_out.len();
                            outcome
                                .items
                                .extend(decoded[..kept].iter().map(item_to_json));
                            outcome.unprocessed.extend(left_out);
                        }
                        None => outcome.unprocessed.extend(group.members),
                    }
                }
            }
            Err(error) if is_retryable_for_batch(&error) => {
                if is_throttle(&error) {
                    throttled = Some(error);
                }
                outcome.unprocessed.extend(group.members);
            }
            Err(error) => return Err(error),
        }
    }
    if !processed_any && let Some(error) = throttled {
        return Err(error);
    }
    Ok(outcomes)
}

fn decode_batch_item(bytes: &[u8]) -> Result<Item, DynamoError> {
    decode_item(bytes).map_err(|error| {
        DynamoError::internal(format!(
            "Internal server error (a partition answered an item that does not decode: {error})"
        ))
    })
}

/// Fits one group's items into what is left of the response limit. Returns the keys of the
/// items left out (empty when all fit), or `None` when the group is left out whole: its items
/// cannot all be matched to their keys (a projection without the key attributes), so the whole
/// group goes back as unprocessed. A group is never left out when nothing was answered before
/// it, so a client that retries UnprocessedKeys always makes progress.
fn answer_within_limit(
    items: &[Item],
    members: &[Json],
    response_bytes: &mut usize,
    response_bytes_max: usize,
) -> Option<Vec<Json>> {
    let mut kept = 0;
    let mut kept_bytes = 0usize;
    for item in items {
        let size = item_size_bytes(item);
        if response_bytes
            .saturating_add(kept_bytes)
            .saturating_add(size)
            > response_bytes_max
        {
            break;
        }
        kept_bytes += size;
        kept += 1;
    }
    if kept == items.len() {
        *response_bytes = response_bytes.saturating_add(kept_bytes);
        return Some(Vec::new());
    }
    // The limit is reached: nothing after this group is answered.
    let nothing_answered_yet = *response_bytes == 0;
    let left_out: Option<Vec<Json>> = items[kept..]
        .iter()
        .map(|item| key_of_item(item, members))
        .collect();
    match left_out {
        Some(keys) => {
            *response_bytes = response_bytes_max;
            Some(keys)
        }
        None if nothing_answered_yet => {
            *response_bytes = response_bytes_max;
            Some(Vec::new())
        }
        None => {
            *response_bytes = response_bytes_max;
            None
        }
    }
}

/// The requested key (one of `members`) whose attributes `item` carries.
fn key_of_item(item: &Item, members: &[Json]) -> Option<Json> {
    members
        .iter()
        .find(|member| {
            member.as_object().is_some_and(|key| {
                key.iter().all(|(name, value)| {
                    value_from_json(value).is_ok_and(|value| item.get(name) == Some(&value))
                })
            })
        })
        .cloned()
}

fn is_throttle(error: &DynamoError) -> bool {
    error.type_name == "ProvisionedThroughputExceededException"
        || error.type_name == "ThrottlingException"
}

/// Batch groups that failed for reasons of capacity or availability go back to the client as
/// unprocessed; request errors (validation) fail the whole call, as in DynamoDB.
/// A group refused for one of these comes back in UnprocessedItems/UnprocessedKeys: a
/// throttle, an internal failure (the API reference's two cases), or an item a transaction
/// holds (its partition's share is refused whole; the client's retry loop waits it out, as it
/// would a throttle, instead of losing the whole batch).
fn is_retryable_for_batch(error: &DynamoError) -> bool {
    is_throttle(error)
        || error.type_name == crate::error::INTERNAL_SERVER_ERROR
        || error.type_name == "TransactionConflictException"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(table: usize, keys: &[&str]) -> BatchGroup {
        BatchGroup {
            table,
            hash: 0,
            members: keys.iter().map(|key| json!({"pk": {"S": key}})).collect(),
        }
    }

    fn served(keys: &[&str], read_units_milli: u64) -> Result<Reply, DynamoError> {
        let items = keys
            .iter()
            .map(|key| {
                let item = json!({"pk": {"S": key}, "v": {"N": "1"}});
                shoal_model::encoding::encode_item(
                    &shoal_model::json::item_from_json(&item).unwrap(),
                )
            })
            .collect();
        Ok(Reply {
            result: ItemResult::BatchGet { items },
            read_units_milli,
            write_units_milli: 0,
            leader: 1,
            range_last: u64::MAX,
        })
    }

    fn unavailable() -> Result<Reply, DynamoError> {
        Err(DynamoError::internal(
            "Internal server error (partition 3: no leader)",
        ))
    }

    fn throttled(message: &str) -> Result<Reply, DynamoError> {
        Err(DynamoError::new(
            "ProvisionedThroughputExceededException",
            message,
        ))
    }

    fn keys_of(members: &[Json]) -> Vec<&str> {
        members
            .iter()
            .map(|member| member["pk"]["S"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn a_batch_over_many_partitions_returns_every_item_in_group_order() {
        // Two tables: table 0 over three partitions, table 1 over two.
        let groups = vec![
            group(0, &["a", "b"]),
            group(0, &["c"]),
            group(0, &["d", "e"]),
            group(1, &["x"]),
            group(1, &["y", "z"]),
        ];
        let results = vec![
            served(&["a", "b"], 1_000),
            served(&["c"], 500),
            served(&["d", "e"], 1_000),
            served(&["x"], 500),
            served(&["y", "z"], 1_000),
        ];
        let outcomes = settle_batch(2, groups, results, Operation::Read, usize::MAX).unwrap();
        assert_eq!(keys_of(&outcomes[0].items), ["a", "b", "c", "d", "e"]);
        assert_eq!(keys_of(&outcomes[1].items), ["x", "y", "z"]);
        assert!(
            outcomes
                .iter()
                .all(|outcome| outcome.unprocessed.is_empty())
        );
        assert_eq!(outcomes[0].units_milli, 2_500);
        assert_eq!(outcomes[1].units_milli, 1_500);
    }

    #[test]
    fn an_unavailable_partition_leaves_only_its_own_keys_unprocessed() {
        let groups = vec![
            group(0, &["a", "b"]),
            group(0, &["c", "d"]),
            group(0, &["e"]),
            group(1, &["x"]),
        ];
        let results = vec![
            served(&["a", "b"], 1_000),
            unavailable(),
            served(&["e"], 500),
            throttled("table 1 is over its capacity"),
        ];
        let outcomes = settle_batch(2, groups, results, Operation::Read, usize::MAX).unwrap();
        assert_eq!(keys_of(&outcomes[0].items), ["a", "b", "e"]);
        assert_eq!(keys_of(&outcomes[0].unprocessed), ["c", "d"]);
        // Capacity counts the groups served only.
        assert_eq!(outcomes[0].units_milli, 1_500);
        assert!(outcomes[1].items.is_empty());
        assert_eq!(keys_of(&outcomes[1].unprocessed), ["x"]);
        assert_eq!(outcomes[1].units_milli, 0);
    }

    #[test]
    fn a_partition_holding_a_transactions_item_leaves_its_keys_unprocessed() {
        let groups = vec![group(0, &["a"]), group(0, &["b", "c"])];
        let results = vec![
            served(&["a"], 1_000),
            Err(DynamoError::new(
                "TransactionConflictException",
                shoal_model::transaction::TRANSACTION_CONFLICT_MESSAGE,
            )),
        ];
        let outcomes = settle_batch(1, groups, results, Operation::Write, usize::MAX).unwrap();
        assert_eq!(keys_of(&outcomes[0].unprocessed), ["b", "c"]);
    }

    #[test]
    fn a_batch_of_which_nothing_was_served_for_throughput_fails_with_the_last_throttle() {
        let groups = vec![group(0, &["a"]), group(0, &["b"]), group(1, &["x"])];
        let results = vec![throttled("first"), unavailable(), throttled("last")];
        let error = settle_batch(2, groups, results, Operation::Read, usize::MAX).unwrap_err();
        assert_eq!(error.type_name, "ProvisionedThroughputExceededException");
        assert_eq!(error.message, "last");
        // Unavailable only: everything comes back unprocessed, and the call succeeds.
        let groups = vec![group(0, &["a"]), group(0, &["b"])];
        let outcomes = settle_batch(
            1,
            groups,
            vec![unavailable(), unavailable()],
            Operation::Read,
            usize::MAX,
        )
        .unwrap();
        assert_eq!(keys_of(&outcomes[0].unprocessed), ["a", "b"]);
    }

    #[test]
    fn a_request_error_fails_the_batch_and_the_first_in_group_order_wins() {
        let groups = vec![
            group(0, &["a"]),
            group(0, &["b"]),
            group(0, &["c"]),
            group(1, &["x"]),
        ];
        let results = vec![
            throttled("capacity"),
            served(&["b"], 500),
            Err(DynamoError::validation("first")),
            Err(DynamoError::new(crate::error::RESOURCE_NOT_FOUND, "second")),
        ];
        let error = settle_batch(2, groups, results, Operation::Read, usize::MAX).unwrap_err();
        assert_eq!(error, DynamoError::validation("first"));
    }

    #[test]
    fn a_batch_write_sums_write_units_and_returns_its_unprocessed_requests() {
        let put = |key: &str| json!({"PutRequest": {"Item": {"pk": {"S": key}}}});
        let groups = vec![
            BatchGroup {
                table: 0,
                hash: 1,
                members: vec![put("a"), put("b")],
            },
            BatchGroup {
                table: 0,
                hash: 2,
                members: vec![put("c")],
            },
        ];
        let written = Reply {
            result: ItemResult::BatchWrite,
            read_units_milli: 0,
            write_units_milli: 2_000,
            leader: 2,
            range_last: u64::MAX,
        };
        let outcomes = settle_batch(
            1,
            groups,
            vec![Ok(written), unavailable()],
            Operation::Write,
            usize::MAX,
        )
        .unwrap();
        assert!(outcomes[0].items.is_empty());
        assert_eq!(outcomes[0].unprocessed, vec![put("c")]);
        assert_eq!(outcomes[0].units_milli, 2_000);
    }

    #[test]
    fn a_read_past_the_response_limit_hands_back_the_keys_left_out() {
        // Each served item is about 40 bytes; a limit of 100 answers two of them.
        let groups = vec![group(0, &["a", "b"]), group(0, &["c"]), group(1, &["x"])];
        let results = vec![
            served(&["a", "b"], 1_000),
            served(&["c"], 500),
            served(&["x"], 500),
        ];
        let item_bytes = item_size_bytes(
            &shoal_model::json::item_from_json(&json!({"pk": {"S": "a"}, "v": {"N": "1"}}))
                .unwrap(),
        );
        let limit = item_bytes * 2 + item_bytes / 2;
        let outcomes = settle_batch(2, groups, results, Operation::Read, limit).unwrap();
        assert_eq!(keys_of(&outcomes[0].items), ["a", "b"]);
        assert_eq!(keys_of(&outcomes[0].unprocessed), ["c"]);
        assert!(outcomes[1].items.is_empty());
        assert_eq!(keys_of(&outcomes[1].unprocessed), ["x"]);
        // The capacity of every served group is still counted.
        assert_eq!(outcomes[0].units_milli, 1_500);
    }

    #[test]
    fn the_limit_splits_a_group_and_never_answers_nothing() {
        let item_bytes = item_size_bytes(
            &shoal_model::json::item_from_json(&json!({"pk": {"S": "a"}, "v": {"N": "1"}}))
                .unwrap(),
        );
        let groups = vec![group(0, &["a", "b", "c"])];
        let outcomes = settle_batch(
            1,
            groups,
            vec![served(&["a", "b", "c"], 1_500)],
            Operation::Read,
            item_bytes,
        )
        .unwrap();
        assert_eq!(keys_of(&outcomes[0].items), ["a"]);
        assert_eq!(keys_of(&outcomes[0].unprocessed), ["b", "c"]);
    }
}
