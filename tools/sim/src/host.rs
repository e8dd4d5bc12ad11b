//! The node host: start-up (fresh, or the production shard recovery), the simulator's executor
//! (`drive`), and the carrying out of replica outputs through the production shard dispatch.

use super::*;

pub(crate) fn replica_options(seed: u64) -> ReplicaOptions {
    ReplicaOptions {
        kind: ReplicaKind::Full,
        election_timeout_min: Duration::from_millis(300),
        election_timeout_jitter: Duration::from_millis(300),
        heartbeat_interval: Duration::from_millis(50),
        // Two busy intervals: a lost idle round still leaves the lease (190 ms net) alive.
        idle_heartbeat_interval: Duration::from_millis(100),
        quiesce: true,
        lease_duration: LEASE_DURATION,
        clock_drift_max: CLOCK_DRIFT_MAX,
        snapshot_retry_interval: Duration::from_millis(200),
        election_seed: seed,
    }
}

pub(crate) fn replica_config() -> ReplicaConfig {
    ReplicaConfig {
        core: replica_options(0),
        checkpoint_every_slots: CHECKPOINT_EVERY_SLOTS,
        btree: BTreeConfig::default(),
        item_collection_bytes_max: shoal_model::index::ITEM_COLLECTION_BYTES_MAX,
    }
}

/// Small segments, so that every run recycles them many times (every batch takes at least a
/// 4 KiB block), yet 4 MiB in all: room for several seconds of the node's records while one of
/// its groups cannot commit (and so cannot checkpoint and release its old records). The
/// simulated disk compares a whole file on every sync in debug builds, so the segment size is
/// also most of the debug build's cost per fsync. A record holds at most one core `Persist`:
/// up to the in-flight slots of small items, far below the body limit.
pub(crate) fn wal_config() -> WalConfig {
    WalConfig {
        segment_bytes: 128 * 1024,
        segment_count: 32,
        batch_bytes_max: 120 * 1024,
        batch_records_max: 256,
        pending_records_max: 1024,
        pending_bytes_max: 1 << 20,
        record_body_bytes_max: 100 * 1024,
    }
}

/// The meta of `group`'s partitions; the ledger group (`ledger`) is keyed by `id`, as the
/// router's ledger table is.
pub(crate) fn partition_meta(group: usize, members: &[NodeId], ledger: bool) -> PartitionMeta {
    PartitionMeta {
        partition: group as u64 + PARTITION_FIRST,
        epoch: EPOCH,
        key_schema: if ledger {
            requests::ledger_key_schema()
        } else {
            KeySchema::partition_only("pk", KeyType::String)
        },
        membership: Membership::new(members.iter().copied(), []),
    }
}

/// What a replica call driven to its end gave: its value, or the node's failure, a partition
/// error classified as corruption or not (`what` names the call in its text).
pub(crate) fn replica_outcome<T>(
    driven: Result<Result<T, PartitionError>, NodeFailure>,
    what: &str,
) -> Result<T, NodeFailure> {
    match driven {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(NodeFailure {
            text: format!("{what}: {error}"),
            corruption: partition_corruption(&error),
        }),
        Err(failure) => Err(failure),
    }
}

pub(crate) fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// The simulator's executor: polls `future`, and the node's WAL committer whenever the future
/// waits (it can wait only on the committer: simulated I/O completes at once).
pub(crate) fn drive<T>(
    future: impl Future<Output = T>,
    committer: &mut Committer,
) -> Result<T, NodeFailure> {
    let mut future = std::pin::pin!(future);
    for _ in 0..DRIVE_POLLS_MAX {
        if let Poll::Ready(output) = poll_once(future.as_mut()) {
            return Ok(output);
        }
        if let Poll::Ready(outcome) = poll_once(committer.as_mut()) {
            return Err(NodeFailure {
                text: format!("the WAL committer stopped: {outcome:?}"),
                corruption: outcome.as_ref().is_err_and(wal_corruption),
            });
        }
    }
    Err(NodeFailure::other(format!(
        "a future still waits after {DRIVE_POLLS_MAX} polls of the WAL committer"
    )))
}

