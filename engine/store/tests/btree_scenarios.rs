//! B-tree scenarios: damaged pages are reported with their page id and never served, large
//! values up to the configured limit, a tree many times larger than the page cache, and the
//! tree on real glommio DMA files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::Bound;
use std::rc::Rc;

use futures_lite::future::block_on;
use shoal_io::storage::dma::DmaDirectory;
use shoal_io::storage::simulated::{SimulatedDirectory, SimulatedDisk, SimulatedFile};
use shoal_io::testing::run_on_test_executor;
use shoal_store::btree::page::{PAGE_BYTES, PageDamage};
use shoal_store::btree::{BTree, BTreeConfig, BTreeError, Direction, KEY_BYTES_MAX, PageCache};

const TREE_FILE: &str = "partition-0007.btree";

type Items = Vec<(Vec<u8>, Vec<u8>)>;

fn key(index: u32) -> Vec<u8> {
    format!("item-{index:06}").into_bytes()
}

fn value(index: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|offset| (index as usize * 7 + offset * 13) as u8)
        .collect()
}

fn open(
    directory: &SimulatedDirectory,
    cache_pages: usize,
    config: BTreeConfig,
) -> (BTree<SimulatedFile>, Rc<PageCache<SimulatedFile>>) {
    let cache = PageCache::new(cache_pages);
    let tree = block_on(BTree::open_in(
        directory,
        TREE_FILE,
        7,
        Rc::clone(&cache),
        config,
    ))
    .unwrap();
    (tree, cache)
}

fn everything(tree: &BTree<SimulatedFile>) -> Result<Items, BTreeError> {
    block_on(tree.scan(
        Bound::Unbounded,
        Bound::Unbounded,
        Direction::Forward,
        usize::MAX,
    ))
}

/// A checkpointed tree of 300 items, a tenth of them with overflow values.
fn populated_disk() -> (SimulatedDisk, Items) {
    let disk = SimulatedDisk::new();
    let (mut tree, _) = open(&disk.directory(), 32, BTreeConfig::default());
    let mut expected = Vec::new();
    for index in 0..300u32 {
        let len = if index.is_multiple_of(10) { 9000 } else { 200 };
        block_on(tree.put(&key(index), &value(index, len), u64::from(index) + 1)).unwrap();
        expected.push((key(index), value(index, len)));
    }
    block_on(tree.checkpoint()).unwrap();
    (disk, expected)
}

#[test]
fn every_damaged_page_is_reported_never_served() {
    let (disk, expected) = populated_disk();
    let page_count = disk.contents(TREE_FILE).unwrap().len() / PAGE_BYTES;
    let mut reported = 0;
    for page in 2..page_count as u64 {
        let original = disk.contents(TREE_FILE).unwrap();
        let at = page as usize * PAGE_BYTES + 100;
        disk.corrupt(TREE_FILE, at as u64, &[original[at] ^ 0x08]);
        let (tree, _) = open(&disk.directory(), 32, BTreeConfig::default());
        match everything(&tree) {
            // The page is not part of the tree (free, or an older copy).
            Ok(items) => assert_eq!(items, expected, "page {page}: damaged data served"),
            Err(BTreeError::Corruption {
                page: damaged,
                damage,
            }) => {
                assert_eq!(damaged, page);
                assert_eq!(damage, PageDamage::Checksum);
                reported += 1;
            }
            Err(other) => panic!("page {page}: {other}"),
        }
        disk.corrupt(TREE_FILE, at as u64, &[original[at]]);
    }
    assert!(reported > 10, "only {reported} damaged pages were in use");
}

