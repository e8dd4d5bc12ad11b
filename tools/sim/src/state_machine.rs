//! The state machine the simulator replicates: a map from key to value with blind puts and
//! compare-and-set, decided at apply time in log order.
//!
//! It is the one place that gives meaning to a log entry's bytes, so that replacing it with the
//! real partition runtime (engine writes, conditional expressions) touches this file and the
//! `apply` step in lib.rs only. Every replica runs the same `apply` over the same committed
//! entries; `digest` lets the simulator check that equal slots give equal states.

use std::collections::BTreeMap;

/// What a client asks a replication group to do; the bytes of a log entry's command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Put {
        key: u64,
        value: u64,
    },
    /// Writes `new` only if the key currently holds `expected` (None: the key was never written).
    CompareAndSet {
        key: u64,
        expected: Option<u64>,
        new: u64,
    },
}

const TAG_PUT: u8 = 1;
const TAG_COMPARE_AND_SET: u8 = 2;
/// Tag, key, value; a compare-and-set adds a presence byte and the expected value.
const PUT_BYTES: usize = 1 + 8 + 8;
const COMPARE_AND_SET_BYTES: usize = PUT_BYTES + 1 + 8;

impl Command {
    pub fn key(&self) -> u64 {
        match *self {
            Command::Put { key, .. } | Command::CompareAndSet { key, .. } => key,
        }
    }

    /// The value this command writes if it takes effect; every write in a run writes a value no
    /// other write writes, so the value names the operation.
    pub fn written_value(&self) -> u64 {
        match *self {
            Command::Put { value, .. } => value,
            Command::CompareAndSet { new, .. } => new,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(COMPARE_AND_SET_BYTES);
        match *self {
            Command::Put { key, value } => {
                bytes.push(TAG_PUT);
                bytes.extend_from_slice(&key.to_le_bytes());
                bytes.extend_from_slice(&value.to_le_bytes());
            }
            Command::CompareAndSet { key, expected, new } => {
                bytes.push(TAG_COMPARE_AND_SET);
                bytes.extend_from_slice(&key.to_le_bytes());
                bytes.extend_from_slice(&new.to_le_bytes());
                bytes.push(u8::from(expected.is_some()));
                bytes.extend_from_slice(&expected.unwrap_or(0).to_le_bytes());
            }
        }
        bytes
    }

    /// None for bytes that are not a command (a test's garbage, a truncated entry).
    pub fn decode(bytes: &[u8]) -> Option<Command> {
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        match (*bytes.first()?, bytes.len()) {
            (TAG_PUT, PUT_BYTES) => Some(Command::Put {
                key: word(1)?,
                value: word(9)?,
            }),
            (TAG_COMPARE_AND_SET, COMPARE_AND_SET_BYTES) => {
                let expected = match bytes.get(17)? {
                    0 => None,
                    1 => Some(word(18)?),
                    _ => return None,
                };
                Some(Command::CompareAndSet {
                    key: word(1)?,
                    expected,
                    new: word(9)?,
                })
            }
            _ => None,
        }
    }
}

/// The applied state of one replica of one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValueState {
    values: BTreeMap<u64, u64>,
}

impl KeyValueState {
    pub fn get(&self, key: u64) -> Option<u64> {
        self.values.get(&key).copied()
    }

    /// Applies one committed command; returns whether it wrote (a compare-and-set whose expected
    /// value did not match writes nothing and reports false).
    pub fn apply(&mut self, command: &Command) -> bool {
        match *command {
            Command::Put { key, value } => {
                self.values.insert(key, value);
                true
            }
            Command::CompareAndSet { key, expected, new } => {
                if self.get(key) != expected {
                    return false;
                }
                self.values.insert(key, new);
                true
            }
        }
    }

    /// FNV-1a over the map in key order: equal states give equal digests on every platform.
    pub fn digest(&self) -> u64 {
        self.values
            .iter()
            .fold(crate::FNV_OFFSET_BASIS, |hash, (key, value)| {
                crate::fnv1a(crate::fnv1a(hash, &key.to_le_bytes()), &value.to_le_bytes())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_garbage_is_refused() {
        let commands = [
            Command::Put { key: 3, value: 9 },
            Command::CompareAndSet {
                key: 1,
                expected: None,
                new: 4,
            },
            Command::CompareAndSet {
                key: 1,
                expected: Some(0),
                new: 5,
            },
        ];
        for command in commands {
            assert_eq!(Command::decode(&command.encode()), Some(command));
        }
        assert_eq!(Command::decode(&[]), None);
        assert_eq!(Command::decode(&[TAG_PUT, 1, 2]), None);
        let mut bad_presence = commands[1].encode();
        bad_presence[17] = 7;
        assert_eq!(Command::decode(&bad_presence), None);
    }

    #[test]
    fn compare_and_set_writes_only_on_a_match() {
        let mut state = KeyValueState::default();
        let first = Command::CompareAndSet {
            key: 1,
            expected: None,
            new: 10,
        };
        assert!(state.apply(&first));
        assert_eq!(state.get(1), Some(10));
        let stale = Command::CompareAndSet {
            key: 1,
            expected: None,
            new: 11,
        };
        assert!(!state.apply(&stale));
        assert_eq!(state.get(1), Some(10));
        let before = state.digest();
        assert!(state.apply(&Command::Put { key: 1, value: 12 }));
        assert_ne!(state.digest(), before);
    }
}