/// Polls a future that needs no committer (opening a WAL) to completion.
pub(crate) fn complete<T>(future: impl Future<Output = T>) -> Result<T, String> {
    let mut future = std::pin::pin!(future);
    for _ in 0..DRIVE_POLLS_MAX {
        if let Poll::Ready(output) = poll_once(future.as_mut()) {
            return Ok(output);
        }
    }
    Err(format!(
        "a future still waits after {DRIVE_POLLS_MAX} polls"
    ))
}

/// Opens a node's WAL and page cache on `directory` and creates (`fresh`) or recovers each of
/// its replicas: the storage node's start, step by step.
pub(crate) fn start_runtime(
    directory: &FaultyDirectory,
    id: NodeId,
    cluster: &[NodeId],
    metas: &[(usize, PartitionMeta)],
    fresh: bool,
    seed: u64,
    now: MonotonicTime,
) -> Result<Runtime, NodeFailure> {
    let mut replay = ShardReplay::default();
    let (wal, _) = complete(Wal::open(directory, wal_config(), |record| {
        replay.visit(record)
    }))
    .map_err(NodeFailure::other)?
    .map_err(|error| NodeFailure {
        text: format!("{id:?}: the WAL does not open: {error}"),
        corruption: wal_corruption(&error),
    })?;
    let committer_wal = wal.clone();
    let mut committer: Committer = Box::pin(async move { committer_wal.run_committer().await });
    let cache = PageCache::new(PAGE_CACHE_PAGES);
    let election_seed = |partition: u64| seed ^ partition.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut replicas = BTreeMap::new();
    if fresh {
        for (group, meta) in metas {
            let replica = drive(
                PartitionReplica::create(
                    meta.clone(),
                    id,
                    replica_config(),
                    election_seed(meta.partition),
                    Rc::new(directory.clone()),
                    cache.clone(),
                    wal.clone(),
                    now,
                ),
                &mut committer,
            )?
            .map_err(|error| NodeFailure {
                text: format!("{id:?} group {group}: the replica is not created: {error}"),
                corruption: partition_corruption(&error),
            })?;
            replicas.insert(*group, replica);
        }
    } else {
        // The production shard's start-up recovery (engine/shard/src/recovery.rs).
        let replica = replica_config();
        let recovered = drive(
            recover_shard(
                Rc::new(directory.clone()),
                &wal,
                replay,
                RecoveryContext {
                    node: id,
                    replica: &replica,
                    cache: cache.clone(),
                    now,
                },
                election_seed,
            ),
            &mut committer,
        )?
        .map_err(|error| NodeFailure {
            corruption: shard_corruption(&error),
            text: format!("{id:?}: the shard does not recover: {error}"),
        })?;
        // Production keeps a replica that refused to recover out of service and serves the
        // others; here that only happens on a faulty disk (or it is a violation), and the node
        // is stopped as a whole, as the checkers expect of a node whose storage lied.
        if let Some(failure) = recovered.failed.first() {
            return Err(NodeFailure {
                text: format!(
                    "{id:?}: partition {} refused to recover: {}",
                    failure.partition, failure.reason
                ),
                corruption: true,
            });
        }
        for replica in recovered.replicas {
            let partition = replica.partition();
            let Some((group, _)) = metas.iter().find(|(_, meta)| meta.partition == partition)
            else {
                return Err(NodeFailure::other(format!(
                    "{id:?}: recovered partition {partition}, which it does not host"
                )));
            };
            replicas.insert(*group, replica);
        }
        if replicas.len() != metas.len() {
            return Err(NodeFailure::other(format!(
                "{id:?}: recovered {} of its {} replicas",
                replicas.len(),
                metas.len()
            )));
        }
    }
    let mut dispatch = Dispatch::new(id, SHARD);
    for meta in replicas.values().map(|replica| replica.meta()) {
        dispatch.add_replica(meta.partition, meta.epoch);
    }
    // As the production shard: its replicas quiesce, so it tracks the liveness of every other
    // node of the cluster (a replica may join a group on any of them).
    let options = replica_options(0);
    let peers: BTreeSet<NodeId> = cluster
        .iter()
        .copied()
        .filter(|member| *member != id)
        .collect();
    dispatch.enable_liveness(
        LivenessConfig {
            ping_interval: options.idle_heartbeat_interval,
            unreachable_after: options.election_timeout_min,
        },
        // The node's start: a new incarnation at every (re)start of it.
        seed,
        peers,
        now,
    );
    let wal_active_segment = wal.stats().active_segment;
    Ok(Runtime {
        dispatch,
        wal,
        committer,
        cache,
        replicas,
        unsynced: Vec::new(),
        commit_at_nanos: None,
        ticked_segment: wal_active_segment,
        split_checked: BTreeSet::new(),
    })
}

