//! Offline verification of a whole B-tree file (`shoal inspect btree`).
//!
//! Reads through the tree's own code paths: [`Meta::decode`] for both slots, [`BTree::open`]
//! to choose the current checkpoint and read its free list, the tree's node loader and
//! overflow reader for every page below the root. On top of the per-page checks (checksum,
//! page id, type, payload) it checks what no single page can show: every referenced page lies
//! in the file and is referenced once, all leaves are at one depth, every key lies inside the
//! range its ancestors give it, the meta's item count and bytes match the leaves, and every
//! page below `page_count` is either in the tree or free (invariant 1 at a durable point).

use std::collections::BTreeSet;
use std::rc::Rc;

use shoal_io::Storage;

use super::cache::{CACHE_PAGES_MIN, PageCache, TreeId};
use super::page::{
    BTREE_FORMAT_VERSION, META_PAGE_IDS, NO_PAGE, Node, PAGE_BYTES, PageDamage, PageId,
    StoredValue, foreign_meta_format_version,
};
use super::{BTree, BTreeConfig, BTreeError, Meta, VALUE_BYTES_LIMIT, stored_value_bytes};

/// The cache of the verifying tree is private to it, so any id will do.
const VERIFY_TREE_ID: TreeId = 0;

/// What a valid meta slot records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaSummary {
    pub sequence: u64,
    pub checkpoint_lsn: u64,
    pub root: PageId,
    pub page_count: u64,
    pub free_list_head: PageId,
    pub item_count: u64,
    pub item_bytes: u64,
}

impl From<Meta> for MetaSummary {
    fn from(meta: Meta) -> Self {
        Self {
            sequence: meta.sequence,
            checkpoint_lsn: meta.checkpoint_lsn,
            root: meta.root,
            page_count: meta.page_count,
            free_list_head: meta.free_list_head,
            item_count: meta.item_count,
            item_bytes: meta.item_bytes,
        }
    }
}

/// What a sound B-tree file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeReport {
    /// Slot 0 and slot 1. A damaged slot beside a valid current one is a checkpoint torn by a
    /// crash or damage at rest; the two look alike, and the tree opens either way.
    pub meta_slots: [Result<MetaSummary, PageDamage>; 2],
    /// The slot recovery uses; `None` for a file whose creation never finished (at most one
    /// page and no valid meta), which opens as an empty tree.
    pub current_slot: Option<PageId>,
    pub checkpoint_lsn: u64,
    pub page_count: u64,
    /// Levels of nodes from the root to the leaves; 0 for an empty tree.
    pub height: u32,
    pub item_count: u64,
    pub item_bytes: u64,
    pub leaf_pages: u64,
    pub branch_pages: u64,
    pub overflow_pages: u64,
    pub free_pages: u64,
    pub free_list_pages: u64,
}

/// A node still to visit, with the key range its ancestors allow: `[low, high)`.
struct PendingNode {
    page: PageId,
    referenced_by: PageId,
    depth: u32,
    low: Option<Vec<u8>>,
    high: Option<Vec<u8>>,
}

/// Pages seen so far; each may be referenced once.
struct PageClaims {
    page_count: u64,
    claimed: BTreeSet<PageId>,
}

impl PageClaims {
    fn claim(&mut self, page: PageId, referenced_by: PageId) -> Result<(), BTreeError> {
        let in_file = !META_PAGE_IDS.contains(&page) && page < self.page_count;
        let damage = if !in_file {
            PageDamage::ReferenceOutOfRange(page)
        } else if !self.claimed.insert(page) {
            PageDamage::ReferencedTwice(page)
        } else {
            return Ok(());
        };
        Err(BTreeError::Corruption {
            page: referenced_by,
            damage,
        })
    }
}