/// A meta slot that is neither valid nor all zero was damaged at rest (a torn meta write leaves
/// the old meta or the new one: every field lies in the first sector). Recovery must report
/// it, never fall back to the other slot's older checkpoint, which the WAL may no longer
/// cover. Either slot, the current or the previous checkpoint's.
#[test]
fn a_damaged_meta_slot_is_reported_not_skipped_for_the_other() {
    let (disk, expected) = populated_disk();
    for slot in [0u64, 1] {
        let original = disk.contents(TREE_FILE).unwrap();
        for at in [
            slot as usize * PAGE_BYTES + 45,
            slot as usize * PAGE_BYTES + 9000,
        ] {
            disk.corrupt(TREE_FILE, at as u64, &[original[at] ^ 0x10]);
            let opened = block_on(BTree::open_in(
                &disk.directory(),
                TREE_FILE,
                7,
                PageCache::new(32),
                BTreeConfig::default(),
            ));
            match opened {
                Err(BTreeError::Corruption { page, damage }) => {
                    assert_eq!(page, slot);
                    assert_eq!(damage, PageDamage::Checksum);
                }
                Err(other) => panic!("slot {slot} byte {at}: {other}"),
                Ok(_) => panic!("slot {slot} byte {at}: a damaged meta slot was skipped"),
            }
            disk.corrupt(TREE_FILE, at as u64, &[original[at]]);
        }
    }
    let (tree, _) = open(&disk.directory(), 32, BTreeConfig::default());
    assert_eq!(everything(&tree).unwrap(), expected);
}

#[test]
fn misdirected_page_is_reported_with_both_ids() {
    let (disk, expected) = populated_disk();
    let (tree, _) = open(&disk.directory(), 32, BTreeConfig::default());
    assert_eq!(everything(&tree).unwrap(), expected);
    let image = disk.contents(TREE_FILE).unwrap();
    // Find two pages in use: the first damaged copy that a full scan trips over.
    for (source, target) in [(2u64, 3u64), (3, 4), (4, 5), (5, 6)] {
        let source_bytes =
            image[source as usize * PAGE_BYTES..(source as usize + 1) * PAGE_BYTES].to_vec();
        disk.corrupt(TREE_FILE, target * PAGE_BYTES as u64, &source_bytes);
        let (tree, _) = open(&disk.directory(), 32, BTreeConfig::default());
        match everything(&tree) {
            Ok(items) => assert_eq!(items, expected),
            Err(BTreeError::Corruption { page, damage }) => {
                assert_eq!(page, target);
                assert_eq!(damage, PageDamage::WrongPageId(source));
                return;
            }
            Err(other) => panic!("{other}"),
        }
        disk.corrupt(
            TREE_FILE,
            target * PAGE_BYTES as u64,
            &image[target as usize * PAGE_BYTES..(target as usize + 1) * PAGE_BYTES],
        );
    }
    panic!("no misdirected page was in use");
}

#[test]
fn values_up_to_the_configured_limit() {
    let disk = SimulatedDisk::new();
    let (mut tree, _) = open(&disk.directory(), 32, BTreeConfig::default());
    let limit = BTreeConfig::default().value_bytes_max;
    block_on(tree.put(b"at-limit", &value(1, limit), 1)).unwrap();
    assert!(matches!(
        block_on(tree.put(b"too-big", &value(2, limit + 1), 2)),
        Err(BTreeError::ValueTooLarge { .. })
    ));
    assert!(matches!(
        block_on(tree.put(&vec![b'k'; KEY_BYTES_MAX + 1], b"v", 3)),
        Err(BTreeError::KeyTooLarge { key_bytes, key_bytes_max: KEY_BYTES_MAX })
            if key_bytes == KEY_BYTES_MAX + 1
    ));
    block_on(tree.checkpoint()).unwrap();
    drop(tree);
    let large = BTreeConfig {
        value_bytes_max: 4 << 20,
    };
    let (mut tree, _) = open(&disk.directory(), 32, large.clone());
    let four_megabytes = value(3, 4 << 20);
    block_on(tree.put(b"four-megabytes", &four_megabytes, 4)).unwrap();
    block_on(tree.checkpoint()).unwrap();
    let crashed = disk.crash_image_dropping_unsynced();
    let (tree, _) = open(&crashed.directory(), 32, large);
    assert_eq!(
        block_on(tree.get(b"four-megabytes")).unwrap().unwrap(),
        four_megabytes
    );
    assert_eq!(
        block_on(tree.get(b"at-limit")).unwrap().unwrap(),
        value(1, limit)
    );
    // Replacing and deleting large values gives their pages back.
    let pages = tree.stats().page_count;
    let mut tree = tree;
    for round in 0..4 {
        block_on(tree.put(
            b"four-megabytes",
            &value(round, 4 << 20),
            10 + u64::from(round),
        ))
        .unwrap();
        block_on(tree.checkpoint()).unwrap();
    }
    assert!(
        tree.stats().page_count < pages + 2 * 1100,
        "overflow pages were not reused"
    );
}

