//! Property: whatever the host's log kept, a restarted replica recovers it.
//!
//! One follower (node 3) is driven by leaders of increasing ballots that re-send runs of
//! entries from anywhere in its open log, while a model host writes every `Persist` to a log,
//! syncs some of it, checkpoints, recycles the oldest writes exactly as far as shoal-partition
//! may (below the newest synced write of every slot after the checkpoint, and below the latest
//! checkpoint record), and crashes, keeping the synced writes and any prefix of the rest.
//! After every crash recovery must accept what is left, and the recovered log must be exactly
//! what every write that ever became durable says: for each slot after the checkpoint the entry
//! with the highest ballot, the later of equal ones; nothing acknowledged is lost, nothing is
//! invented. The promise must be the highest any durable write made.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{ms, n, options, three_full};
use proptest::prelude::*;
use shoal_replication::{
    Action, Ballot, LogEntry, Message, Payload, RecoveredState, Replica, ReplicaKind, Slot,
    SnapshotMeta,
};

/// Operations per case, and cases per run: enough for several restarts with re-sent runs in
/// between, small enough to run in about a second.
const OPERATIONS_MAX: usize = 80;
const CASES: u32 = 256;
/// The longest run of entries one Accept carries.
const RUN_ENTRIES_MAX: u64 = 6;
/// How far back from its log end a leader may start re-sending.
const RESEND_BACK_MAX: u64 = 12;

#[derive(Clone, Debug)]
enum Operation {
    /// A new leader (node 1 or 2) takes the next round.
    NewLeader { node: u64 },
    /// The current leader's Prepare.
    Prepare,
    /// The current leader sends `count` entries from `back` slots before the follower's log
    /// end (clamped to its commit slot), and commits up to `commit_back` slots before the end
    /// of the run.
    Accept {
        back: u64,
        count: u64,
        commit_back: u64,
    },
    /// The host syncs its next `count` unsynced writes and reports them.
    Sync { count: usize },
    /// The host checkpoints at the commit slot: a synced checkpoint record, then truncation.
    Checkpoint,
    /// The host recycles this share (in 1/8) of what it may recycle.
    Recycle { eighths: u64 },
    /// The node crashes, keeping the synced writes and `keep` more, and restarts.
    Crash { keep: usize },
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        1 => (1u64..=2).prop_map(|node| Operation::NewLeader { node }),
        1 => Just(Operation::Prepare),
        6 => (0..=RESEND_BACK_MAX, 1..=RUN_ENTRIES_MAX, 0u64..4).prop_map(
            |(back, count, commit_back)| Operation::Accept { back, count, commit_back }
        ),
        3 => (1usize..4).prop_map(|count| Operation::Sync { count }),
        1 => Just(Operation::Checkpoint),
        2 => (1u64..=8).prop_map(|eighths| Operation::Recycle { eighths }),
        1 => (0usize..3).prop_map(|keep| Operation::Crash { keep }),
    ]
}

/// One record of the host's log.
#[derive(Clone, Debug)]
struct Write {
    /// The record's position in the log; positions are never reused.
    position: u64,
    promised: Option<Ballot>,
    entries: Vec<(Slot, LogEntry)>,
    /// A checkpoint record: the host's state is durable through this slot.
    checkpoint: Option<Slot>,
}

/// The payload a leader of `ballot` proposes at `slot`: distinct per ballot, so the test can
/// tell which write recovery kept.
fn payload(ballot: Ballot, slot: Slot) -> Payload {
    Payload::Command(vec![slot.0 as u8, ballot.round as u8, ballot.node.0 as u8])
}

/// The entry each slot after `snapshot` keeps among `writes`: the highest ballot, the later
/// write of equal ones. Written out here rather than taken from the crate, as the reference.
fn expected_log(writes: &[Write], snapshot: Slot) -> BTreeMap<Slot, (u64, LogEntry)> {
    let mut kept: BTreeMap<Slot, (u64, LogEntry)> = BTreeMap::new();
    for write in writes {
        for (slot, entry) in &write.entries {
            if *slot <= snapshot {
                continue;
            }
            let replace = kept
                .get(slot)
                .is_none_or(|(_, current)| entry.ballot >= current.ballot);
            if replace {
                kept.insert(*slot, (write.position, entry.clone()));
            }
        }
    }
    kept
}

fn highest_promise(writes: &[Write]) -> Ballot {
    writes
        .iter()
        .flat_map(|write| {
            write
                .promised
                .into_iter()
                .chain(write.entries.iter().map(|(_, entry)| entry.ballot))
        })
        .fold(Ballot::ZERO, Ballot::max)
}

