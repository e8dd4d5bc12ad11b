//! How a peer writer turns its queue into frames: coalescing superseded heartbeats, then
//! packing envelopes into frames of bounded size. Pure functions, tested here.

use std::collections::HashSet;

use shoal_wire::messages::ReplicationEnvelope;

/// Drops every heartbeat (an Accept with no entries) that a later heartbeat of the same group
/// between the same replicas supersedes, keeping the order of everything else. Returns the
/// envelopes to send and how many heartbeats were dropped.
///
/// Only heartbeats are coalesced: an Accept with entries, a vote or a reply is never dropped
/// here. Dropping an older heartbeat is safe because the newer one carries a later round and a
/// commit index at least as high, and because replication tolerates the loss of any message.
pub fn coalesce_heartbeats(
    envelopes: Vec<ReplicationEnvelope>,
) -> (Vec<ReplicationEnvelope>, usize) {
    let mut newest_seen: HashSet<(u64, u64, u64)> = HashSet::new();
    let mut kept_reversed = Vec::with_capacity(envelopes.len());
    let mut coalesced = 0;
    for envelope in envelopes.into_iter().rev() {
        if envelope.message.is_heartbeat()
            && !newest_seen.insert((envelope.group, envelope.from, envelope.to))
        {
            coalesced += 1;
            continue;
        }
        kept_reversed.push(envelope);
    }
    kept_reversed.reverse();
    (kept_reversed, coalesced)
}

/// Packs envelopes, in order, into batches whose estimated archived size stays below
/// `frame_bytes_target` and whose length stays at or below `envelopes_max`. An envelope larger
/// than the target alone gets a batch of its own.
pub fn pack_frames(
    envelopes: Vec<ReplicationEnvelope>,
    frame_bytes_target: usize,
    envelopes_max: usize,
) -> Vec<Vec<ReplicationEnvelope>> {
    let envelopes_max = envelopes_max.max(1);
    let mut batches = Vec::new();
    let mut current: Vec<ReplicationEnvelope> = Vec::new();
    let mut current_bytes = 0usize;
    for envelope in envelopes {
        let bytes = envelope.message.encoded_bytes_estimate();
        if !current.is_empty()
            && (current_bytes + bytes > frame_bytes_target || current.len() >= envelopes_max)
        {
            batches.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += bytes;
        current.push(envelope);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_wire::messages::{BallotWire, LogEntryWire, PayloadWire, ReplicationMessageWire};

    fn heartbeat(group: u64, round: u64) -> ReplicationEnvelope {
        ReplicationEnvelope {
            group,
            from: 1,
            to: 2,
            message: ReplicationMessageWire::Accept {
                ballot: BallotWire { round: 1, node: 1 },
                round,
                first_slot: 5,
                entries: Vec::new(),
                commit_slot: 4,
            },
        }
    }

    fn accept(group: u64, payload_bytes: usize) -> ReplicationEnvelope {
        ReplicationEnvelope {
            group,
            from: 1,
            to: 2,
            message: ReplicationMessageWire::Accept {
                ballot: BallotWire { round: 1, node: 1 },
                round: 9,
                first_slot: 5,
                entries: vec![LogEntryWire {
                    ballot: BallotWire { round: 1, node: 1 },
                    payload: PayloadWire::Command(vec![0; payload_bytes]),
                }],
                commit_slot: 4,
            },
        }
    }

    #[test]
    fn only_the_newest_heartbeat_per_group_survives() {
        let queue = vec![
            heartbeat(1, 1),
            accept(1, 10),
            heartbeat(2, 1),
            heartbeat(1, 2),
            heartbeat(1, 3),
            ReplicationEnvelope {
                message: ReplicationMessageWire::PreCheck { round: 4 },
                ..heartbeat(1, 0)
            },
        ];
        let (kept, coalesced) = coalesce_heartbeats(queue.clone());
        assert_eq!(coalesced, 2);
        assert_eq!(
            kept,
            vec![
                queue[1].clone(),
                queue[2].clone(),
                queue[4].clone(),
                queue[5].clone()
            ]
        );
    }

    #[test]
    fn heartbeats_of_different_replica_pairs_are_kept() {
        let mut other_pair = heartbeat(1, 1);
        other_pair.to = 3;
        let (kept, coalesced) = coalesce_heartbeats(vec![heartbeat(1, 1), other_pair]);
        assert_eq!((kept.len(), coalesced), (2, 0));
    }

    #[test]
    fn frames_respect_the_size_target_and_the_count() {
        let envelopes: Vec<_> = (0..10).map(|group| accept(group, 400)).collect();
        let batches = pack_frames(envelopes.clone(), 1000, 100);
        assert!(batches.len() >= 5);
        assert_eq!(batches.concat(), envelopes);
        for batch in &batches {
            let bytes: usize = batch
                .iter()
                .map(|envelope| envelope.message.encoded_bytes_estimate())
                .sum();
            assert!(bytes <= 1000 || batch.len() == 1);
        }
        let batches = pack_frames(envelopes.clone(), usize::MAX, 3);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3, 3, 3, 1]
        );
        // An envelope above the target travels alone.
        let batches = pack_frames(
            vec![accept(1, 10), accept(2, 5000), accept(3, 10)],
            1000,
            10,
        );
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1, 1, 1]
        );
        assert!(pack_frames(Vec::new(), 1000, 10).is_empty());
    }
}
