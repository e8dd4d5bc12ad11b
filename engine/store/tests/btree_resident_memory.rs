//! A larger-than-cache run with a bounded resident set: a B-tree on real glommio DMA files
//! holding eight times the page cache's bytes is built, checkpointed and read back in full
//! (a chunked scan and point gets), and the process's resident set (VmRSS, and its peak
//! VmHWM, from /proc/self/status) grows by no more than the cache's bytes plus a fixed
//! overhead. A memory measurement, not a timing.
//!
//! Its own test file, so it runs alone in its own process: no other test's allocations show
//! up in the measurement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::Bound;

use shoal_io::storage::dma::DmaDirectory;
use shoal_io::testing::run_on_test_executor;
use shoal_store::btree::page::PAGE_BYTES;
use shoal_store::btree::{BTree, BTreeConfig, Direction, PageCache};

const TREE_FILE: &str = "partition-0042.btree";
/// 4 MiB of pages.
const CACHE_PAGES: usize = 256;
const CACHE_BYTES: usize = CACHE_PAGES * PAGE_BYTES;
/// The tree holds this many times the cache's bytes in keys and values.
const DATA_TO_CACHE_RATIO: usize = 8;
const VALUE_BYTES: usize = 1000;
const KEY_BYTES: usize = 16;
const ITEMS: usize = DATA_TO_CACHE_RATIO * CACHE_BYTES / (KEY_BYTES + VALUE_BYTES);
const CHECKPOINT_EVERY: usize = ITEMS / 4;
/// Point gets after the scan: every this many items.
const GET_EVERY: usize = 97;
/// Items per chunk of the read-back scan: the chunk, not the tree, is in memory at once.
const SCAN_CHUNK_ITEMS: usize = 200;
/// What the process may grow by besides the cache's pages, generously:
/// - decoded nodes are larger than their pages: per entry a `LeafEntry` (about 56 bytes) and
///   allocator rounding of its key and value buffers (up to 2 x 16 bytes), about 16 entries
///   per 16 KiB leaf, so about 1.5 KiB per cached node: under 0.5 MiB for the cache;
/// - glommio's I/O memory for DMA buffers, allocated and touched lazily by the executor
///   (`TEST_EXECUTOR_IO_MEMORY_BYTES`, 1 MiB), plus io_uring rings;
/// - the tree's sets of free and fresh page ids (8 to 50 bytes per page of a ~3000-page
///   file: well under 1 MiB) and the allocator keeping freed memory of the churn of
///   cloned nodes, split pieces and read buffers instead of returning it to the kernel;
/// - one scan chunk (200 KiB) and the test's own buffers.
///
/// Measured: the whole growth is about 5 MiB in debug builds (the full cache and 1 MiB). 12 MiB leaves a wide margin and stays well below
/// the 32 MiB of data, so a cache that kept every node would fail the assertion.
const FIXED_OVERHEAD_BYTES: usize = 12 << 20;
const _: () = assert!(CACHE_BYTES + FIXED_OVERHEAD_BYTES < ITEMS * (KEY_BYTES + VALUE_BYTES));

fn key(index: usize) -> Vec<u8> {
    format!("item-{index:011}").into_bytes()
}

fn value(index: usize) -> Vec<u8> {
    (0..VALUE_BYTES)
        .map(|offset| (index * 7 + offset * 13) as u8)
        .collect()
}

/// The process's current and peak resident set, in bytes (VmRSS and VmHWM).
fn resident_bytes() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> usize {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing from /proc/self/status"));
        let kilobytes: usize = line
            .trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kilobytes * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_tree_eight_times_the_cache_keeps_the_resident_set_bounded() {
    let temporary = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = temporary.path().to_path_buf();
    run_on_test_executor("btree-resident-memory", move || async move {
        let directory = DmaDirectory::open(&path).await.unwrap();
        let cache = PageCache::new(CACHE_PAGES);
        let mut tree = BTree::open_in(
            &directory,
            TREE_FILE,
            42,
            std::rc::Rc::clone(&cache),
            BTreeConfig::default(),
        )
        .await
        .unwrap();
        // Measured once the executor, the file and the empty tree exist: what follows is the
        // growth that the data could cause.
        let (baseline, _) = resident_bytes();

        // In key order, as a bulk load would: each leaf is filled, split, evicted dirty and
        // written back once, which keeps the run to one write per page instead of a read and
        // a write per put (random order on real files takes a minute in debug builds).
        for index in 0..ITEMS {
            tree.put(&key(index), &value(index), index as u64 + 1)
                .await
                .unwrap();
            if (index + 1).is_multiple_of(CHECKPOINT_EVERY) {
                tree.checkpoint().await.unwrap();
            }
        }
        tree.checkpoint().await.unwrap();
        assert!(cache.resident_pages() <= CACHE_PAGES);
        assert_eq!(cache.capacity_bytes(), CACHE_BYTES);
        let file_bytes = tree.stats().page_count as usize * PAGE_BYTES;
        assert!(
            file_bytes >= DATA_TO_CACHE_RATIO * CACHE_BYTES,
            "the tree file ({file_bytes} bytes) is not {DATA_TO_CACHE_RATIO} times the cache"
        );

        // Read everything back: a forward scan in chunks, then point gets of a sample.
        let mut after = Bound::Unbounded;
        let mut read = 0;
        loop {
            let chunk = tree
                .scan(
                    after.clone(),
                    Bound::Unbounded,
                    Direction::Forward,
                    SCAN_CHUNK_ITEMS,
                )
                .await
                .unwrap();
            let Some((last, _)) = chunk.last() else {
                break;
            };
            for (item_key, item_value) in &chunk {
                assert_eq!(*item_key, key(read));
                assert_eq!(*item_value, value(read));
                read += 1;
            }
            after = Bound::Excluded(last.clone());
        }
        assert_eq!(read, ITEMS);
        for index in (0..ITEMS).step_by(GET_EVERY) {
            assert_eq!(tree.get(&key(index)).await.unwrap(), Some(value(index)));
        }
        let stats = cache.stats();
        assert!(
            stats.evictions > 0 && stats.dirty_write_backs > 0,
            "{stats:?}"
        );

        let (resident, peak) = resident_bytes();
        let bound = CACHE_BYTES + FIXED_OVERHEAD_BYTES;
        let (growth, peak_growth) = (
            resident.saturating_sub(baseline),
            peak.saturating_sub(baseline),
        );
        eprintln!(
            "resident set: baseline {baseline} bytes, grew by {growth} (peak {peak_growth}) for \
             {} bytes of items and a {CACHE_BYTES}-byte cache; bound {bound}",
            ITEMS * (KEY_BYTES + VALUE_BYTES)
        );
        assert!(
            growth <= bound,
            "the resident set grew by {growth} bytes, more than the cache ({CACHE_BYTES}) plus \
             {FIXED_OVERHEAD_BYTES}"
        );
        assert!(
            peak_growth <= bound,
            "the peak resident set grew by {peak_growth} bytes, more than the cache \
             ({CACHE_BYTES}) plus {FIXED_OVERHEAD_BYTES}"
        );
        tree.close().await.unwrap();
    });
}
