//! The B-tree of one partition replica: one file of 16 KiB pages, copy-on-write, made durable
//! by checkpoints.
//!
//! Lives on the core of the shard that owns the partition; its nodes are cached in the shard's
//! [`PageCache`]. Keys are byte strings up to [`KEY_BYTES_MAX`] (3200 bytes: DynamoDB's largest
//! storage key, 3082 bytes, plus a prefix), always stored whole in their node; values byte
//! strings up to `value_bytes_max` (400 KB by default, at most [`VALUE_BYTES_LIMIT`]); values
//! longer than [`INLINE_VALUE_BYTES_MAX`] live in chains of overflow pages. The page size is
//! chosen so that every leaf holds at least two maximal entries and every branch at least three
//! maximal keys, so any split leaves every piece non-empty; why a larger page rather than keys
//! spilled to overflow pages, and what it costs, is in [`page`]'s module docs.
//!
//! # Crash safety: copy-on-write with two meta slots
//! Pages 0 and 1 are meta slots; creating a tree writes an empty meta into slot 0 first. The durable tree is the one the valid meta with the highest
//! sequence describes. Between checkpoints, a change never touches a page that the durable tree
//! (or its free list) references: the changed node goes to a *fresh* page and its parent is
//! changed the same way, up to the root. A checkpoint writes the dirty nodes and the free list,
//! syncs, writes the meta to the other slot, and syncs again. A crash at any point leaves the
//! previous meta and everything it references intact, so recovery finds either the old or the
//! new checkpoint, complete. The checkpoint records the LSN it covers; the WAL replays the rest.
//!
//! # Free pages
//! `free` pages are referenced by nothing durable and may be reused now. A page of the durable
//! tree that the current tree stops using goes to `pending_free`: it is reusable only once the
//! next checkpoint is durable. The free list (free, pending and the previous free list's own
//! pages) is written at every checkpoint as a chain of free-list pages.
//!
//! # Storage faults
//! Every page and meta write is read back before it counts ([`write_verified`]), so a write the
//! device lost, tore, misdirected or flipped fails the operation instead of leaving a stale page
//! with a valid checksum and the right page id behind (nothing else could tell it from the
//! current one: a parent does not record its children's checksums). Every read checks the
//! page's checksum, type and id. A meta slot that is neither valid nor all zero is corruption,
//! never a reason to fall back to the other slot (see `open`).
//!
//! # Simplifications (documented limits)
//! Deletes remove empty nodes but do not merge underfull siblings. Damage at rest to a page
//! after its write was read back is detected (checksum, page id) but not repaired here: the
//! replica is rebuilt from its peers.
//!
//! # Invariants
//! 1. Every page id below `page_count` is in exactly one of: the current tree (nodes and
//!    overflow chains), `free`, `pending_free`, `freelist_pages`, or it is garbage that the
//!    durable meta lists as free.
//! 2. A page in `fresh` is not referenced by the durable meta; only fresh pages are written
//!    between checkpoints.
//! 3. Keys in a node are strictly increasing; a branch separates its children by its keys.

pub mod cache;
pub mod page;
pub mod verify;

use crate::little_endian::read_u64;
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::ops::Bound;
use std::rc::Rc;

use shoal_io::storage::{sync_or_stop, write_verified};
use shoal_io::{OpenMode, Storage, StorageDirectory, StorageError};

pub use cache::{PageCache, TreeId};
pub use page::KEY_BYTES_MAX;
use page::{
    INLINE_VALUE_BYTES_MAX, LeafEntry, META_MAGIC, META_PAGE_IDS, NO_PAGE, Node, PAGE_BYTES,
    PAGE_PAYLOAD_BYTES, PageDamage, PageHeader, PageId, PageType, StoredValue, decode_page,
    encode_page, foreign_meta_format_version,
};

/// The largest value any configuration allows (the 4 MB item limit plus its key and framing).
pub const VALUE_BYTES_LIMIT: usize = (4 << 20) + (64 << 10);
/// DynamoDB's default item limit.
pub const DEFAULT_VALUE_BYTES_MAX: usize = 400 * 1024;
/// Page ids per free-list page.
const FREE_LIST_IDS_PER_PAGE: usize = PAGE_PAYLOAD_BYTES / 8;
const _: () = assert!(DEFAULT_VALUE_BYTES_MAX <= VALUE_BYTES_LIMIT);
const _: () = assert!(VALUE_BYTES_LIMIT <= u32::MAX as usize);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BTreeConfig {
    pub value_bytes_max: usize,
}

impl Default for BTreeConfig {
    fn default() -> Self {
        Self {
            value_bytes_max: DEFAULT_VALUE_BYTES_MAX,
        }
    }
}

