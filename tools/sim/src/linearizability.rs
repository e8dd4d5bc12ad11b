//! A per-key linearizability checker for a register with compare-and-set, in the style of
//! Porcupine (Wing and Gong's search with memoisation of visited states).
//!
//! Every write (put or compare-and-set) writes a value no other write writes, so a read names the
//! write it saw. An operation that timed out may or may not have taken effect: it may be
//! linearized at any point after its invocation, or never; a timed-out compare-and-set that is
//! linearized takes effect only if the register held its expected value at that point.

use std::collections::HashSet;

/// One operation on one key, with virtual times in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub kind: OperationKind,
    pub invoked_nanos: u64,
    /// None when the client gave up waiting: the operation may or may not have happened.
    pub returned_nanos: Option<u64>,
    /// Where the system says the operation took effect (for a write, when it was first applied
    /// on any replica), or None if it says it never did. Two uses. For a write the client gave
    /// up on, it is the latest time it can have taken effect; a timed-out write with neither
    /// this nor an operation that saw its value never took effect. (Without this bound such a
    /// write could only be dropped, and dropping it is wrong when a failed compare-and-set saw
    /// the register move.) And the points together are a candidate linearization: checking it
    /// is linear, while the search can take exponential time after an outage leaves many
    /// timed-out writes pending at once. A candidate that fails proves nothing; the search
    /// decides.
    pub took_effect_at: Option<EffectPoint>,
}

/// A point in the run: virtual time, then a sequence number that orders events within one
/// instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EffectPoint {
    pub nanos: u64,
    pub sequence: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    Write {
        value: u64,
    },
    /// What the read returned (None: the key was never written).
    Read {
        observed: Option<u64>,
    },
    /// Writes `new` if the register holds `expected`. `succeeded` is what the client was told;
    /// None when it timed out.
    CompareAndSet {
        expected: Option<u64>,
        new: u64,
        succeeded: Option<bool>,
    },
}

impl Operation {
    /// When this operation proves the register held `value`, if it does: a read or a
    /// successful compare-and-set by its return, and a timed-out compare-and-set expecting
    /// `value` by the point the system says it took effect (its new value was applied, so its
    /// condition held then). Without the last, a write overwritten by such a compare-and-set
    /// in the same applied batch (no applied state ever shows it) would count as never done.
    fn observed_at(&self, value: u64) -> Option<u64> {
        match self.kind {
            OperationKind::CompareAndSet {
                expected: Some(expected),
                succeeded: None,
                ..
            } if expected == value => self.took_effect_at.map(|point| point.nanos),
            kind if kind.observed_value() == Some(value) => self.returned_nanos,
            _ => None,
        }
    }
}

impl OperationKind {
    /// The value this operation would write, if it is a write.
    fn written_value(&self) -> Option<u64> {
        match *self {
            OperationKind::Write { value } => Some(value),
            OperationKind::CompareAndSet { new, .. } => Some(new),
            OperationKind::Read { .. } => None,
        }
    }

    /// The value this operation proves the register held when it took effect.
    fn observed_value(&self) -> Option<u64> {
        match *self {
            OperationKind::Read { observed } => observed,
            OperationKind::CompareAndSet {
                expected,
                succeeded: Some(true),
                ..
            } => expected,
            _ => None,
        }
    }

    /// The register value after this operation, or None when it cannot go next from `value`.
    fn step(&self, value: Option<u64>) -> Option<Option<u64>> {
        match *self {
            OperationKind::Write { value: written } => Some(Some(written)),
            OperationKind::Read { observed } => (observed == value).then_some(value),
            OperationKind::CompareAndSet {
                expected,
                new,
                succeeded,
            } => {
                let matches = expected == value;
                match succeeded {
                    Some(true) => matches.then_some(Some(new)),
                    Some(false) => (!matches).then_some(value),
                    None => Some(if matches { Some(new) } else { value }),
                }
            }
        }
    }
}

/// Searched states (linearized set and register value) per segment before the checker gives up
/// and calls a history unknown instead of spending unbounded time on it.
/// A group that was unavailable for seconds leaves a dozen timed-out writes that may take effect
/// in any order, about 2^12 subsets times the register values; this budget covers that with
/// room, at 32 bytes a state.
pub const SEARCH_STATES_MAX: usize = 1_000_000;
/// The most operations one segment (a stretch with no quiescent point) may hold.
pub const SEGMENT_OPERATIONS_MAX: usize = 128;
/// Words of the linearized-set bitmap: one bit per operation of a segment.
const LINEARIZED_WORDS: usize = SEGMENT_OPERATIONS_MAX / 64;
const _: () = assert!(SEGMENT_OPERATIONS_MAX.is_multiple_of(64));

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// A segment was too long or the search hit `SEARCH_STATES_MAX`.
    Unknown,
}

