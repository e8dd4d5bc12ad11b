//! The autoadmin in a router ([`Router::autoadmin_pass`], which `shoal router` runs every
//! [`AUTOADMIN_INTERVAL`]): re-replication. A node that has not answered for
//! [`RouterConfig::node_down_after`] is down, and a replica its answering node has not hosted
//! for the orphan grace (lost with a replaced disk, or kept out of service as corrupt, its
//! files left for inspection; found by the orphan scan, repair.rs) is lost. Every partition
//! with a replica down or lost, and a majority of its replicas alive, gets that replica moved to the up node hosting the fewest
//! replicas (shoal_autoadmin::policy), by the shared step machine
//! (shoal_autoadmin::replica_move) driven over the bus.
//!
//! Durability: a move is recorded in its table item before its first step (metadata
//! invariant 7) and every later record is a conditional write of that item, so a router that
//! dies mid-move leaves a record that any router's next pass resumes, each step being
//! idempotent. Several routers may drive one move at once: the steps are idempotent, only one
//! records each change, and a driver that finds the record changed under it stops.
//!
//! A target that goes down before the move ends, or refuses to join (it keeps the partition out
//! of service), is removed from the group and replaced by another node, recorded in its place
//! (shoal_autoadmin::replica_move, "A target that fails"). A target is always a node that
//! answered the last probe and whose shard does not host the partition (a replica left there
//! by an earlier move would be adopted by the join, and then deleted as an orphan).
//!
//! Fencing: every record carries a move id drawn when the move is recorded, and a driver
//! re-reads the record before a membership change (at each new step, and every
//! [`FENCE_INTERVAL`] while it polls one), so a driver whose move was taken over or finished
//! by another router stops instead of changing the group under it. A driver that stalls
//! between its read and its request can still act once; a compare-and-set on the membership
//! (a wire change) would close that.
//!
//! Planned moves (the source alive: added and caught up before it is removed) drain a
//! decommissioned node and, when the cluster is healthy and quiet, even out the replicas per
//! node (balance, shoal_autoadmin::policy::plan_balance), which is how a node that joined
//! ([`Router::join_node`]) receives replicas, the lightest first. Once the counts are even,
//! the bytes the nodes carry are (policy::plan_weight_balance: each partition weighs its
//! leader's bytes as a share of the split threshold, [`Router::partition_weights`]), by
//! moving a heavy replica to a lighter node or swapping it for a light one; then leaderships
//! are evened out too (policy::plan_leader_balance, `NodeRequest::TransferLeadership`).
//!
//! The metadata group (partition 0) is one of the groups: its replicas count in each node's
//! load when a target is chosen, and it is re-replicated and drained by the same policy and
//! step machine. Balance leaves it where it is: one replica's worth of load does not pay for
//! moving the control plane's replicas.
//! Its move's record is the cluster item's `metadata_move` and its replica list the cluster
//! item's `metadata_replicas` (written by the same record steps, conditional on the item's
//! revision); routers and nodes follow that list, and one that lost track of the group finds
//! it by asking the nodes (`MetadataStore::rediscover`).
//!
//! One active autoadmin: every router runs the pass, but only the holder of the autoadmin
//! lease (the metadata item `autoadmin#lease`) acts on what it sees; the others read the node
//! list and stand by (`AutoadminReport::standby`). Two routers planning at once each planned
//! against the other's moves, so balance overshot and moves were started twice. The lease is
//! kept without clocks: the holder renews it (a conditional write of the next revision) at
//! most every [`AUTOADMIN_INTERVAL`], at each pass and while it drives moves, and acts only
//! while its last renewal is under half of [`AUTOADMIN_LEASE_TAKEOVER_AFTER`] old on its own
//! clock. Another router takes the lease (a conditional write on the revision it saw) once
//! it has seen the same revision for the whole of [`AUTOADMIN_LEASE_TAKEOVER_AFTER`] on its
//! clock. A holder that stalls past its half stops before the next takes over (clock rates
//! differ by far less than two to one); were both to act anyway, every move's steps stay
//! idempotent and fenced by its record, so the cost is a duplicated plan, not damage. The
//! lease is independent of `shoal admin pause`, which stops whichever router holds it.
//!
//! Left for later (issue 19): log replicas. Splits are router/splits.rs.

use super::*;
use crate::metadata::{METADATA_EPOCH, METADATA_PARTITION, METADATA_SHARD, ReplicaMoveRecord};
use crate::placement::REPLICATION_FACTOR;
use shoal_autoadmin::policy::{
    BALANCE_MOVES_IN_FLIGHT_MAX, GroupView, LEADER_TRANSFERS_MAX, MOVES_IN_FLIGHT_MAX, NodeView,
    PlannedMove, PlannedTransfer, imbalanced, plan_balance, plan_growth, plan_leader_balance,
    plan_re_replication, plan_weight_balance, targets_by_load,
};
use shoal_autoadmin::replica_move::NO_SOURCE;
use shoal_autoadmin::{MoveAction, MoveStep, Progress, ReplicaMove};
use shoal_wire::messages::ReplicaRole;
use std::collections::BTreeSet;

/// How often `shoal router` runs the autoadmin pass: each pass asks every node's shard 0 for
/// its node list (`ClusterNodes`, one small answer per node), so a down node is seen within this long of
/// [`NODE_DOWN_AFTER`] after its last answer.
pub const AUTOADMIN_INTERVAL: Duration = Duration::from_secs(2);
/// A node that has answered nothing for this long is down, and its replicas are moved. Long
/// enough that a restart (a rolling upgrade, `shoal dev`'s supervisor) is not taken for a
/// loss, short enough that a lost node's partitions run on two replicas for under a minute.
pub const NODE_DOWN_AFTER: Duration = Duration::from_secs(30);
/// A step refused for now (not the leader, busy, the target still catching up) is asked again
/// after this long.
const MOVE_RETRY_INTERVAL: Duration = Duration::from_millis(50);
/// One pass drives each move for this long at most; an unfinished move resumes at the next
/// pass from its record, after the nodes were probed again.
const MOVE_DRIVE_MAX: Duration = Duration::from_secs(20);
/// The pass reads the moves under way from the metadata (another router's, or this one's
/// before a restart) at least this often, even when it knows of none.
const MOVE_RECORDS_SCAN_INTERVAL: Duration = Duration::from_secs(60);
/// A driver polling one membership step re-reads its record at least this often.
const FENCE_INTERVAL: Duration = Duration::from_secs(1);
/// A change of the cluster item that keeps meeting another writer's gives up after this many
/// tries (each a read and a conditional write); its caller tries again later.
const CLUSTER_WRITE_ATTEMPTS: usize = 8;

/// A healthy, quiet cluster is checked for balance this often (and at once when its node list
/// changes): the check reads every table item, which an idle cluster should not do every pass.
const BALANCE_CHECK_INTERVAL: Duration = Duration::from_secs(10);

const _: () = assert!(AUTOADMIN_INTERVAL.as_millis() < NODE_DOWN_AFTER.as_millis());

/// The autoadmin lease goes to another router once it has not been renewed for this long
/// (module docs, "One active autoadmin"): five renewal periods, so that one or two slow
/// metadata writes do not hand it over, and short against [`NODE_DOWN_AFTER`], so that a
/// router dying delays healing by little.
pub const AUTOADMIN_LEASE_TAKEOVER_AFTER: Duration = Duration::from_secs(10);

const _: () =
    assert!(AUTOADMIN_INTERVAL.as_millis() * 2 < AUTOADMIN_LEASE_TAKEOVER_AFTER.as_millis());

