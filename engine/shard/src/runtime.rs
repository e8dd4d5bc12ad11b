//! The shard runtime: start-up and recovery, the shard table, the per-replica tasks, and the
//! dispatch of bus traffic to them.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use shoal_io::storage::dma::{DmaDirectory, DmaStorageFile};
use shoal_io::{Clock, StorageDirectory, SystemClock};
use shoal_model::request_codec::decode_request;
use shoal_partition::meta::{mark_unrecoverable, unrecoverable_marker_file_name};
use shoal_partition::replica::{RecoveredRecords, list_partitions};
use shoal_partition::{
    Event, Output, PartitionError, PartitionMeta, PartitionReplica, REPLICATION_RECORD_KIND,
    ReplicaConfig, ShardReplay,
};
use shoal_replication::NodeId;
use shoal_store::btree::PageCache;
use shoal_store::wal::{PartitionId, Wal, WalConfig};
use shoal_wire::messages::{
    BusMessage, NodeError, NodeRequest, NodeResponse, ReplicaStatus, ReplicationEnvelope,
    ReplicationMessageWire, RequestFrame, ResponseFrame, ShardAddress, SnapshotChunk,
};

use crate::metrics::ShardMetrics;

/// Events waiting for one replica. Bounded: see invariant 2 in the crate docs.
pub const REPLICA_QUEUE_EVENTS_MAX: usize = 4096;
/// `Persist` outputs of one replica waiting to be queued in the WAL.
pub const REPLICA_PERSIST_QUEUE_MAX: usize = 1024;
/// How long a DeletePartition waits for the replica to close and remove its files.
pub const DELETE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in flight on a shard (waiting for their reply); more are refused with `Busy`.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 65_536;

/// What the shard needs from the bus.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// How the bus names the connection a request came on.
    type Connection: Copy + 'static;
    /// Sends without waiting; the bus may drop the message when its queue to `to` is full.
    fn send_replication(&self, to: ShardAddress, envelope: ReplicationEnvelope);
    /// How many snapshot chunks `send_snapshot` takes toward `to` right now. Replicas produce
    /// no more than this per tick, so a follower that is down or slow holds back only its own
    /// transfer, never the replica's task (issue 14: a leader awaiting room toward a dead
    /// follower stopped its partition).
    fn snapshot_room(&self, to: ShardAddress) -> usize;
    /// Queues a chunk without waiting. Called only within `snapshot_room`; a chunk that finds
    /// no room anyway is dropped, the receiver sees the gap in `chunk_index`, and the transfer
    /// starts again.
    fn send_snapshot(&self, to: ShardAddress, chunk: SnapshotChunk);
    fn respond(&self, connection: Self::Connection, response: ResponseFrame);
}

#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub node: NodeId,
    pub shard: u16,
    /// This shard's own directory (one per shard: its WAL and its trees).
    pub directory: PathBuf,
    pub replica: ReplicaConfig,
    pub wal: WalConfig,
    pub cache_pages: usize,
    /// How often replicas get `Event::Tick`.
    pub tick_interval: Duration,
    /// Seeds election jitter; mixed with the node, shard and partition ids.
    pub seed: u64,
}

#[derive(Debug)]
pub enum ShardError {
    Storage(shoal_io::StorageError),
    Wal(shoal_store::wal::WalError),
    Partition(u64, shoal_partition::PartitionError),
    Meta(u64, shoal_partition::meta::MetaError),
}

impl std::fmt::Display for ShardError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardError::Storage(error) => write!(formatter, "{error}"),
            ShardError::Wal(error) => write!(formatter, "WAL: {error}"),
            ShardError::Partition(partition, error) => {
                write!(formatter, "partition {partition}: {error}")
            }
            ShardError::Meta(partition, error) => {
                write!(formatter, "partition {partition}: {error}")
            }
        }
    }
}

impl std::error::Error for ShardError {}

type Replica = PartitionReplica<DmaStorageFile, DmaDirectory>;

/// One row of the shard table.
struct TableRow {
    epoch: u64,
    events: Rc<LocalSender<Event>>,
    status: Rc<RefCell<ReplicaStatus>>,
    /// Set by the replica's task once it stopped and removed its files.
    destroyed: Rc<Cell<bool>>,
}