#[derive(Debug)]
pub enum BTreeError {
    Storage(StorageError),
    /// A page failed its checks when read.
    Corruption {
        page: PageId,
        damage: PageDamage,
    },
    /// Neither meta slot is valid although the file holds pages.
    NoValidMeta,
    /// The key is longer than [`KEY_BYTES_MAX`]; nothing was changed.
    KeyTooLarge {
        key_bytes: usize,
        key_bytes_max: usize,
    },
    ValueTooLarge {
        value_bytes: usize,
        value_bytes_max: usize,
    },
    ConfigInvalid(&'static str),
    /// The file was written by another B-tree format version (FORMAT.md, version history);
    /// it is neither read nor overwritten.
    UnsupportedFormatVersion {
        found: u8,
        supported: u8,
    },
}

impl fmt::Display for BTreeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BTreeError::Storage(error) => write!(formatter, "B-tree storage error: {error}"),
            BTreeError::Corruption { page, damage } => {
                write!(formatter, "B-tree page {page} is damaged: {damage:?}")
            }
            BTreeError::NoValidMeta => write!(formatter, "no valid B-tree meta page"),
            BTreeError::KeyTooLarge {
                key_bytes,
                key_bytes_max,
            } => write!(
                formatter,
                "key of {key_bytes} bytes exceeds the B-tree's limit of {key_bytes_max} bytes"
            ),
            BTreeError::ValueTooLarge {
                value_bytes,
                value_bytes_max,
            } => write!(
                formatter,
                "value of {value_bytes} bytes exceeds {value_bytes_max}"
            ),
            BTreeError::ConfigInvalid(reason) => {
                write!(formatter, "invalid B-tree config: {reason}")
            }
            BTreeError::UnsupportedFormatVersion { found, supported } => write!(
                formatter,
                "B-tree file of format version {found}; this build reads version {supported}"
            ),
        }
    }
}

impl std::error::Error for BTreeError {}

impl From<StorageError> for BTreeError {
    fn from(error: StorageError) -> Self {
        BTreeError::Storage(error)
    }
}

/// A key and its value, as scans return them.
pub type Item = (Vec<u8>, Vec<u8>);

/// Scan order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// What the meta page of a checkpoint records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Meta {
    sequence: u64,
    checkpoint_lsn: u64,
    root: PageId,
    page_count: u64,
    free_list_head: PageId,
    item_count: u64,
    /// Key plus value bytes of all items.
    item_bytes: u64,
}

impl Meta {
    fn encode(&self, slot: PageId, page: &mut [u8]) {
        let mut payload = [0u8; 56];
        payload[0..8].copy_from_slice(&META_MAGIC.to_le_bytes());
        payload[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        payload[16..24].copy_from_slice(&self.root.to_le_bytes());
        payload[24..32].copy_from_slice(&self.page_count.to_le_bytes());
        payload[32..40].copy_from_slice(&self.free_list_head.to_le_bytes());
        payload[40..48].copy_from_slice(&self.item_count.to_le_bytes());
        payload[48..56].copy_from_slice(&self.item_bytes.to_le_bytes());
        let header = PageHeader {
            page_type: PageType::Meta,
            count: 0,
            page_id: slot,
            page_lsn: self.checkpoint_lsn,
            link: NO_PAGE,
        };
        encode_page(&header, &payload, page);
    }

    fn decode(page: &[u8], slot: PageId) -> Result<Meta, PageDamage> {
        let (header, payload) = decode_page(page, slot, PageType::Meta)?;
        if read_u64(payload, 0) != META_MAGIC {
            return Err(PageDamage::Malformed);
        }
        Ok(Meta {
            sequence: read_u64(payload, 8),
            checkpoint_lsn: header.page_lsn,
            root: read_u64(payload, 16),
            page_count: read_u64(payload, 24),
            free_list_head: read_u64(payload, 32),
            item_count: read_u64(payload, 40),
            item_bytes: read_u64(payload, 48),
        })
    }
}

/// Counters of one tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BTreeStats {
    pub item_count: u64,
    /// Key plus value bytes of all items.
    pub item_bytes: u64,
    pub page_count: u64,
    pub free_pages: usize,
    pub lsn_applied: u64,
    pub lsn_durable: u64,
    pub checkpoints: u64,
}

/// One partition replica's B-tree.
#[derive(Debug)]
pub struct BTree<F: Storage> {
    tree: TreeId,
    file: Rc<F>,
    cache: Rc<PageCache<F>>,
    config: BTreeConfig,
    root: PageId,
    page_count: u64,
    free: BTreeSet<PageId>,
    pending_free: Vec<PageId>,
    fresh: HashSet<PageId>,
    free_list_pages: Vec<PageId>,
    durable_meta: Meta,
    durable_slot: usize,
    lsn_applied: u64,
    item_count: u64,
    item_bytes: u64,
    checkpoints: u64,
}

fn stored_value_bytes(value: &StoredValue) -> usize {
    match value {
        StoredValue::Inline(bytes) => bytes.len(),
        StoredValue::Overflow { value_bytes, .. } => *value_bytes as usize,
    }
}

/// Where a key is inside a branch: the index of the child that covers it (0 = first child).
fn child_index(entries: &[(Vec<u8>, PageId)], key: &[u8]) -> usize {
    entries.partition_point(|(separator, _)| separator.as_slice() <= key)
}

fn child_at(first_child: PageId, entries: &[(Vec<u8>, PageId)], index: usize) -> PageId {
    if index == 0 {
        first_child
    } else {
        entries[index - 1].1
    }
}

