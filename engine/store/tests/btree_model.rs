//! Property: the B-tree against a `BTreeMap` model. Random puts (small, large and overflow
//! values, short keys and long ones up to the largest the tree accepts), deletes, gets, bounded scans in both directions with limits,
//! checkpoints, and crashes (crash images of the simulated disk, also in the middle of a
//! checkpoint), all through a small shared page cache so that dirty pages are evicted and
//! written back. After every crash the recovered tree equals the model at the last
//! checkpoint, or, for a crash inside a checkpoint, the model at that checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use common::{YieldingDirectory, noop_waker};
use futures_lite::future::block_on;
use proptest::prelude::*;
use shoal_io::storage::simulated::SimulatedDisk;
use shoal_io::{SeededRng, StorageDirectory};
use shoal_store::btree::{BTree, BTreeConfig, Direction, KEY_BYTES_MAX, PageCache};

type File = <YieldingDirectory as StorageDirectory>::File;
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

const TREE_FILE: &str = "partition-0001.btree";
const CACHE_PAGES: usize = 16;
/// How often a generated key is long: often enough that leaves and branches fill with maximal
/// keys and split on them.
const LONG_KEY_CHANCE: f64 = 0.3;

#[derive(Debug, Clone)]
enum Operation {
    Put {
        key: u16,
        long_key: bool,
        value_bytes: usize,
    },
    Delete {
        key: u16,
        long_key: bool,
    },
    Get {
        key: u16,
        long_key: bool,
    },
    Scan {
        lower: Option<(u16, bool)>,
        upper: Option<(u16, bool)>,
        forward: bool,
        limit: usize,
    },
    Checkpoint,
    Crash,
    CrashDuringCheckpoint {
        polls: u16,
    },
}

/// Lengths of long keys, chosen by the key number: a medium key, one the size of DynamoDB's
/// largest partition key, and the largest key the tree accepts.
const LONG_KEY_BYTES: [usize; 3] = [900, 2048, KEY_BYTES_MAX];

fn key_bytes(key: u16, long_key: bool) -> Vec<u8> {
    let mut bytes = format!("{key:05}").into_bytes();
    if long_key {
        let len = LONG_KEY_BYTES[usize::from(key) % LONG_KEY_BYTES.len()];
        bytes.resize(len, b'~');
    }
    bytes
}

fn value_bytes(key: u16, version: u64, len: usize) -> Vec<u8> {
    let seed = (u64::from(key) << 32) ^ version;
    (0..len)
        .map(|index| (seed.wrapping_mul(31).wrapping_add(index as u64 * 7) >> 3) as u8)
        .collect()
}

fn model_bytes(model: &Model) -> u64 {
    model
        .iter()
        .map(|(key, value)| (key.len() + value.len()) as u64)
        .sum()
}

fn operation() -> impl Strategy<Value = Operation> {
    let key = 0..200u16;
    let value = prop_oneof![0..64usize, 64..4096usize, 4097..40_000usize];
    let bound = proptest::option::of((0..200u16, any::<bool>()));
    prop_oneof![
        10 => (key.clone(), proptest::bool::weighted(LONG_KEY_CHANCE), value)
            .prop_map(|(key, long_key, value_bytes)| Operation::Put { key, long_key, value_bytes }),
        4 => (key.clone(), proptest::bool::weighted(LONG_KEY_CHANCE))
            .prop_map(|(key, long_key)| Operation::Delete { key, long_key }),
        2 => (key, proptest::bool::weighted(LONG_KEY_CHANCE)).prop_map(|(key, long_key)| Operation::Get { key, long_key }),
        2 => (bound.clone(), bound, any::<bool>(), 1..40usize)
            .prop_map(|(lower, upper, forward, limit)| Operation::Scan { lower, upper, forward, limit }),
        2 => Just(Operation::Checkpoint),
        1 => Just(Operation::Crash),
        1 => (0..60u16).prop_map(|polls| Operation::CrashDuringCheckpoint { polls }),
    ]
}

fn to_bound(bound: Option<(u16, bool)>) -> Bound<Vec<u8>> {
    match bound {
        None => Bound::Unbounded,
        Some((key, true)) => Bound::Included(key_bytes(key, false)),
        Some((key, false)) => Bound::Excluded(key_bytes(key, false)),
    }
}

fn model_scan(
    model: &Model,
    lower: &Bound<Vec<u8>>,
    upper: &Bound<Vec<u8>>,
    forward: bool,
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let items = model
        .iter()
        .filter(|(key, _)| {
            let above = match lower {
                Bound::Unbounded => true,
                Bound::Included(low) => *key >= low,
                Bound::Excluded(low) => *key > low,
            };
            let below = match upper {
                Bound::Unbounded => true,
                Bound::Included(high) => *key <= high,
                Bound::Excluded(high) => *key < high,
            };
            above && below
        })
        .map(|(key, value)| (key.clone(), value.clone()));
    if forward {
        items.take(limit).collect()
    } else {
        items.rev().take(limit).collect()
    }
}

