//! The shard runtime: start-up and recovery, the shard table, the per-replica tasks, and the
//! dispatch of bus traffic to them.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use shoal_io::storage::dma::{DmaDirectory, DmaStorageFile};
use shoal_io::{Clock, SystemClock};
use shoal_partition::meta::mark_unrecoverable;
use shoal_partition::replica::StreamMaintenance;
use shoal_partition::time_to_live::SweepTarget;
use shoal_partition::traffic::TrafficTracker;
use shoal_partition::{
    Event, PartitionMeta, PartitionReplica, REPLICATION_RECORD_KIND, ReplicaConfig, ShardReplay,
};
use shoal_replication::{MonotonicTime, NodeId};
use shoal_store::btree::PageCache;
use shoal_store::wal::{PartitionId, Wal, WalConfig};
use shoal_wire::messages::{
    BusMessage, NodeAddressWire, NodeError, NodeResponse, ReplicaLoad, ReplicaRole, ReplicaStatus,
    ReplicationEnvelope, ResponseFrame, ShardAddress, SnapshotChunk,
};

use crate::dispatch::liveness::LivenessConfig;
use crate::dispatch::{Command, Decision, Delivery, Dispatch, Routed};
use crate::metrics::ShardMetrics;
use crate::queue::{self, QueueReceiver, QueueSender};
use crate::recovery::RecoveryContext;

/// Events waiting for one replica. Bounded: see invariant 2 in the crate docs.
pub const REPLICA_QUEUE_EVENTS_MAX: usize = 4096;
/// `Persist` outputs of one replica waiting to be queued in the WAL.
pub const REPLICA_PERSIST_QUEUE_MAX: usize = 1024;
/// How long a DeletePartition waits for the replica to close and remove its files.
pub const DELETE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the shard offers each partition it leads, of a table with Time to Live enabled, a
/// sweep step (shoal_partition::time_to_live). With at most
/// `shoal_partition::time_to_live::SWEEP_DELETES_PER_STEP` deletes a step, a partition's
/// sweeper deletes at most 1,280 items a second: the bound on the write load TTL adds.
pub const TIME_TO_LIVE_SWEEP_STEP_INTERVAL: Duration = Duration::from_millis(50);
/// How often the shard offers each partition it leads a stream maintenance step (shard
/// rollover and trim, shoal_partition's replica/stream.rs). A step trims at most
/// `shoal_model::stream::TRIM_RECORDS_PER_STEP_MAX` records, so trimming keeps up with any
/// partition that adds fewer records a second than that; a partition without stream keys does
/// nothing.
pub const STREAM_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);
/// The longest the ticker sleeps when no replica is due sooner (half the liveness ping
/// interval caps it too). It still looks at the WAL this often: when the WAL moves to another
/// segment every replica is ticked once (`spawn_ticker`), and a replica that pins the segment
/// the WAL reuses next learns it within this. Before, the ticker woke every `tick_interval`
/// (10 ms) whatever was due: 100 wake-ups a second per shard of an idle node.
pub const TICKER_IDLE_SLEEP_MAX: Duration = Duration::from_millis(100);

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
    /// The least time between the starts of two Time to Live passes over one partition
    /// (`shoal node --ttl-sweep-period-seconds`).
    pub time_to_live_sweep_period: Duration,
    /// How long stream records are kept (`shoal node --stream-retention-seconds`; DynamoDB's
    /// 24 hours by default).
    pub stream_retention: Duration,
    /// How long a stream shard stays open (`shoal node --stream-shard-rollover-seconds`).
    pub stream_shard_rollover: Duration,
    /// The other nodes of the cluster. The shard pings the same shard of each every idle
    /// heartbeat interval and tells its replicas when one goes silent for a minimum election
    /// timeout or comes back (`dispatch::liveness`): quiesced followers wake on it.
    pub peers: Vec<NodeId>,
}

#[derive(Debug)]
pub enum ShardError {
    Storage(shoal_io::StorageError),
    Wal(shoal_store::wal::WalError),
    Partition(u64, shoal_partition::PartitionError),
    Meta(u64, shoal_partition::meta::MetaError),
    /// Replication records passed their checksum but do not decode (recovery rule 1).
    UndecodableRecords {
        count: usize,
        first_lsn: u64,
        first_partition: u64,
    },
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
            ShardError::UndecodableRecords {
                count,
                first_lsn,
                first_partition,
            } => write!(
                formatter,
                "{count} replication records pass their checksum but do not decode (the first at \
                 WAL lsn {first_lsn}, partition {first_partition}); refusing to guess"
            ),
        }
    }
}

impl std::error::Error for ShardError {}

