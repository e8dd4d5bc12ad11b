//! Node liveness, without I/O: which peer nodes this shard still hears from.
//!
//! Quiesced groups (shoal-replication `ReplicaOptions::quiesce`) send nothing while idle, so a
//! follower's election timer cannot notice that its leader died. The shard does it once for all
//! its replicas: it pings the same shard of every peer node every `ping_interval` (an envelope
//! of group [`LIVENESS_GROUP`], FORMAT.md of shoal-wire), counts any replication frame from a
//! node as hearing from it, and calls a node unreachable after `unreachable_after` of silence.
//! Each change is handed to every replica of the shard (`Event::PeerUnreachable`,
//! `Event::PeerReachable`): a follower quiesced under a leader on an unreachable node wakes and
//! may campaign; a quiesced leader wakes when a follower's node is back. A ping carries its
//! sender's incarnation (a number drawn at each start): a node that restarted faster than the
//! silence limit is reported unreachable and reachable at once, because its replicas may not
//! be what they were (one may refuse to recover) while their followers stay quiesced. The cost
//! is one ping per peer per interval, whatever the number of partitions.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_io::MonotonicTime;
use shoal_replication::NodeId;
use shoal_wire::messages::{ReplicationEnvelope, ReplicationMessageWire};

pub use shoal_wire::messages::LIVENESS_GROUP;

/// When a shard pings its peers and when it gives up on one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessConfig {
    pub ping_interval: Duration,
    /// Silence after which a peer is unreachable. Several ping intervals, so that a ping or two
    /// lost on a healthy link changes nothing.
    pub unreachable_after: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Peer {
    last_heard: MonotonicTime,
    last_pinged: Option<MonotonicTime>,
    reachable: bool,
    /// The incarnation its last ping carried.
    incarnation: Option<u64>,
}

/// What changed for one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerChange {
    Unreachable(NodeId),
    Reachable(NodeId),
}

/// The liveness of the peers of one shard.
#[derive(Debug)]
pub struct Liveness {
    node: NodeId,
    /// This node's incarnation, carried by its pings.
    incarnation: u64,
    config: LivenessConfig,
    peers: BTreeMap<NodeId, Peer>,
}

impl Liveness {
    pub fn new(node: NodeId, incarnation: u64, config: LivenessConfig) -> Self {
        Self {
            node,
            incarnation,
            config,
            peers: BTreeMap::new(),
        }
    }

    /// Starts watching `peer`, reachable until it has been silent for `unreachable_after` from
    /// now (a node starting up gives its peers the benefit of the doubt).
    pub fn watch(&mut self, peer: NodeId, now: MonotonicTime) {
        if peer == self.node {
            return;
        }
        self.peers.entry(peer).or_insert(Peer {
            last_heard: now,
            last_pinged: None,
            reachable: true,
            incarnation: None,
        });
    }

    /// Stops watching `peer` (a node that left the cluster): no more pings to it.
    pub fn forget(&mut self, peer: NodeId) {
        self.peers.remove(&peer);
    }

    /// The peers watched.
    pub fn watched(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers.keys().copied()
    }

    /// Something arrived from `peer`: a ping carries its `incarnation`. A peer that was
    /// unreachable is reachable again; one whose incarnation changed restarted, and is reported
    /// unreachable and reachable at once.
    pub fn heard(
        &mut self,
        peer: NodeId,
        now: MonotonicTime,
        incarnation: Option<u64>,
    ) -> Vec<PeerChange> {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return Vec::new();
        };
        entry.last_heard = entry.last_heard.max(now);
        let restarted = match (entry.incarnation, incarnation) {
            (Some(known), Some(new)) => known != new,
            _ => false,
        };
        if incarnation.is_some() {
            entry.incarnation = incarnation;
        }
        if restarted && entry.reachable {
            return vec![PeerChange::Unreachable(peer), PeerChange::Reachable(peer)];
        }
        if entry.reachable {
            return Vec::new();
        }
        entry.reachable = true;
        vec![PeerChange::Reachable(peer)]
    }

    /// The pings due now (one envelope per peer, to be sent to that node's same shard) and the
    /// peers that went silent.
    pub fn due(&mut self, now: MonotonicTime) -> (Vec<ReplicationEnvelope>, Vec<PeerChange>) {
        let mut pings = Vec::new();
        let mut changes = Vec::new();
        for (peer, state) in &mut self.peers {
            let ping_due = state
                .last_pinged
                .is_none_or(|at| now >= at.saturating_add(self.config.ping_interval));
            if ping_due {
                state.last_pinged = Some(now);
                pings.push(ping(self.node, *peer, self.incarnation));
            }
            let silent = now
                >= state
                    .last_heard
                    .saturating_add(self.config.unreachable_after);
            if state.reachable && silent {
                state.reachable = false;
                changes.push(PeerChange::Unreachable(*peer));
            }
        }
        (pings, changes)
    }

    /// Whether `peer` is watched and currently reachable.
    pub fn reachable(&self, peer: NodeId) -> Option<bool> {
        self.peers.get(&peer).map(|state| state.reachable)
    }
}