struct Harness {
    disk: SimulatedDisk,
    tree: BTree<File>,
    model: Model,
    durable: Model,
    lsn: u64,
    /// The highest LSN this tree instance has seen: its checkpoints cover up to here.
    lsn_applied: u64,
    version: u64,
    rng: SeededRng,
}

fn open_tree(disk: &SimulatedDisk) -> BTree<File> {
    let directory = YieldingDirectory::new(disk.directory());
    block_on(async {
        let cache: Rc<PageCache<File>> = PageCache::new(CACHE_PAGES);
        BTree::open_in(&directory, TREE_FILE, 1, cache, BTreeConfig::default())
            .await
            .unwrap()
    })
}

fn contents(tree: &BTree<File>) -> Model {
    block_on(tree.scan(
        Bound::Unbounded,
        Bound::Unbounded,
        Direction::Forward,
        usize::MAX,
    ))
    .unwrap()
    .into_iter()
    .collect()
}

impl Harness {
    fn new(seed: u64) -> Self {
        let disk = SimulatedDisk::new();
        let tree = open_tree(&disk);
        Self {
            disk,
            tree,
            model: Model::new(),
            durable: Model::new(),
            lsn: 0,
            lsn_applied: 0,
            version: 0,
            rng: SeededRng::new(seed),
        }
    }

    fn apply(&mut self, operation: Operation) {
        match operation {
            Operation::Put {
                key,
                long_key,
                value_bytes: len,
            } => {
                self.lsn += 1;
                self.version += 1;
                let key = key_bytes(key, long_key);
                let value = value_bytes(key[0].into(), self.version, len);
                block_on(self.tree.put(&key, &value, self.lsn)).unwrap();
                self.lsn_applied = self.lsn;
                self.model.insert(key, value);
            }
            Operation::Delete { key, long_key } => {
                self.lsn += 1;
                let key = key_bytes(key, long_key);
                let deleted = block_on(self.tree.delete(&key, self.lsn)).unwrap();
                self.lsn_applied = self.lsn;
                assert_eq!(deleted, self.model.remove(&key).is_some());
            }
            Operation::Get { key, long_key } => {
                let key = key_bytes(key, long_key);
                assert_eq!(
                    block_on(self.tree.get(&key)).unwrap(),
                    self.model.get(&key).cloned()
                );
            }
            Operation::Scan {
                lower,
                upper,
                forward,
                limit,
            } => {
                let (lower, upper) = (to_bound(lower), to_bound(upper));
                let direction = if forward {
                    Direction::Forward
                } else {
                    Direction::Backward
                };
                let got = block_on(
                    self.tree
                        .scan(lower.clone(), upper.clone(), direction, limit),
                )
                .unwrap();
                assert_eq!(got, model_scan(&self.model, &lower, &upper, forward, limit));
            }
            Operation::Checkpoint => {
                let lsn = block_on(self.tree.checkpoint()).unwrap();
                assert_eq!(lsn, self.lsn_applied);
                self.durable = self.model.clone();
            }
            Operation::Crash => self.crash(false),
            Operation::CrashDuringCheckpoint { polls } => {
                let waker = noop_waker();
                let mut context = Context::from_waker(&waker);
                let finished = {
                    let mut checkpoint = pin!(self.tree.checkpoint());
                    (0..polls)
                        .any(|_| matches!(checkpoint.as_mut().poll(&mut context), Poll::Ready(_)))
                };
                if finished {
                    self.durable = self.model.clone();
                }
                self.crash(!finished);
            }
        }
        assert_eq!(self.tree.stats().item_count, self.model.len() as u64);
        assert_eq!(self.tree.stats().item_bytes, model_bytes(&self.model));
    }