/// The checker's own scan answer among a scan event's outputs, and the rest: an event also
/// serves the requests a leader held for its lease once the lease is back (the partition's
/// `lease_waiters`), whatever the event, so their replies and proposals come out of the scan
/// too and must be carried out like any output.
fn split_scan_outputs(outputs: Vec<Output>) -> (Option<ItemResult>, Vec<Output>) {
    let mut result = None;
    let mut rest = Vec::new();
    for output in outputs {
        match output {
            Output::Reply {
                reply_to: SCAN_REPLY_TO,
                response:
                    NodeResponse::Item {
                        result: scanned, ..
                    },
            } if result.is_none() => result = Some(scanned),
            other => rest.push(other),
        }
    }
    (result, rest)
}

impl Simulation {
    /// Starts node `id` from its disk: fresh at the beginning of the run, else through recovery.
    pub(crate) fn start(&mut self, id: NodeId, fresh: bool, seed: u64) {
        let now = self.local_time(id);
        let metas: Vec<(usize, PartitionMeta)> = self.nodes[&id]
            .groups
            .iter()
            .map(|group| {
                let ledger = Some(*group) == self.ledger_group;
                let meta = partition_meta(*group, &self.groups[*group].members, ledger);
                (*group, meta)
            })
            .collect();
        let broken = self.options.broken == Some(Broken::WalDamageTakenForEndOfLog);
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.incarnation += 1;
        let directory = node.directory();
        if broken && !fresh && node.faulty_disk {
            damage_newest_segment(&node.disk);
            if truncate_at_wal_damage(&node.disk, &directory) {
                self.fault("broken: WAL truncated at damage");
            }
        }

        let cluster: Vec<NodeId> = self.nodes.keys().copied().collect();
        let node = self.nodes.get_mut(&id).expect("node exists");
        match start_runtime(&directory, id, &cluster, &metas, fresh, seed, now) {
            Ok(runtime) => {
                for (group, replica) in &runtime.replicas {
                    node.observed_applied.insert(*group, replica.applied_slot());
                }
                node.runtime = Some(runtime);
                if !fresh {
                    self.check_acceptor_memory(id);
                }
            }
            Err(failure) => self.stop_or_violation(id, usize::MAX, failure),
        }
        self.trace(id, usize::MAX, &[3, u64::from(fresh)]);
    }

    /// A power loss: every replica of the node and its WAL are gone from memory, and the disk
    /// is what the loss leaves (unsynced sectors may or may not have landed).
    pub(crate) fn crash(&mut self, id: NodeId) {
        tracing::debug!(
            simulated_ms = self.now_nanos / 1_000_000,
            node = id.0,
            "node crashed"
        );
        let node = self.nodes.get_mut(&id).expect("node exists");
        if let Some(runtime) = node.runtime.take() {
            self.report.wal_segments_recycled += runtime.wal.stats().segments_recycled;
        }
        node.disk = node.disk.crash_image(&mut self.disk_rng);
        self.trace(id, usize::MAX, &[1]);
    }