/// Checks one key's history.
///
/// Two steps keep long histories cheap. First, a timed-out write must take effect, if at all,
/// before the first operation that observed its value returns and before the system first applied
/// it, so it gets the earlier of those as its return time; one with neither never took effect and
/// is dropped. Then every operation
/// has a return time, and the history splits at quiescent points (no operation in flight); the
/// segments are checked in order, carrying the set of register values each can end with.
pub fn check(operations: &[Operation]) -> Verdict {
    let mut prepared: Vec<Operation> = Vec::with_capacity(operations.len());
    for operation in operations {
        match (operation.kind.written_value(), operation.returned_nanos) {
            (_, Some(_)) => prepared.push(operation.clone()),
            (Some(value), None) => {
                let first_observed = operations
                    .iter()
                    .filter_map(|other| other.observed_at(value))
                    .min();
                let applied = operation.took_effect_at.map(|point| point.nanos);
                let deadline = match (first_observed, applied) {
                    (Some(observed), Some(applied)) => Some(observed.min(applied)),
                    (observed, applied) => observed.or(applied),
                };
                if let Some(returned) = deadline {
                    prepared.push(Operation {
                        returned_nanos: Some(returned.max(operation.invoked_nanos)),
                        ..operation.clone()
                    });
                }
            }
            // A read that never returned told nobody anything.
            (None, None) => {}
        }
    }
    if candidate_holds(&prepared) {
        return Verdict::Linearizable;
    }
    prepared.sort_by_key(|operation| operation.invoked_nanos);
    let mut start_values: HashSet<Option<u64>> = HashSet::from([None]);
    let mut segment_start = 0;
    let mut latest_return = 0;
    for index in 0..=prepared.len() {
        let cut = index == prepared.len() || prepared[index].invoked_nanos > latest_return;
        if cut && index > segment_start {
            let segment = &prepared[segment_start..index];
            if segment.len() > SEGMENT_OPERATIONS_MAX {
                return Verdict::Unknown;
            }
            let mut end_values = HashSet::new();
            for start in &start_values {
                match end_values_of(segment, *start) {
                    Some(values) => end_values.extend(values),
                    None => return Verdict::Unknown,
                }
            }
            if end_values.is_empty() {
                return Verdict::NotLinearizable;
            }
            start_values = end_values;
            segment_start = index;
        }
        if let Some(operation) = prepared.get(index) {
            latest_return = latest_return.max(operation.returned_nanos.unwrap_or(u64::MAX));
        }
    }
    Verdict::Linearizable
}

/// Whether the system's own effect points order the operations legally: each point inside its
/// operation's interval (so the order respects real time) and every operation's result what the
/// register gives in that order. If so, that order is a linearization.
fn candidate_holds(operations: &[Operation]) -> bool {
    let mut points = Vec::with_capacity(operations.len());
    for (index, operation) in operations.iter().enumerate() {
        let Some(point) = operation.took_effect_at else {
            return false;
        };
        let returned = operation.returned_nanos.unwrap_or(u64::MAX);
        if point.nanos < operation.invoked_nanos || point.nanos > returned {
            return false;
        }
        points.push((point, index));
    }
    points.sort_unstable();
    let mut value = None;
    for (_, index) in points {
        match operations[index].kind.step(value) {
            Some(next) => value = next,
            None => return false,
        }
    }
    true
}

/// Every register value a complete linearization of `operations` from `start` can end with;
/// None when the search ran out of budget.
fn end_values_of(operations: &[Operation], start: Option<u64>) -> Option<HashSet<Option<u64>>> {
    let mut search = Search {
        operations,
        visited: HashSet::new(),
        linearized: [0; LINEARIZED_WORDS],
        linearized_count: 0,
        budget: SEARCH_STATES_MAX,
        end_values: HashSet::new(),
    };
    search.explore(start)?;
    Some(search.end_values)
}

struct Search<'a> {
    operations: &'a [Operation],
    /// Fixed-size keys: no allocation per visited state.
    visited: HashSet<([u64; LINEARIZED_WORDS], Option<u64>)>,
    linearized: [u64; LINEARIZED_WORDS],
    linearized_count: usize,
    budget: usize,
    end_values: HashSet<Option<u64>>,
}