type Replica = PartitionReplica<DmaStorageFile, DmaDirectory>;

/// A replica task's side of its WAL appender (`Shard::spawn_appender`).
struct ReplicaAppender {
    persists: QueueSender<(shoal_replication::Lsn, Vec<u8>)>,
    task: glommio::Task<()>,
}

/// What a replica's task publishes to the shard table after each event (the row's side is in
/// [`TableRow`]).
struct Published {
    status: Rc<RefCell<ReplicaStatus>>,
    tick_due: Rc<Cell<MonotonicTime>>,
    stream_upkeep: Rc<Cell<bool>>,
    /// Set once the replica stopped and removed its files.
    destroyed: Rc<Cell<bool>>,
}

/// One row of the shard table.
struct TableRow {
    events: Rc<QueueSender<Event>>,
    /// The replica's `tick_due` after the last event it handled: the ticker skips it until then.
    tick_due: Rc<Cell<MonotonicTime>>,
    status: Rc<RefCell<ReplicaStatus>>,
    /// The replica's traffic tracker, read for `NodeRequest::Loads`.
    traffic: Rc<RefCell<TrafficTracker>>,
    /// Whether the replica has stream upkeep to do (`PartitionReplica::has_stream_upkeep`),
    /// as of its last event: only those get the periodic maintenance step.
    stream_upkeep: Rc<Cell<bool>>,
    /// Set by the replica's task once it stopped and removed its files.
    destroyed: Rc<Cell<bool>>,
    /// Set when the replica is being deleted: its WAL appender drops what it has not enqueued.
    stopping: Rc<Cell<bool>>,
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

/// What [`Shard::on_unknown_node`] calls.
type UnknownNodeHook = Box<dyn Fn(NodeId)>;

pub struct Shard<T: Transport> {
    config: ShardConfig,
    directory: Rc<DmaDirectory>,
    cache: Rc<PageCache<DmaStorageFile>>,
    wal: Wal<DmaStorageFile>,
    transport: Rc<T>,
    /// The replicas' queues and what their tasks report; the same partitions as the routes of
    /// `dispatch`.
    table: RefCell<BTreeMap<u64, TableRow>>,
    /// Partitions whose replicas refused to recover; never in `table`.
    failed: RefCell<BTreeMap<u64, FailedPartition>>,
    /// The dispatch rules and the requests waiting for their replicas (shared with the
    /// simulator, dispatch.rs).
    dispatch: RefCell<Dispatch<T::Connection>>,
    metrics: Rc<ShardMetrics>,
    /// The TTL attribute (and the table's local indexes) of each partition here whose table
    /// has Time to Live enabled, as the host last learned them from the metadata group
    /// ([`Shard::set_time_to_live`]).
    time_to_live: RefCell<BTreeMap<u64, SweepTarget>>,
    /// The cluster's nodes as the host last learned them ([`Shard::set_cluster_nodes`]):
    /// the answer to `NodeRequest::ClusterNodes`.
    cluster_nodes: RefCell<Vec<NodeAddressWire>>,
    /// Called with a node that a membership change adds and that is not on the node list yet
    /// ([`Shard::on_unknown_node`]): the host reads the list again sooner.
    unknown_node_hook: RefCell<Option<UnknownNodeHook>>,
    /// The earliest `tick_due` of any replica as last known: the ticker looks at the table
    /// only from then on. A replica whose due time comes earlier lowers it after its event.
    next_tick_scan: Cell<MonotonicTime>,
    /// When the sleeping ticker means to wake, and how to wake it sooner: a replica whose due
    /// time comes before then wakes it after its event ([`Shard::due_earlier`]).
    ticker_wakes_at: Cell<MonotonicTime>,
    /// The least time the sleeping ticker wakes at: `tick_interval` after it fell asleep.
    ticker_earliest: Cell<MonotonicTime>,
    ticker_waker: RefCell<Option<std::task::Waker>>,
    /// The sweeper task, parked while no partition here has Time to Live enabled
    /// ([`Shard::set_time_to_live`] wakes it).
    sweeper_waker: RefCell<Option<std::task::Waker>>,
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
        let mut dispatch = Dispatch::new(config.node, config.shard);
        let core = &config.replica.core;
        // Whether or not this node's leaders quiesce their groups: a follower here quiesces
        // when a leader elsewhere asks it to (a cluster turning quiescence on node by node,
        // `shoal node --quiesce`), and then only liveness wakes it if that leader's node dies.
        dispatch.enable_liveness(
            LivenessConfig {
                ping_interval: core.idle_heartbeat_interval,
                unreachable_after: core.election_timeout_min,
            },
            // A new number at every start: the wall clock's nanoseconds and the process.
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64)
                ^ u64::from(std::process::id()).rotate_left(32),
            config.peers.iter().copied(),
            SystemClock.now(),
        );
        let dispatch = RefCell::new(dispatch);
        let shard = Rc::new(Self {
            config,
            directory,
            cache,
            wal,
            transport,
            dispatch,
            table: RefCell::new(BTreeMap::new()),
            failed: RefCell::new(BTreeMap::new()),
            metrics,
            time_to_live: RefCell::new(BTreeMap::new()),
            cluster_nodes: RefCell::new(Vec::new()),
            unknown_node_hook: RefCell::new(None),
            next_tick_scan: Cell::new(MonotonicTime::ZERO),
            ticker_wakes_at: Cell::new(MonotonicTime::ZERO),
            ticker_earliest: Cell::new(MonotonicTime::ZERO),
            ticker_waker: RefCell::new(None),
            sweeper_waker: RefCell::new(None),
        });
        let now = SystemClock.now();
        let recovered = crate::recovery::recover_shard(
            shard.directory.clone(),
            &shard.wal,
            replay,
            RecoveryContext {
                node: shard.config.node,
                replica: &shard.config.replica,
                cache: shard.cache.clone(),
                now,
            },
            |partition| seed_for(&shard.config, partition, now.as_nanos()),
        )
        .await?;
        if recovered.orphan_trees_removed > 0 {
            tracing::info!(
                shard = shard.config.shard,
                orphans = recovered.orphan_trees_removed,
                "removed trees of deleted partitions"
            );
        }
        for failure in recovered.failed {
            tracing::error!(
                shard = shard.config.shard,
                partition = failure.partition,
                reason = %failure.reason,
                "partition replica refused to recover: out of service, its files are kept; the \
                 other partitions are served"
            );
            shard
                .dispatch
                .borrow_mut()
                .add_out_of_service(failure.partition, failure.epoch);
            shard.failed.borrow_mut().insert(
                failure.partition,
                FailedPartition {
                    epoch: failure.epoch,
                    reason: failure.reason,
                    wal_records_kept: !failure.wal_records_released,
                },
            );
        }
        for replica in recovered.replicas {
            tracing::info!(
                shard = shard.config.shard,
                partition = replica.partition(),
                applied_slot = replica.applied_slot().0,
                "replica recovered"
            );
            shard.run_replica(replica);
        }
        shard.clone().spawn_ticker();
        shard.clone().spawn_sweeper();
        shard.clone().spawn_stream_maintenance();
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