/// Splits an overfull node into pieces that each fit a page. Every piece but the first comes
/// with the key that separates it from its left neighbour.
/// Puts `entry` into the sorted leaf `entries`; returns the entry it replaced, if any.
fn leaf_insert(entries: &mut Vec<LeafEntry>, entry: LeafEntry) -> Option<LeafEntry> {
    match entries.binary_search_by(|probe| probe.key.as_slice().cmp(&entry.key)) {
        Ok(found) => Some(std::mem::replace(&mut entries[found], entry)),
        Err(position) => {
            entries.insert(position, entry);
            None
        }
    }
}

fn split_node(node: Node) -> Vec<(Vec<u8>, Node)> {
    if node.fits() {
        return vec![(Vec::new(), node)];
    }
    match node {
        Node::Leaf(entries) => {
            let mut pieces: Vec<(Vec<u8>, Node)> = Vec::new();
            let mut current: Vec<LeafEntry> = Vec::new();
            let mut current_bytes = 0;
            for entry in entries {
                let bytes = entry.encoded_bytes();
                if !current.is_empty() && current_bytes + bytes > PAGE_PAYLOAD_BYTES {
                    let low = if pieces.is_empty() {
                        Vec::new()
                    } else {
                        current[0].key.clone()
                    };
                    pieces.push((low, Node::Leaf(std::mem::take(&mut current))));
                    current_bytes = 0;
                }
                current_bytes += bytes;
                current.push(entry);
            }
            let low = if pieces.is_empty() {
                Vec::new()
            } else {
                current[0].key.clone()
            };
            pieces.push((low, Node::Leaf(current)));
            pieces
        }
        Node::Branch {
            first_child,
            entries,
        } => {
            let mut pieces: Vec<(Vec<u8>, Node)> = Vec::new();
            let mut low = Vec::new();
            let mut piece_first = first_child;
            let mut current: Vec<(Vec<u8>, PageId)> = Vec::new();
            let mut current_bytes = 0;
            for (key, child) in entries {
                let bytes = page::branch_entry_bytes(&key);
                if current_bytes + bytes > PAGE_PAYLOAD_BYTES {
                    // This entry's key moves up to separate the pieces; its child starts the next.
                    pieces.push((
                        std::mem::take(&mut low),
                        Node::Branch {
                            first_child: piece_first,
                            entries: std::mem::take(&mut current),
                        },
                    ));
                    low = key;
                    piece_first = child;
                    current_bytes = 0;
                    continue;
                }
                current_bytes += bytes;
                current.push((key, child));
            }
            pieces.push((
                low,
                Node::Branch {
                    first_child: piece_first,
                    entries: current,
                },
            ));
            pieces
        }
    }
}

/// Does the key range allow keys below `high` (exclusive)?
fn below_allowed(lower: &Bound<Vec<u8>>, high: Option<&Vec<u8>>) -> bool {
    match (lower, high) {
        (_, None) | (Bound::Unbounded, _) => true,
        (Bound::Included(low) | Bound::Excluded(low), Some(high)) => high > low,
    }
}

/// Does the key range allow keys at or above `low`?
fn above_allowed(upper: &Bound<Vec<u8>>, low: Option<&Vec<u8>>) -> bool {
    match (upper, low) {
        (_, None) | (Bound::Unbounded, _) => true,
        (Bound::Included(high), Some(low)) => low <= high,
        (Bound::Excluded(high), Some(low)) => low < high,
    }
}

fn in_range(key: &[u8], lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    let above_lower = match lower {
        Bound::Unbounded => true,
        Bound::Included(low) => key >= low.as_slice(),
        Bound::Excluded(low) => key > low.as_slice(),
    };
    let below_upper = match upper {
        Bound::Unbounded => true,
        Bound::Included(high) => key <= high.as_slice(),
        Bound::Excluded(high) => key < high.as_slice(),
    };
    above_lower && below_upper
}

impl<F: Storage> BTree<F> {
    /// Opens (or creates) the tree file `name` in `directory`. A new file's directory entry is
    /// made durable before the tree is used, so a checkpoint can never outlive its file.
    pub async fn open_in<D: StorageDirectory<File = F>>(
        directory: &D,
        name: &str,
        tree: TreeId,
        cache: Rc<PageCache<F>>,
        config: BTreeConfig,
    ) -> Result<Self, BTreeError> {
        let existed = directory
            .list()
            .await?
            .iter()
            .any(|existing| existing == name);
        let file = directory.open(name, OpenMode::CreateOrExisting).await?;
        if !existed && let Err(error) = directory.sync().await {
            shoal_io::fatal!("directory sync failed after creating B-tree file {name}: {error}");
        }
        Self::open(file, tree, cache, config).await
    }