    /// A replica or its WAL failed in a way only a bug explains, or its storage reported
    /// corruption (`stop_or_violation` tells the two apart).
    pub(crate) fn fail_node(&mut self, id: NodeId, group: usize, failure: NodeFailure) {
        self.stop_or_violation(id, group, failure);
    }

    /// A node failed. Corruption its storage reported on a faulty disk is the expected
    /// fail-stop: the node stops for good, as `fatal!` would stop the process, and is counted.
    /// Anything else (and corruption on a healthy disk) is a violation; the node then restarts
    /// a second later, as a supervisor would.
    pub(crate) fn stop_or_violation(&mut self, id: NodeId, group: usize, failure: NodeFailure) {
        let faulty_disk = self.nodes[&id].faulty_disk;
        if failure.corruption && faulty_disk {
            if self.nodes[&id].stopped {
                return;
            }
            self.crash(id);
            let node = self.nodes.get_mut(&id).expect("node exists");
            node.stopped = true;
            node.restart_at_nanos = None;
            self.fault("node stopped: corruption detected");
            self.trace(id, group, &[4]);
            return;
        }
        let disk = if faulty_disk { "faulty" } else { "healthy" };
        self.violation(format!(
            "{id:?} group {group} ({disk} disk): {}",
            failure.text
        ));
        self.crash(id);
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.restart_at_nanos = Some(self.now_nanos + FAILED_NODE_RESTART_NANOS);
    }