struct Host {
    replica: Replica,
    /// The log as it is on disk: recycled writes are gone.
    log: Vec<Write>,
    /// Every write that was ever synced or survived a crash, recycled or not: the reference
    /// for what recovery must find.
    durable: Vec<Write>,
    /// Writes of this incarnation not yet synced, with their core lsn.
    unsynced: Vec<(u64, Write)>,
    next_position: u64,
    /// The newest synced write of each slot after the checkpoint, and the latest checkpoint
    /// record: what shoal-partition keeps the WAL from recycling.
    newest_write_of_slot: BTreeMap<Slot, u64>,
    checkpoint: Slot,
    checkpoint_position: Option<u64>,
    ballot: Ballot,
    now_ms: u64,
    restarts: u64,
}

impl Host {
    fn new() -> Host {
        let replica =
            Replica::new(n(3), options(ReplicaKind::Full, 3), three_full(), ms(0)).unwrap();
        Host {
            replica,
            log: Vec::new(),
            durable: Vec::new(),
            unsynced: Vec::new(),
            next_position: 1,
            newest_write_of_slot: BTreeMap::new(),
            checkpoint: Slot::ZERO,
            checkpoint_position: None,
            ballot: Ballot::ZERO,
            now_ms: 0,
            restarts: 0,
        }
    }

    fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            if let Action::Persist {
                lsn,
                promised,
                entries,
            } = action
            {
                let write = Write {
                    position: self.next_position,
                    promised,
                    entries,
                    checkpoint: None,
                };
                self.next_position += 1;
                self.log.push(write.clone());
                self.unsynced.push((lsn.0, write));
            }
        }
    }

    fn tick_clock(&mut self) -> shoal_replication::MonotonicTime {
        self.now_ms += 1;
        ms(self.now_ms)
    }

    fn sync(&mut self, count: usize) {
        let count = count.min(self.unsynced.len());
        if count == 0 {
            return;
        }
        let synced: Vec<(u64, Write)> = self.unsynced.drain(..count).collect();
        let mut lsn_last = 0;
        for (lsn, write) in synced {
            for (slot, _) in &write.entries {
                if *slot > self.checkpoint {
                    self.newest_write_of_slot.insert(*slot, write.position);
                }
            }
            self.durable.push(write);
            lsn_last = lsn;
        }
        let now = self.tick_clock();
        let actions = self
            .replica
            .persisted(now, shoal_replication::Lsn(lsn_last));
        self.execute(actions);
    }

    fn apply(&mut self, operation: Operation) -> Result<(), TestCaseError> {
        match operation {
            Operation::NewLeader { node } => {
                self.ballot = Ballot {
                    round: self.ballot.round + 1,
                    node: n(node),
                };
            }
            Operation::Prepare => {
                if self.ballot == Ballot::ZERO {
                    return Ok(());
                }
                let now = self.tick_clock();
                let message = Message::Prepare {
                    ballot: self.ballot,
                    from_slot: self.replica.commit_slot().next(),
                    lease_released: None,
                };
                let actions = self.replica.handle_message(now, self.ballot.node, message);
                self.execute(actions);
            }
            Operation::Accept {
                back,
                count,
                commit_back,
            } => {
                if self.ballot == Ballot::ZERO {
                    return Ok(());
                }
                let first_slot = Slot(
                    self.replica
                        .log_last_slot()
                        .0
                        .saturating_sub(back)
                        .max(self.replica.commit_slot().0)
                        + 1,
                );
                let last_slot = Slot(first_slot.0 + count - 1);
                let entries = (first_slot.0..=last_slot.0)
                    .map(|slot| LogEntry {
                        ballot: self.ballot,
                        payload: payload(self.ballot, Slot(slot)),
                    })
                    .collect();
                let now = self.tick_clock();
                let message = Message::Accept {
                    ballot: self.ballot,
                    round: 1,
                    first_slot,
                    entries,
                    commit_slot: Slot(last_slot.0.saturating_sub(commit_back)),
                };
                let actions = self.replica.handle_message(now, self.ballot.node, message);
                self.execute(actions);
            }
            Operation::Sync { count } => self.sync(count),
            Operation::Checkpoint => {
                let through = self.replica.commit_slot();
                if through <= self.checkpoint {
                    return Ok(());
                }
                // Like shoal-partition: a durable checkpoint record, which repeats the promise,
                // then the checkpoint, then the core may drop the entries.
                let write = Write {
                    position: self.next_position,
                    promised: Some(self.replica.promised()),
                    entries: Vec::new(),
                    checkpoint: Some(through),
                };
                self.next_position += 1;
                self.log.push(write.clone());
                self.sync(self.unsynced.len());
                self.durable.push(write.clone());
                self.checkpoint = through;
                self.checkpoint_position = Some(write.position);
                self.newest_write_of_slot = self.newest_write_of_slot.split_off(&through.next());
                let now = self.tick_clock();
                let actions = self.replica.checkpointed(now, through);
                self.execute(actions);
            }
            Operation::Recycle { eighths } => {
                let oldest_needed = self
                    .newest_write_of_slot
                    .values()
                    .copied()
                    .chain(self.checkpoint_position)
                    .min();
                // With nothing needed yet and nothing checkpointed, keep everything (as
                // shoal-partition does).
                let Some(oldest_needed) = oldest_needed else {
                    return Ok(());
                };
                let first_kept = self
                    .log
                    .first()
                    .map_or(oldest_needed, |write| write.position);
                if first_kept >= oldest_needed {
                    return Ok(());
                }
                let cut = first_kept + (oldest_needed - first_kept) * eighths / 8;
                self.log.retain(|write| write.position >= cut);
            }
            Operation::Crash { keep } => self.crash_and_recover(keep)?,
        }
        Ok(())
    }

    fn crash_and_recover(&mut self, keep: usize) -> Result<(), TestCaseError> {
        let nothing_lost = keep >= self.unsynced.len();
        let lost: Vec<u64> = self
            .unsynced
            .iter()
            .skip(keep)
            .map(|(_, write)| write.position)
            .collect();
        for (_, write) in self.unsynced.drain(..).take(keep) {
            self.durable.push(write);
        }
        self.log.retain(|write| !lost.contains(&write.position));
        self.durable.sort_by_key(|write| write.position);

        let snapshot = self
            .log
            .iter()
            .filter_map(|write| write.checkpoint)
            .next_back()
            .unwrap_or(Slot::ZERO);
        prop_assert_eq!(snapshot, self.checkpoint, "the checkpoint record was kept");
        let recovered = RecoveredState {
            promised: self
                .log
                .iter()
                .filter_map(|write| write.promised)
                .fold(Ballot::ZERO, Ballot::max),
            snapshot: SnapshotMeta {
                last_included_slot: snapshot,
                membership: three_full(),
                config_slot: Slot::ZERO,
            },
            entries: self
                .log
                .iter()
                .flat_map(|write| write.entries.iter().cloned())
                .collect(),
        };
        self.restarts += 1;
        let now = self.tick_clock();
        let restarted = Replica::recover(
            n(3),
            options(ReplicaKind::Full, 3 + self.restarts),
            recovered,
            now,
        );
        let restarted = match restarted {
            Ok(replica) => replica,
            Err(error) => {
                return Err(TestCaseError::fail(format!(
                    "recovery refused a log it acknowledged durable: {error:?}; the log: {:?}",
                    self.log
                )));
            }
        };

        let expected = expected_log(&self.durable, snapshot);
        let recovered_log: BTreeMap<Slot, LogEntry> = (restarted.log_first_slot().0
            ..=restarted.log_last_slot().0)
            .map(|slot| (Slot(slot), restarted.entry(Slot(slot)).cloned().unwrap()))
            .collect();
        let expected_entries: BTreeMap<Slot, LogEntry> = expected
            .iter()
            .map(|(slot, (_, entry))| (*slot, entry.clone()))
            .collect();
        prop_assert_eq!(restarted.log_first_slot(), snapshot.next());
        prop_assert_eq!(
            &recovered_log,
            &expected_entries,
            "each slot recovers the highest-ballot entry that became durable"
        );
        prop_assert_eq!(restarted.promised(), highest_promise(&self.durable));
        if nothing_lost {
            // Nothing was lost, so the restarted replica is the one that crashed.
            let live: BTreeMap<Slot, LogEntry> = (self.replica.log_first_slot().0
                ..=self.replica.log_last_slot().0)
                .map(|slot| (Slot(slot), self.replica.entry(Slot(slot)).cloned().unwrap()))
                .filter(|(slot, _)| *slot > snapshot)
                .collect();
            prop_assert_eq!(&recovered_log, &live);
            prop_assert_eq!(restarted.promised(), self.replica.promised());
        }

        // The restarted host needs the write that holds each kept entry, as shoal-partition
        // records it after recovery.
        self.newest_write_of_slot = expected
            .iter()
            .map(|(slot, (position, _))| (*slot, *position))
            .collect();
        self.replica = restarted;
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn recovery_keeps_every_durable_entry_whatever_the_log_recycled(
        operations in proptest::collection::vec(operation(), 1..OPERATIONS_MAX)
    ) {
        let mut host = Host::new();
        for operation in operations {
            host.apply(operation)?;
        }
        host.crash_and_recover(0)?;
    }
}