    /// Opens the tree in `file` (creating an empty one in an empty file) at its latest durable
    /// checkpoint. `tree` must be unique among the trees sharing `cache`. The caller makes a
    /// new file's directory entry durable ([`BTree::open_in`] does).
    pub async fn open(
        file: F,
        tree: TreeId,
        cache: Rc<PageCache<F>>,
        config: BTreeConfig,
    ) -> Result<Self, BTreeError> {
        if config.value_bytes_max > VALUE_BYTES_LIMIT {
            return Err(BTreeError::ConfigInvalid(
                "value_bytes_max above VALUE_BYTES_LIMIT",
            ));
        }
        cache.forget_tree(tree);
        let file = Rc::new(file);
        let file_bytes = file.len().await?;
        let mut metas = Vec::new();
        let mut foreign_version = None;
        let mut damaged = None;
        for slot in META_PAGE_IDS {
            // A slot past the end of the file was never made durable: the first checkpoint
            // writes slot 1 at the file's end and syncs before it counts, so a crash can leave
            // the file ending inside that page, with the new meta's first sector in it or not.
            // Either way the checkpoint did not complete, and slot 0 holds the durable meta.
            if file_bytes < (slot + 1) * PAGE_BYTES as u64 {
                continue;
            }
            let page = file.read_at(slot * PAGE_BYTES as u64, PAGE_BYTES).await?;
            match Meta::decode(&page, slot) {
                Ok(meta) => metas.push((meta, slot as usize)),
                // Never written: slot 1 before the first checkpoint, or an unfinished creation.
                Err(_) if page.iter().all(|byte| *byte == 0) => {}
                Err(damage) => match foreign_meta_format_version(&page) {
                    Some(found) => foreign_version = foreign_version.or(Some(found)),
                    None => damaged = damaged.or(Some((slot, damage))),
                },
            }
        }
        // A file of another format version is refused as such, whatever its slots hold.
        if let Some(found) = foreign_version {
            return Err(BTreeError::UnsupportedFormatVersion {
                found,
                supported: page::BTREE_FORMAT_VERSION,
            });
        }
        // Not a torn checkpoint: every meta field lies in the page's first sector and the rest
        // of a meta page is zero in every version written, so a torn write (whole sectors old
        // or new, FORMAT.md) leaves the old meta or the new one, both valid. A non-zero slot
        // that fails its checks was damaged at rest or by a misdirected write. Falling back to
        // the other slot would open an older checkpoint than the WAL may still cover: stop.
        if let Some((page, damage)) = damaged {
            return Err(BTreeError::Corruption { page, damage });
        }
        let mut tree_state = Self {
            tree,
            file,
            cache,
            config,
            root: NO_PAGE,
            page_count: META_PAGE_IDS.len() as u64,
            free: BTreeSet::new(),
            pending_free: Vec::new(),
            fresh: HashSet::new(),
            free_list_pages: Vec::new(),
            durable_meta: Meta::default(),
            durable_slot: 1,
            lsn_applied: 0,
            item_count: 0,
            item_bytes: 0,
            checkpoints: 0,
        };
        let Some((meta, slot)) = metas.into_iter().max_by_key(|(meta, _)| meta.sequence) else {
            // Creation writes an empty meta into slot 0 before anything else, so a file of at
            // most that one page was being created; anything longer has lost both metas.
            if file_bytes > PAGE_BYTES as u64 {
                return Err(BTreeError::NoValidMeta);
            }
            let meta = Meta {
                sequence: 1,
                page_count: META_PAGE_IDS.len() as u64,
                ..Meta::default()
            };
            let mut buffer = tree_state.file.allocate_buffer(PAGE_BYTES);
            meta.encode(META_PAGE_IDS[0], &mut buffer);
            write_verified(&*tree_state.file, buffer, 0).await?;
            sync_or_stop(&*tree_state.file).await;
            tree_state.durable_meta = meta;
            tree_state.durable_slot = 0;
            return Ok(tree_state);
        };
        tree_state.durable_meta = meta;
        tree_state.durable_slot = slot;
        tree_state.root = meta.root;
        tree_state.page_count = meta.page_count;
        tree_state.lsn_applied = meta.checkpoint_lsn;
        tree_state.item_count = meta.item_count;
        tree_state.item_bytes = meta.item_bytes;
        let mut next = meta.free_list_head;
        while next != NO_PAGE {
            let page = tree_state
                .file
                .read_at(next * PAGE_BYTES as u64, PAGE_BYTES)
                .await?;
            let (header, payload) = decode_page(&page, next, PageType::FreeList)
                .map_err(|damage| BTreeError::Corruption { page: next, damage })?;
            for index in 0..header.count as usize {
                tree_state.free.insert(read_u64(payload, index * 8));
            }
            tree_state.free_list_pages.push(next);
            next = header.link;
        }
        Ok(tree_state)
    }

    pub fn stats(&self) -> BTreeStats {
        BTreeStats {
            item_count: self.item_count,
            item_bytes: self.item_bytes,
            page_count: self.page_count,
            free_pages: self.free.len(),
            lsn_applied: self.lsn_applied,
            lsn_durable: self.durable_meta.checkpoint_lsn,
            checkpoints: self.checkpoints,
        }
    }

    fn allocate(&mut self) -> PageId {
        let page = match self.free.pop_first() {
            Some(page) => page,
            None => {
                self.page_count += 1;
                self.page_count - 1
            }
        };
        self.fresh.insert(page);
        page
    }

