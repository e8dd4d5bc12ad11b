//! Keys as large as DynamoDB's: a tree of thousands of maximal (3200-byte) keys through a small
//! cache, built in random order so that leaves and branches split at every level, scanned in
//! both directions, checkpointed, crashed and recovered, and verified page by page. The key
//! limit is enforced with a precise error one byte above it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

use futures_lite::future::block_on;
use shoal_io::storage::simulated::{SimulatedDisk, SimulatedFile};
use shoal_io::{OpenMode, SeededRng, StorageDirectory};
use shoal_store::btree::page::DYNAMODB_STORAGE_KEY_BYTES_MAX;
use shoal_store::btree::verify::{TreeReport, verify_tree};
use shoal_store::btree::{BTree, BTreeConfig, BTreeError, Direction, KEY_BYTES_MAX, PageCache};

const TREE_FILE: &str = "partition-0009.btree";
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Small, so that nearly every node is evicted and written back while the tree grows.
const CACHE_PAGES: usize = 16;
/// Five maximal keys fill a 16 KiB branch, so this many items make a tree of four levels.
const ITEMS: u32 = 1500;
const CHECKPOINT_EVERY: u32 = 300;
/// Puts after the last checkpoint: a crash must lose them.
const UNCHECKPOINTED_PUTS: u32 = 40;
/// Every this many items, a value that lives on overflow pages.
const OVERFLOW_VALUE_EVERY: u32 = 50;
const OVERFLOW_VALUE_BYTES: usize = 20_000;
const SMALL_VALUE_BYTES: usize = 100;
/// Partition keys of the DynamoDB layout: the items fall into a few partitions.
const PARTITIONS: u32 = 3;

/// The figures of `shoal_model::key` (hash u64, partition-key length u16, partition key at most
/// `PARTITION_KEY_BYTES_MAX`, sort key at most `SORT_KEY_BYTES_MAX`), repeated because
/// shoal-store does not depend on shoal-model.
const HASH_BYTES: usize = 8;
const PARTITION_KEY_LENGTH_BYTES: usize = 2;
const PARTITION_KEY_BYTES_MAX: usize = 2048;
const SORT_KEY_BYTES_MAX: usize = 1024;

/// A storage key laid out like `shoal_model::key` with a maximal partition and sort key,
/// preceded by `prefix_bytes` bytes of prefix. Items differ only in their last bytes, so every
/// comparison reads the whole key.
fn storage_key(index: u32, prefix_bytes: usize) -> Vec<u8> {
    let partition = index % PARTITIONS;
    let mut key = vec![b'N'; prefix_bytes];
    key.extend_from_slice(&(u64::from(partition) * 0x9E37_79B9).to_be_bytes());
    key.extend_from_slice(&(PARTITION_KEY_BYTES_MAX as u16).to_be_bytes());
    key.extend(std::iter::repeat_n(
        b'a' + partition as u8,
        PARTITION_KEY_BYTES_MAX,
    ));
    key.extend(std::iter::repeat_n(b's', SORT_KEY_BYTES_MAX - 4));
    key.extend_from_slice(&index.to_be_bytes());
    key
}

fn maximal_key(index: u32) -> Vec<u8> {
    let key = storage_key(index, KEY_BYTES_MAX - DYNAMODB_STORAGE_KEY_BYTES_MAX);
    assert_eq!(key.len(), KEY_BYTES_MAX);
    key
}

fn value(index: u32, version: u32) -> Vec<u8> {
    let len = if index.is_multiple_of(OVERFLOW_VALUE_EVERY) {
        OVERFLOW_VALUE_BYTES
    } else {
        SMALL_VALUE_BYTES
    };
    (0..len)
        .map(|offset| (index as usize * 7 + version as usize * 3 + offset * 13) as u8)
        .collect()
}

fn open(disk: &SimulatedDisk) -> BTree<SimulatedFile> {
    let cache: Rc<PageCache<SimulatedFile>> = PageCache::new(CACHE_PAGES);
    block_on(BTree::open_in(
        &disk.directory(),
        TREE_FILE,
        9,
        cache,
        BTreeConfig::default(),
    ))
    .unwrap()
}

