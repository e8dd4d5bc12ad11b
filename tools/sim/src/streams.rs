//! DynamoDB Streams under the simulator (`--streams`): every base group gets a stream
//! (NEW_AND_OLD_IMAGES) through its log before any client writes, hosts offer every replica a
//! stream maintenance step with a short shard rollover, and the checkers read every replica's
//! stream from its applied tree each time its applied slot moves:
//!
//! - replicas that applied through a slot hold exactly the same shard and stream records
//!   (positions and bytes) up to it, apart from a prefix their trim record says is trimmed;
//! - no record is positioned after the replica's applied slot (a record seen before its write
//!   committed), records' positions increase across the concatenation of the shards, and each
//!   record lies after its shard opened and before its successor did;
//! - at the end, per item, the records chain (each old image is the previous new image, the
//!   event name follows the images, no record leaves its item as it was), the last new image is
//!   the item's applied state, every acknowledged write that changed its item has exactly one
//!   record, and no refused write (condition false, turned away, not applied) has one.

use super::*;

use shoal_model::Item;
use shoal_model::stream::{
    EventName, RecordPosition, ShardRecord, StreamConfig, StreamRecord, ViewType, config_key,
    parse_record_key, parse_shard_key, records_end, records_start, trimmed_key,
};
use std::ops::Bound;

/// The stream every base group is given (its id is its creation time, unix milliseconds).
pub(crate) const STREAM_ID: u64 = requests::UNIX_SECONDS_BASE * 1000;
/// Shards roll over this often (the leader's wall clock), so a run sees many of them.
pub(crate) const STREAM_SHARD_ROLLOVER_MS: u64 = 3_000;
/// Retention without trimming: nothing is trimmed within a run.
const STREAM_RETENTION_KEPT_MS: u64 = shoal_model::stream::RETENTION_MS_DEFAULT;
/// Retention with trimming (`--streams trim`): records are trimmed within a run, and the
/// checkers account for the trimmed prefixes.
const STREAM_RETENTION_TRIMMED_MS: u64 = 15_000;
/// Every replica is offered a maintenance step this often (production hosts: once a second).
pub(crate) const STREAM_MAINTAIN_INTERVAL_STEPS: u64 = 250;
/// A StreamConfigure not answered in this long is sent again.
const STREAM_CONFIGURE_TIMEOUT_NANOS: u64 = 500_000_000;
/// Records one read of a replica's stream returns at most (far more than a run writes).
const STREAM_READ_KEYS_MAX: usize = 1_000_000;

/// What the stream checkers know of one base group.
#[derive(Default)]
pub(crate) struct StreamGroup {
    /// The StreamConfigure was acknowledged: clients may write.
    configured: bool,
    /// The StreamConfigure in flight: reply token and when it was sent; and the member asked.
    call: Option<(u64, u64)>,
    target: usize,
    /// Every record any replica held, by position: generation, bytes, and the first holder.
    records: BTreeMap<RecordPosition, (u32, Vec<u8>, NodeId)>,
    /// Every shard record any replica held, by generation: opening slot and bytes.
    shards: BTreeMap<u32, (u64, Vec<u8>)>,
    /// The items of the highest applied state whose stream was checked: slot and items by pk.
    latest_items: Option<(Slot, BTreeMap<String, Item>)>,
    /// The highest trim position any replica recorded.
    trimmed_through: Option<RecordPosition>,
}

/// How far a replica's stream was read, in its current tree (dropped when a restart or a
/// snapshot replaces it).
pub(crate) struct StreamCursor {
    incarnation: u64,
    checked_through: Slot,
    last_key: Option<Vec<u8>>,
    last_position: Option<RecordPosition>,
    trimmed_through: Option<RecordPosition>,
}

#[derive(Default)]
pub(crate) struct Streams {
    pub(crate) groups: Vec<StreamGroup>,
    pub(crate) cursors: BTreeMap<(NodeId, usize), StreamCursor>,
    /// StreamConfigure calls by reply token: the group.
    pub(crate) calls: BTreeMap<u64, usize>,
    pub(crate) records_checked: u64,
}

