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

/// Searched states (linearized set and register value) before the checker gives up and calls a
/// history unknown instead of spending unbounded time on it.
pub const SEARCH_STATES_MAX: usize = 2_000_000;
/// The longest history the bitset search accepts.
pub const OPERATIONS_PER_KEY_MAX: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The search hit `SEARCH_STATES_MAX`.
    Unknown,
}

/// Checks one key's history.
pub fn check(operations: &[Operation]) -> Verdict {
    if operations.len() > OPERATIONS_PER_KEY_MAX {
        return Verdict::Unknown;
    }
    let words = operations.len().div_ceil(64).max(1);
    let mut search = Search {
        operations,
        visited: HashSet::new(),
        linearized: vec![0u64; words],
        budget: SEARCH_STATES_MAX,
    };
    match search.explore(None) {
        Some(true) => Verdict::Linearizable,
        Some(false) => Verdict::NotLinearizable,
        None => Verdict::Unknown,
    }
}

struct Search<'a> {
    operations: &'a [Operation],
    visited: HashSet<(Vec<u64>, Option<u64>)>,
    linearized: Vec<u64>,
    budget: usize,
}

impl Search<'_> {
    fn is_linearized(&self, index: usize) -> bool {
        self.linearized[index / 64] & (1 << (index % 64)) != 0
    }

    fn flip(&mut self, index: usize) {
        self.linearized[index / 64] ^= 1 << (index % 64);
    }

    /// Some(true): the remaining operations can be linearized from `value`; None: out of budget.
    fn explore(&mut self, value: Option<u64>) -> Option<bool> {
        // Done when every completed operation is linearized; timed-out ones may never happen.
        let pending_completed: Vec<usize> = (0..self.operations.len())
            .filter(|index| {
                !self.is_linearized(*index) && self.operations[*index].returned_nanos.is_some()
            })
            .collect();
        if pending_completed.is_empty() {
            return Some(true);
        }
        if !self.visited.insert((self.linearized.clone(), value)) {
            return Some(false);
        }
        self.budget = self.budget.checked_sub(1)?;
        // An operation may go next only if it was invoked before every pending completed
        // operation returned (otherwise that one must come first).
        let earliest_return = pending_completed
            .iter()
            .filter_map(|index| self.operations[*index].returned_nanos)
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
            let found = self.explore(next_value);
            self.flip(index);
            if found != Some(false) {
                return found;
            }
        }
        Some(false)
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
