//! The shard's page cache: a bounded set of decoded B-tree nodes shared by every tree on the
//! shard's core, replaced with the CLOCK algorithm (second chance).
//!
//! Dirty nodes are written back to their page when evicted. That is safe at any time because of
//! copy-on-write (see `btree` module docs, invariant 2): a dirty node always sits on a page
//! that the durable checkpoint does not reference. While an evicted node's write is in flight it
//! stays readable from `writing`, so a reader never fetches the page's older bytes.
//!
//! Write-backs run while other trees' tasks go on. A page can be freed and reused by its tree
//! while another task's write-back of its old contents is still in flight; two writes to one
//! offset in flight at once may complete in either order. So every write of a page waits until
//! no other write of that page is in flight (`in_flight`, [`PageCache::wait_for_writes`]).
//!
//! # Invariants
//! 1. At most `capacity_pages` nodes sit in slots; `index` maps exactly the occupied slots.
//! 2. A (tree, page) is in at most one of: a slot, `writing`.
//! 3. At most one write of a (tree, page) is in flight.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use shoal_io::storage::write_verified;
use shoal_io::{Storage, StorageResult};

use super::page::{Node, PAGE_BYTES, PageId};

/// Identifies a tree (a partition replica's file) among those sharing the cache.
pub type TreeId = u64;

/// The smallest cache that can hold a root-to-leaf path plus the nodes a split touches.
pub const CACHE_PAGES_MIN: usize = 16;

#[derive(Debug)]
struct Slot<F> {
    tree: TreeId,
    page: PageId,
    file: Rc<F>,
    node: Rc<Node>,
    dirty: bool,
    referenced: bool,
    page_lsn: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub dirty_write_backs: u64,
}

#[derive(Debug)]
struct CacheState<F> {
    slots: Vec<Option<Slot<F>>>,
    index: HashMap<(TreeId, PageId), usize>,
    hand: usize,
    writing: HashMap<(TreeId, PageId), Rc<Node>>,
    in_flight: HashSet<(TreeId, PageId)>,
    stats: CacheStats,
}

/// Gives other tasks on the executor a turn.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        context.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A bounded node cache for one shard.
#[derive(Debug)]
pub struct PageCache<F> {
    capacity_pages: usize,
    state: RefCell<CacheState<F>>,
}

async fn write_node<F: Storage>(
    file: &F,
    page: PageId,
    node: &Node,
    page_lsn: u64,
) -> StorageResult<()> {
    let mut buffer = file.allocate_buffer(PAGE_BYTES);
    node.encode(page, page_lsn, &mut buffer);
    write_verified(file, buffer, page * PAGE_BYTES as u64).await
}

impl<F: Storage> PageCache<F> {
    pub fn new(capacity_pages: usize) -> Rc<Self> {
        let capacity_pages = capacity_pages.max(CACHE_PAGES_MIN);
        Rc::new(Self {
            capacity_pages,
            state: RefCell::new(CacheState {
                slots: (0..capacity_pages).map(|_| None).collect(),
                index: HashMap::new(),
                hand: 0,
                writing: HashMap::new(),
                in_flight: HashSet::new(),
                stats: CacheStats::default(),
            }),
        })
    }

    /// Waits until no write of `page` of `tree` is in flight, then claims the page for the
    /// caller's write (invariant 3). Every write of a tree page goes through this or
    /// [`PageCache::write_exclusively`].
    async fn claim(&self, tree: TreeId, page: PageId) {
        loop {
            if self.state.borrow_mut().in_flight.insert((tree, page)) {
                return;
            }
            YieldNow(false).await;
        }
    }

    fn unclaim(&self, tree: TreeId, page: PageId) {
        self.state.borrow_mut().in_flight.remove(&(tree, page));
    }