fn pk_of(item: &Item) -> Option<String> {
    match item.get("pk") {
        Some(shoal_model::value::AttributeValue::String(text)) => Some(text.clone()),
        _ => None,
    }
}

fn number_of(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(shoal_model::value::AttributeValue::Number(number)) => number.to_string().parse().ok(),
        _ => None,
    }
}

impl Simulation {
    /// Streams on: every base group configured (clients write only then).
    pub(crate) fn streams_configured(&self) -> bool {
        !self.options.streams || self.streams.groups.iter().all(|group| group.configured)
    }

    /// Sends each base group's StreamConfigure, again after a timeout or a refusal, until
    /// one is acknowledged.
    pub(crate) fn run_stream_configure(&mut self) {
        if !self.options.streams {
            return;
        }
        for group in 0..self.streams.groups.len() {
            let state = &mut self.streams.groups[group];
            if state.configured {
                continue;
            }
            if let Some((reply_to, sent_at)) = state.call {
                if self.now_nanos < sent_at + STREAM_CONFIGURE_TIMEOUT_NANOS {
                    continue;
                }
                self.streams.calls.remove(&reply_to);
                state.call = None;
                state.target += 1;
            }
            let members = &self.groups[group].members;
            let node = members[state.target % members.len()];
            if !self.is_up(node) {
                self.streams.groups[group].target += 1;
                continue;
            }
            let reply_to = self.take_reply_to();
            self.streams.groups[group].call = Some((reply_to, self.now_nanos));
            self.streams.calls.insert(reply_to, group);
            let request = PreparedRequest::StreamConfigure {
                stream: STREAM_ID,
                view: Some(ViewType::NewAndOldImages),
            };
            self.send_item_request(group, node, reply_to, request);
        }
    }

    pub(crate) fn stream_configure_answered(&mut self, reply_to: u64, response: NodeResponse) {
        let Some(group) = self.streams.calls.remove(&reply_to) else {
            return;
        };
        let state = &mut self.streams.groups[group];
        state.call = None;
        match response {
            NodeResponse::Item { .. } => {
                state.configured = true;
                self.groups[group].acknowledged += 1;
            }
            NodeResponse::Error(NodeError::NotLeader {
                leader_hint: Some(hint),
                ..
            }) => {
                let members = &self.groups[group].members;
                if let Some(at) = members.iter().position(|member| member.0 == hint) {
                    state.target = at;
                } else {
                    state.target += 1;
                }
            }
            _ => state.target += 1,
        }
    }

    /// Offers every base replica a stream maintenance step (only a ready leader acts on it).
    pub(crate) fn maintain_streams(&mut self) {
        if !self.options.streams {
            return;
        }
        let retention_ms = if self.options.stream_trim {
            STREAM_RETENTION_TRIMMED_MS
        } else {
            STREAM_RETENTION_KEPT_MS
        };
        let replicas: Vec<(NodeId, usize)> = self
            .nodes
            .iter()
            .flat_map(|(id, node)| node.groups.iter().map(move |group| (*id, *group)))
            .filter(|(_, group)| Some(*group) != self.index_group)
            .collect();
        for (id, group) in replicas {
            let settings = shoal_partition::replica::StreamMaintenance {
                unix_ms: self.unix_ms(id),
                retention_ms,
                shard_rollover_ms: STREAM_SHARD_ROLLOVER_MS,
            };
            self.feed(id, group, Event::StreamMaintain(settings));
        }
    }

    /// The tree of `id`'s replica of `group` was replaced (a snapshot): read it whole next time.
    pub(crate) fn forget_stream_cursor(&mut self, id: NodeId, group: usize) {
        self.streams.cursors.remove(&(id, group));
    }