    pub(crate) fn restart_due(&mut self) {
        let due: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.restart_at_nanos.is_some_and(|at| at <= self.now_nanos))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let node = self.nodes.get_mut(&id).expect("node exists");
            node.restart_at_nanos = None;
            tracing::debug!(
                simulated_ms = self.now_nanos / 1_000_000,
                node = id.0,
                "node restarts"
            );
            let seed =
                id.0.wrapping_mul(0x9E37)
                    .wrapping_add(node.incarnation.rotate_left(20))
                    .wrapping_add(self.options.seed.rotate_left(40));
            self.start(id, false, seed);
        }
    }

    /// Each running node's shard pings its peers and hears which went silent, as the
    /// production shard's ticker does (`Dispatch::liveness_due`); pings cross the simulated
    /// network like any message.
    pub(crate) fn check_liveness_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let now = self.local_time(id);
            let Some(runtime) = self.nodes.get_mut(&id).and_then(|n| n.runtime.as_mut()) else {
                continue;
            };
            let (pings, events) = runtime.dispatch.liveness_due(now);
            for ping in pings {
                if let ShardCommand::Replicate { to, envelope } = ping {
                    self.send(
                        LIVENESS_PING_GROUP,
                        id,
                        NodeId(to.node),
                        Envelope::Replication(envelope),
                    );
                }
            }
            for routed in events {
                self.feed_routed(id, routed);
            }
        }
    }

    /// Hands a routed event that is not a replication message (a peer's liveness, a snapshot
    /// chunk) to the replica of its partition.
    pub(crate) fn feed_routed(&mut self, id: NodeId, routed: Routed<u64>) {
        let Routed::Replica {
            partition, event, ..
        } = routed
        else {
            return;
        };
        if matches!(event, Event::PeerUnreachable(_))
            && self.options.broken == Some(Broken::PeerUnreachableNeverReported)
        {
            return;
        }
        let Some(group) = partition
            .checked_sub(PARTITION_FIRST)
            .map(|group| group as usize)
            .filter(|group| *group < self.groups.len())
        else {
            return;
        };
        self.feed(id, group, event);
    }

    pub(crate) fn tick_all(&mut self) {
        let replicas: Vec<(NodeId, usize)> = self
            .nodes
            .iter()
            .flat_map(|(id, node)| node.groups.iter().map(move |group| (*id, *group)))
            .collect();
        let sweep =
            self.options.time_to_live && self.options.broken != Some(Broken::SweeperStopped);
        let global_indexes = if self.options.global_index {
            requests::global_indexes()
        } else {
            Vec::new()
        };
        // As the shard's ticker does: every replica of a node whose WAL moved to another
        // segment since the last round.
        let mut segment_moved = BTreeSet::new();
        for (id, node) in &mut self.nodes {
            if let Some(runtime) = node.runtime.as_mut() {
                let segment = runtime.wal.stats().active_segment;
                if segment != runtime.ticked_segment {
                    runtime.ticked_segment = segment;
                    segment_moved.insert(*id);
                }
            }
        }
        for (id, group) in replicas {
            // As the shard's ticker does: a quiet replica only when its tick is due.
            let never_again = self.options.broken == Some(Broken::QuietReplicasNeverTicked);
            let due = self
                .nodes
                .get(&id)
                .and_then(|node| node.runtime.as_ref())
                .and_then(|runtime| runtime.replicas.get(&group))
                .is_none_or(|replica| {
                    let due = replica.tick_due();
                    if never_again && due > MonotonicTime::ZERO {
                        return false;
                    }
                    due <= self.local_time(id) || segment_moved.contains(&id)
                });
            if due {
                let snapshot_room = self.snapshot_room(id, group);
                self.feed(id, group, Event::Tick { snapshot_room });
            }
            // Sweep steps come whether or not the replica was due for a tick, as the shard's
            // sweeper sends them: a step at a quiesced leader proposes its deletes, which
            // wakes it. Only table partitions are swept (the node sets TTL targets for a table's
            // partitions, never for its indexes' partitions).
            // Nor is the ledger (its records expire after an hour, longer than any run).
            if sweep && Some(group) != self.index_group && Some(group) != self.ledger_group {
                // Every replica is offered the step, as a shard offers it to the partitions it
                // believes it leads; only a ready leader acts on it.
                let now_unix_seconds =
                    requests::UNIX_SECONDS_BASE + self.local_time(id).as_nanos() / 1_000_000_000;
                self.feed(
                    id,
                    group,
                    Event::SweepExpired {
                        // The workload's writes carry the local index, so the sweeper's deletes
                        // must remove its entries too (the index checker holds them to it).
                        target: shoal_partition::time_to_live::SweepTarget {
                            attribute: requests::TIME_TO_LIVE_ATTRIBUTE.to_string(),
                            local_indexes: requests::local_indexes(),
                            // With the GSI, a delete by TTL puts its entry's delete into the
                            // outbox, like any delete.
                            global_indexes: global_indexes.clone(),
                        },
                        now_unix_seconds,
                        pass_period: SWEEP_PASS_PERIOD,
                    },
                );
            }
        }
    }

    /// The group commit's fsync: polls the committer of each node whose commit is due (it
    /// writes and syncs every queued record), then reports what became durable.
    pub(crate) fn fsync_due(&mut self) {
        let due: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, node)| {
                node.runtime
                    .as_ref()
                    .and_then(|runtime| runtime.commit_at_nanos)
                    .is_some_and(|at| at <= self.now_nanos)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let retry_at = self.now_nanos + 1 + self.disk_rng.below(GROUP_COMMIT_DELAY_NANOS_MAX);
            let Some(runtime) = self.nodes.get_mut(&id).and_then(|n| n.runtime.as_mut()) else {
                continue;
            };
            runtime.commit_at_nanos = None;
            if let Poll::Ready(outcome) = poll_once(runtime.committer.as_mut()) {
                let corruption = outcome.as_ref().is_err_and(wal_corruption);
                self.fail_node(
                    id,
                    usize::MAX,
                    NodeFailure {
                        text: format!("the WAL committer stopped: {outcome:?}"),
                        corruption,
                    },
                );
                continue;
            }
            let mut durable = Vec::new();
            let mut failure = None;
            let mut waiting = Vec::new();
            for (group, core_lsn, mut future, record) in std::mem::take(&mut runtime.unsynced) {
                match poll_once(Pin::new(&mut future)) {
                    Poll::Ready(Ok(wal_lsn)) => durable.push((group, core_lsn, wal_lsn, record)),
                    Poll::Ready(Err(error)) => failure = Some((group, error)),
                    Poll::Pending => waiting.push((group, core_lsn, future, record)),
                }
            }
            let wal_full = !waiting.is_empty();
            if wal_full {
                // The WAL waits for a checkpoint to recycle a segment; try again later.
                runtime.commit_at_nanos = Some(retry_at);
            }
            runtime.unsynced = waiting;
            if wal_full {
                self.fault("WAL full, waiting for a checkpoint");
            }
            // What became durable stays on the disk even if a later record failed.
            if let Some(node) = self.nodes.get_mut(&id) {
                for (group, _, _, record) in &durable {
                    // A replica deleted since (a move) is forgotten with its records.
                    let Some(memory) = node.acceptor_memory.get_mut(group) else {
                        continue;
                    };
                    if let Some(promised) = record.promised {
                        memory.promised = memory.promised.max(promised);
                    }
                    for (slot, ballot) in &record.accepted {
                        let held = memory.accepted.entry(*slot).or_insert(*ballot);
                        *held = (*held).max(*ballot);
                    }
                }
            }
            if let Some((group, error)) = failure {
                let corruption = wal_corruption(&error);
                self.fail_node(
                    id,
                    group,
                    NodeFailure {
                        text: format!("a WAL append failed: {error}"),
                        corruption,
                    },
                );
                continue;
            }
            for (group, core_lsn, wal_lsn, _) in durable {
                self.feed(id, group, Event::Persisted { core_lsn, wal_lsn });
            }
        }
    }

    /// Hands one event to one replica and carries out what it returns. When the event moved the
    /// replica's applied slot, its applied state is read back (a Scan at that replica) for the
    /// checkers.
    pub(crate) fn feed(&mut self, id: NodeId, group: usize, mut event: Event) {
        let now = self.local_time(id);
        // As a shard does: the wall clock when the replica takes the request.
        if let Event::Request { unix_ms, .. } = &mut event {
            *unix_ms = self.unix_ms(id);
        }
        let last_snapshot_chunk = matches!(&event, Event::Snapshot(chunk) if chunk.last);
        let Some(runtime) = self
            .nodes
            .get_mut(&id)
            .and_then(|node| node.runtime.as_mut())
        else {
            return;
        };
        let Some(replica) = runtime.replicas.get_mut(&group) else {
            return;
        };
        let before = replica.applied_slot();
        let handled = drive(replica.handle(now, event), &mut runtime.committer);
        let after = replica.applied_slot();
        // A split parent serves no scan: its state is frozen at the split, and its children
        // are compared from there.
        let frozen = replica.split().is_some();
        let epoch = self.groups[group].epoch;
        // An index group's state is its GSI entries, read as a Scan of the GSI reads them.
        let index_group = Some(group) == self.index_group;
        // The ledger group's state is its records, compared between replicas only.
        let ledger_group = Some(group) == self.ledger_group;
        let scanned = (after != before && !frozen).then(|| {
            let scan = Event::Request {
                reply_to: SCAN_REPLY_TO,
                epoch,
                unix_ms: 0,
                request: if index_group {
                    requests::global_index_scan_request()
                } else if ledger_group {
                    requests::ledger_scan_request()
                } else {
                    requests::scan_request()
                },
            };
            drive(replica.handle(now, scan), &mut runtime.committer)
        });
        // The local index at the same applied slot (no await between the two reads). An index
        // group's writes (IndexApply) maintain no local index.
        let index_scanned =
            (after != before && !frozen && !index_group && !ledger_group).then(|| {
                let scan = Event::Request {
                    reply_to: SCAN_REPLY_TO,
                    epoch,
                    unix_ms: 0,
                    request: requests::index_scan_request(),
                };
                drive(replica.handle(now, scan), &mut runtime.committer)
            });
        let mut outputs = match replica_outcome(handled, "replica error") {
            Ok(outputs) => outputs,
            Err(failure) => return self.fail_node(id, group, failure),
        };
        if let Some(scanned) = scanned {
            if last_snapshot_chunk && after > before {
                self.fault("snapshot installed");
                let horizon = self.delivering_snapshot_horizon;
                if let Some(node) = self.nodes.get_mut(&id) {
                    node.fuzzy_until.insert(group, horizon);
                }
                self.forget_stream_cursor(id, group);
            }
            let body = match scanned {
                Ok(Ok(scan_outputs)) => {
                    let (result, rest) = split_scan_outputs(scan_outputs);
                    outputs.extend(rest);
                    result
                }
                Ok(Err(error)) => {
                    let corruption = partition_corruption(&error);
                    return self.fail_node(
                        id,
                        group,
                        NodeFailure {
                            text: format!("a scan failed: {error}"),
                            corruption,
                        },
                    );
                }
                Err(failure) => return self.fail_node(id, group, failure),
            };
            if index_group {
                self.observe_index(id, group, after, body);
                return self.carry_out(id, group, now, after, outputs);
            }
            if ledger_group {
                self.observe_ledger(id, group, after, body);
                return self.carry_out(id, group, now, after, outputs);
            }
            let index_body = match index_scanned {
                Some(Ok(Ok(scan_outputs))) => {
                    let (result, rest) = split_scan_outputs(scan_outputs);
                    outputs.extend(rest);
                    result
                }
                Some(Ok(Err(error))) => {
                    let corruption = partition_corruption(&error);
                    return self.fail_node(
                        id,
                        group,
                        NodeFailure {
                            text: format!("an index scan failed: {error}"),
                            corruption,
                        },
                    );
                }
                Some(Err(failure)) => return self.fail_node(id, group, failure),
                None => None,
            };
            self.check_local_index(id, group, after, body.as_ref(), index_body.as_ref());
            self.observe_stream(id, group, after, body.as_ref());
            self.observe_applied(id, group, after, body);
        }
        self.carry_out(id, group, now, after, outputs);
        if frozen {
            self.build_split_children(id, group);
        }
    }

    /// Carries out a replica's outputs through the production shard dispatch: WAL appends,
    /// replication messages, snapshot chunks and replies. `after` is the replica's applied
    /// slot once it produced them.
    fn carry_out(
        &mut self,
        id: NodeId,
        group: usize,
        now: MonotonicTime,
        after: Slot,
        outputs: Vec<Output>,
    ) {
        let partition = group as u64 + PARTITION_FIRST;
        for output in outputs {
            self.trace(id, group, &output_fingerprint(&output));
            let Some(runtime) = self.nodes.get_mut(&id).and_then(|n| n.runtime.as_mut()) else {
                return;
            };
            let Some(command) = runtime.dispatch.on_output(partition, output, now) else {
                continue;
            };
            match command {
                ShardCommand::Persist { core_lsn, body, .. } => {
                    let partition = PartitionId(group as u64 + PARTITION_FIRST);
                    let commit_at =
                        self.now_nanos + 1 + self.disk_rng.below(GROUP_COMMIT_DELAY_NANOS_MAX);
                    let Some(runtime) = self.nodes.get_mut(&id).and_then(|n| n.runtime.as_mut())
                    else {
                        return;
                    };
                    let queued = drive(
                        runtime
                            .wal
                            .enqueue(partition, REPLICATION_RECORD_KIND, &body),
                        &mut runtime.committer,
                    );
                    match queued {
                        Ok(Ok(durable)) => {
                            // Decoding every record costs a fifth of a debug run: only faulty
                            // disks, whose recovery the check is about, are tracked.
                            let record = if self.nodes[&id].faulty_disk {
                                acceptor_record(&body)
                            } else {
                                AcceptorRecord::default()
                            };
                            let Some(runtime) =
                                self.nodes.get_mut(&id).and_then(|n| n.runtime.as_mut())
                            else {
                                return;
                            };
                            runtime.unsynced.push((group, core_lsn, durable, record));
                            runtime.commit_at_nanos.get_or_insert(commit_at);
                        }
                        Ok(Err(error)) => {
                            let corruption = wal_corruption(&error);
                            return self.fail_node(
                                id,
                                group,
                                NodeFailure {
                                    text: format!("WAL enqueue: {error}"),
                                    corruption,
                                },
                            );
                        }
                        Err(failure) => return self.fail_node(id, group, failure),
                    }
                }
                ShardCommand::Replicate { to, envelope } => {
                    self.send(group, id, NodeId(to.node), Envelope::Replication(envelope));
                }
                ShardCommand::Snapshot { chunk, .. } => {
                    // A sender that is itself still fuzzy passes its own horizon on.
                    let sender_fuzzy_until = self.nodes[&id]
                        .fuzzy_until
                        .get(&group)
                        .copied()
                        .unwrap_or(Slot::ZERO);
                    let to = NodeId(chunk.to);
                    let horizon = after.max(sender_fuzzy_until);
                    let queue = self.snapshot_queues.entry((id, to)).or_default();
                    if queue.len() < SNAPSHOT_QUEUE_CHUNKS_MAX {
                        queue.push_back(InFlight {
                            group,
                            from: id,
                            to,
                            envelope: Envelope::Snapshot(chunk, horizon),
                        });
                    } else {
                        // The host asked for room first; a replica that overfills a queue
                        // ignored it, and the production bus would drop the chunk too.
                        self.violation(format!(
                            "{id:?} group {group}: a snapshot chunk beyond the room its tick \
                             reported"
                        ));
                    }
                }
                ShardCommand::Respond { frame, .. }
                    if group == 0
                        && self.options.broken == Some(Broken::GroupZeroRepliesLost)
                        && self.requests.get(&frame.request_id).is_some_and(|pending| {
                            matches!(pending.kind, RequestKind::Write { .. })
                        }) => {}
                ShardCommand::Respond { frame, .. } => {
                    self.on_reply(frame.request_id, frame.response)
                }
            }
        }
    }

    /// A node's wall clock in unix milliseconds: its local time after the workload's base.
    pub(crate) fn unix_ms(&self, node: NodeId) -> u64 {
        requests::UNIX_SECONDS_BASE * 1000 + self.local_time(node).as_nanos() / 1_000_000
    }

    pub(crate) fn local_time(&self, node: NodeId) -> MonotonicTime {
        let state = &self.nodes[&node];
        let skew = (i128::from(self.now_nanos) * i128::from(state.clock_rate_ppm)) / 1_000_000;
        let local = i128::from(state.clock_offset_nanos) + i128::from(self.now_nanos) + skew;
        MonotonicTime::from_nanos(u64::try_from(local).unwrap_or(0))
    }

    pub(crate) fn is_up(&self, node: NodeId) -> bool {
        self.nodes[&node].is_up()
    }

    /// Each node's replica of `group` as a liveness violation reports it: down, or its role,
    /// commit slot, applied slot and WAL queue.
    /// A replica that is up, and neither isolated nor clogged: one the faults leave alone.
    pub(crate) fn is_healthy(&self, node: NodeId) -> bool {
        self.is_up(node)
            && !self.isolated.contains_key(&node)
            && self.clogged.is_none_or(|(clogged, _)| clogged != node)
    }
}