fn verify(disk: &SimulatedDisk) -> TreeReport {
    let file = block_on(disk.directory().open(TREE_FILE, OpenMode::Existing)).unwrap();
    block_on(verify_tree(file, |_, _| {})).unwrap()
}

fn scan(
    tree: &BTree<SimulatedFile>,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    direction: Direction,
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    block_on(tree.scan(lower, upper, direction, limit)).unwrap()
}

fn model_range(
    model: &Model,
    lower: &Bound<Vec<u8>>,
    upper: &Bound<Vec<u8>>,
    direction: Direction,
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let items = model
        .range((lower.clone(), upper.clone()))
        .map(|(key, value)| (key.clone(), value.clone()));
    match direction {
        Direction::Forward => items.take(limit).collect(),
        Direction::Backward => items.rev().take(limit).collect(),
    }
}

/// Whole-tree and bounded scans in both directions equal the model.
fn assert_scans_match(tree: &BTree<SimulatedFile>, model: &Model, rng: &mut SeededRng) {
    let everything = scan(
        tree,
        Bound::Unbounded,
        Bound::Unbounded,
        Direction::Forward,
        usize::MAX,
    );
    // `assert!`, not `assert_eq!`: a failure would print megabytes of keys.
    assert!(
        everything == model.clone().into_iter().collect::<Vec<_>>(),
        "a full scan differs from the model"
    );
    let mut backward = scan(
        tree,
        Bound::Unbounded,
        Bound::Unbounded,
        Direction::Backward,
        usize::MAX,
    );
    backward.reverse();
    assert!(backward == everything, "a backward scan differs");
    for _ in 0..20 {
        let low = maximal_key(rng.below(u64::from(ITEMS)) as u32);
        let high = maximal_key(rng.below(u64::from(ITEMS)) as u32);
        let (low, high) = (low.clone().min(high.clone()), low.max(high));
        let limit = 1 + rng.below(60) as usize;
        for direction in [Direction::Forward, Direction::Backward] {
            let bounds = [
                (Bound::Included(low.clone()), Bound::Excluded(high.clone())),
                (Bound::Excluded(low.clone()), Bound::Included(high.clone())),
            ];
            for (lower, upper) in bounds {
                let got = scan(tree, lower.clone(), upper.clone(), direction, limit);
                assert!(
                    got == model_range(model, &lower, &upper, direction, limit),
                    "a bounded {direction:?} scan differs"
                );
            }
        }
    }
}