    /// Reads `id`'s replica of `group` at its applied `slot` (its stream and `items`, the Scan
    /// of the same applied state) and checks it against every other replica's.
    pub(crate) fn observe_stream(
        &mut self,
        id: NodeId,
        group: usize,
        slot: Slot,
        items: Option<&ItemResult>,
    ) {
        if !self.options.streams || Some(group) == self.index_group {
            return;
        }
        let incarnation = self.nodes[&id].incarnation;
        if self.nodes[&id]
            .fuzzy_until
            .get(&group)
            .is_some_and(|until| slot < *until)
        {
            self.streams.cursors.remove(&(id, group));
            return;
        }
        let cursor = self
            .streams
            .cursors
            .remove(&(id, group))
            .filter(|cursor| cursor.incarnation == incarnation);
        let from = cursor.as_ref().and_then(|cursor| cursor.last_key.clone());
        let broken = self.options.broken == Some(Broken::StreamReadsServeProposals);
        let read = {
            let Some(runtime) = self.nodes.get_mut(&id).and_then(|n| n.runtime.as_mut()) else {
                return;
            };
            let Some(replica) = runtime.replicas.get(&group) else {
                return;
            };
            let mut trimmed_end = shoal_model::index::INDEX_REGION_PREFIX.to_vec();
            trimmed_end.push(shoal_model::stream::TRIMMED_MARKER + 1);
            let lower = match from {
                Some(key) => Bound::Excluded(key),
                None => Bound::Included(records_start()),
            };
            let reads = async {
                let meta = replica
                    .applied_stream_keys(
                        Bound::Included(config_key()),
                        Bound::Excluded(records_start()),
                        STREAM_READ_KEYS_MAX,
                    )
                    .await?;
                let records = replica
                    .applied_stream_keys(
                        lower,
                        Bound::Excluded(records_end()),
                        STREAM_READ_KEYS_MAX,
                    )
                    .await?;
                let trimmed = replica
                    .applied_stream_keys(
                        Bound::Included(records_end()),
                        Bound::Excluded(trimmed_end),
                        STREAM_READ_KEYS_MAX,
                    )
                    .await?;
                Ok::<_, PartitionError>((meta, records, trimmed))
            };
            let read = drive(reads, &mut runtime.committer);
            // The broken variant: a stream read at a leader that also serves the records of its
            // own proposals not applied yet (as if it read the overlay of in-flight writes).
            let proposed = if broken && replica.role() == shoal_replication::RoleKind::Leader {
                proposed_records(replica, slot)
            } else {
                Vec::new()
            };
            (read, proposed)
        };
        let (meta, mut records, trimmed) = match read {
            (Ok(Ok(read)), proposed) => {
                let (meta, mut records, trimmed) = read;
                records.extend(proposed);
                (meta, records, trimmed)
            }
            (Ok(Err(error)), _) => {
                let corruption = partition_corruption(&error);
                return self.fail_node(
                    id,
                    group,
                    NodeFailure {
                        text: format!("a stream read failed: {error}"),
                        corruption,
                    },
                );
            }
            (Err(failure), _) => return self.fail_node(id, group, failure),
        };
        records.sort_by(|a, b| a.0.cmp(&b.0));
        let mut violations = Vec::new();
        let whom = format!("stream: {id:?} group {group} at {slot:?}");

        // The configuration and the shards.
        let mut shards: BTreeMap<u32, (u64, Vec<u8>)> = BTreeMap::new();
        let mut config = None;
        for (key, value) in meta {
            if key == config_key() {
                match StreamConfig::decode(&value) {
                    Ok(decoded) => config = Some(decoded),
                    Err(error) => violations.push(format!("{whom}: configuration: {error}")),
                }
            } else if let Some((stream, generation, opened_slot)) = parse_shard_key(&key) {
                if stream != STREAM_ID {
                    violations.push(format!("{whom}: a shard of stream {stream}"));
                }
                match ShardRecord::decode(&value) {
                    Ok(record) if record.ended => {
                        violations.push(format!("{whom}: shard {generation} is an end marker"))
                    }
                    Ok(_) => {}
                    Err(error) => violations.push(format!("{whom}: shard {generation}: {error}")),
                }
                shards.insert(generation, (opened_slot, value));
            } else {
                violations.push(format!("{whom}: an unknown stream key {key:02x?}"));
            }
        }
        if let Some(config) = config {
            let newest = shards.keys().next_back().copied();
            if config.stream != STREAM_ID
                || config.view != ViewType::NewAndOldImages
                || Some(config.generation) != newest
            {
                violations.push(format!(
                    "{whom}: configuration {config:?}, newest shard {newest:?}"
                ));
            }
        }
        let mut previous: Option<(u32, u64)> = None;
        for (generation, (opened_slot, _)) in &shards {
            if *opened_slot > slot.0 {
                violations.push(format!(
                    "{whom}: shard {generation} opened at slot {opened_slot}, after the applied slot"
                ));
            }
            if let Some((before, before_slot)) = previous
                && (*generation != before + 1 || *opened_slot <= before_slot)
            {
                violations.push(format!(
                    "{whom}: shard {generation} (opened at {opened_slot}) follows shard {before} \
                     (opened at {before_slot})"
                ));
            }
            previous = Some((*generation, *opened_slot));
        }
        let first_held = shards.keys().next().copied();
        if !self.options.stream_trim && first_held.is_some_and(|first| first != 0) {
            violations.push(format!(
                "{whom}: its first shard is {first_held:?}, with nothing trimmed"
            ));
        }
        let canonical_shards = &mut self.streams.groups[group].shards;
        for (generation, (opened_slot, value)) in &shards {
            match canonical_shards.get(generation) {
                Some((held_slot, held)) if held_slot != opened_slot || held != value => violations
                    .push(format!(
                        "{whom}: shard {generation} opened at slot {opened_slot}, another \
                         replica's at slot {held_slot} (or with other bytes)"
                    )),
                Some(_) => {}
                None => {
                    canonical_shards.insert(*generation, (*opened_slot, value.clone()));
                }
            }
        }
        for (generation, (opened_slot, _)) in canonical_shards.iter() {
            if *opened_slot <= slot.0
                && first_held.is_none_or(|first| *generation >= first)
                && !shards.contains_key(generation)
            {
                violations.push(format!(
                    "{whom}: lacks shard {generation}, which another replica opened at slot \
                     {opened_slot}"
                ));
            }
        }

        // The trim record.
        let mut trimmed_through = None;
        for (key, value) in trimmed {
            if key != trimmed_key(STREAM_ID) {
                violations.push(format!("{whom}: an unknown stream key {key:02x?}"));
                continue;
            }
            match shoal_model::stream::decode_position(&value) {
                Ok(position) => trimmed_through = Some(position),
                Err(error) => violations.push(format!("{whom}: trim record: {error}")),
            }
        }
        if trimmed_through.is_some() && !self.options.stream_trim {
            violations.push(format!(
                "{whom}: trimmed through {trimmed_through:?} within the retention"
            ));
        }
        if let Some(cursor) = &cursor
            && trimmed_through < cursor.trimmed_through
        {
            violations.push(format!(
                "{whom}: trimmed through {trimmed_through:?}, earlier {:?}",
                cursor.trimmed_through
            ));
        }
        let group_trimmed = &mut self.streams.groups[group].trimmed_through;
        *group_trimmed = (*group_trimmed).max(trimmed_through);

        // The records after what was read before.
        let mut last_position = cursor.as_ref().and_then(|cursor| cursor.last_position);
        let mut last_key = cursor.as_ref().and_then(|cursor| cursor.last_key.clone());
        let read_from = last_position.max(trimmed_through);
        let mut held = BTreeSet::new();
        for (key, value) in &records {
            let Some((stream, generation, position)) = parse_record_key(key) else {
                violations.push(format!("{whom}: a record key does not parse: {key:02x?}"));
                continue;
            };
            self.streams.records_checked += 1;
            if stream != STREAM_ID {
                violations.push(format!("{whom}: a record of stream {stream}"));
            }
            if position.slot > slot.0 {
                violations.push(format!(
                    "{whom}: holds a record at {position:?}, after its applied slot (a record \
                     before its write committed)"
                ));
            }
            if trimmed_through.is_some_and(|trimmed| position <= trimmed) {
                violations.push(format!(
                    "{whom}: holds a record at {position:?}, trimmed through {trimmed_through:?}"
                ));
            }
            if last_position.is_some_and(|last| position <= last) {
                violations.push(format!(
                    "{whom}: the record at {position:?} (shard {generation}) comes after one at \
                     {last_position:?}"
                ));
            }
            match shards.get(&generation) {
                None => violations.push(format!(
                    "{whom}: a record at {position:?} in shard {generation}, which it lacks"
                )),
                Some((opened_slot, _)) if position.slot <= *opened_slot => {
                    violations.push(format!(
                        "{whom}: a record at {position:?} in shard {generation}, opened at slot \
                         {opened_slot}"
                    ))
                }
                Some(_) => {}
            }
            if let Some((next_opened, _)) = shards.get(&(generation + 1))
                && position.slot >= *next_opened
            {
                violations.push(format!(
                    "{whom}: a record at {position:?} in shard {generation}, closed when shard {} \
                     opened at slot {next_opened}",
                    generation + 1
                ));
            }
            if let Err(error) = StreamRecord::decode(value) {
                violations.push(format!("{whom}: the record at {position:?}: {error}"));
            }
            if position.slot > slot.0 {
                // Not committed here: neither read past nor taken for the group's record at
                // that position.
                continue;
            }
            last_position = Some(position);
            last_key = Some(key.clone());
            held.insert(position);
            let canonical = &mut self.streams.groups[group].records;
            match canonical.get(&position) {
                Some((held_generation, bytes, first)) => {
                    if held_generation != &generation || bytes != value {
                        violations.push(format!(
                            "{whom}: the record at {position:?} (shard {generation}) differs \
                             from {first:?}'s (shard {held_generation}): {:?} against {:?}",
                            StreamRecord::decode(value).ok(),
                            StreamRecord::decode(bytes).ok()
                        ));
                    }
                }
                None => {
                    canonical.insert(position, (generation, value.clone(), id));
                    // A replica that already read past this position without it lacks it.
                    for ((other, other_group), other_cursor) in &self.streams.cursors {
                        if *other_group == group
                            && *other != id
                            && other_cursor.checked_through.0 >= position.slot
                            && other_cursor
                                .trimmed_through
                                .is_none_or(|trimmed| position > trimmed)
                        {
                            violations.push(format!(
                                "stream: {other:?} group {group} applied through {:?} without \
                                 the record {id:?} holds at {position:?}",
                                other_cursor.checked_through
                            ));
                        }
                    }
                }
            }
        }
        // Every record another replica held up to this applied slot, past what this one read
        // before and what it trimmed, is here.
        let upper = RecordPosition {
            slot: slot.0,
            ordinal: u32::MAX,
        };
        let lower = match read_from {
            Some(position) => Bound::Excluded(position),
            None => Bound::Unbounded,
        };
        let records = &self.streams.groups[group].records;
        let range = match read_from {
            Some(from) if from >= upper => records.range(upper..upper),
            _ => records.range((lower, Bound::Included(upper))),
        };
        for (position, (generation, _, first)) in range {
            if !held.contains(position) {
                violations.push(format!(
                    "{whom}: lacks the record {first:?} holds at {position:?} (shard {generation})"
                ));
                break;
            }
        }

        // The items at the same applied state, for the end-of-run chain check.
        if let Some(items) = items.map(requests::parse_items) {
            match items {
                Ok(items) => {
                    let latest = &mut self.streams.groups[group].latest_items;
                    if latest.as_ref().is_none_or(|(at, _)| *at < slot) {
                        let by_key = items
                            .into_iter()
                            .filter_map(|item| pk_of(&item).map(|pk| (pk, item)))
                            .collect();
                        *latest = Some((slot, by_key));
                    }
                }
                Err(error) => violations.push(format!("{whom}: scan answer: {error}")),
            }
        }
        self.streams.cursors.insert(
            (id, group),
            StreamCursor {
                incarnation,
                checked_through: slot,
                last_key,
                last_position,
                trimmed_through,
            },
        );
        for violation in violations {
            self.violation(violation);
        }
    }

