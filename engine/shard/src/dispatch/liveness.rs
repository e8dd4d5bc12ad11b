//! Node liveness, without I/O: which peer nodes this shard still hears from.
//!
//! Quiesced groups (shoal-replication `ReplicaOptions::quiesce`) send nothing while idle, so a
//! follower's election timer cannot notice that its leader died. The shard does it once for all
//! its replicas: it pings the same shard of every peer node every `ping_interval` (an envelope
//! of group [`LIVENESS_GROUP`], FORMAT.md of shoal-wire), counts any replication frame from a
//! node as hearing from it, and calls a node unreachable after `unreachable_after` of silence.
//! Each change is handed to every replica of the shard (`Event::PeerUnreachable`,
//! `Event::PeerReachable`): a follower quiesced under a leader on an unreachable node wakes and
//! may campaign; a quiesced leader wakes when a follower's node is back. The cost is one ping
//! per peer per interval, whatever the number of partitions.

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
    config: LivenessConfig,
    peers: BTreeMap<NodeId, Peer>,
}

impl Liveness {
    pub fn new(node: NodeId, config: LivenessConfig) -> Self {
        Self {
            node,
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
        });
    }

    /// Something arrived from `peer`. A peer that was unreachable is reachable again.
    pub fn heard(&mut self, peer: NodeId, now: MonotonicTime) -> Option<PeerChange> {
        let entry = self.peers.get_mut(&peer)?;
        entry.last_heard = entry.last_heard.max(now);
        if entry.reachable {
            return None;
        }
        entry.reachable = true;
        Some(PeerChange::Reachable(peer))
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
                pings.push(ping(self.node, *peer));
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

/// A liveness ping from `from` to `to`: an envelope of [`LIVENESS_GROUP`] whose message is
/// ignored (a pre-check of round 0, the smallest message there is).
pub fn ping(from: NodeId, to: NodeId) -> ReplicationEnvelope {
    ReplicationEnvelope {
        group: LIVENESS_GROUP,
        from: from.0,
        to: to.0,
        message: ReplicationMessageWire::PreCheck { round: 0 },
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
        let mut liveness = Liveness::new(NodeId(1), config());
        for peer in 1..=3 {
            liveness.watch(NodeId(peer), ms(0));
        }
        let (pings, _) = liveness.due(ms(0));
        let targets: Vec<u64> = pings.iter().map(|ping| ping.to).collect();
        assert_eq!(targets, vec![2, 3]);
        assert!(pings.iter().all(|ping| ping.group == LIVENESS_GROUP));
        assert!(liveness.due(ms(99)).0.is_empty());
        assert_eq!(liveness.due(ms(100)).0.len(), 2);
    }

    #[test]
    fn a_silent_peer_becomes_unreachable_once_and_reachable_when_heard() {
        let mut liveness = Liveness::new(NodeId(1), config());
        liveness.watch(NodeId(2), ms(0));
        liveness.watch(NodeId(3), ms(0));
        assert_eq!(liveness.heard(NodeId(3), ms(300)), None);
        assert!(liveness.due(ms(349)).1.is_empty());
        assert_eq!(
            liveness.due(ms(350)).1,
            vec![PeerChange::Unreachable(NodeId(2))]
        );
        assert!(liveness.due(ms(400)).1.is_empty(), "reported once");
        assert_eq!(liveness.reachable(NodeId(2)), Some(false));
        assert_eq!(liveness.reachable(NodeId(3)), Some(true));
        assert_eq!(
            liveness.heard(NodeId(2), ms(500)),
            Some(PeerChange::Reachable(NodeId(2)))
        );
        assert_eq!(liveness.heard(NodeId(2), ms(510)), None);
        assert_eq!(liveness.heard(NodeId(9), ms(510)), None, "not watched");
    }
}