    /// The current tree stops using `page`.
    fn release(&mut self, page: PageId) {
        self.cache.remove(self.tree, page);
        if self.fresh.remove(&page) {
            self.free.insert(page);
        } else {
            self.pending_free.push(page);
        }
    }

    async fn load(&self, page: PageId) -> Result<Rc<Node>, BTreeError> {
        if let Some(node) = self.cache.get(self.tree, page) {
            return Ok(node);
        }
        let bytes = self
            .file
            .read_at(page * PAGE_BYTES as u64, PAGE_BYTES)
            .await?;
        let node = Rc::new(
            Node::decode(&bytes, page).map_err(|damage| BTreeError::Corruption { page, damage })?,
        );
        self.cache
            .insert(
                self.tree,
                page,
                &self.file,
                Rc::clone(&node),
                false,
                self.lsn_applied,
            )
            .await?;
        Ok(node)
    }

    async fn store(&mut self, page: PageId, node: Node) -> Result<(), BTreeError> {
        assert!(
            self.fresh.contains(&page),
            "invariant 2: only fresh pages are written"
        );
        self.cache
            .insert(
                self.tree,
                page,
                &self.file,
                Rc::new(node),
                true,
                self.lsn_applied,
            )
            .await?;
        Ok(())
    }

    async fn write_overflow(&mut self, value: &[u8]) -> Result<PageId, BTreeError> {
        let chunks: Vec<&[u8]> = value.chunks(PAGE_PAYLOAD_BYTES).collect();
        let pages: Vec<PageId> = chunks.iter().map(|_| self.allocate()).collect();
        for (index, chunk) in chunks.iter().enumerate() {
            let header = PageHeader {
                page_type: PageType::Overflow,
                count: chunk.len() as u16,
                page_id: pages[index],
                page_lsn: self.lsn_applied,
                link: pages.get(index + 1).copied().unwrap_or(NO_PAGE),
            };
            let mut buffer = self.file.allocate_buffer(PAGE_BYTES);
            encode_page(&header, chunk, &mut buffer);
            self.cache
                .write_exclusively(self.tree, &self.file, pages[index], buffer)
                .await?;
        }
        Ok(pages[0])
    }

    /// Reads an overflow chain; with `collect` false only returns its pages.
    async fn read_overflow(
        &self,
        first_page: PageId,
        value_bytes: u32,
        collect: bool,
    ) -> Result<(Vec<u8>, Vec<PageId>), BTreeError> {
        let mut value = Vec::with_capacity(if collect { value_bytes as usize } else { 0 });
        let mut pages = Vec::new();
        let mut next = first_page;
        let mut remaining = value_bytes as usize;
        while remaining > 0 {
            if next == NO_PAGE {
                return Err(BTreeError::Corruption {
                    page: pages.last().copied().unwrap_or(first_page),
                    damage: PageDamage::Malformed,
                });
            }
            let bytes = self
                .file
                .read_at(next * PAGE_BYTES as u64, PAGE_BYTES)
                .await?;
            let (header, payload) = decode_page(&bytes, next, PageType::Overflow)
                .map_err(|damage| BTreeError::Corruption { page: next, damage })?;
            let used = header.count as usize;
            if used == 0 || used > remaining || used > PAGE_PAYLOAD_BYTES {
                return Err(BTreeError::Corruption {
                    page: next,
                    damage: PageDamage::Malformed,
                });
            }
            if collect {
                value.extend_from_slice(&payload[..used]);
            }
            remaining -= used;
            pages.push(next);
            next = header.link;
        }
        Ok((value, pages))
    }

    async fn release_value(&mut self, value: &StoredValue) -> Result<(), BTreeError> {
        if let StoredValue::Overflow {
            first_page,
            value_bytes,
        } = value
        {
            let (_, pages) = self.read_overflow(*first_page, *value_bytes, false).await?;
            for page in pages {
                self.release(page);
            }
        }
        Ok(())
    }

    async fn materialise(&self, value: &StoredValue) -> Result<Vec<u8>, BTreeError> {
        match value {
            StoredValue::Inline(bytes) => Ok(bytes.clone()),
            StoredValue::Overflow {
                first_page,
                value_bytes,
            } => Ok(self.read_overflow(*first_page, *value_bytes, true).await?.0),
        }
    }

    /// The path from the root to the leaf that covers `key`: (page, node, child index).
    async fn descend(
        &self,
        key: &[u8],
    ) -> Result<(Vec<(PageId, Rc<Node>, usize)>, PageId, Rc<Node>), BTreeError> {
        // The branches on the path stay shared with the cache: most puts change only a leaf
        // that is already fresh (written in place), and then no ancestor is copied at all.
        // `write_up` copies a branch only when it changes it.
        let mut path = Vec::new();
        let mut page = self.root;
        loop {
            let node = self.load(page).await?;
            match &*node {
                Node::Leaf(_) => return Ok((path, page, node)),
                Node::Branch {
                    first_child,
                    entries,
                } => {
                    let index = child_index(entries, key);
                    let child = child_at(*first_child, entries, index);
                    path.push((page, Rc::clone(&node), index));
                    page = child;
                }
            }
        }
    }