/// Values of the many-times-the-cache tree: a few per 16 KiB leaf, so 3000 items make hundreds
/// of pages.
const LARGE_TREE_VALUE_BYTES: usize = 2000;

#[test]
fn tree_many_times_larger_than_the_cache() {
    let disk = SimulatedDisk::new();
    let (mut tree, cache) = open(&disk.directory(), 16, BTreeConfig::default());
    for index in 0..3000 {
        block_on(tree.put(
            &key(index),
            &value(index, LARGE_TREE_VALUE_BYTES),
            u64::from(index) + 1,
        ))
        .unwrap();
        assert!(cache.resident_pages() <= cache.capacity_pages());
    }
    let stats = cache.stats();
    assert!(
        stats.evictions > 0 && stats.dirty_write_backs > 0,
        "{stats:?}"
    );
    assert!(tree.stats().page_count > 20 * cache.capacity_pages() as u64);
    // Reads before and after a checkpoint and a crash, through the small cache.
    for index in (0..3000).step_by(97) {
        assert_eq!(
            block_on(tree.get(&key(index))).unwrap().unwrap(),
            value(index, LARGE_TREE_VALUE_BYTES)
        );
    }
    block_on(tree.checkpoint()).unwrap();
    let crashed = disk.crash_image_dropping_unsynced();
    let (tree, cache) = open(&crashed.directory(), 16, BTreeConfig::default());
    let backward = block_on(tree.scan(
        Bound::Included(key(1000)),
        Bound::Excluded(key(2000)),
        Direction::Backward,
        5,
    ))
    .unwrap();
    let keys: Vec<Vec<u8>> = backward.into_iter().map(|(key, _)| key).collect();
    assert_eq!(keys, (1995..2000).rev().map(key).collect::<Vec<_>>());
    assert_eq!(everything(&tree).unwrap().len(), 3000);
    assert!(cache.resident_pages() <= 16);
}

#[test]
fn btree_on_dma_files() {
    let temporary = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = temporary.path().to_path_buf();
    let first = path.clone();
    run_on_test_executor("btree-dma-write", move || async move {
        let directory = DmaDirectory::open(&first).await.unwrap();
        let cache = PageCache::new(16);
        let mut tree = BTree::open_in(&directory, TREE_FILE, 7, cache, BTreeConfig::default())
            .await
            .unwrap();
        for index in 0..500u32 {
            let len = if index.is_multiple_of(50) {
                20_000
            } else {
                300
            };
            tree.put(&key(index), &value(index, len), u64::from(index) + 1)
                .await
                .unwrap();
        }
        assert_eq!(tree.checkpoint().await.unwrap(), 500);
        for index in 500..600 {
            tree.put(&key(index), &value(index, 300), u64::from(index) + 1)
                .await
                .unwrap();
        }
        // Not checkpointed: gone after reopening.
        tree.close().await.unwrap();
    });
    run_on_test_executor("btree-dma-reopen", move || async move {
        let directory = DmaDirectory::open(&path).await.unwrap();
        let cache = PageCache::new(16);
        let tree = BTree::open_in(&directory, TREE_FILE, 7, cache, BTreeConfig::default())
            .await
            .unwrap();
        assert_eq!(tree.stats().lsn_durable, 500);
        assert_eq!(tree.stats().item_count, 500);
        let items = tree
            .scan(
                Bound::Unbounded,
                Bound::Unbounded,
                Direction::Forward,
                usize::MAX,
            )
            .await
            .unwrap();
        assert_eq!(items.len(), 500);
        for (index, (item_key, item_value)) in items.into_iter().enumerate() {
            let index = index as u32;
            let len = if index.is_multiple_of(50) {
                20_000
            } else {
                300
            };
            assert_eq!(item_key, key(index));
            assert_eq!(item_value, value(index, len));
        }
        tree.close().await.unwrap();
    });
}