    /// Every replica's traffic over the last seconds, as of `now` (src/traffic.rs of
    /// engine/partition).
    pub fn loads(&self, now: MonotonicTime) -> Vec<ReplicaLoad> {
        self.table
            .borrow()
            .iter()
            .map(|(partition, row)| {
                let load = row.traffic.borrow_mut().load(now);
                ReplicaLoad {
                    partition: *partition,
                    epoch: row.status.borrow().epoch,
                    read_milli_per_second: load.read_milli_per_second,
                    write_milli_per_second: load.write_milli_per_second,
                    samples: load.samples,
                    cut: load.cut,
                    top_key_permille: load.top_key_permille,
                }
            })
            .collect()
    }

    /// The shard's metrics as Prometheus text.
    /// Item requests handed to replicas and not answered yet, by partition.
    pub fn pending_replies(&self) -> BTreeMap<u64, usize> {
        self.dispatch.borrow().pending_replies()
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
            // Counted, not compared by index: with few segments, two moves between scans
            // would bring the index back where it was.
            let mut segments_initialised = self.wal.stats().segments_initialised;
            loop {
                self.ticker_sleep().await;
                // A quiet replica is ticked only when its timers or its duties are due
                // (`PartitionReplica::tick_due`): idle partitions cost next to nothing. When
                // the WAL moves to another segment, every replica is ticked once: whether it
                // pins a segment the WAL reuses soon (a duty that `tick_due` cannot foresee,
                // since other partitions' writes bring it closer) changes only then.
                let now = SystemClock.now();
                let initialised = self.wal.stats().segments_initialised;
                let segment_moved = initialised != segments_initialised;
                segments_initialised = initialised;
                if !segment_moved && now < self.next_tick_scan.get() {
                    self.clone().check_liveness(now);
                    continue;
                }
                let mut next_scan = MonotonicTime::from_nanos(u64::MAX);
                let senders: Vec<Rc<QueueSender<Event>>> = self
                    .table
                    .borrow()
                    .values()
                    .filter(|row| {
                        let due = row.tick_due.get();
                        if due > now && !segment_moved {
                            next_scan = next_scan.min(due);
                            return false;
                        }
                        true
                    })
                    .map(|row| row.events.clone())
                    .collect();
                // The replicas ticked now report their next due time after the tick.
                self.next_tick_scan.set(next_scan);
                for sender in senders {
                    // A full queue already has work; the next tick comes soon.
                    // The replica's task fills in the snapshot room (`with_snapshot_room`).
                    let _ = sender.try_send(Event::Tick { snapshot_room: 0 });
                }
                self.clone().check_liveness(now);
                self.release_records_of_failed_partitions().await;
            }
        })
        .detach();
    }

    /// Sleeps until the earliest replica is due, at least `tick_interval` (the resolution of
    /// every replica timer, and the least time between two scans) and at most
    /// [`TICKER_IDLE_SLEEP_MAX`] or half the liveness ping interval; woken sooner when a
    /// replica's due time comes earlier ([`Shard::due_earlier`]), but never before
    /// `tick_interval` has passed: a replica that is due again at once after every tick is
    /// ticked every `tick_interval`, as by a fixed ticker, not in a loop.
    async fn ticker_sleep(&self) {
        let now = SystemClock.now();
        // Liveness pings are sent when a check finds them due: checking every half interval
        // keeps a peer's pings at most one and a half intervals apart.
        let longest = TICKER_IDLE_SLEEP_MAX
            .min(self.config.replica.core.idle_heartbeat_interval / 2)
            .max(self.config.tick_interval);
        let sleep = self
            .next_tick_scan
            .get()
            .saturating_duration_since(now)
            .clamp(self.config.tick_interval, longest);
        self.ticker_earliest
            .set(now.saturating_add(self.config.tick_interval));
        self.ticker_wakes_at.set(now.saturating_add(sleep));
        loop {
            let target = self.ticker_wakes_at.get();
            let now = SystemClock.now();
            if now >= target {
                break;
            }
            // Ready once a replica moved the wake time earlier: the loop sleeps again, until
            // the new time.
            let moved_earlier = std::future::poll_fn(|context| {
                if self.ticker_wakes_at.get() < target {
                    return std::task::Poll::Ready(());
                }
                *self.ticker_waker.borrow_mut() = Some(context.waker().clone());
                std::task::Poll::Pending
            });
            let sleep = target.saturating_duration_since(now);
            futures_lite::future::or(glommio::timer::sleep(sleep), moved_earlier).await;
        }
        self.ticker_waker.borrow_mut().take();
    }

    /// A replica is due at `due`: lowers the ticker's next scan to it and, if the ticker sleeps
    /// past it, wakes the ticker so that it sleeps until then instead (not before its
    /// `tick_interval` since it fell asleep).
    fn due_earlier(&self, due: MonotonicTime) {
        if due >= self.next_tick_scan.get() {
            return;
        }
        self.next_tick_scan.set(due);
        let wake_at = due.max(self.ticker_earliest.get());
        if wake_at < self.ticker_wakes_at.get() {
            self.ticker_wakes_at.set(wake_at);
            let waker = self.ticker_waker.borrow_mut().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// Pings the peers whose ping is due and tells every replica of a peer gone silent, in a
    /// task of its own (a full replica queue must not hold up the ticker).
    fn check_liveness(self: Rc<Self>, now: MonotonicTime) {
        let (pings, events) = self.dispatch.borrow_mut().liveness_due(now);
        for ping in pings {
            if let Command::Replicate { to, envelope } = ping {
                self.transport.send_replication(to, envelope);
            }
        }
        if events.is_empty() {
            return;
        }
        glommio::spawn_local(async move {
            for routed in events {
                if let Routed::Replica {
                    partition,
                    event,
                    delivery,
                } = routed
                {
                    self.deliver(partition, event, delivery).await;
                }
            }
        })
        .detach();
    }

    /// Sets which partitions have Time to Live enabled, and on which attribute: the host reads
    /// the tables' settings from the metadata group (engine/shard README.md, "Time to Live")
    /// and passes the partitions of this shard. A partition left out is not swept.
    pub fn set_time_to_live(&self, targets: BTreeMap<u64, SweepTarget>) {
        let enabled = !targets.is_empty();
        *self.time_to_live.borrow_mut() = targets;
        if enabled && let Some(waker) = self.sweeper_waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Sets the cluster's node list (every node, this one included), as the host read it from
    /// the metadata group: this shard answers `NodeRequest::ClusterNodes` with it, and watches
    /// the liveness of exactly the other nodes on it (a node that joined is watched from now, one
    /// that left is forgotten). The host makes each node reachable on its transport first.
    pub fn set_cluster_nodes(&self, nodes: Vec<NodeAddressWire>) {
        let peers: std::collections::BTreeSet<NodeId> = nodes
            .iter()
            .map(|node| NodeId(node.node))
            .filter(|node| *node != self.config.node)
            .collect();
        self.dispatch
            .borrow_mut()
            .set_peers(&peers, SystemClock.now());
        *self.cluster_nodes.borrow_mut() = nodes;
    }

    /// The cluster's node list, as last set.
    pub fn cluster_nodes(&self) -> Vec<NodeAddressWire> {
        self.cluster_nodes.borrow().clone()
    }

    /// Sets what to call when a membership change asks a replica here to add a node that is
    /// not on the node list: its leader here could not send to it until the list is read
    /// again (a node that just joined), so the host reads it now rather than at its next
    /// period.
    pub fn on_unknown_node(&self, hook: impl Fn(NodeId) + 'static) {
        *self.unknown_node_hook.borrow_mut() = Some(Box::new(hook));
    }

    fn note_added_node(&self, event: &Event) {
        let Event::ChangeMembership { change, .. } = event else {
            return;
        };
        let added = match change {
            shoal_replication::MembershipChange::AddFullReplica(node)
            | shoal_replication::MembershipChange::AddLogReplica(node) => *node,
            shoal_replication::MembershipChange::Remove(_) => return,
        };
        let known = self
            .cluster_nodes
            .borrow()
            .iter()
            .any(|listed| listed.node == added.0);
        if !known && let Some(hook) = self.unknown_node_hook.borrow().as_ref() {
            hook(added);
        }
    }

    /// The partitions with Time to Live enabled, as last set.
    pub fn time_to_live(&self) -> BTreeMap<u64, SweepTarget> {
        self.time_to_live.borrow().clone()
    }

    /// Every [`TIME_TO_LIVE_SWEEP_STEP_INTERVAL`], queues a sweep step for each partition with
    /// TTL enabled that a replica here leads. A full queue drops the step: foreground traffic
    /// comes first, and the next step comes soon. While no partition here has TTL enabled the
    /// task sleeps until one has: waking every 50 ms to find nothing to do was two thirds of
    /// an idle shard's timer wake-ups.
    fn spawn_sweeper(self: Rc<Self>) {
        glommio::spawn_local(async move {
            loop {
                std::future::poll_fn(|context| {
                    if self.time_to_live.borrow().is_empty() {
                        *self.sweeper_waker.borrow_mut() = Some(context.waker().clone());
                        std::task::Poll::Pending
                    } else {
                        std::task::Poll::Ready(())
                    }
                })
                .await;
                glommio::timer::sleep(TIME_TO_LIVE_SWEEP_STEP_INTERVAL).await;
                let targets = self.time_to_live.borrow().clone();
                if targets.is_empty() {
                    continue;
                }
                let now_unix_seconds = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |elapsed| elapsed.as_secs());
                for (partition, target) in targets {
                    let sender = match self.table.borrow().get(&partition) {
                        Some(row)
                            if matches!(
                                row.status.borrow().role,
                                ReplicaRole::Leader | ReplicaRole::LeaderWithLease
                            ) =>
                        {
                            row.events.clone()
                        }
                        _ => continue,
                    };
                    let _ = sender.try_send(Event::SweepExpired {
                        target,
                        now_unix_seconds,
                        pass_period: self.config.time_to_live_sweep_period,
                    });
                }
            }
        })
        .detach();
    }

    /// Every [`STREAM_MAINTENANCE_INTERVAL`], queues a stream maintenance step for each
    /// partition a replica here leads that has stream upkeep to do (a stream's records or a
    /// step in flight; the others would do nothing, and waking each of an idle node's leaders
    /// every second was a good part of its idle CPU). A full queue drops the step: foreground
    /// traffic comes first, and the next step comes soon.
    fn spawn_stream_maintenance(self: Rc<Self>) {
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(STREAM_MAINTENANCE_INTERVAL).await;
                let settings = StreamMaintenance {
                    unix_ms: unix_now_ms(),
                    retention_ms: self.config.stream_retention.as_millis() as u64,
                    shard_rollover_ms: self.config.stream_shard_rollover.as_millis() as u64,
                };
                let senders: Vec<Rc<QueueSender<Event>>> = self
                    .table
                    .borrow()
                    .values()
                    .filter(|row| {
                        row.stream_upkeep.get()
                            && matches!(
                                row.status.borrow().role,
                                ReplicaRole::Leader | ReplicaRole::LeaderWithLease
                            )
                    })
                    .map(|row| row.events.clone())
                    .collect();
                for sender in senders {
                    let _ = sender.try_send(Event::StreamMaintain(settings));
                }
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
        let (events, receiver) = queue::bounded(REPLICA_QUEUE_EVENTS_MAX);
        let events = Rc::new(events);
        let status = Rc::new(RefCell::new(replica.status(SystemClock.now())));
        let tick_due = Rc::new(Cell::new(MonotonicTime::ZERO));
        self.due_earlier(MonotonicTime::ZERO);
        let destroyed = Rc::new(Cell::new(false));
        let stopping = Rc::new(Cell::new(false));
        let stream_upkeep = Rc::new(Cell::new(replica.has_stream_upkeep()));
        self.dispatch
            .borrow_mut()
            .add_replica(partition, replica.meta().epoch);
        self.table.borrow_mut().insert(
            partition,
            TableRow {
                events: events.clone(),
                tick_due: tick_due.clone(),
                status: status.clone(),
                traffic: replica.traffic(),
                stream_upkeep: stream_upkeep.clone(),
                destroyed: destroyed.clone(),
                stopping: stopping.clone(),
            },
        );
        let (persists, persist_receiver) = queue::bounded(REPLICA_PERSIST_QUEUE_MAX);
        let appender = self.spawn_appender(
            partition,
            persist_receiver,
            events.clone(),
            stopping.clone(),
        );
        let shard = self.clone();
        glommio::spawn_local(async move {
            shard
                .replica_loop(
                    replica,
                    receiver,
                    ReplicaAppender {
                        persists,
                        task: appender,
                    },
                    Published {
                        status,
                        tick_due,
                        stream_upkeep,
                        destroyed,
                    },
                )
                .await;
        })
        .detach();
    }

    /// Invariant 1: enqueue in order, await durability concurrently. The task ends once the
    /// replica's sender is dropped and its queue is empty; once `stopping` is set (the replica
    /// is being deleted) it drops what is left instead of enqueueing it.
    fn spawn_appender(
        &self,
        partition: u64,
        receiver: QueueReceiver<(shoal_replication::Lsn, Vec<u8>)>,
        events: Rc<QueueSender<Event>>,
        stopping: Rc<Cell<bool>>,
    ) -> glommio::Task<()> {
        let wal = self.wal.clone();
        glommio::spawn_local(async move {
            while let Some((core_lsn, body)) = receiver.recv().await {
                if stopping.get() {
                    continue;
                }
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
    }

    async fn replica_loop(
        self: Rc<Self>,
        mut replica: Replica,
        receiver: QueueReceiver<Event>,
        appender: ReplicaAppender,
        published: Published,
    ) {
        let Published {
            status,
            tick_due,
            stream_upkeep,
            destroyed,
        } = published;
        let partition = replica.partition();
        // Whether this replica's split children are built here (or not this node's to build).
        let mut split_children_built = false;
        while let Some(event) = receiver.recv().await {
            if matches!(event, Event::Stop) {
                // Requests still queued behind the stop get no answer; their clients time out,
                // as for any replica that went away.
                // `delete_partition` removed the meta file, released the partition's WAL
                // records and told the appender to drop what it has not enqueued: it ends, and
                // `destroy` forgets again, past the record it was enqueueing, if any (a record
                // enqueued after a forget would hold its segment for good).
                drop(appender.persists);
                appender.task.await;
                if let Err(error) = replica.destroy().await {
                    shoal_io::fatal!("partition {partition}: deleting its files failed: {error}");
                }
                self.dispatch.borrow_mut().end_delete(partition);
                self.metrics.stream_record_bytes(partition, 0);
                tracing::info!(shard = self.config.shard, partition, "replica deleted");
                destroyed.set(true);
                return;
            }
            let now = SystemClock.now();
            let event = self.with_host_readings(&replica, event);
            let expired_before = replica.expired_deletes_proposed();
            let outputs = match replica.handle(now, event).await {
                Ok(outputs) => outputs,
                // The replica's durable state or its I/O failed: its in-memory state can no
                // longer be trusted, and a restart recovers it from disk.
                Err(error) => shoal_io::fatal!("partition {partition}: {error}"),
            };
            if !split_children_built && replica.split().is_some() {
                self.build_split_children(&mut replica).await;
                split_children_built = true;
            }
            *status.borrow_mut() = replica.status(now);
            stream_upkeep.set(replica.has_stream_upkeep());
            let due = replica.tick_due();
            tick_due.set(due);
            self.due_earlier(due);
            self.metrics
                .time_to_live_deletes_proposed(replica.expired_deletes_proposed() - expired_before);
            self.metrics
                .stream_record_bytes(partition, replica.stream_record_bytes());
            for output in outputs {
                let command = self.dispatch.borrow_mut().on_output(partition, output, now);
                match command {
                    Some(Command::Persist { core_lsn, body, .. }) => {
                        appender
                            .persists
                            .send((core_lsn, body))
                            .await
                            .unwrap_or_else(|_| {
                                shoal_io::fatal!("partition {partition}: the WAL appender is gone")
                            });
                    }
                    Some(Command::Replicate { to, envelope }) => {
                        self.transport.send_replication(to, envelope);
                    }
                    Some(Command::Snapshot { to, chunk }) => {
                        self.transport.send_snapshot(to, chunk)
                    }
                    Some(command @ Command::Respond { .. }) => self.carry_out(command),
                    None => {}
                }
            }
        }
    }

    /// An event with what the host reads at the moment the replica uses it, not when the event
    /// was queued: for a tick, the room the bus has now toward the follower this replica is
    /// streaming a snapshot to; for a request, the wall clock (stream records' creation time).
    fn with_host_readings(&self, replica: &Replica, event: Event) -> Event {
        match event {
            Event::Request {
                reply_to,
                epoch,
                request,
                ..
            } => Event::Request {
                reply_to,
                epoch,
                unix_ms: unix_now_ms(),
                request,
            },
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

    /// Carries out an answer of the dispatch: metrics, then the response on its connection.
    fn carry_out(&self, command: Command<T::Connection>) {
        if let Command::Respond {
            connection,
            frame,
            served,
        } = command
        {
            self.metrics.request_served(
                served.operation,
                Duration::from_nanos(served.latency_nanos),
                served.error_kind,
            );
            self.transport.respond(connection, frame);
        }
    }

    fn respond_now(&self, connection: T::Connection, request_id: u64, response: NodeResponse) {
        if matches!(response, NodeResponse::Error(NodeError::Busy { .. })) {
            self.metrics.request_refused_busy();
        }
        self.transport.respond(
            connection,
            ResponseFrame {
                request_id,
                response,
            },
        );
    }

    /// Routes one message from the bus to the replica or the shard that handles it, by the
    /// rules of [`Dispatch`].
    pub async fn dispatch(self: &Rc<Self>, connection: T::Connection, message: BusMessage) {
        let routed = self
            .dispatch
            .borrow_mut()
            .route(connection, message, SystemClock.now());
        for routed in routed {
            match routed {
                Routed::Replica {
                    partition,
                    event,
                    delivery,
                } => {
                    self.note_added_node(&event);
                    self.deliver(partition, event, delivery).await
                }
                Routed::Respond { connection, frame } => {
                    self.respond_now(connection, frame.request_id, frame.response);
                }
                Routed::Status {
                    connection,
                    request_id,
                } => {
                    let response = NodeResponse::Status {
                        node: self.config.node.0,
                        shard: self.config.shard,
                        replicas: self.statuses(),
                    };
                    self.respond_now(connection, request_id, response);
                }
                Routed::Loads {
                    connection,
                    request_id,
                } => {
                    let response = NodeResponse::Loads {
                        node: self.config.node.0,
                        shard: self.config.shard,
                        replicas: self.loads(SystemClock.now()),
                    };
                    self.respond_now(connection, request_id, response);
                }
                Routed::ClusterNodes {
                    connection,
                    request_id,
                } => {
                    let response = NodeResponse::ClusterNodes {
                        nodes: self.cluster_nodes(),
                    };
                    self.respond_now(connection, request_id, response);
                }
                Routed::Create {
                    connection,
                    request_id,
                    meta,
                } => {
                    let response = self.create_partition(meta).await;
                    self.respond_now(connection, request_id, response);
                }
                Routed::Delete {
                    connection,
                    request_id,
                    partition,
                    epoch,
                } => {
                    let response = self.delete_partition(partition, epoch).await;
                    self.respond_now(connection, request_id, response);
                }
                Routed::Undecodable => self.metrics.replication_message_dropped(),
            }
        }
    }

    /// Hands an event to its replica's queue by the rule of its kind (crate invariant 2).
    async fn deliver(&self, partition: u64, event: Event, delivery: Delivery) {
        let sender = self
            .table
            .borrow()
            .get(&partition)
            .map(|row| row.events.clone());
        match (delivery, sender) {
            (Delivery::DropWhenFull, Some(sender)) => {
                if sender.try_send(event).is_err() {
                    self.metrics.replication_message_dropped();
                }
            }
            (Delivery::RefuseWhenFull { reply_to }, sender) => {
                let queued = sender.is_some_and(|sender| sender.try_send(event).is_ok());
                if !queued {
                    self.metrics.request_refused_busy();
                    let refusal = self
                        .dispatch
                        .borrow_mut()
                        .refuse_busy(reply_to, SystemClock.now());
                    if let Some(refusal) = refusal {
                        self.carry_out(refusal);
                    }
                }
            }
            (Delivery::WaitForRoom, Some(sender)) => {
                let _ = sender.send(event).await;
            }
            // Routed to a replica whose task is already gone (a delete racing): dropped, as a
            // message to a stopped replica is.
            (Delivery::DropWhenFull | Delivery::WaitForRoom, None) => {}
        }
    }

    /// Stops the replica's task, which closes it and removes its files, and waits (bounded by
    /// [`DELETE_TIMEOUT`]) until that is done.
    async fn delete_partition(self: &Rc<Self>, partition: u64, epoch: u64) -> NodeResponse {
        let decision = self.dispatch.borrow_mut().begin_delete(partition, epoch);
        if let Decision::Answer(response) = decision {
            return response;
        }
        let Some(row) = self.table.borrow_mut().remove(&partition) else {
            return NodeResponse::Deleted;
        };
        let (events, destroyed) = (row.events, row.destroyed);
        // The replica is out of the shard table from here on, whatever happens to its files:
        // the failures below leave the deletion done in part, an outcome the caller cannot
        // know.
        //
        // The meta file goes first: once its removal is durable, a crash leaves a deleted
        // partition, whose WAL records recovery releases. Only then are they released here,
        // and the appender told to drop what it has not enqueued: the replica's task may be
        // waiting on its appender, which may wait for WAL room that those very records hold,
        // and the Stop below must get through.
        row.stopping.set(true);
        if let Err(error) =
            shoal_partition::meta::remove_meta_file(self.directory.as_ref(), partition).await
        {
            shoal_io::fatal!("removing the meta file of partition {partition} failed: {error}");
        }
        self.wal.forget_partition(PartitionId(partition));
        if events.send(Event::Stop).await.is_err() {
            self.dispatch.borrow_mut().end_delete(partition);
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

    /// Builds on this shard each child of `parent`'s applied split that was never built here
    /// (engine/partition src/replica/split.rs, step 4; `split_children_to_build`) and runs
    /// it, through `begin_create` like any creation. A child whose membership leaves this node
    /// out is not built: the parent's replica here applied the split while no longer a member.
    /// The parent checkpoints first, so that none of its records in the WAL waits on it while
    /// its task builds. A failure stops the node: the parent stays frozen on disk, and the
    /// restart builds what is missing.
    async fn build_split_children(self: &Rc<Self>, parent: &mut Replica) {
        let partition = parent.partition();
        let hosted = |child: u64| self.dispatch.borrow().epoch_of(child).is_some();
        let children = match parent.split_children_to_build(hosted).await {
            Ok(children) => children,
            Err(error) => {
                shoal_io::fatal!("partition {partition}: reading its split's children: {error}")
            }
        };
        if children.is_empty() {
            return;
        }
        let membership = match parent.split_membership() {
            Ok(membership) => membership,
            Err(error) => shoal_io::fatal!("partition {partition}: {error}"),
        };
        if let Err(error) = parent.checkpoint(SystemClock.now()).await {
            shoal_io::fatal!("partition {partition}: checkpoint before its split: {error}");
        }
        for child in children {
            let meta = PartitionMeta {
                partition: child.partition,
                epoch: child.epoch,
                key_schema: parent.meta().key_schema.clone(),
                membership: membership.clone(),
            };
            if let Decision::Answer(_) = self.dispatch.borrow_mut().begin_create(&meta) {
                continue;
            }
            let now = SystemClock.now();
            let built = parent
                .create_split_child(
                    child,
                    seed_for(&self.config, child.partition, now.as_nanos()),
                    now,
                )
                .await;
            self.dispatch.borrow_mut().end_create(child.partition);
            match built {
                Ok(replica) => {
                    tracing::info!(
                        shard = self.config.shard,
                        parent = partition,
                        partition = child.partition,
                        "replica of a split child built"
                    );
                    self.run_replica(replica);
                }
                Err(error) => shoal_io::fatal!(
                    "partition {partition}: building its split child {} failed: {error}",
                    child.partition
                ),
            }
        }
    }

    async fn create_partition(self: &Rc<Self>, meta: PartitionMeta) -> NodeResponse {
        let partition = meta.partition;
        let decision = self.dispatch.borrow_mut().begin_create(&meta);
        if let Decision::Answer(response) = decision {
            return response;
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
        self.dispatch.borrow_mut().end_create(partition);
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

/// The wall clock in unix milliseconds (0 on a clock set before 1970).
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