    /// Writes `pieces` (the new contents of `old_page`, split if needed) and fixes the
    /// ancestors on `path`, copying each changed node to a fresh page (invariant 2).
    async fn write_up(
        &mut self,
        mut path: Vec<(PageId, Rc<Node>, usize)>,
        mut old_page: PageId,
        mut pieces: Vec<(Vec<u8>, Node)>,
    ) -> Result<(), BTreeError> {
        loop {
            let mut placed: Vec<(Vec<u8>, PageId)> = Vec::with_capacity(pieces.len());
            for (index, (low, node)) in pieces.into_iter().enumerate() {
                let page = if index == 0 && self.fresh.contains(&old_page) {
                    old_page
                } else if index == 0 {
                    self.release(old_page);
                    self.allocate()
                } else {
                    self.allocate()
                };
                self.store(page, node).await?;
                placed.push((low, page));
            }
            if placed.len() == 1 && placed[0].1 == old_page {
                // Updated in place on a fresh page: the ancestors still point at it.
                return Ok(());
            }
            match path.pop() {
                None => {
                    // The root changed or split: build new levels above until one node is left.
                    let mut level = placed;
                    while level.len() > 1 {
                        let first_child = level.remove(0).1;
                        let root = Node::Branch {
                            first_child,
                            entries: std::mem::take(&mut level),
                        };
                        for (low, node) in split_node(root) {
                            let page = self.allocate();
                            self.store(page, node).await?;
                            level.push((low, page));
                        }
                    }
                    self.root = level[0].1;
                    return Ok(());
                }
                Some((parent_page, parent, index)) => {
                    let Node::Branch {
                        mut first_child,
                        mut entries,
                    } = Rc::unwrap_or_clone(parent)
                    else {
                        unreachable!("paths hold branches")
                    };
                    let mut placed = placed.into_iter();
                    let (_, first) = placed
                        .next()
                        .unwrap_or_else(|| unreachable!("at least one piece"));
                    if index == 0 {
                        first_child = first;
                    } else {
                        entries[index - 1].1 = first;
                    }
                    for (offset, (low, page)) in placed.enumerate() {
                        entries.insert(index + offset, (low, page));
                    }
                    pieces = split_node(Node::Branch {
                        first_child,
                        entries,
                    });
                    old_page = parent_page;
                }
            }
        }
    }

    /// Whether a put of `key` and `value` is within this tree's limits, without changing it.
    /// Callers that apply several puts as one unit check them all first, so a rejected unit
    /// changes nothing.
    pub fn check_put(&self, key: &[u8], value: &[u8]) -> Result<(), BTreeError> {
        if key.len() > KEY_BYTES_MAX {
            return Err(BTreeError::KeyTooLarge {
                key_bytes: key.len(),
                key_bytes_max: KEY_BYTES_MAX,
            });
        }
        if value.len() > self.config.value_bytes_max {
            return Err(BTreeError::ValueTooLarge {
                value_bytes: value.len(),
                value_bytes_max: self.config.value_bytes_max,
            });
        }
        Ok(())
    }

    /// Records that every change up to `lsn` is reflected, also when the change at `lsn` touched
    /// nothing in this tree (a replicated no-op), so the next checkpoint reports `lsn`.
    pub fn note_applied(&mut self, lsn: u64) {
        self.lsn_applied = self.lsn_applied.max(lsn);
    }

    /// Inserts or replaces `key`, as the change at `lsn`.
    pub async fn put(&mut self, key: &[u8], value: &[u8], lsn: u64) -> Result<(), BTreeError> {
        self.check_put(key, value)?;
        self.lsn_applied = self.lsn_applied.max(lsn);
        let stored = if value.len() > INLINE_VALUE_BYTES_MAX {
            StoredValue::Overflow {
                first_page: self.write_overflow(value).await?,
                value_bytes: value.len() as u32,
            }
        } else {
            StoredValue::Inline(value.to_vec())
        };
        let entry = LeafEntry {
            key: key.to_vec(),
            value: stored,
        };
        if self.root == NO_PAGE {
            let page = self.allocate();
            self.store(page, Node::Leaf(vec![entry])).await?;
            self.root = page;
            self.item_count += 1;
            self.item_bytes += (key.len() + value.len()) as u64;
            return Ok(());
        }
        let (path, leaf_page, leaf) = self.descend(key).await?;
        if self.fresh.contains(&leaf_page) {
            // Written since the last checkpoint: the page may change in place (invariant 2),
            // and the cached node is changed without copying its entries.
            drop(leaf);
            let mut pending = Some(entry);
            let changed =
                self.cache
                    .update_in_place(self.tree, leaf_page, self.lsn_applied, |node| {
                        let Node::Leaf(entries) = node else {
                            unreachable!("descend ends at a leaf")
                        };
                        let entry = pending.take().unwrap_or_else(|| unreachable!("run once"));
                        let replaced = leaf_insert(entries, entry);
                        (replaced, node.fits())
                    });
            if let Some((replaced, fits)) = changed {
                self.account_put(key, value, replaced.as_ref()).await?;
                if fits {
                    return Ok(());
                }
                // Grown past one page: split it like any other changed leaf. The first piece
                // goes back to the same fresh page.
                let grown = self
                    .cache
                    .get(self.tree, leaf_page)
                    .unwrap_or_else(|| unreachable!("the page was just changed in the cache"));
                let pieces = split_node(Rc::unwrap_or_clone(grown));
                return self.write_up(path, leaf_page, pieces).await;
            }
            // Not resident (being written back): copy it as below.
            let entry = pending
                .take()
                .unwrap_or_else(|| unreachable!("the change did not run"));
            let leaf = self.load(leaf_page).await?;
            return self
                .put_copying(path, leaf_page, leaf, key, value, entry)
                .await;
        }
        self.put_copying(path, leaf_page, leaf, key, value, entry)
            .await
    }