    /// At the end of the run, per base group: the records chain per item up to the highest
    /// applied state checked, end at the item's state there, and match the acknowledged and
    /// refused writes.
    pub(crate) fn check_streams(&mut self) {
        if !self.options.streams {
            return;
        }
        let base_groups = self.base_group_count();
        let mut violations = Vec::new();
        // Records per written value (register items), and per expiring key.
        let mut by_value: BTreeMap<u64, Vec<(usize, RecordPosition)>> = BTreeMap::new();
        let mut expiring_inserts: BTreeMap<u64, u64> = BTreeMap::new();
        for group in 0..base_groups {
            let state = &self.streams.groups[group];
            if !state.configured {
                violations.push(format!(
                    "stream: group {group} never acknowledged its stream"
                ));
                continue;
            }
            let Some((latest_slot, latest_items)) = state.latest_items.clone() else {
                continue;
            };
            // With trimming, a record may have left every replica before any was read: an
            // item's chain restarts after the highest trim position.
            let trimmed = state.trimmed_through;
            let mut chains: BTreeMap<String, (Option<Item>, RecordPosition)> = BTreeMap::new();
            let mut last_generation = 0;
            for (position, (generation, bytes, _)) in state.records.range(
                ..=RecordPosition {
                    slot: latest_slot.0,
                    ordinal: u32::MAX,
                },
            ) {
                if *generation < last_generation {
                    violations.push(format!(
                        "stream: group {group}: the record at {position:?} is in shard \
                         {generation}, after a record of shard {last_generation}"
                    ));
                }
                last_generation = *generation;
                let Ok(record) = StreamRecord::decode(bytes) else {
                    continue; // reported when read
                };
                let what = format!("stream: group {group}: the record at {position:?}");
                let Some(pk) = pk_of(&record.keys) else {
                    violations.push(format!("{what} has keys {:?}", record.keys));
                    continue;
                };
                let image = record.new_image.as_ref().or(record.old_image.as_ref());
                if image.is_none_or(|image| pk_of(image).as_ref() != Some(&pk))
                    || record.keys.len() != 1
                {
                    violations.push(format!(
                        "{what}: keys {:?} are not its image's",
                        record.keys
                    ));
                }
                let expected_event = match (&record.old_image, &record.new_image) {
                    (None, Some(_)) => Some(EventName::Insert),
                    (Some(old), Some(new)) if old != new => Some(EventName::Modify),
                    (Some(_), None) => Some(EventName::Remove),
                    _ => None,
                };
                if expected_event != Some(record.event) || record.view != ViewType::NewAndOldImages
                {
                    violations.push(format!(
                        "{what} is {:?} ({:?}) with old image {:?} and new image {:?}",
                        record.event, record.view, record.old_image, record.new_image
                    ));
                }
                let expiring = pk.starts_with('x');
                if record.by_time_to_live != (expiring && record.event == EventName::Remove) {
                    violations.push(format!(
                        "{what} ({:?} of {pk}) says by Time to Live: {}",
                        record.event, record.by_time_to_live
                    ));
                }
                match chains.get(&pk) {
                    Some((previous, previous_position)) if *previous != record.old_image => {
                        violations.push(format!(
                            "{what} has old image {:?}, the record of {pk} before it (at \
                             {previous_position:?}) new image {previous:?}",
                            record.old_image
                        ));
                    }
                    Some(_) => {}
                    // The first record of an item since the stream began is its first write.
                    None if trimmed.is_none() && record.old_image.is_some() => {
                        violations.push(format!(
                            "{what} is the first of {pk} and has old image {:?}",
                            record.old_image
                        ));
                    }
                    None => {}
                }
                chains.insert(pk.clone(), (record.new_image.clone(), *position));
                if let Some(new) = &record.new_image {
                    if let Some(key) = pk.strip_prefix('x').and_then(|key| key.parse().ok()) {
                        *expiring_inserts.entry(key).or_default() += 1;
                    } else if let Some(value) = number_of(new, "v") {
                        by_value.entry(value).or_default().push((group, *position));
                    }
                }
            }
            // The end of each chain is the item's applied state.
            let keys: BTreeSet<&String> = chains.keys().chain(latest_items.keys()).collect();
            for pk in keys {
                let last = chains.get(pk).and_then(|(image, _)| image.as_ref());
                let applied = latest_items.get(pk);
                if last != applied && (trimmed.is_none() || chains.contains_key(pk)) {
                    violations.push(format!(
                        "stream: group {group}: {pk}'s last record leaves it {last:?}; at \
                         {latest_slot:?} it is {applied:?}"
                    ));
                }
            }
        }
        // Every write against what its records say.
        for recorded in &self.history {
            let group = (recorded.key % base_groups as u64) as usize;
            let (value, must) = match recorded.operation.kind {
                OperationKind::Write { value } => (
                    value,
                    (recorded.operation.returned_nanos.is_some() && !recorded.refused)
                        .then_some(1)
                        .or(recorded.refused.then_some(0)),
                ),
                OperationKind::CompareAndSet { new, succeeded, .. } => (
                    new,
                    match succeeded {
                        Some(true) => Some(1),
                        Some(false) => Some(0),
                        None => recorded.refused.then_some(0),
                    },
                ),
                OperationKind::Read { .. } => continue,
            };
            let found = by_value.remove(&value).unwrap_or_default();
            if self.streams.groups[group].trimmed_through.is_some() && found.is_empty() {
                continue;
            }
            let expected = match must {
                Some(count) => count == found.len(),
                None => found.len() <= 1,
            };
            if must.is_some() {
                self.report.stream_writes_checked += 1;
            }
            if !expected || found.iter().any(|(at, _)| *at != group) {
                violations.push(format!(
                    "stream: the write of {value} to key {} (refused {}, {:?}) has records at \
                     {found:?}, expected {}",
                    recorded.key,
                    recorded.refused,
                    recorded.operation.kind,
                    match must {
                        Some(count) => format!("exactly {count}"),
                        None => "at most one".to_string(),
                    }
                ));
            }
        }
        for (value, found) in by_value {
            violations.push(format!(
                "stream: records at {found:?} write {value}, which no write wrote"
            ));
        }
        for group in 0..base_groups {
            for key in self.groups[group].expiring_acknowledged.keys() {
                let count = expiring_inserts.remove(key).unwrap_or(0);
                if count != 1
                    && !(count == 0 && self.streams.groups[group].trimmed_through.is_some())
                {
                    violations.push(format!(
                        "stream: the acknowledged write of expiring item x{key} has {count} \
                         INSERT records"
                    ));
                }
            }
        }
        for (key, count) in expiring_inserts {
            if count > 1 || key >= self.next_expiring_key {
                violations.push(format!(
                    "stream: expiring item x{key} has {count} INSERT records"
                ));
            }
        }
        self.report.stream_records_checked = self.streams.records_checked;
        self.report.stream_groups_trimmed = self
            .streams
            .groups
            .iter()
            .filter(|group| group.trimmed_through.is_some())
            .count() as u64;
        self.report.stream_shards = self
            .streams
            .groups
            .iter()
            .map(|group| group.shards.len() as u64)
            .sum();
        self.report.stream_records = self
            .streams
            .groups
            .iter()
            .map(|group| group.records.len() as u64)
            .sum();
        for violation in violations {
            self.violation(violation);
        }
    }
}

/// Broken variant `StreamReadsServeProposals`: the stream records of a leader's log entries
/// after its applied slot, positioned at their slots as if applied.
fn proposed_records(replica: &SimulatedReplica, applied: Slot) -> Vec<(Vec<u8>, Vec<u8>)> {
    let core = replica.core();
    let mut records = Vec::new();
    let mut slot = Slot(applied.0 + 1);
    while slot <= core.log_last_slot() {
        if let Some(LogEntry {
            payload: Payload::Command(bytes),
            ..
        }) = core.entry(slot)
            && let Some(batch) = MutationBatch::decode(bytes)
        {
            for mutation in batch.mutations {
                if let Mutation::Put { key, value } = mutation
                    && let Some(positioned) = shoal_model::stream::positioned_key(&key, slot.0)
                    && parse_record_key(&positioned).is_some()
                {
                    records.push((positioned, value));
                }
            }
        }
        slot = Slot(slot.0 + 1);
    }
    records
}
