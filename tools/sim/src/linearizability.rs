//! A per-key linearizability checker for a register, in the style of Porcupine (Wing and Gong's
//! search with memoisation of visited states).
//!
//! Every write writes a value no other write writes, so a read names the write it saw. An
//! operation that timed out may or may not have taken effect: it may be linearized at any point
//! after its invocation, or never.

use std::collections::HashSet;

/// One operation on one key, with virtual times in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub kind: OperationKind,
    pub invoked_nanos: u64,
    /// None when the client gave up waiting: the operation may or may not have happened.
    pub returned_nanos: Option<u64>,
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
}

/// Searched states (linearized set and register value) per segment before the checker gives up
/// and calls a history unknown instead of spending unbounded time on it.
pub const SEARCH_STATES_MAX: usize = 100_000;
/// The most operations one segment (a stretch with no quiescent point) may hold.
pub const SEGMENT_OPERATIONS_MAX: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// A segment was too long or the search hit `SEARCH_STATES_MAX`.
    Unknown,
}

/// Checks one key's history.
///
/// Two steps keep long histories cheap. First, a timed-out write that no read observed is
/// dropped (never taking effect is always a valid choice for it), and one that a read observed
/// must take effect before that read returns, so it gets that return time. Then every operation
/// has a return time, and the history splits at quiescent points (no operation in flight); the
/// segments are checked in order, carrying the set of register values each can end with.
pub fn check(operations: &[Operation]) -> Verdict {
    let mut prepared: Vec<Operation> = Vec::with_capacity(operations.len());
    for operation in operations {
        match (operation.kind, operation.returned_nanos) {
            (_, Some(_)) => prepared.push(operation.clone()),
            (OperationKind::Write { value }, None) => {
                let first_observed = operations
                    .iter()
                    .filter(|other| {
                        other.kind
                            == OperationKind::Read {
                                observed: Some(value),
                            }
                    })
                    .filter_map(|other| other.returned_nanos)
                    .min();
                if let Some(returned) = first_observed {
                    prepared.push(Operation {
                        returned_nanos: Some(returned),
                        ..operation.clone()
                    });
                }
            }
            // A read that never returned told nobody anything.
            (OperationKind::Read { .. }, None) => {}
        }
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

/// Every register value a complete linearization of `operations` from `start` can end with;
/// None when the search ran out of budget.
fn end_values_of(operations: &[Operation], start: Option<u64>) -> Option<HashSet<Option<u64>>> {
    let words = operations.len().div_ceil(64).max(1);
    let mut search = Search {
        operations,
        visited: HashSet::new(),
        linearized: vec![0u64; words],
        linearized_count: 0,
        budget: SEARCH_STATES_MAX,
        end_values: HashSet::new(),
    };
    search.explore(start)?;
    Some(search.end_values)
}

struct Search<'a> {
    operations: &'a [Operation],
    visited: HashSet<(Vec<u64>, Option<u64>)>,
    linearized: Vec<u64>,
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
        if !self.visited.insert((self.linearized.clone(), value)) {
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
            let next_value = match operation.kind {
                OperationKind::Write { value: written } => Some(written),
                OperationKind::Read { observed } if observed == value => value,
                OperationKind::Read { .. } => continue,
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
        }
    }

    fn read(observed: Option<u64>, invoked: u64, returned: u64) -> Operation {
        Operation {
            kind: OperationKind::Read { observed },
            invoked_nanos: invoked,
            returned_nanos: Some(returned),
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
}