/// What the autoadmin remembers between passes.
#[derive(Debug, Default)]
pub(super) struct AutoadminMemory {
    /// When each node last answered a probe (the first probe's time for a node that never has
    /// since this router started): its silence is counted from there, so a node that dies
    /// just after a probe is down one threshold after that probe, not after the next.
    heard_at: RefCell<BTreeMap<NodeId, Instant>>,
    /// The nodes that did not answer their last probe.
    silent: RefCell<BTreeSet<NodeId>>,
    /// Replicas (partition, node) their up node has not hosted for the orphan grace, as the
    /// last orphan scan found them (repair.rs): rebuilt elsewhere like a down node's.
    lost_replicas: RefCell<BTreeSet<(u64, NodeId)>>,
    /// The last pass left moves unfinished: the next reads them again.
    moves_left: Cell<bool>,
    /// The last pass left splits unfinished: the next reads them again.
    splits_left: Cell<bool>,
    records_scan_last: Cell<Option<Instant>>,
    /// When the pass last asked whether the nodes need balancing, and the node list it asked
    /// for: a changed list (a node joined) is checked at once.
    balance_check_last: Cell<Option<Instant>>,
    balanced_nodes: RefCell<BTreeSet<NodeId>>,
    /// This router's id as the lease's holder, drawn at its first use.
    lease_id: Cell<u64>,
    /// When this router last renewed (or took) the lease.
    lease_renewed_at: Cell<Option<Instant>>,
    /// When the metadata group's assumed list was last checked against the nodes
    /// (`confirm_metadata_replicas`, at most every [`BALANCE_CHECK_INTERVAL`]).
    metadata_confirmed_at: Cell<Option<Instant>>,
    /// A renewal is in flight: the moves driven concurrently wait on it instead of racing it
    /// with writes of their own (all but one of which would fail their condition).
    lease_renewing: Cell<bool>,
    /// The other holder's lease as last read, and when this router first saw that revision.
    lease_seen: Cell<Option<(u64, u64, Instant)>>,
}

/// What one autoadmin pass saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutoadminReport {
    /// An operator paused the autoadmin (`shoal admin pause`): the pass did nothing else.
    pub paused: bool,
    /// Another router holds the autoadmin lease (module docs): the pass did nothing else.
    pub standby: bool,
    /// Nodes silent past the threshold.
    pub nodes_down: Vec<NodeId>,
    pub moves_started: usize,
    pub moves_finished: usize,
    /// Moves still under way after the pass (resumed at the next).
    pub moves_unfinished: usize,
    /// Draining nodes that left the node list at this pass.
    pub nodes_decommissioned: usize,
    /// Of the moves started, those that even out the replicas per node (balance).
    pub balance_moves: usize,
    /// Leadership transfers the leaders accepted (leader balance).
    pub leader_transfers: usize,
    /// Of the moves started, those that add a replica to a group with fewer than the
    /// replication factor (growth, `policy::plan_growth`).
    pub replicas_added: usize,
    /// Partition splits (splits.rs).
    pub splits: super::splits::SplitReport,
}

/// Where a move's record lives.
#[derive(Clone, Debug, PartialEq, Eq)]
enum MoveHome {
    /// A table partition's: the table item's `replica_moves` (metadata invariant 7).
    Table {
        name: String,
        incarnation: Option<u64>,
    },
    /// The metadata group's: the cluster item's `metadata_move`, its replicas listed in
    /// `metadata_replicas`.
    MetadataGroup,
}

impl std::fmt::Display for MoveHome {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MoveHome::Table { name, .. } => write!(formatter, "table {name}"),
            MoveHome::MetadataGroup => write!(formatter, "the metadata group"),
        }
    }
}

/// A change of a move's record and of the replica list it moves a replica in, made at one of
/// the move's record steps (module docs).
#[derive(Clone, Copy, Debug)]
enum RecordEdit {
    /// The target caught up: it is listed, so that a leader elected among the new members is
    /// one a router can find.
    TargetRouted,
    /// The move ended: the source unlisted and the record dropped, in one write.
    Done,
    /// The target `given_up` failed: unlisted, and `candidate` is the target from now on.
    Retarget { given_up: NodeId, candidate: NodeId },
}

impl RecordEdit {
    fn apply(
        self,
        replicas: &mut Vec<NodeId>,
        record: &mut Option<ReplicaMoveRecord>,
        source: NodeId,
        target: NodeId,
    ) {
        match self {
            RecordEdit::TargetRouted => {
                if let Some(record) = record {
                    record.target_routed = true;
                }
                if !replicas.contains(&target) {
                    replicas.push(target);
                }
            }
            RecordEdit::Done => {
                *record = None;
                replicas.retain(|node| *node != source);
                if !replicas.contains(&target) {
                    replicas.push(target);
                }
            }
            RecordEdit::Retarget {
                given_up,
                candidate,
            } => {
                if let Some(record) = record {
                    record.target = candidate;
                    record.target_routed = false;
                }
                replicas.retain(|node| *node != given_up);
            }
        }
    }
}

/// A move this pass drives: where its record lives, the record's id and the machine.
struct Driven {
    home: MoveHome,
    shard: u16,
    id: u64,
    machine: ReplicaMove,
    /// The step at which the record was last read for fencing, and when.
    fenced: Option<(MoveStep, Instant)>,
}

/// How driving a move for one pass ended.
enum Driving {
    Finished,
    /// Out of time, or a record failed: the next pass resumes it.
    Unfinished,
    /// Its record was changed by someone else (another router finished it, or the table went):
    /// this driver stops.
    Superseded,
}

impl Router {
    /// One autoadmin pass (module docs): probes every node, resumes the moves under way, plans
    /// new ones for partitions with a replica down or lost, and drives them all concurrently
    /// (at most [`MOVES_IN_FLIGHT_MAX`] at once) until they end or [`MOVE_DRIVE_MAX`] passes.
    pub async fn autoadmin_pass(&self) -> Result<AutoadminReport, DynamoError> {
        let outcome = self.run_autoadmin_pass().await;
        if outcome.is_err() {
            // A pass that failed (the metadata group out of reach, the lease not renewed) is
            // not the active one's: its count of nodes down would go stale unseen.
            self.metrics.set_autoadmin_inactive();
        }
        outcome
    }

