//! The in-memory tail of the replicated log: the entries after the last checkpoint.

use std::collections::VecDeque;

use crate::types::{LogEntry, Slot};

/// A contiguous run of log entries starting at `first_slot`. Entries before `first_slot` were
/// truncated after a checkpoint or replaced by an installed snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Log {
    first_slot: Slot,
    entries: VecDeque<LogEntry>,
    payload_bytes: usize,
}

impl Log {
    /// An empty log whose first entry will be `first_slot`.
    pub(crate) fn starting_at(first_slot: Slot) -> Self {
        assert!(first_slot.0 >= 1, "slot 0 never holds an entry");
        Self {
            first_slot,
            entries: VecDeque::new(),
            payload_bytes: 0,
        }
    }

    pub(crate) fn first_slot(&self) -> Slot {
        self.first_slot
    }

    /// The last slot held, or `first_slot - 1` when empty.
    pub(crate) fn last_slot(&self) -> Slot {
        Slot(self.first_slot.0 + self.entries.len() as u64 - 1)
    }

    pub(crate) fn entry_count(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    pub(crate) fn get(&self, slot: Slot) -> Option<&LogEntry> {
        let index = slot.0.checked_sub(self.first_slot.0)?;
        self.entries.get(usize::try_from(index).ok()?)
    }

    /// Writes `entry` at `slot`, replacing what was there. The log stays contiguous: `slot` may
    /// be at most one past the end. Slots before `first_slot` are covered by a snapshot, and the
    /// write is ignored because the value there is already chosen.
    pub(crate) fn put(&mut self, slot: Slot, entry: LogEntry) {
        if slot < self.first_slot {
            return;
        }
        let last = self.last_slot();
        assert!(
            slot <= last.next(),
            "log must stay contiguous: put at {slot:?} after {last:?}"
        );
        self.payload_bytes += entry.payload.size_bytes();
        let index = (slot.0 - self.first_slot.0) as usize;
        if slot == last.next() {
            self.entries.push_back(entry);
        } else {
            let old = std::mem::replace(&mut self.entries[index], entry);
            self.payload_bytes -= old.payload.size_bytes();
        }
    }

    /// Drops every entry up to and including `through`. Dropping past the end leaves an empty log
    /// that continues after `through`.
    pub(crate) fn truncate_prefix(&mut self, through: Slot) {
        while self.first_slot <= through {
            match self.entries.pop_front() {
                Some(entry) => self.payload_bytes -= entry.payload.size_bytes(),
                None => {
                    self.first_slot = through.next();
                    return;
                }
            }
            self.first_slot = self.first_slot.next();
        }
    }

    /// Entries in `from..=through`, clamped to what the log holds.
    pub(crate) fn range(&self, from: Slot, through: Slot) -> Vec<(Slot, LogEntry)> {
        self.iter(from, through)
            .map(|(slot, entry)| (slot, entry.clone()))
            .collect()
    }

    /// The entries held from `from` through `through`, borrowed: for the callers that only
    /// look (a membership search runs on every election step and commit) or copy a prefix.
    pub(crate) fn iter(
        &self,
        from: Slot,
        through: Slot,
    ) -> impl Iterator<Item = (Slot, &LogEntry)> + '_ {
        let start = from.max(self.first_slot);
        let end = through.min(self.last_slot());
        (start.0..=end.0).filter_map(move |slot| {
            let slot = Slot(slot);
            self.get(slot).map(|entry| (slot, entry))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Ballot, Payload};

    fn entry(byte: u8) -> LogEntry {
        LogEntry {
            ballot: Ballot::ZERO,
            payload: Payload::Command(vec![byte; 3]),
        }
    }

    #[test]
    fn put_replace_and_truncate_keep_slots_and_bytes_consistent() {
        let mut log = Log::starting_at(Slot(1));
        assert_eq!(log.last_slot(), Slot(0));
        log.put(Slot(1), entry(1));
        log.put(Slot(2), entry(2));
        log.put(Slot(3), entry(3));
        assert_eq!(log.payload_bytes(), 9);
        log.put(Slot(2), entry(9));
        assert_eq!(log.get(Slot(2)), Some(&entry(9)));
        assert_eq!(log.payload_bytes(), 9);
        log.truncate_prefix(Slot(2));
        assert_eq!(log.first_slot(), Slot(3));
        assert_eq!(log.get(Slot(2)), None);
        assert_eq!(log.payload_bytes(), 3);
        log.truncate_prefix(Slot(10));
        assert_eq!(log.first_slot(), Slot(11));
        assert_eq!(log.last_slot(), Slot(10));
        assert_eq!(log.entry_count(), 0);
        assert_eq!(log.payload_bytes(), 0);
    }

    #[derive(Clone, Debug)]
    enum LogOperation {
        /// Put at `last + 1 - back` (an overwrite when `back > 0`, an append when 0).
        Put {
            back: u64,
            byte: u8,
        },
        TruncatePrefix {
            ahead: u64,
        },
    }

    fn operation() -> impl proptest::strategy::Strategy<Value = LogOperation> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0u64..4, any::<u8>()).prop_map(|(back, byte)| LogOperation::Put { back, byte }),
            1 => (0u64..6).prop_map(|ahead| LogOperation::TruncatePrefix { ahead }),
        ]
    }

    proptest::proptest! {
        /// The log agrees with a map from slot to entry after any sequence of appends,
        /// overwrites and truncations, and its byte count matches what it holds (I9).
        #[test]
        fn the_log_behaves_like_a_map_of_slots(
            operations in proptest::collection::vec(operation(), 0..64)
        ) {
            let mut log = Log::starting_at(Slot(1));
            let mut model: std::collections::BTreeMap<u64, LogEntry> = Default::default();
            let mut first = 1u64;
            for operation in operations {
                match operation {
                    LogOperation::Put { back, byte } => {
                        let next = log.last_slot().0 + 1;
                        let slot = next.saturating_sub(back).max(first);
                        log.put(Slot(slot), entry(byte));
                        model.insert(slot, entry(byte));
                    }
                    LogOperation::TruncatePrefix { ahead } => {
                        let through = first - 1 + ahead;
                        log.truncate_prefix(Slot(through));
                        model.retain(|slot, _| *slot > through);
                        first = first.max(through + 1);
                    }
                }
                proptest::prop_assert_eq!(log.first_slot(), Slot(first));
                let held: Vec<(u64, LogEntry)> = log
                    .range(Slot(0), Slot(u64::MAX))
                    .into_iter()
                    .map(|(slot, entry)| (slot.0, entry))
                    .collect();
                let expected: Vec<(u64, LogEntry)> = model.clone().into_iter().collect();
                proptest::prop_assert_eq!(held, expected);
                let bytes: usize = model.values().map(|entry| entry.payload.size_bytes()).sum();
                proptest::prop_assert_eq!(log.payload_bytes(), bytes);
            }
        }
    }

    #[test]
    #[should_panic(expected = "log must stay contiguous")]
    fn a_gap_is_refused() {
        let mut log = Log::starting_at(Slot(1));
        log.put(Slot(2), entry(1));
    }
}