    /// The put of `entry` into a copy of `leaf`, written to a fresh page.
    async fn put_copying(
        &mut self,
        path: Vec<(PageId, Rc<Node>, usize)>,
        leaf_page: PageId,
        leaf: Rc<Node>,
        key: &[u8],
        value: &[u8],
        entry: LeafEntry,
    ) -> Result<(), BTreeError> {
        let Node::Leaf(mut entries) = Rc::unwrap_or_clone(leaf) else {
            unreachable!("descend ends at a leaf")
        };
        let replaced = leaf_insert(&mut entries, entry);
        self.account_put(key, value, replaced.as_ref()).await?;
        let pieces = split_node(Node::Leaf(entries));
        self.write_up(path, leaf_page, pieces).await
    }

    /// The item count and bytes after a put of `key` and `value` that replaced `replaced`, whose
    /// overflow pages are released.
    async fn account_put(
        &mut self,
        key: &[u8],
        value: &[u8],
        replaced: Option<&LeafEntry>,
    ) -> Result<(), BTreeError> {
        match replaced {
            Some(old) => {
                self.item_bytes -= (key.len() + stored_value_bytes(&old.value)) as u64;
                self.release_value(&old.value).await?;
            }
            None => self.item_count += 1,
        }
        self.item_bytes += (key.len() + value.len()) as u64;
        Ok(())
    }

    /// Removes `key`, as the change at `lsn`; returns whether it was there.
    pub async fn delete(&mut self, key: &[u8], lsn: u64) -> Result<bool, BTreeError> {
        self.lsn_applied = self.lsn_applied.max(lsn);
        if self.root == NO_PAGE {
            return Ok(false);
        }
        let (mut path, leaf_page, leaf) = self.descend(key).await?;
        let Node::Leaf(mut entries) = Rc::unwrap_or_clone(leaf) else {
            unreachable!("descend ends at a leaf")
        };
        let Ok(found) = entries.binary_search_by(|probe| probe.key.as_slice().cmp(key)) else {
            return Ok(false);
        };
        let removed = entries.remove(found);
        self.release_value(&removed.value).await?;
        self.item_count -= 1;
        self.item_bytes -= (removed.key.len() + stored_value_bytes(&removed.value)) as u64;
        if !entries.is_empty() {
            self.write_up(path, leaf_page, vec![(Vec::new(), Node::Leaf(entries))])
                .await?;
            return self.collapse_root().await.map(|()| true);
        }
        // The leaf is empty: unlink it, and every ancestor that becomes childless.
        self.release(leaf_page);
        loop {
            let Some((parent_page, parent, index)) = path.pop() else {
                self.root = NO_PAGE;
                return Ok(true);
            };
            let Node::Branch {
                mut first_child,
                mut entries,
            } = Rc::unwrap_or_clone(parent)
            else {
                unreachable!("paths hold branches")
            };
            if entries.is_empty() {
                self.release(parent_page);
                continue;
            }
            if index == 0 {
                first_child = entries.remove(0).1;
            } else {
                entries.remove(index - 1);
            }
            self.write_up(
                path,
                parent_page,
                vec![(
                    Vec::new(),
                    Node::Branch {
                        first_child,
                        entries,
                    },
                )],
            )
            .await?;
            self.collapse_root().await?;
            return Ok(true);
        }
    }