#[test]
fn thousands_of_maximal_keys_split_scan_checkpoint_and_recover() {
    let mut rng = SeededRng::new(11);
    let disk = SimulatedDisk::new();
    let mut tree = open(&disk);
    let mut order: Vec<u32> = (0..ITEMS).collect();
    // Random insertion order: splits happen in the middle of nodes, not only at the right edge.
    for index in (1..order.len()).rev() {
        order.swap(index, rng.below(index as u64 + 1) as usize);
    }
    let mut model = Model::new();
    let mut lsn = 0;
    for (count, index) in (1..).zip(&order) {
        lsn += 1;
        block_on(tree.put(&maximal_key(*index), &value(*index, 0), lsn)).unwrap();
        model.insert(maximal_key(*index), value(*index, 0));
        if count % CHECKPOINT_EVERY == 0 {
            assert_eq!(block_on(tree.checkpoint()).unwrap(), lsn);
        }
    }
    assert_eq!(tree.stats().item_count, u64::from(ITEMS));
    assert_scans_match(&tree, &model, &mut rng);
    let report = verify(&disk);
    assert!(report.height >= 4, "splits at every level: {report:?}");
    assert!(report.overflow_pages > 0, "{report:?}");
    assert_eq!(report.item_count, u64::from(ITEMS));

    // Puts after the last checkpoint are lost in a crash; the checkpoint is recovered whole.
    let durable = model.clone();
    for index in 0..UNCHECKPOINTED_PUTS {
        lsn += 1;
        block_on(tree.put(&maximal_key(index), &value(index, 1), lsn)).unwrap();
        model.insert(maximal_key(index), value(index, 1));
    }
    assert_scans_match(&tree, &model, &mut rng);
    let crashed = disk.crash_image(&mut rng);
    let mut tree = open(&crashed);
    assert_eq!(tree.stats().lsn_durable, u64::from(ITEMS));
    let mut model = durable;
    assert_scans_match(&tree, &model, &mut rng);

    // Delete two thirds (nodes empty out and are unlinked at every level), checkpoint, crash.
    for index in (0..ITEMS).filter(|index| index % 3 != 0) {
        lsn += 1;
        assert!(block_on(tree.delete(&maximal_key(index), lsn)).unwrap());
        model.remove(&maximal_key(index));
    }
    block_on(tree.checkpoint()).unwrap();
    let crashed = crashed.crash_image(&mut rng);
    let tree = open(&crashed);
    assert_scans_match(&tree, &model, &mut rng);
    for index in (0..ITEMS).step_by(7) {
        assert_eq!(
            block_on(tree.get(&maximal_key(index))).unwrap(),
            model.get(&maximal_key(index)).cloned()
        );
    }
    let report = verify(&crashed);
    assert_eq!(report.item_count, model.len() as u64);
    assert!(report.free_pages > 0, "deleted nodes' pages are free");
}

#[test]
fn the_key_limit_is_enforced_one_byte_above_it() {
    let disk = SimulatedDisk::new();
    let mut tree = open(&disk);
    let at_limit = vec![b'k'; KEY_BYTES_MAX];
    block_on(tree.put(&at_limit, b"fits", 1)).unwrap();
    let above = vec![b'k'; KEY_BYTES_MAX + 1];
    let error = block_on(tree.put(&above, b"too long", 2)).unwrap_err();
    assert!(
        matches!(
            error,
            BTreeError::KeyTooLarge {
                key_bytes,
                key_bytes_max: KEY_BYTES_MAX,
            } if key_bytes == KEY_BYTES_MAX + 1
        ),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "key of 3201 bytes exceeds the B-tree's limit of 3200 bytes"
    );
    // The rejected put changed nothing.
    assert_eq!(tree.stats().item_count, 1);
    assert_eq!(block_on(tree.get(&above)).unwrap(), None);
    assert_eq!(
        block_on(tree.get(&at_limit)).unwrap(),
        Some(b"fits".to_vec())
    );
}

/// The B-tree's limit covers DynamoDB's largest storage key, whose figures the tree cannot
/// import: built here from the model's layout, it is stored and read back, with the prefix the
/// limit budgets for.
#[test]
fn dynamodb_largest_storage_key_fits_with_its_prefix() {
    let layout_bytes =
        HASH_BYTES + PARTITION_KEY_LENGTH_BYTES + PARTITION_KEY_BYTES_MAX + SORT_KEY_BYTES_MAX;
    assert_eq!(layout_bytes, DYNAMODB_STORAGE_KEY_BYTES_MAX);
    assert!(KEY_BYTES_MAX >= layout_bytes);
    let disk = SimulatedDisk::new();
    let mut tree = open(&disk);
    let bare = storage_key(1, 0);
    assert_eq!(bare.len(), DYNAMODB_STORAGE_KEY_BYTES_MAX);
    block_on(tree.put(&bare, b"bare", 1)).unwrap();
    block_on(tree.put(&maximal_key(2), b"prefixed", 2)).unwrap();
    block_on(tree.checkpoint()).unwrap();
    let tree = open(&disk.crash_image_dropping_unsynced());
    assert_eq!(block_on(tree.get(&bare)).unwrap(), Some(b"bare".to_vec()));
    assert_eq!(
        block_on(tree.get(&maximal_key(2))).unwrap(),
        Some(b"prefixed".to_vec())
    );
}