impl Search<'_> {
    fn is_linearized(&self, index: usize) -> bool {
        self.linearized[index / 64] & (1 << (index % 64)) != 0
    }

    fn flip(&mut self, index: usize) {
        self.linearized[index / 64] ^= 1 << (index % 64);
    }

    /// Explores every order from here; None when out of budget.
    fn explore(&mut self, value: Option<u64>) -> Option<()> {
        if self.linearized_count == self.operations.len() {
            self.end_values.insert(value);
            return Some(());
        }
        if !self.visited.insert((self.linearized, value)) {
            return Some(());
        }
        self.budget = self.budget.checked_sub(1)?;
        // An operation may go next only if it was invoked before every pending operation
        // returned (otherwise that one must come first).
        let earliest_return = (0..self.operations.len())
            .filter(|index| !self.is_linearized(*index))
            .filter_map(|index| self.operations[index].returned_nanos)
            .min()
            .unwrap_or(u64::MAX);
        for index in 0..self.operations.len() {
            if self.is_linearized(index) {
                continue;
            }
            let operation = &self.operations[index];
            if operation.invoked_nanos > earliest_return {
                continue;
            }
            let Some(next_value) = operation.kind.step(value) else {
                continue;
            };
            self.flip(index);
            self.linearized_count += 1;
            let explored = self.explore(next_value);
            self.flip(index);
            self.linearized_count -= 1;
            explored?;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(value: u64, invoked: u64, returned: Option<u64>) -> Operation {
        Operation {
            kind: OperationKind::Write { value },
            invoked_nanos: invoked,
            returned_nanos: returned,
            took_effect_at: None,
        }
    }

    fn read(observed: Option<u64>, invoked: u64, returned: u64) -> Operation {
        Operation {
            kind: OperationKind::Read { observed },
            invoked_nanos: invoked,
            returned_nanos: Some(returned),
            took_effect_at: None,
        }
    }

    fn compare_and_set(
        expected: Option<u64>,
        new: u64,
        succeeded: Option<bool>,
        invoked: u64,
        returned: Option<u64>,
    ) -> Operation {
        Operation {
            kind: OperationKind::CompareAndSet {
                expected,
                new,
                succeeded,
            },
            invoked_nanos: invoked,
            returned_nanos: returned,
            took_effect_at: None,
        }
    }

    #[test]
    fn a_read_after_an_acknowledged_write_must_see_it() {
        let history = [write(1, 0, Some(10)), read(None, 20, 30)];
        assert_eq!(check(&history), Verdict::NotLinearizable);
        let history = [write(1, 0, Some(10)), read(Some(1), 20, 30)];
        assert_eq!(check(&history), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_operations_may_go_either_way() {
        let history = [
            write(1, 0, Some(50)),
            read(None, 10, 20),
            read(Some(1), 30, 40),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
        // But a read cannot go back in time.
        let history = [
            write(1, 0, Some(50)),
            read(Some(1), 10, 20),
            read(None, 30, 40),
        ];
        assert_eq!(check(&history), Verdict::NotLinearizable);
    }

    #[test]
    fn the_register_value_carries_across_quiescent_points() {
        // Two segments: the first may end with 1 or 2, and only 2 explains the second.
        let history = [
            write(1, 0, Some(10)),
            write(2, 5, Some(15)),
            read(Some(2), 100, 110),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
        let history = [
            write(1, 0, Some(10)),
            write(2, 5, Some(15)),
            read(Some(2), 100, 110),
            read(Some(1), 200, 210),
        ];
        assert_eq!(check(&history), Verdict::NotLinearizable);
    }

    #[test]
    fn a_timed_out_write_may_or_may_not_have_happened() {
        let history = [write(1, 0, None), read(Some(1), 100, 110)];
        assert_eq!(check(&history), Verdict::Linearizable);
        let history = [write(1, 0, None), read(None, 100, 110)];
        assert_eq!(check(&history), Verdict::Linearizable);
        // Once seen, it happened.
        let history = [
            write(1, 0, None),
            read(Some(1), 100, 110),
            read(None, 200, 210),
        ];
        assert_eq!(check(&history), Verdict::NotLinearizable);
    }

    #[test]
    fn a_compare_and_set_succeeds_only_on_the_value_it_expected() {
        let history = [
            write(1, 0, Some(10)),
            compare_and_set(Some(1), 2, Some(true), 20, Some(30)),
            read(Some(2), 40, 50),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
        // Expected 1 but the register held 2: it cannot have succeeded.
        let history = [
            write(1, 0, Some(10)),
            write(2, 15, Some(18)),
            compare_and_set(Some(1), 3, Some(true), 20, Some(30)),
        ];
        assert_eq!(check(&history), Verdict::NotLinearizable);
        // Nor may it fail when the register held what it expected.
        let history = [
            write(1, 0, Some(10)),
            compare_and_set(Some(1), 3, Some(false), 20, Some(30)),
        ];
        assert_eq!(check(&history), Verdict::NotLinearizable);
        // Two conflicting compare-and-sets never both succeed.
        let history = [
            write(1, 0, Some(10)),
            compare_and_set(Some(1), 2, Some(true), 20, Some(30)),
            compare_and_set(Some(1), 3, Some(true), 20, Some(30)),
        ];
        assert_eq!(check(&history), Verdict::NotLinearizable);
    }

    #[test]
    fn a_timed_out_compare_and_set_may_or_may_not_have_happened() {
        // Seen later, so it happened, and succeeded.
        let history = [
            write(1, 0, Some(10)),
            compare_and_set(Some(1), 2, None, 20, None),
            read(Some(2), 100, 110),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
        // Not seen: it may never have happened.
        let history = [
            write(1, 0, Some(10)),
            compare_and_set(Some(1), 2, None, 20, None),
            read(Some(1), 100, 110),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
        // It expected a value the register never held, so it cannot be what a read saw.
        let history = [
            write(1, 0, Some(10)),
            compare_and_set(Some(7), 2, None, 20, None),
            read(Some(2), 100, 110),
        ];
        assert_eq!(check(&history), Verdict::NotLinearizable);
    }

    /// Seed 2506 with `--global-index true` (0.12 simulated minutes): a timed-out write and a
    /// timed-out compare-and-set expecting it were applied in one batch, so no applied state
    /// showed the write; the compare-and-set's effect proves it happened.
    #[test]
    fn a_timed_out_compare_and_set_that_took_effect_proves_the_write_it_expected() {
        let write = Operation {
            kind: OperationKind::Write { value: 1 },
            invoked_nanos: 0,
            returned_nanos: None,
            took_effect_at: None,
        };
        let compare_and_set = Operation {
            kind: OperationKind::CompareAndSet {
                expected: Some(1),
                new: 2,
                succeeded: None,
            },
            invoked_nanos: 5,
            returned_nanos: None,
            took_effect_at: Some(EffectPoint {
                nanos: 20,
                sequence: 1,
            }),
        };
        let read = Operation {
            kind: OperationKind::Read { observed: Some(2) },
            invoked_nanos: 30,
            returned_nanos: Some(30),
            took_effect_at: Some(EffectPoint {
                nanos: 30,
                sequence: 2,
            }),
        };
        assert_eq!(
            check(&[write, compare_and_set.clone(), read.clone()]),
            Verdict::Linearizable
        );
        // Without the write, the compare-and-set cannot have taken effect.
        assert_eq!(check(&[compare_and_set, read]), Verdict::NotLinearizable);
    }

    #[test]
    fn a_timed_out_write_the_system_applied_can_explain_a_failed_compare_and_set() {
        // Nobody read 2, but the compare-and-set expecting 1 failed: only the timed-out write
        // having happened explains it, and the system says it applied that write at 40.
        let mut timed_out = write(2, 20, None);
        timed_out.took_effect_at = Some(EffectPoint {
            nanos: 40,
            sequence: 0,
        });
        let failed = compare_and_set(Some(1), 3, Some(false), 50, Some(60));
        let history = [write(1, 0, Some(10)), timed_out.clone(), failed.clone()];
        assert_eq!(check(&history), Verdict::Linearizable);
        // Without that bound the write is dropped and the failure is unexplained.
        timed_out.took_effect_at = None;
        let history = [write(1, 0, Some(10)), timed_out, failed];
        assert_eq!(check(&history), Verdict::NotLinearizable);
    }

    fn at(mut operation: Operation, nanos: u64, sequence: u64) -> Operation {
        operation.took_effect_at = Some(EffectPoint { nanos, sequence });
        operation
    }

    #[test]
    fn a_legal_candidate_order_proves_linearizability_and_a_wrong_one_proves_nothing() {
        // The candidate orders the two concurrent writes 2 then 1, which the read confirms.
        let history = [
            at(write(1, 0, Some(50)), 30, 1),
            at(write(2, 0, Some(50)), 20, 0),
            at(read(Some(1), 60, 70), 60, 2),
        ];
        assert!(candidate_holds(&history));
        assert_eq!(check(&history), Verdict::Linearizable);
        // A candidate in the wrong order fails, and the search still finds the legal order.
        let history = [
            at(write(1, 0, Some(50)), 20, 0),
            at(write(2, 0, Some(50)), 30, 1),
            at(read(Some(1), 60, 70), 60, 2),
        ];
        assert!(!candidate_holds(&history));
        assert_eq!(check(&history), Verdict::Linearizable);
        // A point outside its operation's interval is refused even when the values fit.
        let history = [
            at(write(1, 0, Some(10)), 0, 0),
            at(read(None, 20, 30), 5, 1),
        ];
        assert!(!candidate_holds(&history));
        assert_eq!(check(&history), Verdict::NotLinearizable);
    }
}