/// A liveness ping from `from` to `to`: an envelope of [`LIVENESS_GROUP`] whose message is a
/// pre-check whose round is the sender's incarnation (the smallest message there is).
pub fn ping(from: NodeId, to: NodeId, incarnation: u64) -> ReplicationEnvelope {
    ReplicationEnvelope {
        group: LIVENESS_GROUP,
        from: from.0,
        to: to.0,
        message: ReplicationMessageWire::PreCheck { round: incarnation },
    }
}

/// The incarnation a ping carries, if `envelope` is one.
pub fn ping_incarnation(envelope: &ReplicationEnvelope) -> Option<u64> {
    match envelope.message {
        ReplicationMessageWire::PreCheck { round } if envelope.group == LIVENESS_GROUP => {
            Some(round)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LivenessConfig {
        LivenessConfig {
            ping_interval: Duration::from_millis(100),
            unreachable_after: Duration::from_millis(350),
        }
    }

    fn ms(milliseconds: u64) -> MonotonicTime {
        MonotonicTime::from_nanos(milliseconds * 1_000_000)
    }

    #[test]
    fn peers_are_pinged_every_interval_and_never_oneself() {
        let mut liveness = Liveness::new(NodeId(1), 5, config());
        for peer in 1..=3 {
            liveness.watch(NodeId(peer), ms(0));
        }
        let (pings, _) = liveness.due(ms(0));
        let targets: Vec<u64> = pings.iter().map(|ping| ping.to).collect();
        assert_eq!(targets, vec![2, 3]);
        assert!(pings.iter().all(|ping| ping_incarnation(ping) == Some(5)));
        assert!(liveness.due(ms(99)).0.is_empty());
        assert_eq!(liveness.due(ms(100)).0.len(), 2);
    }

    #[test]
    fn a_silent_peer_becomes_unreachable_once_and_reachable_when_heard() {
        let mut liveness = Liveness::new(NodeId(1), 5, config());
        liveness.watch(NodeId(2), ms(0));
        liveness.watch(NodeId(3), ms(0));
        assert_eq!(liveness.heard(NodeId(3), ms(300), None), vec![]);
        assert!(liveness.due(ms(349)).1.is_empty());
        assert_eq!(
            liveness.due(ms(350)).1,
            vec![PeerChange::Unreachable(NodeId(2))]
        );
        assert!(liveness.due(ms(400)).1.is_empty(), "reported once");
        assert_eq!(liveness.reachable(NodeId(2)), Some(false));
        assert_eq!(liveness.reachable(NodeId(3)), Some(true));
        assert_eq!(
            liveness.heard(NodeId(2), ms(500), None),
            vec![PeerChange::Reachable(NodeId(2))]
        );
        assert_eq!(liveness.heard(NodeId(2), ms(510), None), vec![]);
        assert_eq!(
            liveness.heard(NodeId(9), ms(510), None),
            vec![],
            "not watched"
        );
    }

    #[test]
    fn a_peer_that_restarted_within_the_silence_limit_is_reported_gone_and_back() {
        let mut liveness = Liveness::new(NodeId(1), 5, config());
        liveness.watch(NodeId(2), ms(0));
        assert_eq!(liveness.heard(NodeId(2), ms(100), Some(40)), vec![]);
        assert_eq!(liveness.heard(NodeId(2), ms(200), Some(40)), vec![]);
        assert_eq!(
            liveness.heard(NodeId(2), ms(300), Some(41)),
            vec![
                PeerChange::Unreachable(NodeId(2)),
                PeerChange::Reachable(NodeId(2))
            ]
        );
        assert_eq!(liveness.heard(NodeId(2), ms(400), Some(41)), vec![]);
    }
}