    /// Crashes; when `checkpoint_in_flight`, the new checkpoint may or may not have landed.
    fn crash(&mut self, checkpoint_in_flight: bool) {
        let crashed = self.disk.crash_image(&mut self.rng);
        let tree = open_tree(&crashed);
        let recovered = contents(&tree);
        if checkpoint_in_flight && recovered == self.model {
            self.durable = self.model.clone();
        }
        assert_eq!(
            recovered.len(),
            self.durable.len(),
            "recovered a state that was never checkpointed"
        );
        assert!(
            recovered == self.durable,
            "recovered a state that was never checkpointed"
        );
        assert_eq!(tree.stats().item_count, recovered.len() as u64);
        assert_eq!(tree.stats().item_bytes, model_bytes(&recovered));
        self.lsn = self.lsn.max(tree.stats().lsn_durable);
        self.lsn_applied = tree.stats().lsn_durable;
        self.tree = tree;
        self.disk = crashed;
        self.model = self.durable.clone();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn btree_matches_the_model_across_checkpoints_and_crashes(
        operations in proptest::collection::vec(operation(), 1..250),
        seed in any::<u64>(),
    ) {
        let mut harness = Harness::new(seed);
        for operation in operations {
            harness.apply(operation);
        }
        harness.apply(Operation::Crash);
    }
}

/// A long fixed run: thousands of items (many times the cache), then deletes of most of them;
/// freed pages are reused, so the file stops growing.
#[test]
fn large_tree_reuses_freed_pages() {
    let mut harness = Harness::new(7);
    for round in 0..3u64 {
        for key in 0..1500u16 {
            harness.apply(Operation::Put {
                key: key % 500 + (round as u16 % 2) * 500,
                long_key: key % 7 == 0,
                value_bytes: (usize::from(key) * 37) % 9000,
            });
        }
        harness.apply(Operation::Checkpoint);
        for key in 0..1000u16 {
            harness.apply(Operation::Delete {
                key,
                long_key: false,
            });
            harness.apply(Operation::Delete {
                key,
                long_key: true,
            });
        }
        harness.apply(Operation::Checkpoint);
        harness.apply(Operation::Crash);
    }
    let pages = harness.tree.stats().page_count;
    for _ in 0..3 {
        for key in 0..500u16 {
            harness.apply(Operation::Put {
                key,
                long_key: false,
                value_bytes: 2000,
            });
        }
        harness.apply(Operation::Checkpoint);
        for key in 0..500u16 {
            harness.apply(Operation::Delete {
                key,
                long_key: false,
            });
        }
        harness.apply(Operation::Checkpoint);
    }
    let stats = harness.tree.stats();
    assert!(
        stats.page_count <= pages + 50,
        "the file kept growing: {pages} -> {}",
        stats.page_count
    );
    assert!(stats.free_pages > 0);
}

/// Found by the property test: the first checkpoint of a new file must survive a crash, which
/// needs the file's directory entry to be durable (`BTree::open_in` syncs the directory).
#[test]
fn first_checkpoint_of_a_new_file_survives_a_crash() {
    for seed in 0..32 {
        let mut harness = Harness::new(seed);
        harness.apply(Operation::Put {
            key: 1,
            long_key: false,
            value_bytes: 10,
        });
        harness.apply(Operation::Checkpoint);
        harness.apply(Operation::Crash);
        assert_eq!(harness.model.len(), 1);
    }
}

/// Two trees on one small cache, their tasks interleaved at every write and sync: each evicts
/// and writes back the other's dirty pages. After checkpoints and a crash each tree holds
/// exactly its own model.
#[test]
fn two_trees_share_one_cache() {
    let disk = SimulatedDisk::new();
    let directory = YieldingDirectory::new(disk.directory());
    let cache: Rc<PageCache<File>> = PageCache::new(CACHE_PAGES);
    let names = ["partition-0001.btree", "partition-0002.btree"];
    let run = |tree_id: u64| {
        let directory = directory.clone();
        let cache = Rc::clone(&cache);
        async move {
            let name = names[tree_id as usize - 1];
            let mut tree = BTree::open_in(&directory, name, tree_id, cache, BTreeConfig::default())
                .await
                .unwrap();
            let mut model = Model::new();
            let mut rng = SeededRng::new(tree_id);
            for step in 0..1500u64 {
                let key = key_bytes(rng.below(300) as u16, rng.chance(0.1));
                if rng.chance(0.25) {
                    tree.delete(&key, step + 1).await.unwrap();
                    model.remove(&key);
                } else {
                    let value = value_bytes(tree_id as u16, step, rng.below(3000) as usize);
                    tree.put(&key, &value, step + 1).await.unwrap();
                    model.insert(key, value);
                }
                if step % 200 == 199 {
                    tree.checkpoint().await.unwrap();
                }
            }
            tree.checkpoint().await.unwrap();
            model
        }
    };
    let (first, second) = block_on(futures_lite::future::zip(run(1), run(2)));
    assert!(cache.stats().dirty_write_backs > 0);
    let crashed = disk.crash_image(&mut SeededRng::new(5));
    let directory = YieldingDirectory::new(crashed.directory());
    let cache: Rc<PageCache<File>> = PageCache::new(CACHE_PAGES);
    for (tree_id, model) in [(1u64, first), (2, second)] {
        let tree = block_on(BTree::open_in(
            &directory,
            names[tree_id as usize - 1],
            tree_id,
            Rc::clone(&cache),
            BTreeConfig::default(),
        ))
        .unwrap();
        assert!(
            contents(&tree) == model,
            "tree {tree_id} differs from its model"
        );
    }
}