/// A partition whose replica on this shard refused to recover: it is out of service (its
/// requests are refused, its replication traffic dropped) and its files stay as they are, for
/// an operator to inspect or to rebuild the replica from its peers. The rest of the shard
/// serves on.
struct FailedPartition {
    epoch: u64,
    reason: String,
    /// Its WAL records are still kept, so a later start (of a fixed build, say) can try again.
    /// They are released, once a durable marker says the replica is given up, when the WAL
    /// needs the segment they are in: kept for ever, they would stop the whole shard's WAL.
    wal_records_kept: bool,
}

/// What [`Shard::recovery_failures`] reports about one partition that refused to recover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryFailure {
    pub partition: u64,
    pub epoch: u64,
    pub reason: String,
    /// Its WAL records were released: it will not be recovered from this node again.
    pub wal_records_released: bool,
}

/// The answer to a request that needs a partition this shard gave up: refused before anything
/// was done, so `NotApplied`.
fn recovery_failed_answer(partition: u64) -> NodeResponse {
    NodeResponse::Error(NodeError::NotApplied {
        message: format!(
            "partition {partition}: its replica on this shard refused to recover and is out of \
             service; its files are kept for inspection"
        ),
    })
}

struct PendingReply<C> {
    connection: C,
    partition: u64,
    request_id: u64,
    operation: &'static str,
    received: Instant,
}

pub struct Shard<T: Transport> {
    config: ShardConfig,
    directory: Rc<DmaDirectory>,
    cache: Rc<PageCache<DmaStorageFile>>,
    wal: Wal<DmaStorageFile>,
    transport: Rc<T>,
    table: RefCell<BTreeMap<u64, TableRow>>,
    /// Partitions whose replicas refused to recover; never in `table`.
    failed: RefCell<BTreeMap<u64, FailedPartition>>,
    replies: RefCell<HashMap<u64, PendingReply<T::Connection>>>,
    next_reply: Cell<u64>,
    metrics: Rc<ShardMetrics>,
    /// Partitions being created right now, so a repeated CreatePartition waits for nothing.
    creating: RefCell<std::collections::BTreeSet<u64>>,
}

fn error_kind(response: &NodeResponse) -> Option<&'static str> {
    match response {
        NodeResponse::Error(error) => Some(match error {
            NodeError::WrongOwner { .. } => "WrongOwner",
            NodeError::NotLeader { .. } => "NotLeader",
            NodeError::StaleEpoch { .. } => "StaleEpoch",
            NodeError::Dynamo { .. } => "Dynamo",
            NodeError::Busy { .. } => "Busy",
            NodeError::Malformed { .. } => "Malformed",
            NodeError::Internal { .. } => "Internal",
            NodeError::NotApplied { .. } => "NotApplied",
            NodeError::OutcomeUnknown { .. } => "OutcomeUnknown",
        }),
        _ => None,
    }
}

fn seed_for(config: &ShardConfig, partition: u64, incarnation: u64) -> u64 {
    let mut state = config.seed
        ^ config.node.0.rotate_left(17)
        ^ u64::from(config.shard).rotate_left(33)
        ^ partition.rotate_left(47)
        ^ incarnation;
    shoal_io::rng::splitmix64(&mut state)
}