    /// Writes `buffer` as `page` of `tree`, never concurrently with another write of the page.
    pub async fn write_exclusively(
        &self,
        tree: TreeId,
        file: &F,
        page: PageId,
        buffer: F::Buffer,
    ) -> StorageResult<()> {
        self.claim(tree, page).await;
        let written = write_verified(file, buffer, page * PAGE_BYTES as u64).await;
        self.unclaim(tree, page);
        written
    }

    async fn write_node_exclusively(
        &self,
        tree: TreeId,
        file: &F,
        page: PageId,
        node: &Node,
        page_lsn: u64,
    ) -> StorageResult<()> {
        self.claim(tree, page).await;
        let written = write_node(file, page, node, page_lsn).await;
        self.unclaim(tree, page);
        written
    }

    pub fn capacity_pages(&self) -> usize {
        self.capacity_pages
    }

    /// The cache's memory bound in page bytes. A cached node is decoded, so it takes its page's
    /// payload plus per-entry bookkeeping (tests/btree_resident_memory.rs measures the whole).
    pub fn capacity_bytes(&self) -> usize {
        self.capacity_pages * PAGE_BYTES
    }

    pub fn resident_pages(&self) -> usize {
        self.state.borrow().index.len()
    }

    pub fn stats(&self) -> CacheStats {
        self.state.borrow().stats.clone()
    }

    pub fn get(&self, tree: TreeId, page: PageId) -> Option<Rc<Node>> {
        let mut state = self.state.borrow_mut();
        if let Some(&slot_index) = state.index.get(&(tree, page)) {
            state.stats.hits += 1;
            let slot = state.slots[slot_index]
                .as_mut()
                .unwrap_or_else(|| unreachable!("invariant 1: indexed slots are occupied"));
            slot.referenced = true;
            return Some(Rc::clone(&slot.node));
        }
        let in_flight = state.writing.get(&(tree, page)).cloned();
        match in_flight {
            Some(node) => {
                state.stats.hits += 1;
                Some(node)
            }
            None => {
                state.stats.misses += 1;
                None
            }
        }
    }

    /// Changes the cached node of `page` of `tree` in place with `change` and marks it dirty as
    /// of `page_lsn`; `None` (and `change` not run) when the page is not resident in a slot
    /// (absent, or evicted and still being written back). A node that a reader or a write-back
    /// still holds is copied first (`Rc::make_mut`), so they keep the version they started
    /// with. This is what a put into a fresh page costs: no copy of the page's entries when
    /// nobody else holds it.
    pub fn update_in_place<R>(
        &self,
        tree: TreeId,
        page: PageId,
        page_lsn: u64,
        change: impl FnOnce(&mut Node) -> R,
    ) -> Option<R> {
        let mut state = self.state.borrow_mut();
        let slot_index = *state.index.get(&(tree, page))?;
        let slot = state.slots[slot_index]
            .as_mut()
            .unwrap_or_else(|| unreachable!("invariant 1: indexed slots are occupied"));
        let changed = change(Rc::make_mut(&mut slot.node));
        slot.dirty = true;
        slot.referenced = true;
        slot.page_lsn = page_lsn;
        state.stats.hits += 1;
        Some(changed)
    }

    /// Puts `node` in the cache as page `page` of `tree`; `dirty` when it differs from the
    /// page on disk. May evict (and write back) another node first.
    pub async fn insert(
        &self,
        tree: TreeId,
        page: PageId,
        file: &Rc<F>,
        node: Rc<Node>,
        dirty: bool,
        page_lsn: u64,
    ) -> StorageResult<()> {
        let victim = {
            let mut state = self.state.borrow_mut();
            if let Some(&slot_index) = state.index.get(&(tree, page)) {
                let slot = state.slots[slot_index]
                    .as_mut()
                    .unwrap_or_else(|| unreachable!("invariant 1: indexed slots are occupied"));
                slot.node = node;
                slot.dirty |= dirty;
                slot.referenced = true;
                slot.page_lsn = page_lsn;
                return Ok(());
            }
            state.writing.remove(&(tree, page));
            let (slot_index, victim) = Self::free_slot(&mut state);
            state.slots[slot_index] = Some(Slot {
                tree,
                page,
                file: Rc::clone(file),
                node,
                dirty,
                referenced: true,
                page_lsn,
            });
            state.index.insert((tree, page), slot_index);
            assert!(state.index.len() <= self.capacity_pages, "invariant 1");
            victim
        };
        if let Some(victim) = victim {
            let key = (victim.tree, victim.page);
            let written = self
                .write_node_exclusively(
                    victim.tree,
                    &victim.file,
                    victim.page,
                    &victim.node,
                    victim.page_lsn,
                )
                .await;
            let mut state = self.state.borrow_mut();
            if state
                .writing
                .get(&key)
                .is_some_and(|node| Rc::ptr_eq(node, &victim.node))
            {
                state.writing.remove(&key);
            }
            state.stats.dirty_write_backs += 1;
            written?;
        }
        Ok(())
    }