    /// A root branch with a single child is replaced by that child.
    async fn collapse_root(&mut self) -> Result<(), BTreeError> {
        while self.root != NO_PAGE {
            let node = self.load(self.root).await?;
            match &*node {
                Node::Branch {
                    first_child,
                    entries,
                } if entries.is_empty() => {
                    let child = *first_child;
                    self.release(self.root);
                    self.root = child;
                }
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BTreeError> {
        if self.root == NO_PAGE {
            return Ok(None);
        }
        // A read walks the cached nodes in place. `descend` is for writes: it copies the path
        // and the leaf so copy-on-write can edit them, which a lookup must not pay for.
        let mut page = self.root;
        loop {
            let node = self.load(page).await?;
            match &*node {
                Node::Leaf(entries) => {
                    return match entries.binary_search_by(|probe| probe.key.as_slice().cmp(key)) {
                        Ok(found) => Ok(Some(self.materialise(&entries[found].value).await?)),
                        Err(_) => Ok(None),
                    };
                }
                Node::Branch {
                    first_child,
                    entries,
                } => page = child_at(*first_child, entries, child_index(entries, key)),
            }
        }
    }

    /// Up to `limit` items with keys in `(lower, upper)`, in `direction` order.
    pub async fn scan(
        &self,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Item>, BTreeError> {
        let mut items = Vec::new();
        if self.root == NO_PAGE || limit == 0 {
            return Ok(items);
        }
        // Depth-first over the children that can hold keys in range, in scan order.
        let mut stack = vec![self.root];
        while let Some(page) = stack.pop() {
            let node = self.load(page).await?;
            match &*node {
                Node::Leaf(entries) => {
                    let ordered: Box<dyn Iterator<Item = &LeafEntry>> = match direction {
                        Direction::Forward => Box::new(entries.iter()),
                        Direction::Backward => Box::new(entries.iter().rev()),
                    };
                    for entry in ordered {
                        if !in_range(&entry.key, &lower, &upper) {
                            continue;
                        }
                        items.push((entry.key.clone(), self.materialise(&entry.value).await?));
                        if items.len() == limit {
                            return Ok(items);
                        }
                    }
                }
                Node::Branch {
                    first_child,
                    entries,
                } => {
                    let mut children = Vec::with_capacity(entries.len() + 1);
                    for index in 0..=entries.len() {
                        let low = index.checked_sub(1).map(|previous| &entries[previous].0);
                        let high = entries.get(index).map(|(key, _)| key);
                        if below_allowed(&lower, high) && above_allowed(&upper, low) {
                            children.push(child_at(*first_child, entries, index));
                        }
                    }
                    // The stack pops last first: push in reverse scan order.
                    match direction {
                        Direction::Forward => stack.extend(children.into_iter().rev()),
                        Direction::Backward => stack.extend(children),
                    }
                }
            }
        }
        Ok(items)
    }

    /// Makes the tree durable as of every change applied so far; returns the LSN it covers.
    pub async fn checkpoint(&mut self) -> Result<u64, BTreeError> {
        self.cache.flush_tree(self.tree).await?;
        // The new free list: everything not referenced once the new meta is durable.
        let mut list_count = self.free.len() + self.pending_free.len() + self.free_list_pages.len();
        let list_page_count = list_count.div_ceil(FREE_LIST_IDS_PER_PAGE);
        let mut list_pages = Vec::with_capacity(list_page_count);
        for _ in 0..list_page_count {
            // From `free` or the file end, never from pages the durable meta references.
            let page = match self.free.pop_first() {
                Some(page) => page,
                None => {
                    self.page_count += 1;
                    self.page_count - 1
                }
            };
            list_pages.push(page);
        }
        let mut listed: Vec<PageId> = self
            .free
            .iter()
            .copied()
            .chain(self.pending_free.iter().copied())
            .chain(self.free_list_pages.iter().copied())
            .collect();
        listed.sort_unstable();
        list_count = listed.len();
        assert!(list_count.div_ceil(FREE_LIST_IDS_PER_PAGE) <= list_pages.len());
        let lsn = self.lsn_applied;
        for (index, page) in list_pages.iter().enumerate() {
            let start = (index * FREE_LIST_IDS_PER_PAGE).min(list_count);
            let end = ((index + 1) * FREE_LIST_IDS_PER_PAGE).min(list_count);
            let payload: Vec<u8> = listed[start..end]
                .iter()
                .flat_map(|id| id.to_le_bytes())
                .collect();
            let header = PageHeader {
                page_type: PageType::FreeList,
                count: (end - start) as u16,
                page_id: *page,
                page_lsn: lsn,
                link: list_pages.get(index + 1).copied().unwrap_or(NO_PAGE),
            };
            let mut buffer = self.file.allocate_buffer(PAGE_BYTES);
            encode_page(&header, &payload, &mut buffer);
            self.cache
                .write_exclusively(self.tree, &self.file, *page, buffer)
                .await?;
        }
        sync_or_stop(&*self.file).await;
        let meta = Meta {
            sequence: self.durable_meta.sequence + 1,
            checkpoint_lsn: lsn,
            root: self.root,
            page_count: self.page_count,
            free_list_head: list_pages.first().copied().unwrap_or(NO_PAGE),
            item_count: self.item_count,
            item_bytes: self.item_bytes,
        };
        let slot = 1 - self.durable_slot;
        let mut buffer = self.file.allocate_buffer(PAGE_BYTES);
        meta.encode(slot as PageId, &mut buffer);
        write_verified(&*self.file, buffer, slot as u64 * PAGE_BYTES as u64).await?;
        sync_or_stop(&*self.file).await;
        self.durable_meta = meta;
        self.durable_slot = slot;
        self.free = listed.into_iter().collect();
        self.pending_free.clear();
        self.fresh.clear();
        self.free_list_pages = list_pages;
        self.checkpoints += 1;
        Ok(lsn)
    }

    /// Drops this tree's cached nodes and closes the file (unflushed changes are lost).
    pub async fn close(self) -> Result<(), BTreeError> {
        self.cache.forget_tree(self.tree);
        if let Ok(file) = Rc::try_unwrap(self.file) {
            file.close().await?;
        }
        Ok(())
    }
}
