//! A committed B-tree file of format version 2 (tests/fixtures/btree-v2/golden.btree): the
//! current code must write exactly these bytes for the same operations, and must read them
//! back. Damaged copies (both meta slots, a tree page) must be rejected with the right error.
//! The version-1 file (tests/fixtures/btree-v1/golden.btree, 4 KiB pages) stays committed:
//! it must be refused as another format version, never read or overwritten.
//! Regenerate after an intended format change (with a version bump) with
//! `SHOAL_REGENERATE_FIXTURES=1 cargo test -p shoal-store --test btree_fixtures`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::Bound;
use std::path::PathBuf;

use futures_lite::future::block_on;
use shoal_io::storage::simulated::{SimulatedDisk, SimulatedFile};
use shoal_io::{OpenMode, Storage, StorageDirectory};
use shoal_store::btree::page::{PAGE_BYTES, PageDamage};
use shoal_store::btree::{BTree, BTreeConfig, BTreeError, Direction, Item, PageCache};

const TREE_FILE: &str = "golden.btree";

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/btree-v2")
        .join(TREE_FILE)
}

fn version_1_fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/btree-v1")
        .join(TREE_FILE)
}

fn expected_items() -> Vec<Item> {
    vec![
        (b"alpha".to_vec(), b"first".to_vec()),
        (
            b"beta".to_vec(),
            (0..5000u32).map(|index| (index % 251) as u8).collect(),
        ),
        (b"gamma".to_vec(), Vec::new()),
    ]
}

/// The operations the fixture records: puts, a replaced and a deleted key, two checkpoints.
fn build() -> Vec<u8> {
    let disk = SimulatedDisk::new();
    block_on(async {
        let cache = PageCache::new(16);
        let mut tree = BTree::open_in(
            &disk.directory(),
            TREE_FILE,
            1,
            cache,
            BTreeConfig::default(),
        )
        .await
        .unwrap();
        tree.put(b"alpha", b"draft", 1).await.unwrap();
        tree.put(b"delta", b"to be deleted", 2).await.unwrap();
        tree.checkpoint().await.unwrap();
        for (lsn, (key, value)) in (3..).zip(expected_items()) {
            tree.put(&key, &value, lsn).await.unwrap();
        }
        tree.delete(b"delta", 6).await.unwrap();
        tree.checkpoint().await.unwrap();
    });
    disk.contents(TREE_FILE).unwrap()
}

fn open_bytes(bytes: &[u8]) -> Result<BTree<SimulatedFile>, BTreeError> {
    let disk = SimulatedDisk::new();
    let directory = disk.directory();
    block_on(async {
        let file = directory
            .open(TREE_FILE, OpenMode::CreateNew)
            .await
            .unwrap();
        let mut buffer = file.allocate_buffer(bytes.len());
        buffer.copy_from_slice(bytes);
        file.write_at(buffer, 0).await.unwrap();
        file.sync().await.unwrap();
        BTree::open(file, 1, PageCache::new(16), BTreeConfig::default()).await
    })
}

fn items(tree: &BTree<SimulatedFile>) -> Result<Vec<Item>, BTreeError> {
    block_on(tree.scan(
        Bound::Unbounded,
        Bound::Unbounded,
        Direction::Forward,
        usize::MAX,
    ))
}

#[test]
fn golden_btree_file_is_current_and_readable() {
    let built = build();
    if std::env::var_os("SHOAL_REGENERATE_FIXTURES").is_some() {
        std::fs::create_dir_all(fixture_path().parent().unwrap()).unwrap();
        std::fs::write(fixture_path(), &built).unwrap();
    }
    let committed = std::fs::read(fixture_path()).unwrap();
    let first_difference = committed
        .iter()
        .zip(&built)
        .position(|(left, right)| left != right);
    assert!(
        committed.len() == built.len() && first_difference.is_none(),
        "the B-tree format changed: {} bytes committed, {} built, first difference at {first_difference:?}",
        committed.len(),
        built.len()
    );
    let tree = open_bytes(&committed).unwrap();
    assert_eq!(items(&tree).unwrap(), expected_items());
    let stats = tree.stats();
    assert_eq!(stats.item_count, 3);
    assert_eq!(stats.lsn_durable, 6);
    assert!(
        stats.free_pages > 0,
        "the first checkpoint's pages are free again"
    );
}

#[test]
fn damaged_copies_of_the_golden_file_are_rejected() {
    let committed = std::fs::read(fixture_path()).unwrap();
    // Both meta slots damaged: nothing says which pages form the tree. Either slot damaged
    // alone is reported too (a torn meta write cannot fail its checksum; btree_scenarios.rs).
    let mut no_meta = committed.clone();
    no_meta[100] ^= 1;
    no_meta[PAGE_BYTES + 100] ^= 1;
    assert!(matches!(
        open_bytes(&no_meta),
        Err(BTreeError::Corruption {
            page: 0,
            damage: PageDamage::Checksum
        })
    ));
    // Every other page: flipped, it is either unused or reported by page id.
    let mut reported = 0;
    for page in 2..committed.len() / PAGE_BYTES {
        let mut damaged = committed.clone();
        damaged[page * PAGE_BYTES + 40] ^= 0x80;
        let tree = open_bytes(&damaged);
        match tree.and_then(|tree| items(&tree)) {
            Ok(found) => assert_eq!(found, expected_items(), "page {page} served damaged data"),
            Err(BTreeError::Corruption { page: at, damage }) => {
                assert_eq!(at, page as u64);
                assert_eq!(damage, PageDamage::Checksum);
                reported += 1;
            }
            Err(other) => panic!("page {page}: {other}"),
        }
    }
    assert!(
        reported >= 3,
        "leaf and two overflow pages are in use, {reported} reported"
    );
}

#[test]
fn a_version_1_file_is_refused_and_left_untouched() {
    let committed = std::fs::read(version_1_fixture_path()).unwrap();
    assert!(matches!(
        open_bytes(&committed),
        Err(BTreeError::UnsupportedFormatVersion {
            found: 1,
            supported: 2
        })
    ));
    // Its first 16 KiB alone (four 4 KiB pages) would otherwise pass for a creation that never
    // finished, and be overwritten with an empty tree.
    let first_page = &committed[..PAGE_BYTES];
    assert!(matches!(
        open_bytes(first_page),
        Err(BTreeError::UnsupportedFormatVersion { found: 1, .. })
    ));
}