    async fn run_autoadmin_pass(&self) -> Result<AutoadminReport, DynamoError> {
        // Read afresh, paused or not: a node joins and a decommission starts in the cluster
        // item, and this refreshes the node list this router routes and places replicas with.
        let cluster = self.load_cluster().await?;
        let deadline = Instant::now() + CONTROL_DEADLINE;
        if self
            .metadata
            .autoadmin_paused(&self.forwarder, deadline)
            .await
            .map_err(ForwardError::into_dynamo)?
        {
            self.metrics.set_autoadmin_inactive();
            return Ok(AutoadminReport {
                paused: true,
                ..AutoadminReport::default()
            });
        }
        if !self.keep_autoadmin_lease().await? {
            self.metrics.set_autoadmin_inactive();
            return Ok(AutoadminReport {
                standby: true,
                ..AutoadminReport::default()
            });
        }
        let metadata_recorded =
            cluster.metadata_replicas_recorded || self.confirm_metadata_replicas(&cluster).await;
        let views = self.probe_nodes(&cluster).await;
        let down: BTreeSet<NodeId> = views
            .iter()
            .filter(|view| !view.up)
            .map(|view| view.id)
            .collect();
        self.metrics.set_nodes_down(down.len());
        let mut report = AutoadminReport {
            nodes_down: down.iter().copied().collect(),
            ..AutoadminReport::default()
        };
        let lost = self.autoadmin.lost_replicas.borrow().clone();
        let records_due = !lost.is_empty()
            || cluster.metadata_move.is_some()
            || self.autoadmin.moves_left.get()
            || self.autoadmin.splits_left.get()
            || self
                .autoadmin
                .records_scan_last
                .get()
                .is_none_or(|last| last.elapsed() >= MOVE_RECORDS_SCAN_INTERVAL);
        let draining = !cluster.draining.is_empty();
        let node_ids: BTreeSet<NodeId> = cluster.nodes.iter().map(|node| node.id).collect();
        // Growth, then balance (if on), checked only once every node answers: a node that just
        // joined and does not serve yet would use up the check its joining triggers.
        let balance_due = down.is_empty()
            && lost.is_empty()
            && !draining
            && views.iter().all(|view| view.answered)
            && (*self.autoadmin.balanced_nodes.borrow() != node_ids
                || self
                    .autoadmin
                    .balance_check_last
                    .get()
                    .is_none_or(|last| last.elapsed() >= BALANCE_CHECK_INTERVAL));
        if down.is_empty() && !records_due && !draining && !balance_due {
            return Ok(report);
        }
        if balance_due {
            self.autoadmin.balance_check_last.set(Some(Instant::now()));
            *self.autoadmin.balanced_nodes.borrow_mut() = node_ids;
        }
        self.autoadmin.records_scan_last.set(Some(Instant::now()));
        let deadline = Instant::now() + CONTROL_DEADLINE;
        let tables = if down.is_empty() && lost.is_empty() && !draining && !balance_due {
            self.metadata
                .tables_needing_repair(&self.forwarder, deadline)
                .await
        } else {
            self.metadata.all_tables(&self.forwarder, deadline).await
        }
        .map_err(ForwardError::into_dynamo)?;
        let active: Vec<&TableRecord> = tables
            .iter()
            .filter(|table| table.status == TableStatus::Active)
            .collect();
        // The metadata group is placed, re-replicated and drained like any partition (its
        // replicas count in every node's load); only its record lives in the cluster item.
        let metadata_group = GroupView {
            partition: METADATA_PARTITION,
            replicas: cluster.metadata_replicas.clone(),
            moving_to: cluster.metadata_move.map(|record| record.target),
            lost: cluster
                .metadata_replicas
                .iter()
                .copied()
                .filter(|node| lost.contains(&(METADATA_PARTITION, *node)))
                .collect(),
            leader: None,
        };
        let groups: Vec<GroupView> = std::iter::once(metadata_group)
            .filter(|_| metadata_recorded)
            .chain(active.iter().flat_map(|table| {
                // A partition being split, and its children until they are routed, get no move
                // (metadata invariant 8). Routed, a child is a partition like any other: one
                // of its replicas that a node never built is re-replicated.
                let splitting: BTreeSet<u64> = table
                    .partition_splits
                    .iter()
                    .flat_map(|(parent, record)| {
                        std::iter::once(*parent).chain(
                            (!record.routed)
                                .then_some([record.left, record.right])
                                .into_iter()
                                .flatten(),
                        )
                    })
                    .collect();
                table
                    .all_partitions()
                    .filter(move |partition| !splitting.contains(&partition.id))
                    .map(|partition| GroupView {
                        partition: partition.id,
                        replicas: partition.replicas.clone(),
                        moving_to: table
                            .replica_moves
                            .get(&partition.id)
                            .map(|record| record.target),
                        lost: partition
                            .replicas
                            .iter()
                            .copied()
                            .filter(|node| lost.contains(&(partition.id, *node)))
                            .collect(),
                        leader: None,
                    })
            }))
            .collect();
        // Each partition's size as its leader reports it, gathered at a balance check (with
        // the leaders balance needs, from the same answers): what the split policy reads.
        let mut split_inputs: Option<splits::SplitInputs> = None;
        let targets = targets_by_load(&views, &groups);
        let mut driven = Vec::new();
        if let Some(record) = &cluster.metadata_move {
            driven.push(driven_metadata_move(&cluster, record));
        }
        for table in &active {
            for (partition, record) in &table.replica_moves {
                if let Some(moving) = driven_move(table, *partition, record) {
                    driven.push(moving);
                }
            }
        }
        let balancing = down.is_empty() && lost.is_empty() && !draining;
        let planned = if !balancing {
            plan_re_replication(&views, &groups, MOVES_IN_FLIGHT_MAX)
        } else if balance_due
            && driven.is_empty()
            && let growth = plan_growth(
                &views,
                &groups,
                REPLICATION_FACTOR,
                &[METADATA_PARTITION],
                BALANCE_MOVES_IN_FLIGHT_MAX,
            )
            && !growth.is_empty()
        {
            // Groups created while the cluster had fewer nodes, the metadata group included,
            // get their missing replicas before anything is balanced.
            growth
        } else if balance_due && driven.is_empty() && !self.config.balance {
            if self.splits_on() {
                let (_, sizes, _) = self.partition_leaders(&cluster).await;
                split_inputs = Some(self.split_inputs(&cluster, sizes).await);
            }
            Vec::new()
        } else if balance_due && driven.is_empty() {
            // Who leads is asked only at a balance check: replicas first, then leaders.
            let (leaders, sizes, every_shard_answered) = self.partition_leaders(&cluster).await;
            if self.splits_on() {
                split_inputs = Some(self.split_inputs(&cluster, sizes.clone()).await);
            }
            // The metadata group is left out of balance: one replica's worth of load does not
            // pay for moving the control plane's replicas (and perhaps its leader).
            let groups: Vec<GroupView> = groups
                .into_iter()
                .filter(|group| group.partition != METADATA_PARTITION)
                .map(|group| GroupView {
                    leader: leaders.get(&group.partition).copied(),
                    ..group
                })
                .collect();
            // Each partition's weight is its leader's bytes (policy::plan_weight_balance).
            // Weights are trusted only when every partition of `groups` reported a size (a
            // shard that did not answer, or a group between leaders, would weigh nothing and
            // draw replicas it does not need, sent back at the next check).
            let weights = self.partition_weights(&sizes);
            let weighed = every_shard_answered
                && groups
                    .iter()
                    .all(|group| sizes.contains_key(&group.partition));
            // A split's parent and its unrouted children are out of `groups`, so their nodes
            // look light, by count and by bytes, until the children are routed, and then
            // heavy by one replica each: moves made meanwhile would be moved back after.
            // Balance (replicas, bytes and leaders) waits for the splits, which take seconds.
            let splitting = active
                .iter()
                .any(|table| !table.partition_splits.is_empty());
            if splitting {
                Vec::new()
            } else if imbalanced(&views, &groups) {
                plan_balance(&views, &groups, &weights, BALANCE_MOVES_IN_FLIGHT_MAX)
            } else if weighed
                && let weighted =
                    plan_weight_balance(&views, &groups, &weights, BALANCE_MOVES_IN_FLIGHT_MAX)
                && !weighted.is_empty()
            {
                tracing::info!(
                    moves = weighted.len(),
                    "autoadmin: evening out the bytes the nodes carry"
                );
                self.metrics.note_autoadmin("weight_balance_planned");
                weighted
            } else if every_shard_answered {
                // Only with every shard's word: a shard that did not answer would make its
                // node look as if it led nothing, and draw transfers it does not need.
                let transfers = plan_leader_balance(&views, &groups, LEADER_TRANSFERS_MAX);
                report.leader_transfers = self.transfer_leaderships(&active, &transfers).await;
                Vec::new()
            } else {
                Vec::new()
            }
        } else {
            Vec::new()
        };
        for planned in planned {
            let record = ReplicaMoveRecord {
                id: new_record_id(),
                source: planned.source,
                target: planned.target,
                source_dead: planned.source_dead,
                target_routed: false,
            };
            if planned.partition == METADATA_PARTITION {
                match self.record_new_metadata_move(record).await {
                    Ok(Some(moving)) => {
                        self.count_move_started(&mut report, &planned, balancing);
                        tracing::info!(
                            source = planned.source,
                            target = planned.target,
                            dead = planned.source_dead,
                            balance = balancing,
                            "autoadmin: moving a replica of the metadata group to another node"
                        );
                        driven.push(moving);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error.message, "autoadmin: a metadata group move was not recorded");
                    }
                }
                continue;
            }
            let Some(table) = active.iter().find(|table| {
                table
                    .all_partitions()
                    .any(|partition| partition.id == planned.partition)
            }) else {
                continue;
            };
            match self.record_new_move(table, planned.partition, record).await {
                Ok(Some(moving)) => {
                    self.count_move_started(&mut report, &planned, balancing);
                    tracing::info!(
                        table = %table.name,
                        partition = planned.partition,
                        source = planned.source,
                        target = planned.target,
                        dead = planned.source_dead,
                        balance = balancing,
                        "autoadmin: moving a replica to another node"
                    );
                    driven.push(moving);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(table = %table.name, %error.message, "autoadmin: a move was not recorded");
                }
            }
        }
        let calls: Vec<_> = driven
            .into_iter()
            .map(|moving| self.drive_move(moving, &down, &targets))
            .collect();
        for outcome in join_bounded(calls, MOVES_IN_FLIGHT_MAX).await {
            match outcome {
                Driving::Finished => {
                    report.moves_finished += 1;
                    self.metrics.note_autoadmin("move_finished");
                }
                Driving::Unfinished => report.moves_unfinished += 1,
                Driving::Superseded => {}
            }
        }
        self.autoadmin.moves_left.set(report.moves_unfinished > 0);
        report.splits = self.run_splits(&active, split_inputs.as_ref(), &down).await;
        self.autoadmin
            .splits_left
            .set(report.splits.unfinished > 0 || report.splits.started > report.splits.finished);
        // Children that are still past the threshold are found at the next pass, not a whole
        // check interval later.
        if report.splits.finished > 0 {
            self.autoadmin.balance_check_last.set(None);
        }
        // A balance batch that ended is followed by the next check at the next pass, not a
        // whole check interval later: a node that joined receives its share batch after batch.
        if balancing && report.moves_finished > 0 {
            self.autoadmin.balance_check_last.set(None);
        }
        if draining {
            report.nodes_decommissioned = self.finish_decommissions(&cluster, &tables).await?;
        }
        Ok(report)
    }

    /// `shoal admin decommission NODE`: marks `node` draining in the cluster item. The
    /// autoadmin then moves each of its replicas to another node (added, caught up, then the
    /// drained one removed and deleted), places nothing new on it, and drops it from the node
    /// list once neither a table nor the metadata group lists it. Refused when fewer than three
    /// nodes would be left to hold replicas.
    pub async fn decommission_node(&self, node: NodeId) -> Result<(), DynamoError> {
        let cluster = self.load_cluster().await?;
        if !cluster.nodes.iter().any(|known| known.id == node) {
            return Err(DynamoError::validation(format!(
                "node {node} is not in the cluster"
            )));
        }
        if cluster.draining.contains(&node) {
            return Ok(());
        }
        self.update_cluster(|cluster| {
            if cluster.draining.contains(&node) || !cluster.nodes.iter().any(|n| n.id == node) {
                return Ok(false);
            }
            let left = cluster
                .placement_nodes()
                .into_iter()
                .filter(|placed| *placed != node)
                .count();
            if left < crate::placement::REPLICATION_FACTOR {
                return Err(DynamoError::validation(format!(
                    "decommissioning node {node} would leave {left} node(s) to hold replicas; \
                     at least {} are needed",
                    crate::placement::REPLICATION_FACTOR
                )));
            }
            cluster.draining.insert(node);
            Ok(true)
        })
        .await?;
        tracing::info!(node, "decommission started");
        Ok(())
    }

    /// `shoal node --join`: adds node `id`, whose shard 0 listens on `address` and which runs
    /// `shards` shards, to the node list (the rules are [`ClusterRecord::admit`]'s; a listed node re-joining changes
    /// nothing) and returns the cluster item as written. Every router routes to the node from
    /// its next read of the item, every node sends to it from its next refresh (`shoal node`),
    /// and the autoadmin's balancing moves replicas onto it.
    pub async fn join_node(
        &self,
        id: NodeId,
        address: std::net::SocketAddr,
        shards: u16,
    ) -> Result<ClusterRecord, DynamoError> {
        let mut joined = false;
        let cluster = self
            .update_cluster(|cluster| {
                joined = cluster.admit(id, address, shards)?;
                Ok(joined)
            })
            .await?;
        if joined {
            tracing::info!(node = id, %address, "a node joined the cluster");
        }
        Ok(cluster)
    }

    /// Reads the cluster item, applies `change` (which returns whether it changed anything)
    /// and writes it back if nobody wrote it meanwhile; reads it again and redoes the change
    /// on a conflict, [`CLUSTER_WRITE_ATTEMPTS`] times at most. Returns the item as written
    /// (or as read, when there was nothing to change), which this router routes with from now.
    async fn update_cluster(
        &self,
        mut change: impl FnMut(&mut ClusterRecord) -> Result<bool, DynamoError>,
    ) -> Result<ClusterRecord, DynamoError> {
        for _ in 0..CLUSTER_WRITE_ATTEMPTS {
            let mut cluster = self.load_cluster().await?;
            if !change(&mut cluster)? {
                return Ok(cluster);
            }
            let written = self
                .metadata
                .put_cluster(&self.forwarder, &cluster, Instant::now() + CONTROL_DEADLINE)
                .await
                .map_err(ForwardError::into_dynamo)?;
            if written {
                return self.load_cluster().await;
            }
        }
        Err(DynamoError::internal(
            "Internal server error (the cluster item kept changing under this write; try again)",
        ))
    }

    /// Drops from the node list every draining node no table and not the metadata group lists
    /// any more (as a replica or a move's target), by the items `cluster` and `tables` read at
    /// this pass's start: the moves this pass finished count at the next. Returns how many
    /// left.
    async fn finish_decommissions(
        &self,
        cluster: &ClusterRecord,
        tables: &[TableRecord],
    ) -> Result<usize, DynamoError> {
        let listed: BTreeSet<NodeId> = tables
            .iter()
            .flat_map(TableRecord::listed_replicas)
            .map(|(_, node)| node)
            .chain(cluster.metadata_replicas.iter().copied())
            .chain(cluster.metadata_move.map(|record| record.target))
            .collect();
        let done: Vec<NodeId> = cluster
            .draining
            .iter()
            .copied()
            .filter(|node| !listed.contains(node))
            .collect();
        if done.is_empty() {
            return Ok(0);
        }
        self.update_cluster(|cluster| {
            let before = cluster.nodes.len();
            cluster.nodes.retain(|node| !done.contains(&node.id));
            cluster.draining.retain(|node| !done.contains(node));
            Ok(cluster.nodes.len() != before)
        })
        .await?;
        for node in &done {
            tracing::info!(
                node,
                "decommissioned: no table lists it; it left the node list"
            );
            self.metrics.note_autoadmin("node_decommissioned");
        }
        Ok(done.len())
    }

    /// `shoal admin pause` (`paused`) or `resume`: stops or restarts the autoadmin of every
    /// router at its next pass. Moves under way stay recorded, and resume when it resumes.
    pub async fn set_autoadmin_paused(&self, paused: bool) -> Result<(), DynamoError> {
        self.metadata
            .set_autoadmin_paused(&self.forwarder, paused, Instant::now() + CONTROL_DEADLINE)
            .await
            .map_err(ForwardError::into_dynamo)?;
        tracing::info!(paused, "autoadmin switched");
        Ok(())
    }

    /// What the orphan scan found lost (repair.rs): replaces the last scan's finding.
    pub(super) fn note_lost_replicas(&self, lost: impl Iterator<Item = (u64, NodeId)>) {
        let lost: BTreeSet<(u64, NodeId)> = lost.collect();
        if !lost.is_empty() {
            tracing::warn!(?lost, "autoadmin: replicas their nodes no longer host");
        }
        *self.autoadmin.lost_replicas.borrow_mut() = lost;
    }

    /// Asks every node's shard 0 for its node list (`ClusterNodes`: a small answer, where a
    /// `Status` lists every replica of the shard, built, sent and checked every pass for
    /// nothing but the fact of an answer) and returns what it knows of each node: up
    /// (answered, or silent for less than [`RouterConfig::node_down_after`]) and whether it
    /// answered this probe.
    async fn probe_nodes(&self, cluster: &ClusterRecord) -> Vec<NodeView> {
        let probes: Vec<_> = cluster
            .nodes
            .iter()
            .map(|node| async move {
                let answered = matches!(
                    self.forwarder
                        .call_once(node.id, 0, NodeRequest::ClusterNodes)
                        .await,
                    Ok(NodeResponse::ClusterNodes { .. })
                );
                (node.id, answered)
            })
            .collect();
        let answers = join_bounded(probes, cluster.nodes.len()).await;
        let now = Instant::now();
        let mut heard_at = self.autoadmin.heard_at.borrow_mut();
        let mut silent = self.autoadmin.silent.borrow_mut();
        answers
            .into_iter()
            .map(|(id, answered)| {
                let up = if answered {
                    heard_at.insert(id, now);
                    if silent.remove(&id) {
                        tracing::info!(node = id, "autoadmin: node answers again");
                    }
                    true
                } else {
                    silent.insert(id);
                    let heard = *heard_at.entry(id).or_insert(now);
                    now.saturating_duration_since(heard) < self.config.node_down_after
                };
                NodeView {
                    id,
                    up,
                    answered,
                    draining: cluster.draining.contains(&id),
                }
            })
            .collect()
    }

    /// Asks each partition's leader to hand over to the member `transfers` names
    /// (`NodeRequest::TransferLeadership`); returns how many accepted. Nothing is recorded: a
    /// transfer that does not happen leaves the leader where it was, and the next balance
    /// check plans again from who leads then.
    async fn transfer_leaderships(
        &self,
        tables: &[&TableRecord],
        transfers: &[PlannedTransfer],
    ) -> usize {
        let calls: Vec<_> = transfers
            .iter()
            .filter_map(|transfer| {
                let partition = tables
                    .iter()
                    .flat_map(|table| table.all_partitions())
                    .find(|partition| partition.id == transfer.partition)?;
                let request = NodeRequest::TransferLeadership {
                    partition: partition.id,
                    epoch: partition.epoch,
                    to: transfer.to,
                };
                let shard = partition.shard;
                Some(async move {
                    let outcome = self
                        .forwarder
                        .call_once(transfer.from, shard, request)
                        .await;
                    let accepted = matches!(outcome, Ok(NodeResponse::Membership { .. }));
                    if accepted {
                        self.metrics.note_autoadmin("leader_transfer");
                        tracing::info!(
                            partition = transfer.partition,
                            from = transfer.from,
                            to = transfer.to,
                            "autoadmin: handing a partition's leadership over (leader balance)"
                        );
                    } else {
                        tracing::debug!(?transfer, ?outcome, "a leadership transfer was refused");
                    }
                    accepted
                })
            })
            .collect();
        join_bounded(calls, LEADER_TRANSFERS_MAX)
            .await
            .into_iter()
            .filter(|accepted| *accepted)
            .count()
    }

    /// The node whose replica leads each partition, and the bytes of items that leader
    /// reports, as every shard reports them now (a shard that does not answer leaves its
    /// partitions' leaders unknown), and whether every shard answered.
    async fn partition_leaders(
        &self,
        cluster: &ClusterRecord,
    ) -> (BTreeMap<u64, NodeId>, BTreeMap<u64, u64>, bool) {
        let reports = self.shard_reports(cluster).await;
        let every_shard_answered = reports.iter().all(|report| report.replicas.is_some());
        let mut leaders = BTreeMap::new();
        let mut sizes = BTreeMap::new();
        for report in &reports {
            let leading = report.replicas.iter().flatten().filter(|replica| {
                matches!(
                    replica.role,
                    ReplicaRole::Leader | ReplicaRole::LeaderWithLease
                )
            });
            for replica in leading {
                leaders.insert(replica.partition, report.node);
                sizes.insert(replica.partition, replica.item_bytes);
            }
        }
        (leaders, sizes, every_shard_answered)
    }

    /// Whether `node`'s `shard` hosts a replica of `partition`; `None` when it did not answer.
    async fn hosts_partition(&self, node: NodeId, shard: u16, partition: u64) -> Option<bool> {
        match self
            .forwarder
            .call_once(node, shard, NodeRequest::Status)
            .await
        {
            Ok(NodeResponse::Status { replicas, .. }) => Some(
                replicas
                    .iter()
                    .any(|replica| replica.partition == partition),
            ),
            _ => None,
        }
    }

    /// Writes `record` as `partition`'s move in `table`'s item, if its target's shard hosts
    /// no replica of the partition (module docs) and the item still allows it: no move of the
    /// partition, the source listed and the target not (metadata invariant 7). Returns the
    /// move to drive, or `None` when it was not recorded.
    async fn record_new_move(
        &self,
        table: &TableRecord,
        partition: u64,
        record: ReplicaMoveRecord,
    ) -> Result<Option<Driven>, DynamoError> {
        let Some(shard) = table
            .all_partitions()
            .find(|entry| entry.id == partition)
            .map(|entry| entry.shard)
        else {
            return Ok(None);
        };
        if self.hosts_partition(record.target, shard, partition).await != Some(false) {
            tracing::info!(table = %table.name, partition, target = record.target, "autoadmin: the target holds a replica of the partition (or did not answer); the move waits");
            return Ok(None);
        }
        let written = Cell::new(false);
        let incarnation = table.incarnation();
        let current = self
            .change_table(
                &table.name,
                || DynamoError::table_not_found(&table.name),
                |current| {
                    written.set(false);
                    let splitting = current.partition_splits.iter().any(|(parent, split)| {
                        *parent == partition
                            || (!split.routed && [split.left, split.right].contains(&partition))
                    });
                    if current.status != TableStatus::Active
                        || current.incarnation() != incarnation
                        || current.replica_moves.contains_key(&partition)
                        || splitting
                    {
                        return Ok(None);
                    }
                    let mut changed = current.clone();
                    let Some(entry) = changed.partition_mut(partition) else {
                        return Ok(None);
                    };
                    let source_listed =
                        record.source == NO_SOURCE || entry.replicas.contains(&record.source);
                    if !source_listed || entry.replicas.contains(&record.target) {
                        return Ok(None);
                    }
                    changed.replica_moves.insert(partition, record);
                    written.set(true);
                    Ok(Some(changed))
                },
                || control::table_in_use(&table.name, "updated"),
            )
            .await?;
        if !written.get() {
            return Ok(None);
        }
        Ok(driven_move(&current, partition, &record))
    }

    /// Counts a move the pass recorded: an addition (growth), a balance move, or a
    /// re-replication or drain.
    fn count_move_started(
        &self,
        report: &mut AutoadminReport,
        planned: &PlannedMove,
        balancing: bool,
    ) {
        report.moves_started += 1;
        if planned.source == NO_SOURCE {
            report.replicas_added += 1;
        } else if balancing {
            report.balance_moves += 1;
        }
        self.metrics.note_autoadmin("move_started");
    }

    /// Whether this router may act as the autoadmin now (module docs, "One active
    /// autoadmin"): renews the lease it holds, takes one left unrenewed for
    /// [`RouterConfig::autoadmin_takeover_after`], at most one metadata read and write per
    /// [`AUTOADMIN_INTERVAL`].
    pub(super) async fn keep_autoadmin_lease(&self) -> Result<bool, DynamoError> {
        let memory = &self.autoadmin;
        let takeover_after = self.config.autoadmin_takeover_after;
        let held_for = takeover_after / 2;
        let held_now = |now: Instant| {
            memory
                .lease_renewed_at
                .get()
                .is_some_and(|renewed| now.saturating_duration_since(renewed) < held_for)
        };
        let now = Instant::now();
        if let Some(renewed) = memory.lease_renewed_at.get()
            && now.saturating_duration_since(renewed) < AUTOADMIN_INTERVAL.min(held_for)
        {
            return Ok(true);
        }
        if memory.lease_renewing.get() {
            return Ok(held_now(now));
        }
        memory.lease_renewing.set(true);
        let renewed = self.renew_autoadmin_lease(now, takeover_after).await;
        memory.lease_renewing.set(false);
        // Acting counts from when the renewal was asked for, not answered: a late answer
        // leaves less of the lease.
        Ok(renewed? && held_now(Instant::now()))
    }

    /// One read of the lease and, if this router holds it or may take it, one conditional
    /// write ([`Router::keep_autoadmin_lease`]). Returns whether this router holds it now.
    async fn renew_autoadmin_lease(
        &self,
        now: Instant,
        takeover_after: Duration,
    ) -> Result<bool, DynamoError> {
        let memory = &self.autoadmin;
        if memory.lease_id.get() == 0 {
            memory.lease_id.set(new_record_id().max(1));
        }
        let me = memory.lease_id.get();
        let deadline = now + CONTROL_DEADLINE;
        let lease = self
            .metadata
            .autoadmin_lease(&self.forwarder, deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        let expected = match lease {
            None => None,
            Some((holder, revision)) if holder == me => Some(revision),
            Some((holder, revision)) => {
                let first_seen = match memory.lease_seen.get() {
                    Some((seen_holder, seen_revision, at))
                        if (seen_holder, seen_revision) == (holder, revision) =>
                    {
                        at
                    }
                    _ => {
                        memory.lease_seen.set(Some((holder, revision, now)));
                        now
                    }
                };
                memory.lease_renewed_at.set(None);
                if now.saturating_duration_since(first_seen) < takeover_after {
                    return Ok(false);
                }
                tracing::warn!(
                    holder,
                    "autoadmin: the lease went unrenewed; this router takes it over"
                );
                Some(revision)
            }
        };
        let written = self
            .metadata
            .put_autoadmin_lease(&self.forwarder, me, expected, deadline)
            .await
            .map_err(ForwardError::into_dynamo)?;
        if written {
            if memory.lease_renewed_at.get().is_none() {
                tracing::info!("autoadmin: this router holds the lease and acts");
                self.metrics.note_autoadmin("lease_taken");
            }
            memory.lease_renewed_at.set(Some(now));
            memory.lease_seen.set(None);
        } else {
            memory.lease_renewed_at.set(None);
        }
        Ok(written)
    }

    /// A cluster item without `metadata_replicas` (written by an older router) assumes the
    /// group on the lowest ids (`ClusterRecord::metadata_replicas_recorded`). Writes that list
    /// if the nodes that host a replica of the group are exactly those; returns whether it is
    /// now recorded. Otherwise the group is neither moved nor collected until an operator looks.
    async fn confirm_metadata_replicas(&self, cluster: &ClusterRecord) -> bool {
        if self
            .autoadmin
            .metadata_confirmed_at
            .get()
            .is_some_and(|last| last.elapsed() < BALANCE_CHECK_INTERVAL)
        {
            return false;
        }
        self.autoadmin
            .metadata_confirmed_at
            .set(Some(Instant::now()));
        let (hosting, _) = self.metadata.find_group(&self.forwarder).await;
        if hosting != cluster.metadata_replicas {
            tracing::warn!(
                assumed = ?cluster.metadata_replicas,
                ?hosting,
                "autoadmin: the cluster item does not list the metadata group's replicas and the \
                 nodes hosting it are not the ones assumed; the group is not moved"
            );
            return false;
        }
        let assumed = cluster.metadata_replicas.clone();
        match self
            .update_cluster(|current| {
                if current.metadata_replicas_recorded || current.metadata_replicas != assumed {
                    return Ok(false);
                }
                current.metadata_replicas_recorded = true;
                Ok(true)
            })
            .await
        {
            Ok(written) => written.metadata_replicas_recorded,
            Err(error) => {
                tracing::warn!(%error.message, "autoadmin: the metadata group's list was not written");
                false
            }
        }
    }

    /// Writes `record` as the metadata group's move in the cluster item, like
    /// [`Router::record_new_move`] for a table partition: only if the target's metadata shard
    /// hosts no replica of the group, no move of the group is under way, the source is listed
    /// and the target is not.
    async fn record_new_metadata_move(
        &self,
        record: ReplicaMoveRecord,
    ) -> Result<Option<Driven>, DynamoError> {
        if self
            .hosts_partition(record.target, METADATA_SHARD, METADATA_PARTITION)
            .await
            != Some(false)
        {
            tracing::info!(
                target = record.target,
                "autoadmin: the target holds a replica of the metadata group (or did not answer); the move waits"
            );
            return Ok(None);
        }
        let written = Cell::new(false);
        let cluster = self
            .update_cluster(|cluster| {
                written.set(false);
                if cluster.metadata_move.is_some()
                    || !(record.source == NO_SOURCE
                        || cluster.metadata_replicas.contains(&record.source))
                    || cluster.metadata_replicas.contains(&record.target)
                {
                    return Ok(false);
                }
                cluster.metadata_move = Some(record);
                written.set(true);
                Ok(true)
            })
            .await?;
        Ok(written
            .get()
            .then(|| driven_metadata_move(&cluster, &record)))
    }

    /// Whether `record` is the one `moving` drives: same move id, same target.
    fn is_drivers(moving: &Driven, record: Option<&ReplicaMoveRecord>) -> bool {
        record
            .is_some_and(|record| record.id == moving.id && record.target == moving.machine.target)
    }

    /// Whether `moving`'s record in `table` is still the one it drives: same table
    /// incarnation, same move id, same target.
    fn record_is(moving: &Driven, table: &TableRecord) -> bool {
        let MoveHome::Table { incarnation, .. } = &moving.home else {
            return false;
        };
        table.status == TableStatus::Active
            && table.incarnation() == *incarnation
            && Self::is_drivers(moving, table.replica_moves.get(&moving.machine.partition))
    }

    /// The replicas listed for `moving`'s partition, if its record is still the one it drives
    /// (read strongly now); `Ok(None)` when it is not, or its table is gone (superseded).
    async fn listed_if_ours(&self, moving: &Driven) -> Result<Option<Vec<NodeId>>, DynamoError> {
        match &moving.home {
            MoveHome::Table { name, .. } => {
                let deadline = Instant::now() + CONTROL_DEADLINE;
                Ok(self
                    .read_table(name, deadline)
                    .await?
                    .filter(|table| Self::record_is(moving, table))
                    .and_then(|table| {
                        table
                            .all_partitions()
                            .find(|entry| entry.id == moving.machine.partition)
                            .map(|entry| entry.replicas.clone())
                    }))
            }
            MoveHome::MetadataGroup => {
                let cluster = self.load_cluster().await?;
                Ok(Self::is_drivers(moving, cluster.metadata_move.as_ref())
                    .then_some(cluster.metadata_replicas))
            }
        }
    }

    /// Makes `edit` in `moving`'s record and its replica list, if the record is still the one
    /// this driver drives. `Ok(false)` when it is not, or its table is gone (superseded).
    async fn change_move_record(
        &self,
        moving: &Driven,
        edit: RecordEdit,
    ) -> Result<bool, DynamoError> {
        let partition = moving.machine.partition;
        let (source, target) = (moving.machine.source, moving.machine.target);
        let ours = Cell::new(false);
        let name = match &moving.home {
            MoveHome::Table { name, .. } => name,
            MoveHome::MetadataGroup => {
                let written = self
                    .update_cluster(|cluster| {
                        ours.set(Self::is_drivers(moving, cluster.metadata_move.as_ref()));
                        if !ours.get() {
                            return Ok(false);
                        }
                        let before = cluster.clone();
                        edit.apply(
                            &mut cluster.metadata_replicas,
                            &mut cluster.metadata_move,
                            source,
                            target,
                        );
                        cluster.metadata_replicas.sort_unstable();
                        Ok(*cluster != before)
                    })
                    .await?;
                // This router follows the group at once (`load_cluster` did).
                debug_assert_eq!(self.metadata.replicas(), written.metadata_replicas);
                return Ok(ours.get());
            }
        };
        let changed = self
            .change_table(
                name,
                || DynamoError::table_not_found(name),
                |current| {
                    ours.set(Self::record_is(moving, current));
                    if !ours.get() {
                        return Ok(None);
                    }
                    let mut changed = current.clone();
                    let mut record = changed.replica_moves.get(&partition).copied();
                    if let Some(entry) = changed.partition_mut(partition) {
                        edit.apply(&mut entry.replicas, &mut record, source, target);
                    }
                    match record {
                        Some(record) => {
                            changed.replica_moves.insert(partition, record);
                        }
                        None => {
                            changed.replica_moves.remove(&partition);
                        }
                    }
                    if matches!(edit, RecordEdit::Done) {
                        changed.pending_replicas.remove(&(partition, source));
                    }
                    Ok((changed != *current).then_some(changed))
                },
                || control::table_in_use(name, "updated"),
            )
            .await;
        match changed {
            Ok(_) => Ok(ours.get()),
            Err(error) if error.type_name == crate::error::RESOURCE_NOT_FOUND => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Fencing (module docs): before a membership change, whether the record is still this
    /// driver's. Read again at each new step and every [`FENCE_INTERVAL`] within one.
    async fn still_ours(&self, moving: &mut Driven) -> Result<bool, DynamoError> {
        let step = moving.machine.step();
        if moving
            .fenced
            .is_some_and(|(at, when)| at == step && when.elapsed() < FENCE_INTERVAL)
        {
            return Ok(true);
        }
        let ours = self.listed_if_ours(moving).await?.is_some();
        moving.fenced = Some((step, Instant::now()));
        Ok(ours)
    }

    /// Drives one move for up to [`MOVE_DRIVE_MAX`] (module docs). `targets`: the nodes a new
    /// target may be, least loaded first.
    async fn drive_move(
        &self,
        mut moving: Driven,
        down: &BTreeSet<NodeId>,
        targets: &[NodeId],
    ) -> Driving {
        let give_up_at = Instant::now() + MOVE_DRIVE_MAX;
        let partition = moving.machine.partition;
        loop {
            if Instant::now() >= give_up_at {
                return Driving::Unfinished;
            }
            // A long drive keeps the lease; one that lost it leaves the move to the holder.
            if !matches!(self.keep_autoadmin_lease().await, Ok(true)) {
                return Driving::Unfinished;
            }
            if down.contains(&moving.machine.target) {
                // Replaced once the source is out of the group (module docs).
                moving.machine.give_up_on_target();
            }
            let progress = match moving.machine.action() {
                MoveAction::Done => {
                    tracing::info!(home = %moving.home, partition, source = moving.machine.source, target = moving.machine.target, "autoadmin: move finished");
                    return Driving::Finished;
                }
                MoveAction::Ask { node, request } => {
                    if down.contains(&node)
                        && matches!(request, NodeRequest::DeletePartition { .. })
                    {
                        moving.machine.skip_delete();
                        continue;
                    }
                    if matches!(request, NodeRequest::ChangeMembership { .. }) {
                        match self.still_ours(&mut moving).await {
                            Ok(true) => {}
                            Ok(false) => return Driving::Superseded,
                            Err(error) => {
                                tracing::warn!(partition, %error.message, "autoadmin: a move's record could not be read");
                                return Driving::Unfinished;
                            }
                        }
                    }
                    match self.forwarder.call_once(node, moving.shard, request).await {
                        Ok(response) => match moving.machine.answered(node, response) {
                            Ok(progress) => progress,
                            Err(unexpected) => {
                                tracing::warn!(home = %moving.home, partition, ?unexpected, "autoadmin: unexpected answer to a move's step");
                                Progress::AskAgain
                            }
                        },
                        Err(failure) => {
                            tracing::debug!(
                                partition,
                                node,
                                ?failure,
                                "autoadmin: a move's step got no answer"
                            );
                            moving.machine.unanswered(node);
                            Progress::AskAgain
                        }
                    }
                }
                MoveAction::Settle {
                    members,
                    removal_commit,
                } => {
                    if members.iter().any(|member| down.contains(member)) {
                        moving.machine.leave_source_in_place();
                        Progress::Advanced
                    } else if self
                        .settled(&members, moving.shard, partition, removal_commit)
                        .await
                    {
                        moving.machine.settled();
                        Progress::Advanced
                    } else {
                        Progress::AskAgain
                    }
                }
                MoveAction::RecordTarget => {
                    let recorded = self
                        .change_move_record(&moving, RecordEdit::TargetRouted)
                        .await;
                    match self.after_record(&mut moving, recorded) {
                        Some(ended) => return ended,
                        None => Progress::Advanced,
                    }
                }
                MoveAction::RecordDone => {
                    let recorded = self.change_move_record(&moving, RecordEdit::Done).await;
                    match self.after_record(&mut moving, recorded) {
                        Some(ended) => return ended,
                        None => Progress::Advanced,
                    }
                }
                MoveAction::Retarget { given_up } => {
                    match self.retarget(&mut moving, given_up, down, targets).await {
                        Some(ended) => return ended,
                        None => Progress::Advanced,
                    }
                }
            };
            match progress {
                Progress::Advanced => {}
                Progress::AskAgain => glommio::timer::sleep(MOVE_RETRY_INTERVAL).await,
                Progress::TargetRefused => {
                    tracing::warn!(home = %moving.home, partition, target = moving.machine.target, "autoadmin: the target keeps this partition out of service; another is chosen");
                    moving.machine.give_up_on_target();
                    if !moving.machine.source_dead {
                        glommio::timer::sleep(MOVE_RETRY_INTERVAL).await;
                    }
                }
            }
        }
    }

    /// After a record step: on to the next step, or how the drive ends (`Some`).
    fn after_record(
        &self,
        moving: &mut Driven,
        recorded: Result<bool, DynamoError>,
    ) -> Option<Driving> {
        match recorded {
            Ok(true) => {
                moving.machine.recorded();
                None
            }
            Ok(false) => Some(Driving::Superseded),
            Err(error) => {
                tracing::warn!(partition = moving.machine.partition, %error.message, "autoadmin: a move's record failed");
                Some(Driving::Unfinished)
            }
        }
    }

    /// [`MoveAction::Retarget`]: the first of `targets` that is up, not listed for the
    /// partition, not the target given up, and whose shard hosts no replica of it, recorded in
    /// place of `given_up`. `Some` when the drive ends (no such node now: the next pass tries
    /// again; or the record is no longer this driver's).
    async fn retarget(
        &self,
        moving: &mut Driven,
        given_up: NodeId,
        down: &BTreeSet<NodeId>,
        targets: &[NodeId],
    ) -> Option<Driving> {
        let partition = moving.machine.partition;
        let listed: Vec<NodeId> = match self.listed_if_ours(moving).await {
            Ok(Some(listed)) => listed,
            Ok(None) => return Some(Driving::Superseded),
            Err(_) => return Some(Driving::Unfinished),
        };
        for candidate in targets.iter().copied() {
            if candidate == given_up
                || candidate == moving.machine.source
                || down.contains(&candidate)
                || listed.contains(&candidate)
                || self
                    .hosts_partition(candidate, moving.shard, partition)
                    .await
                    != Some(false)
            {
                continue;
            }
            let recorded = self
                .change_move_record(
                    moving,
                    RecordEdit::Retarget {
                        given_up,
                        candidate,
                    },
                )
                .await;
            return match recorded {
                Ok(true) => {
                    tracing::info!(home = %moving.home, partition, given_up, target = candidate, "autoadmin: a failed target replaced");
                    moving.machine.retarget(candidate);
                    moving.fenced = None;
                    None
                }
                Ok(false) => Some(Driving::Superseded),
                Err(_) => Some(Driving::Unfinished),
            };
        }
        tracing::warn!(home = %moving.home, partition, given_up, "autoadmin: no node can take the replica now; the next pass tries again");
        Some(Driving::Unfinished)
    }

    /// Whether every one of `members` reports `partition`'s replica on `shard` applied at or
    /// past `removal_commit` (shoal_autoadmin::replica_move, step 6).
    async fn settled(
        &self,
        members: &[NodeId],
        shard: u16,
        partition: u64,
        removal_commit: u64,
    ) -> bool {
        for member in members {
            let applied = match self
                .forwarder
                .call_once(*member, shard, NodeRequest::Status)
                .await
            {
                Ok(NodeResponse::Status { replicas, .. }) => replicas
                    .iter()
                    .find(|replica| replica.partition == partition)
                    .map(|replica| replica.applied_slot),
                _ => None,
            };
            if applied.is_none_or(|applied| applied < removal_commit) {
                return false;
            }
        }
        true
    }
}

/// A fresh move id: the wall clock's nanoseconds, unique enough to tell two moves of one
/// partition apart (they are recorded one after the other).
/// A record's id (moves, splits): the wall clock in nanoseconds, distinct between drivers in
/// practice, and only ever compared for equality with the record a driver wrote.
pub(super) fn new_record_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// The machine of the metadata group's move as its record in `cluster` stands, from its first
/// step, like [`driven_move`]'s.
fn driven_metadata_move(cluster: &ClusterRecord, record: &ReplicaMoveRecord) -> Driven {
    let members: Vec<NodeId> = cluster
        .metadata_replicas
        .iter()
        .copied()
        .filter(|node| *node != record.target)
        .collect();
    let machine = ReplicaMove::new(
        METADATA_PARTITION,
        METADATA_EPOCH,
        crate::metadata::key_schema_wire(&crate::metadata::metadata_key_schema()),
        members,
        record.source,
        record.target,
        record.source_dead,
    );
    Driven {
        home: MoveHome::MetadataGroup,
        shard: METADATA_SHARD,
        id: record.id,
        machine,
        fenced: None,
    }
}

/// The machine of `table`'s move of `partition` as its record stands, from its first step
/// (shoal_autoadmin::replica_move, "Resuming"); a retargeted move's record names its current
/// target.
fn driven_move(table: &TableRecord, partition: u64, record: &ReplicaMoveRecord) -> Option<Driven> {
    let entry = table.all_partitions().find(|entry| entry.id == partition)?;
    let members: Vec<NodeId> = entry
        .replicas
        .iter()
        .copied()
        .filter(|node| *node != record.target)
        .collect();
    let machine = ReplicaMove::new(
        partition,
        entry.epoch,
        // Index partitions' replicas are created with the table's key schema too
        // (`Router::create_replicas_once`).
        crate::metadata::key_schema_wire(&table.key_schema),
        members,
        record.source,
        record.target,
        record.source_dead,
    );
    Some(Driven {
        home: MoveHome::Table {
            name: table.name.clone(),
            incarnation: table.incarnation(),
        },
        shard: entry.shard,
        id: record.id,
        machine,
        fenced: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(source: NodeId, target: NodeId) -> ReplicaMoveRecord {
        ReplicaMoveRecord {
            id: 9,
            source,
            target,
            source_dead: false,
            target_routed: false,
        }
    }

    /// The three record steps, as a table partition's entry and the cluster item's metadata
    /// listing both take them (metadata invariant 7): the target listed when routed, the source
    /// dropped with the record at the end, a failed target unlisted and replaced in the record.
    #[test]
    fn record_edits_list_the_target_then_drop_the_source_and_the_record() {
        let mut replicas = vec![1, 2, 3];
        let mut moving = Some(record(3, 5));
        RecordEdit::TargetRouted.apply(&mut replicas, &mut moving, 3, 5);
        assert_eq!(replicas, vec![1, 2, 3, 5]);
        assert!(moving.is_some_and(|record| record.target_routed));
        // Repeated (a driver that resumed), it changes nothing more.
        RecordEdit::TargetRouted.apply(&mut replicas, &mut moving, 3, 5);
        assert_eq!(replicas, vec![1, 2, 3, 5]);
        RecordEdit::Done.apply(&mut replicas, &mut moving, 3, 5);
        assert_eq!(replicas, vec![1, 2, 5]);
        assert_eq!(moving, None);

        // A target given up before it was routed is unlisted (if it was) and replaced.
        let mut replicas = vec![1, 2, 4];
        let mut moving = Some(ReplicaMoveRecord {
            target_routed: true,
            ..record(3, 4)
        });
        RecordEdit::Retarget {
            given_up: 4,
            candidate: 6,
        }
        .apply(&mut replicas, &mut moving, 3, 4);
        assert_eq!(replicas, vec![1, 2]);
        assert!(moving.is_some_and(|record| record.target == 6 && !record.target_routed));

        // An addition: nothing to drop at the end.
        let mut replicas = vec![1];
        let mut moving = Some(record(NO_SOURCE, 2));
        RecordEdit::TargetRouted.apply(&mut replicas, &mut moving, NO_SOURCE, 2);
        RecordEdit::Done.apply(&mut replicas, &mut moving, NO_SOURCE, 2);
        assert_eq!(replicas, vec![1, 2]);
        assert_eq!(moving, None);
    }
}