    /// Finds an empty slot, evicting with CLOCK if needed. A dirty victim is returned (and
    /// parked in `writing`) for the caller to write back.
    fn free_slot(state: &mut CacheState<F>) -> (usize, Option<Slot<F>>) {
        if let Some(empty) = state.slots.iter().position(Option::is_none) {
            return (empty, None);
        }
        let count = state.slots.len();
        // Two sweeps clear every reference bit, so a victim is always found.
        for _ in 0..2 * count + 1 {
            let hand = state.hand;
            state.hand = (hand + 1) % count;
            let slot = state.slots[hand]
                .as_mut()
                .unwrap_or_else(|| unreachable!("the cache is full"));
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            let Some(victim) = state.slots[hand].take() else {
                unreachable!("the cache is full")
            };
            state.index.remove(&(victim.tree, victim.page));
            state.stats.evictions += 1;
            if victim.dirty {
                state
                    .writing
                    .insert((victim.tree, victim.page), Rc::clone(&victim.node));
                return (hand, Some(victim));
            }
            return (hand, None);
        }
        unreachable!("CLOCK found no victim after two sweeps")
    }

    /// Forgets a page that was freed: its contents no longer matter.
    pub fn remove(&self, tree: TreeId, page: PageId) {
        let mut state = self.state.borrow_mut();
        if let Some(slot_index) = state.index.remove(&(tree, page)) {
            state.slots[slot_index] = None;
        }
        state.writing.remove(&(tree, page));
    }

    /// Writes every dirty node of `tree` to its page and marks it clean (a checkpoint).
    pub async fn flush_tree(&self, tree: TreeId) -> StorageResult<()> {
        let dirty: Vec<(PageId, Rc<F>, Rc<Node>, u64)> = {
            let state = self.state.borrow();
            state
                .slots
                .iter()
                .flatten()
                .filter(|slot| slot.tree == tree && slot.dirty)
                .map(|slot| {
                    (
                        slot.page,
                        Rc::clone(&slot.file),
                        Rc::clone(&slot.node),
                        slot.page_lsn,
                    )
                })
                .collect()
        };
        for (page, file, node, page_lsn) in dirty {
            self.write_node_exclusively(tree, &file, page, &node, page_lsn)
                .await?;
            let mut state = self.state.borrow_mut();
            if let Some(&slot_index) = state.index.get(&(tree, page))
                && let Some(slot) = state.slots[slot_index].as_mut()
                && Rc::ptr_eq(&slot.node, &node)
            {
                slot.dirty = false;
            }
        }
        Ok(())
    }

    /// Drops every node of `tree` without writing (the tree was closed or crashed).
    pub fn forget_tree(&self, tree: TreeId) {
        let mut state = self.state.borrow_mut();
        let pages: Vec<(TreeId, PageId)> = state
            .index
            .keys()
            .filter(|key| key.0 == tree)
            .copied()
            .collect();
        for key in pages {
            if let Some(slot_index) = state.index.remove(&key) {
                state.slots[slot_index] = None;
            }
        }
        state.writing.retain(|key, _| key.0 != tree);
    }
}