/// Verifies the tree in `file` at its current checkpoint and calls `visit(key, value_bytes)`
/// for every item in key order. Never writes to `file`.
pub async fn verify_tree<F: Storage>(
    file: F,
    mut visit: impl FnMut(&[u8], usize),
) -> Result<TreeReport, BTreeError> {
    let file_bytes = file.len().await?;
    let mut meta_slots = [Err(PageDamage::Zero), Err(PageDamage::Zero)];
    let mut foreign_version = None;
    for (state, slot) in meta_slots.iter_mut().zip(META_PAGE_IDS) {
        let page = file.read_at(slot * PAGE_BYTES as u64, PAGE_BYTES).await?;
        *state = Meta::decode(&page, slot).map(MetaSummary::from);
        if state.is_err() {
            foreign_version = foreign_version.or(foreign_meta_format_version(&page));
        }
    }
    let current = META_PAGE_IDS
        .iter()
        .zip(&meta_slots)
        .filter_map(|(slot, state)| state.as_ref().ok().map(|meta| (meta.sequence, *slot)))
        .max();
    let Some((_, current_slot)) = current else {
        // The same rules as `BTree::open`, decided here because `open` would write a first meta.
        if let Some(found) = foreign_version {
            return Err(BTreeError::UnsupportedFormatVersion {
                found,
                supported: BTREE_FORMAT_VERSION,
            });
        }
        if file_bytes > PAGE_BYTES as u64 {
            return Err(BTreeError::NoValidMeta);
        }
        return Ok(TreeReport {
            meta_slots,
            current_slot: None,
            checkpoint_lsn: 0,
            page_count: 0,
            height: 0,
            item_count: 0,
            item_bytes: 0,
            leaf_pages: 0,
            branch_pages: 0,
            overflow_pages: 0,
            free_pages: 0,
            free_list_pages: 0,
        });
    };
    let config = BTreeConfig {
        value_bytes_max: VALUE_BYTES_LIMIT,
    };
    let cache = PageCache::new(CACHE_PAGES_MIN);
    let tree = BTree::open(file, VERIFY_TREE_ID, Rc::clone(&cache), config).await?;
    assert_eq!(
        tree.durable_slot as PageId, current_slot,
        "open chooses the valid slot with the highest sequence"
    );
    let meta = tree.durable_meta;
    let mut claims = PageClaims {
        page_count: meta.page_count,
        claimed: BTreeSet::new(),
    };
    let mut report = TreeReport {
        meta_slots,
        current_slot: Some(current_slot),
        checkpoint_lsn: meta.checkpoint_lsn,
        page_count: meta.page_count,
        height: 0,
        item_count: 0,
        item_bytes: 0,
        leaf_pages: 0,
        branch_pages: 0,
        overflow_pages: 0,
        free_pages: tree.free.len() as u64,
        free_list_pages: tree.free_list_pages.len() as u64,
    };
    let mut leaf_depth = None;
    let mut stack = Vec::new();
    if meta.root != NO_PAGE {
        stack.push(PendingNode {
            page: meta.root,
            referenced_by: current_slot,
            depth: 1,
            low: None,
            high: None,
        });
    }
    // Depth first, children pushed in reverse so that leaves are visited in key order.
    while let Some(pending) = stack.pop() {
        claims.claim(pending.page, pending.referenced_by)?;
        let node = tree.load(pending.page).await?;
        let corrupt = |damage| BTreeError::Corruption {
            page: pending.page,
            damage,
        };
        match &*node {
            Node::Leaf(entries) => {
                report.leaf_pages += 1;
                let expected = *leaf_depth.get_or_insert(pending.depth);
                if pending.depth != expected {
                    return Err(corrupt(PageDamage::LeafDepth {
                        depth: pending.depth,
                        expected,
                    }));
                }
                for entry in entries {
                    let above_low = pending.low.as_ref().is_none_or(|low| entry.key >= *low);
                    let below_high = pending.high.as_ref().is_none_or(|high| entry.key < *high);
                    if !(above_low && below_high) {
                        return Err(corrupt(PageDamage::KeyOutsideParentRange));
                    }
                    if let StoredValue::Overflow {
                        first_page,
                        value_bytes,
                    } = entry.value
                    {
                        let (_, pages) = tree.read_overflow(first_page, value_bytes, false).await?;
                        let mut referenced_by = pending.page;
                        for page in pages {
                            claims.claim(page, referenced_by)?;
                            referenced_by = page;
                            report.overflow_pages += 1;
                        }
                    }
                    let value_bytes = stored_value_bytes(&entry.value);
                    report.item_count += 1;
                    report.item_bytes += (entry.key.len() + value_bytes) as u64;
                    visit(&entry.key, value_bytes);
                }
            }
            Node::Branch {
                first_child,
                entries,
            } => {
                report.branch_pages += 1;
                let children = std::iter::once((*first_child, pending.low.clone()))
                    .chain(
                        entries
                            .iter()
                            .map(|(key, child)| (*child, Some(key.clone()))),
                    )
                    .collect::<Vec<_>>();
                let mut high = pending.high.clone();
                for (child, low) in children.into_iter().rev() {
                    stack.push(PendingNode {
                        page: child,
                        referenced_by: pending.page,
                        depth: pending.depth + 1,
                        low: low.clone(),
                        high,
                    });
                    high = low;
                }
            }
        }
    }
    report.height = leaf_depth.unwrap_or(0);
    let free_list_head = meta.free_list_head;
    for page in tree.free.iter().chain(&tree.free_list_pages) {
        claims.claim(*page, free_list_head)?;
    }
    if (report.item_count, report.item_bytes) != (meta.item_count, meta.item_bytes) {
        return Err(BTreeError::Corruption {
            page: current_slot,
            damage: PageDamage::ItemTotalsMismatch {
                meta_items: meta.item_count,
                meta_bytes: meta.item_bytes,
                tree_items: report.item_count,
                tree_bytes: report.item_bytes,
            },
        });
    }
    // Invariant 1: at a checkpoint, every page is in the tree, free, or part of the free list.
    let tree_pages = META_PAGE_IDS.len() as u64..meta.page_count;
    if let Some(unaccounted) = tree_pages
        .into_iter()
        .find(|page| !claims.claimed.contains(page))
    {
        return Err(BTreeError::Corruption {
            page: unaccounted,
            damage: PageDamage::Unaccounted,
        });
    }
    cache.forget_tree(VERIFY_TREE_ID);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use futures_lite::future::block_on;
    use shoal_io::storage::simulated::{SimulatedDisk, SimulatedFile};
    use shoal_io::{OpenMode, SeededRng, StorageDirectory};

    use super::*;

    const TREE_FILE: &str = "verify.btree";
    /// Enough operations for a tree of three levels, many times the cache.
    const OPERATIONS_LARGE: u64 = 3000;
    /// Enough for two levels, overflow values and free pages, small enough to damage each page
    /// in turn.
    const OPERATIONS_SMALL: u64 = 400;
    const CHECKPOINTS: u64 = 4;

    fn key(index: u32) -> Vec<u8> {
        format!("key-{index:08}").into_bytes()
    }

    /// Builds a tree with random puts (some values on overflow pages), deletes and
    /// checkpoints; returns the disk and the model of what the last checkpoint holds.
    fn build(
        seed: u64,
        operations: u64,
    ) -> (SimulatedDisk, std::collections::BTreeMap<Vec<u8>, usize>) {
        let disk = SimulatedDisk::new();
        let mut rng = SeededRng::new(seed);
        let mut model = std::collections::BTreeMap::new();
        block_on(async {
            let mut tree = BTree::open_in(
                &disk.directory(),
                TREE_FILE,
                1,
                PageCache::new(CACHE_PAGES_MIN),
                BTreeConfig::default(),
            )
            .await
            .unwrap();
            for lsn in 1..=operations {
                let index = rng.below(operations) as u32;
                if rng.below(5) == 0 {
                    tree.delete(&key(index), lsn).await.unwrap();
                    model.remove(&key(index));
                } else {
                    let value_bytes = if rng.below(20) == 0 { 9000 } else { 100 };
                    tree.put(&key(index), &vec![7; value_bytes], lsn)
                        .await
                        .unwrap();
                    model.insert(key(index), value_bytes);
                }
                if lsn % (operations / CHECKPOINTS) == 0 {
                    tree.checkpoint().await.unwrap();
                }
            }
            tree.checkpoint().await.unwrap();
        });
        (disk, model)
    }

    /// A key and the length of its value, as `verify_tree` visits them.
    type KeyAndValueBytes = (Vec<u8>, usize);

    fn verify(disk: &SimulatedDisk) -> (Result<TreeReport, BTreeError>, Vec<KeyAndValueBytes>) {
        let mut items = Vec::new();
        let file: SimulatedFile =
            block_on(disk.directory().open(TREE_FILE, OpenMode::Existing)).unwrap();
        let report = block_on(verify_tree(file, |key, value_bytes| {
            items.push((key.to_vec(), value_bytes));
        }));
        (report, items)
    }

    #[test]
    fn a_tree_built_by_the_api_verifies_and_lists_its_items_in_order() {
        for seed in 1..=3 {
            let (disk, model) = build(seed, OPERATIONS_LARGE);
            let before = disk.contents(TREE_FILE).unwrap();
            let (report, items) = verify(&disk);
            let report = report.unwrap();
            assert_eq!(items, model.into_iter().collect::<Vec<_>>());
            assert_eq!(report.item_count, items.len() as u64);
            assert!(report.height >= 2, "{report:?}");
            assert!(report.overflow_pages > 0, "{report:?}");
            assert!(report.free_pages > 0, "{report:?}");
            assert!(report.meta_slots.iter().all(Result::is_ok), "{report:?}");
            assert_eq!(disk.contents(TREE_FILE).unwrap(), before, "verify wrote");
        }
    }

    #[test]
    fn a_flipped_byte_in_any_tree_page_is_reported_with_its_page() {
        let (disk, _) = build(4, OPERATIONS_SMALL);
        let (report, _) = verify(&disk);
        let report = report.unwrap();
        assert!(
            report.branch_pages > 0 && report.overflow_pages > 0 && report.free_list_pages > 0,
            "every kind of page is damaged in turn: {report:?}"
        );
        // Every page that is read: the tree's and the free list's. Free pages are not read.
        let read = report.leaf_pages
            + report.branch_pages
            + report.overflow_pages
            + report.free_list_pages;
        let mut detected = 0;
        for page in META_PAGE_IDS.len() as u64..report.page_count {
            let damaged = SimulatedDisk::new();
            let mut bytes = disk.contents(TREE_FILE).unwrap();
            bytes[page as usize * PAGE_BYTES + PAGE_BYTES / 2] ^= 0x10;
            block_on(async {
                let file = damaged
                    .directory()
                    .open(TREE_FILE, OpenMode::CreateNew)
                    .await
                    .unwrap();
                let mut buffer = file.allocate_buffer(bytes.len());
                buffer.copy_from_slice(&bytes);
                file.write_at(buffer, 0).await.unwrap();
            });
            match verify(&damaged).0 {
                Err(BTreeError::Corruption {
                    page: reported,
                    damage: PageDamage::Checksum,
                }) => {
                    assert_eq!(reported, page);
                    detected += 1;
                }
                // A free page's contents are garbage by definition.
                Ok(_) => {}
                Err(other) => panic!("page {page}: unexpected {other}"),
            }
        }
        assert_eq!(detected, read, "{report:?}");
    }

    #[test]
    fn a_meta_whose_counts_disagree_with_the_leaves_is_reported() {
        let (disk, _) = build(5, OPERATIONS_SMALL);
        let (report, _) = verify(&disk);
        let slot = report.unwrap().current_slot.unwrap();
        let bytes = disk.contents(TREE_FILE).unwrap();
        let mut meta =
            Meta::decode(&bytes[slot as usize * PAGE_BYTES..][..PAGE_BYTES], slot).unwrap();
        meta.item_count += 1;
        let mut page = vec![0; PAGE_BYTES];
        meta.encode(slot, &mut page);
        assert!(disk.corrupt(TREE_FILE, slot * PAGE_BYTES as u64, &page));
        assert!(matches!(
            verify(&disk).0,
            Err(BTreeError::Corruption {
                page,
                damage: PageDamage::ItemTotalsMismatch { .. }
            }) if page == slot
        ));
    }
}