impl<T: Transport + 'static> Shard<T> {
    /// Opens the shard's directory (probe and self-test), its WAL, and recovers every replica
    /// found there; then starts their tasks, the committer and the ticker.
    pub async fn start(config: ShardConfig, transport: Rc<T>) -> Result<Rc<Self>, ShardError> {
        std::fs::create_dir_all(&config.directory).map_err(|error| {
            ShardError::Storage(shoal_io::StorageError::new(
                shoal_io::StorageOperation::Open,
                config.directory.display().to_string(),
                error,
            ))
        })?;
        let directory = Rc::new(
            DmaDirectory::open(&config.directory)
                .await
                .map_err(ShardError::Storage)?,
        );
        let mut replay = ShardReplay::default();
        let (wal, report) = Wal::open(directory.as_ref(), config.wal.clone(), |record| {
            replay.visit(record)
        })
        .await
        .map_err(ShardError::Wal)?;
        if !replay.undecodable.is_empty() {
            shoal_io::fatal!(
                "shard {}: {} replication records passed their checksum but do not decode (first at \
                 WAL lsn {:?}); refusing to guess",
                config.shard,
                replay.undecodable.len(),
                replay.undecodable[0].0
            );
        }
        tracing::info!(shard = config.shard, ?report, "WAL recovered");
        let metrics = Rc::new(ShardMetrics::default());
        {
            let metrics = metrics.clone();
            wal.set_observer(move |batch| metrics.wal_batch(batch.records, batch.sync));
        }
        let committer = wal.clone();
        let shard_index = config.shard;
        glommio::spawn_local(async move {
            if let Err(error) = committer.run_committer().await {
                shoal_io::fatal!("shard {shard_index}: the WAL committer stopped: {error}");
            }
        })
        .detach();
        let cache = PageCache::new(config.cache_pages);
        let shard = Rc::new(Self {
            config,
            directory,
            cache,
            wal,
            transport,
            table: RefCell::new(BTreeMap::new()),
            failed: RefCell::new(BTreeMap::new()),
            replies: RefCell::new(HashMap::new()),
            next_reply: Cell::new(1),
            metrics,
            creating: RefCell::new(std::collections::BTreeSet::new()),
        });
        let orphans = shoal_partition::replica::remove_orphan_trees(shard.directory.as_ref())
            .await
            .map_err(|error| ShardError::Partition(0, error))?;
        if orphans > 0 {
            tracing::info!(
                shard = shard.config.shard,
                orphans,
                "removed trees of deleted partitions"
            );
        }
        let partitions = list_partitions(shard.directory.as_ref())
            .await
            .map_err(|error| ShardError::Partition(0, error))?;
        let names = shard.directory.list().await.map_err(ShardError::Storage)?;
        for partition in partitions {
            let meta = PartitionMeta::read(shard.directory.as_ref(), partition)
                .await
                .map_err(|error| ShardError::Meta(partition, error))?;
            let records = replay
                .partitions
                .remove(&partition)
                .unwrap_or_else(RecoveredRecords::default);
            if names.contains(&unrecoverable_marker_file_name(partition)) {
                // What is left of its records may miss any part of its log; they are never
                // read again (see `FailedPartition::wal_records_kept`).
                shard.wal.forget_partition(PartitionId(partition));
                let reason = "its replica refused to recover at an earlier start, and its WAL \
                              records were released since"
                    .to_string();
                tracing::error!(
                    shard = shard.config.shard,
                    partition,
                    %reason,
                    "partition replica out of service; its files are kept"
                );
                shard.failed.borrow_mut().insert(
                    partition,
                    FailedPartition {
                        epoch: meta.epoch,
                        reason,
                        wal_records_kept: false,
                    },
                );
                continue;
            }
            let epoch = meta.epoch;
            let now = SystemClock.now();
            let recovered = Replica::recover(
                meta,
                shard.config.node,
                shard.config.replica.clone(),
                seed_for(&shard.config, partition, now.as_nanos()),
                shard.directory.clone(),
                shard.cache.clone(),
                shard.wal.clone(),
                records,
                now,
            )
            .await;
            let replica = match recovered {
                Ok(replica) => replica,
                // The replica's durable state contradicts itself (a hole in its log, a
                // checkpoint without its intent, a record that does not convert): one replica
                // is lost, which its group tolerates, and the other partitions need not be.
                // I/O and storage errors still stop the shard: they are the node's, not the
                // partition's.
                Err(PartitionError::Corrupt(reason)) => {
                    tracing::error!(
                        shard = shard.config.shard,
                        partition,
                        %reason,
                        "partition replica refused to recover: out of service, its files are \
                         kept; the other partitions are served"
                    );
                    shard.failed.borrow_mut().insert(
                        partition,
                        FailedPartition {
                            epoch,
                            reason,
                            wal_records_kept: true,
                        },
                    );
                    continue;
                }
                Err(error) => return Err(ShardError::Partition(partition, error)),
            };
            tracing::info!(
                shard = shard.config.shard,
                partition,
                applied_slot = replica.applied_slot().0,
                "replica recovered"
            );
            shard.run_replica(replica);
        }
        shard.clone().spawn_ticker();
        Ok(shard)
    }

    pub fn node(&self) -> NodeId {
        self.config.node
    }

    pub fn index(&self) -> u16 {
        self.config.shard
    }

    pub fn metrics(&self) -> &ShardMetrics {
        &self.metrics
    }

    /// The partitions on this shard whose replicas refused to recover (none of them is in
    /// [`Shard::statuses`]).
    pub fn recovery_failures(&self) -> Vec<RecoveryFailure> {
        self.failed
            .borrow()
            .iter()
            .map(|(partition, failed)| RecoveryFailure {
                partition: *partition,
                epoch: failed.epoch,
                reason: failed.reason.clone(),
                wal_records_released: !failed.wal_records_kept,
            })
            .collect()
    }

    /// The replicas this shard serves.
    pub fn statuses(&self) -> Vec<ReplicaStatus> {
        self.table
            .borrow()
            .values()
            .map(|row| row.status.borrow().clone())
            .collect()
    }

    /// The shard's metrics as Prometheus text.
    /// Item requests handed to replicas and not answered yet, by partition.
    pub fn pending_replies(&self) -> BTreeMap<u64, usize> {
        let mut by_partition = BTreeMap::new();
        for pending in self.replies.borrow().values() {
            *by_partition.entry(pending.partition).or_default() += 1;
        }
        by_partition
    }

    pub fn render_metrics(&self) -> String {
        self.metrics.render(
            self.config.node.0,
            self.config.shard,
            &self.cache.stats(),
            &self.wal.stats(),
            &self.statuses(),
            &self.recovery_failures(),
        )
    }

    fn spawn_ticker(self: Rc<Self>) {
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(self.config.tick_interval).await;
                let senders: Vec<Rc<LocalSender<Event>>> = self
                    .table
                    .borrow()
                    .values()
                    .map(|row| row.events.clone())
                    .collect();
                for sender in senders {
                    // A full queue already has work; the next tick comes soon.
                    // The replica's task fills in the snapshot room (`with_snapshot_room`).
                    let _ = sender.try_send(Event::Tick { snapshot_room: 0 });
                }
                self.release_records_of_failed_partitions().await;
            }
        })
        .detach();
    }

    /// Releases the WAL records of a partition that refused to recover once they are in the
    /// segment the WAL reuses next: kept longer, they would stop every partition of the shard.
    /// The replica is marked unrecoverable first, durably, so that no later start recovers it
    /// from the records that happen to be left.
    async fn release_records_of_failed_partitions(&self) {
        let pinning: Vec<u64> = self
            .failed
            .borrow()
            .iter()
            .filter(|(partition, failed)| {
                failed.wal_records_kept && self.wal.pins_next_segment(PartitionId(**partition))
            })
            .map(|(partition, _)| *partition)
            .collect();
        for partition in pinning {
            if let Err(error) = mark_unrecoverable(self.directory.as_ref(), partition).await {
                shoal_io::fatal!(
                    "partition {partition}: marking its replica unrecoverable failed: {error}"
                );
            }
            self.wal.forget_partition(PartitionId(partition));
            if let Some(failed) = self.failed.borrow_mut().get_mut(&partition) {
                failed.wal_records_kept = false;
            }
            tracing::error!(
                shard = self.config.shard,
                partition,
                "released the WAL records of a partition replica that refused to recover, which \
                 the WAL needed: it will not be recovered from this node again; rebuild it"
            );
        }
    }

    /// Puts a replica in the shard table and starts its task and its WAL appender.
    fn run_replica(self: &Rc<Self>, replica: Replica) {
        let partition = replica.partition();
        let (events, receiver) = local_channel::new_bounded(REPLICA_QUEUE_EVENTS_MAX);
        let events = Rc::new(events);
        let status = Rc::new(RefCell::new(replica.status(SystemClock.now())));
        let destroyed = Rc::new(Cell::new(false));
        self.table.borrow_mut().insert(
            partition,
            TableRow {
                epoch: replica.meta().epoch,
                events: events.clone(),
                status: status.clone(),
                destroyed: destroyed.clone(),
            },
        );
        let (persists, persist_receiver) = local_channel::new_bounded(REPLICA_PERSIST_QUEUE_MAX);
        self.spawn_appender(partition, persist_receiver, events.clone());
        let shard = self.clone();
        glommio::spawn_local(async move {
            shard
                .replica_loop(replica, receiver, persists, status, destroyed)
                .await;
        })
        .detach();
    }

    /// Invariant 1: enqueue in order, await durability concurrently.
    fn spawn_appender(
        &self,
        partition: u64,
        receiver: LocalReceiver<(shoal_replication::Lsn, Vec<u8>)>,
        events: Rc<LocalSender<Event>>,
    ) {
        let wal = self.wal.clone();
        glommio::spawn_local(async move {
            while let Some((core_lsn, body)) = receiver.recv().await {
                let durable = match wal
                    .enqueue(PartitionId(partition), REPLICATION_RECORD_KIND, &body)
                    .await
                {
                    Ok(durable) => durable,
                    Err(error) => {
                        shoal_io::fatal!("partition {partition}: WAL append failed: {error}")
                    }
                };
                let events = events.clone();
                glommio::spawn_local(async move {
                    match durable.await {
                        Ok(wal_lsn) => {
                            let _ = events.send(Event::Persisted { core_lsn, wal_lsn }).await;
                        }
                        Err(error) => {
                            shoal_io::fatal!("partition {partition}: WAL write failed: {error}")
                        }
                    }
                })
                .detach();
            }
        })
        .detach();
    }

    async fn replica_loop(
        self: Rc<Self>,
        mut replica: Replica,
        receiver: LocalReceiver<Event>,
        persists: LocalSender<(shoal_replication::Lsn, Vec<u8>)>,
        status: Rc<RefCell<ReplicaStatus>>,
        destroyed: Rc<Cell<bool>>,
    ) {
        let partition = replica.partition();
        while let Some(event) = receiver.recv().await {
            if matches!(event, Event::Stop) {
                // Requests still queued behind the stop get no answer; their clients time out,
                // as for any replica that went away.
                drop(persists);
                if let Err(error) = replica.destroy().await {
                    shoal_io::fatal!("partition {partition}: deleting its files failed: {error}");
                }
                tracing::info!(shard = self.config.shard, partition, "replica deleted");
                destroyed.set(true);
                return;
            }
            let now = SystemClock.now();
            let event = self.with_snapshot_room(&replica, event);
            let outputs = match replica.handle(now, event).await {
                Ok(outputs) => outputs,
                // The replica's durable state or its I/O failed: its in-memory state can no
                // longer be trusted, and a restart recovers it from disk.
                Err(error) => shoal_io::fatal!("partition {partition}: {error}"),
            };
            *status.borrow_mut() = replica.status(now);
            for output in outputs {
                match output {
                    Output::Persist { core_lsn, body } => {
                        if persists.send((core_lsn, body)).await.is_err() {
                            shoal_io::fatal!("partition {partition}: the WAL appender is gone");
                        }
                    }
                    Output::Send { to, message } => {
                        let envelope = ReplicationEnvelope {
                            group: partition,
                            from: self.config.node.0,
                            to: to.0,
                            message: ReplicationMessageWire::from(message),
                        };
                        self.transport.send_replication(
                            ShardAddress {
                                node: to.0,
                                shard: self.config.shard,
                            },
                            envelope,
                        );
                    }
                    Output::Snapshot(chunk) => {
                        let to = ShardAddress {
                            node: chunk.to,
                            shard: self.config.shard,
                        };
                        self.transport.send_snapshot(to, chunk);
                    }
                    Output::Reply { reply_to, response } => self.reply(reply_to, response),
                }
            }
        }
    }

    /// A tick, with the room the bus has now toward the follower this replica is streaming a
    /// snapshot to (read here, at the moment the replica uses it, not when the tick was queued).
    fn with_snapshot_room(&self, replica: &Replica, event: Event) -> Event {
        match event {
            Event::Tick { .. } => Event::Tick {
                snapshot_room: replica.snapshot_destination().map_or(0, |to| {
                    self.transport.snapshot_room(ShardAddress {
                        node: to.0,
                        shard: self.config.shard,
                    })
                }),
            },
            other => other,
        }
    }

    fn reply(&self, reply_to: u64, response: NodeResponse) {
        let Some(pending) = self.replies.borrow_mut().remove(&reply_to) else {
            return;
        };
        self.metrics.request_served(
            pending.operation,
            pending.received.elapsed(),
            error_kind(&response),
        );
        self.transport.respond(
            pending.connection,
            ResponseFrame {
                request_id: pending.request_id,
                response,
            },
        );
    }

    fn respond_now(&self, connection: T::Connection, request_id: u64, response: NodeResponse) {
        self.transport.respond(
            connection,
            ResponseFrame {
                request_id,
                response,
            },
        );
    }

    /// Routes one message from the bus to the replica or the shard that handles it.
    pub async fn dispatch(self: &Rc<Self>, connection: T::Connection, message: BusMessage) {
        match message {
            BusMessage::Replication(envelopes) => {
                for envelope in envelopes {
                    if envelope.to != self.config.node.0 {
                        continue;
                    }
                    let sender = self
                        .table
                        .borrow()
                        .get(&envelope.group)
                        .map(|row| row.events.clone());
                    let Some(sender) = sender else {
                        continue;
                    };
                    let Ok(message) = shoal_replication::Message::try_from(envelope.message) else {
                        // A peer sent a message no correct replica could have produced.
                        self.metrics.replication_message_dropped();
                        continue;
                    };
                    let event = Event::Message {
                        from: NodeId(envelope.from),
                        message,
                    };
                    if sender.try_send(event).is_err() {
                        self.metrics.replication_message_dropped();
                    }
                }
            }
            BusMessage::Snapshot(chunk) => {
                let sender = self
                    .table
                    .borrow()
                    .get(&chunk.group)
                    .map(|row| row.events.clone());
                if let Some(sender) = sender {
                    let _ = sender.send(Event::Snapshot(chunk)).await;
                }
            }
            BusMessage::Request(RequestFrame {
                request_id,
                request,
            }) => self.dispatch_request(connection, request_id, request).await,
            BusMessage::Response(_) | BusMessage::Hello { .. } => {}
        }
    }

    async fn dispatch_request(
        self: &Rc<Self>,
        connection: T::Connection,
        request_id: u64,
        request: NodeRequest,
    ) {
        match request {
            NodeRequest::Status => {
                let response = NodeResponse::Status {
                    node: self.config.node.0,
                    shard: self.config.shard,
                    replicas: self.statuses(),
                };
                self.respond_now(connection, request_id, response);
            }
            NodeRequest::DeletePartition { partition, epoch } => {
                let response = self.delete_partition(partition, epoch).await;
                self.respond_now(connection, request_id, response);
            }
            NodeRequest::CreatePartition {
                partition,
                epoch,
                key_schema,
                membership,
            } => {
                let response =
                    match PartitionMeta::from_parts(partition, epoch, &key_schema, &membership) {
                        Some(meta) => self.create_partition(meta).await,
                        None => NodeResponse::Error(NodeError::Malformed {
                            message: "the replica set is not a valid membership".to_string(),
                        }),
                    };
                self.respond_now(connection, request_id, response);
            }
            NodeRequest::Item {
                partition,
                epoch,
                request,
            } => {
                let row = self
                    .table
                    .borrow()
                    .get(&partition)
                    .map(|row| (row.epoch, row.events.clone()));
                let Some((current_epoch, sender)) = row else {
                    // A replica that refused to recover is still this shard's: answering
                    // WrongOwner would send the router to refresh a map that is right. It is
                    // not the leader, and never will be until rebuilt, so the router tries the
                    // next replica.
                    let response = if self.failed.borrow().contains_key(&partition) {
                        NodeError::NotLeader {
                            partition,
                            leader_hint: None,
                        }
                    } else {
                        NodeError::WrongOwner { partition }
                    };
                    self.respond_now(connection, request_id, NodeResponse::Error(response));
                    return;
                };
                if current_epoch != epoch {
                    self.respond_now(
                        connection,
                        request_id,
                        NodeResponse::Error(NodeError::StaleEpoch {
                            partition,
                            current_epoch,
                        }),
                    );
                    return;
                }
                if self.replies.borrow().len() >= REQUESTS_IN_FLIGHT_MAX {
                    self.metrics.request_refused_busy();
                    self.respond_now(
                        connection,
                        request_id,
                        NodeResponse::Error(NodeError::Busy { partition }),
                    );
                    return;
                }
                // The router encoded what it prepared; a request that does not decode came
                // from a build with another format or a bug, and is refused unapplied.
                let request = match decode_request(&request) {
                    Ok(request) => request,
                    Err(error) => {
                        self.respond_now(
                            connection,
                            request_id,
                            NodeResponse::Error(NodeError::Malformed {
                                message: error.message().to_string(),
                            }),
                        );
                        return;
                    }
                };
                let reply_to = self.next_reply.get();
                self.next_reply.set(reply_to + 1);
                self.replies.borrow_mut().insert(
                    reply_to,
                    PendingReply {
                        connection,
                        partition,
                        request_id,
                        operation: request.operation_label(),
                        received: Instant::now(),
                    },
                );
                let event = Event::Request {
                    reply_to,
                    epoch,
                    request,
                };
                if sender.try_send(event).is_err() {
                    self.metrics.request_refused_busy();
                    self.reply(reply_to, NodeResponse::Error(NodeError::Busy { partition }));
                }
            }
        }
    }

    /// Stops the replica's task, which closes it and removes its files, and waits (bounded by
    /// [`DELETE_TIMEOUT`]) until that is done.
    async fn delete_partition(self: &Rc<Self>, partition: u64, epoch: u64) -> NodeResponse {
        if self.failed.borrow().contains_key(&partition) {
            // Its files stay for inspection until an operator removes them.
            return recovery_failed_answer(partition);
        }
        if self.creating.borrow().contains(&partition) {
            // Its CreatePartition is still running (requests are dispatched concurrently).
            // Answering Deleted now, as for a replica that is not there, let the creation
            // finish afterwards and leave a replica nobody would delete (issue 15). Busy: not
            // applied, the sender asks again later.
            return NodeResponse::Error(NodeError::Busy { partition });
        }
        let row = {
            let table = self.table.borrow();
            match table.get(&partition) {
                None => return NodeResponse::Deleted,
                Some(row) if row.epoch > epoch => {
                    return NodeResponse::Error(NodeError::StaleEpoch {
                        partition,
                        current_epoch: row.epoch,
                    });
                }
                Some(row) => (row.events.clone(), row.destroyed.clone()),
            }
        };
        self.table.borrow_mut().remove(&partition);
        let (events, destroyed) = row;
        // The replica is out of the shard table from here on, whatever happens to its files:
        // the failures below leave the deletion done in part, an outcome the caller cannot
        // know.
        if events.send(Event::Stop).await.is_err() {
            return NodeResponse::Error(NodeError::OutcomeUnknown {
                message: format!("partition {partition}: its task is gone"),
            });
        }
        let started = Instant::now();
        while !destroyed.get() {
            if started.elapsed() > DELETE_TIMEOUT {
                return NodeResponse::Error(NodeError::OutcomeUnknown {
                    message: format!("partition {partition}: deletion still running"),
                });
            }
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        NodeResponse::Deleted
    }

    async fn create_partition(self: &Rc<Self>, meta: PartitionMeta) -> NodeResponse {
        let partition = meta.partition;
        if self.failed.borrow().contains_key(&partition) {
            return recovery_failed_answer(partition);
        }
        if let Some(row) = self.table.borrow().get(&partition) {
            return if row.epoch == meta.epoch {
                NodeResponse::Created
            } else {
                NodeResponse::Error(NodeError::StaleEpoch {
                    partition,
                    current_epoch: row.epoch,
                })
            };
        }
        if !meta.membership.contains(self.config.node) {
            return NodeResponse::Error(NodeError::Malformed {
                message: format!(
                    "node {} is not in the replica set of partition {partition}",
                    self.config.node.0
                ),
            });
        }
        if meta.membership.member_count() == 0
            || meta.membership.member_count() > shoal_replication::limits::MEMBERS_MAX
        {
            return NodeResponse::Error(NodeError::Malformed {
                message: "a replica set has 1 to 7 members".to_string(),
            });
        }
        if !self.creating.borrow_mut().insert(partition) {
            return NodeResponse::Error(NodeError::Busy { partition });
        }
        let now = SystemClock.now();
        let created = Replica::create(
            meta,
            self.config.node,
            self.config.replica.clone(),
            seed_for(&self.config, partition, now.as_nanos()),
            self.directory.clone(),
            self.cache.clone(),
            self.wal.clone(),
            now,
        )
        .await;
        self.creating.borrow_mut().remove(&partition);
        match created {
            Ok(replica) => {
                tracing::info!(shard = self.config.shard, partition, "replica created");
                self.run_replica(replica);
                NodeResponse::Created
            }
            // Creation may have failed after writing the meta file or a tree file: what is left
            // on disk is unknown.
            Err(error) => NodeResponse::Error(NodeError::OutcomeUnknown {
                message: format!("cannot create partition {partition}: {error}"),
            }),
        }
    }
}
