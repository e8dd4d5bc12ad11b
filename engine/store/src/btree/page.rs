//! B-tree page format (FORMAT.md, "B-tree"): a 32-byte header and a payload per 16 KiB page.
//!
//! Pure encoding and decoding. Every page carries its own id and a checksum over everything
//! after the checksum field, so a bit flip, a torn page or a page written to the wrong place
//! is detected when the page is read.
//!
//! # Why 16 KiB pages
//! Keys must be as large as DynamoDB's: a storage key (hash, partition-key length, partition
//! key of up to 2048 bytes, sort key of up to 1024 bytes) is at most
//! [`DYNAMODB_STORAGE_KEY_BYTES_MAX`] = 3082 bytes, budgeted as [`KEY_BYTES_MAX`] = 3200. A
//! branch split needs three maximal keys in one page, which 4 KiB pages cannot hold. Of the two
//! ways out, spilling long keys to overflow pages makes every comparison against a spilled
//! separator a dependent read (or a cached node's size unbounded by its page), and adds key
//! chains to copy-on-write and the free-page accounting; a larger page keeps every key whole
//! in its node and the tree code unchanged. 16 KiB is the smallest power-of-two multiple of the
//! 4 KiB I/O unit that holds three maximal branch entries, and it also holds two leaf entries
//! with a maximal key and an inline value of up to 4 KiB. Costs: an uncached point read
//! transfers 16 KiB instead of 4 KiB (one NVMe command either way, more bandwidth);
//! copy-on-write rewrites 16 KiB per changed node and checkpoint; a page cache of the same
//! memory holds a quarter as many nodes (each with four times the entries, in a shallower
//! tree).

use crate::little_endian::{read_u16, read_u32, read_u64};
use shoal_io::IO_ALIGNMENT_BYTES;

/// The unit of B-tree I/O: four times the 4 KiB direct-I/O alignment (see the module docs).
pub const PAGE_BYTES: usize = 4 * IO_ALIGNMENT_BYTES;
pub const PAGE_HEADER_BYTES: usize = 32;
pub const PAGE_PAYLOAD_BYTES: usize = PAGE_BYTES - PAGE_HEADER_BYTES;
/// 2: 16 KiB pages and 3200-byte keys (1 had 4 KiB pages and 1 KiB keys); FORMAT.md.
pub const BTREE_FORMAT_VERSION: u8 = 2;
const _: () = assert!(PAGE_BYTES.is_multiple_of(IO_ALIGNMENT_BYTES));

/// Page numbers: the byte offset of page `id` is `id * PAGE_BYTES`. Pages 0 and 1 are the two
/// meta slots, so 0 never names a tree page and serves as "none".
pub type PageId = u64;
pub const META_PAGE_IDS: [PageId; 2] = [0, 1];
pub const NO_PAGE: PageId = 0;

/// The largest storage key DynamoDB's limits allow, as `shoal_model::key` lays it out: hash
/// (u64) + partition-key length (u16) + partition key (`PARTITION_KEY_BYTES_MAX` = 2048) + sort
/// key (`SORT_KEY_BYTES_MAX` = 1024). shoal-store does not depend on shoal-model, so the figures
/// are repeated here; `tests/btree_long_keys.rs` checks a key of this size end to end.
pub const DYNAMODB_STORAGE_KEY_BYTES_MAX: usize = 8 + 2 + 2048 + 1024;
/// Longest key: a maximal storage key plus room for a prefix the node may add (a table id, a
/// key-space tag). Three keys must fit in a branch page so that a split always makes progress.
pub const KEY_BYTES_MAX: usize = 3200;
/// Values longer than this go to overflow pages, so a leaf always holds at least two entries.
pub const INLINE_VALUE_BYTES_MAX: usize = 4096;

/// key length (2), value tag (1), value length (4).
const LEAF_ENTRY_OVERHEAD_BYTES: usize = 7;
/// An overflow value stores its first page instead of its bytes.
const OVERFLOW_REFERENCE_BYTES: usize = 8;
/// key length (2), child page (8).
const BRANCH_ENTRY_OVERHEAD_BYTES: usize = 10;

pub const LEAF_ENTRY_BYTES_MAX: usize =
    LEAF_ENTRY_OVERHEAD_BYTES + KEY_BYTES_MAX + INLINE_VALUE_BYTES_MAX;
pub const BRANCH_ENTRY_BYTES_MAX: usize = BRANCH_ENTRY_OVERHEAD_BYTES + KEY_BYTES_MAX;
const _: () = assert!(KEY_BYTES_MAX >= DYNAMODB_STORAGE_KEY_BYTES_MAX);
const _: () = assert!(2 * LEAF_ENTRY_BYTES_MAX <= PAGE_PAYLOAD_BYTES);
const _: () = assert!(INLINE_VALUE_BYTES_MAX >= OVERFLOW_REFERENCE_BYTES);
const _: () = assert!(3 * BRANCH_ENTRY_BYTES_MAX <= PAGE_PAYLOAD_BYTES);
const _: () = assert!(PAGE_PAYLOAD_BYTES <= u16::MAX as usize);
const _: () = assert!(KEY_BYTES_MAX <= u16::MAX as usize);

/// "SHOALBTM" as a little-endian u64: first payload bytes of a meta page.
pub const META_MAGIC: u64 = u64::from_le_bytes(*b"SHOALBTM");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageType {
    Meta = 1,
    Leaf = 2,
    Branch = 3,
    Overflow = 4,
    FreeList = 5,
}

impl PageType {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => PageType::Meta,
            2 => PageType::Leaf,
            3 => PageType::Branch,
            4 => PageType::Overflow,
            5 => PageType::FreeList,
            _ => return None,
        })
    }
}

/// The fixed page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    pub page_type: PageType,
    /// Entries (leaf, branch), page ids (free list) or payload bytes used (overflow).
    pub count: u16,
    pub page_id: PageId,
    /// The LSN of the checkpoint that wrote the page.
    pub page_lsn: u64,
    /// Branch: the first child. Overflow and free list: the next page of the chain, or 0.
    pub link: PageId,
}

/// Why a page was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageDamage {
    /// All zero: never written.
    Zero,
    Checksum,
    UnknownType(u8),
    UnsupportedVersion(u8),
    /// The page says it is another page: a misdirected write.
    WrongPageId(PageId),
    WrongType(PageType),
    /// The payload does not parse (lengths past the end, keys out of order).
    Malformed,
    // The rest are found by a whole-tree verification (`btree::verify`), not by reading one
    // page: each is reported at the page that holds the bad reference or key.
    /// The page references a page outside the file's pages, or a meta slot.
    ReferenceOutOfRange(PageId),
    /// The page references a page that something else in the tree or the free list also uses.
    ReferencedTwice(PageId),
    /// A leaf at another depth than the first leaf: the tree is not balanced.
    LeafDepth {
        depth: u32,
        expected: u32,
    },
    /// A leaf key outside the range its ancestors' separators give it.
    KeyOutsideParentRange,
    /// A page below `page_count` that neither the tree nor the free list accounts for.
    Unaccounted,
    /// The meta's item count or bytes differ from what the leaves hold.
    ItemTotalsMismatch {
        meta_items: u64,
        meta_bytes: u64,
        tree_items: u64,
        tree_bytes: u64,
    },
}

/// Builds a page: header, payload, zero fill, checksum.
pub fn encode_page(header: &PageHeader, payload: &[u8], page: &mut [u8]) {
    assert_eq!(page.len(), PAGE_BYTES);
    assert!(
        payload.len() <= PAGE_PAYLOAD_BYTES,
        "page payload overflows"
    );
    page.fill(0);
    page[0] = header.page_type as u8;
    page[1] = BTREE_FORMAT_VERSION;
    page[2..4].copy_from_slice(&header.count.to_le_bytes());
    page[8..16].copy_from_slice(&header.page_id.to_le_bytes());
    page[16..24].copy_from_slice(&header.page_lsn.to_le_bytes());
    page[24..32].copy_from_slice(&header.link.to_le_bytes());
    page[PAGE_HEADER_BYTES..PAGE_HEADER_BYTES + payload.len()].copy_from_slice(payload);
    let checksum = crc32c::crc32c(&page[8..]);
    page[4..8].copy_from_slice(&checksum.to_le_bytes());
}

/// Checks a page read from `expected_id` and returns its header and payload.
pub fn decode_page(
    page: &[u8],
    expected_id: PageId,
    expected_type: PageType,
) -> Result<(PageHeader, &[u8]), PageDamage> {
    if page.len() < PAGE_BYTES || page[..PAGE_BYTES].iter().all(|byte| *byte == 0) {
        return Err(PageDamage::Zero);
    }
    if crc32c::crc32c(&page[8..PAGE_BYTES]) != read_u32(page, 4) {
        return Err(PageDamage::Checksum);
    }
    if page[1] != BTREE_FORMAT_VERSION {
        return Err(PageDamage::UnsupportedVersion(page[1]));
    }
    let page_type = PageType::from_byte(page[0]).ok_or(PageDamage::UnknownType(page[0]))?;
    let page_id = read_u64(page, 8);
    if page_id != expected_id {
        return Err(PageDamage::WrongPageId(page_id));
    }
    if page_type != expected_type {
        return Err(PageDamage::WrongType(page_type));
    }
    let header = PageHeader {
        page_type,
        count: read_u16(page, 2),
        page_id,
        page_lsn: read_u64(page, 16),
        link: read_u64(page, 24),
    };
    Ok((header, &page[PAGE_HEADER_BYTES..PAGE_BYTES]))
}

/// The format version of a meta page written by another version of this format (an older
/// file), if `page` looks like one: a meta page type and a version byte that is neither 0 nor
/// ours. Its checksum is not checked: an earlier version's page size, and so what its checksum
/// covers, differs. Used only when no meta slot is valid, to refuse the file instead of taking
/// it for a creation that never finished and overwriting it.
pub fn foreign_meta_format_version(page: &[u8]) -> Option<u8> {
    let (&page_type, &version) = (page.first()?, page.get(1)?);
    let foreign =
        page_type == PageType::Meta as u8 && version != 0 && version != BTREE_FORMAT_VERSION;
    foreign.then_some(version)
}

/// A value as stored in a leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredValue {
    Inline(Vec<u8>),
    /// The value lives in a chain of overflow pages starting at `first_page`.
    Overflow {
        first_page: PageId,
        value_bytes: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafEntry {
    pub key: Vec<u8>,
    pub value: StoredValue,
}

impl LeafEntry {
    pub fn encoded_bytes(&self) -> usize {
        LEAF_ENTRY_OVERHEAD_BYTES
            + self.key.len()
            + match &self.value {
                StoredValue::Inline(bytes) => bytes.len(),
                StoredValue::Overflow { .. } => OVERFLOW_REFERENCE_BYTES,
            }
    }
}

/// A decoded tree node. Branch: keys below `entries[0].0` live under `first_child`; keys in
/// `[entries[i].0, entries[i + 1].0)` under `entries[i].1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Leaf(Vec<LeafEntry>),
    Branch {
        first_child: PageId,
        entries: Vec<(Vec<u8>, PageId)>,
    },
}

pub fn branch_entry_bytes(key: &[u8]) -> usize {
    BRANCH_ENTRY_OVERHEAD_BYTES + key.len()
}

const VALUE_TAG_INLINE: u8 = 1;
const VALUE_TAG_OVERFLOW: u8 = 2;

impl Node {
    pub fn payload_bytes(&self) -> usize {
        match self {
            Node::Leaf(entries) => entries.iter().map(LeafEntry::encoded_bytes).sum(),
            Node::Branch { entries, .. } => {
                entries.iter().map(|(key, _)| branch_entry_bytes(key)).sum()
            }
        }
    }

    pub fn fits(&self) -> bool {
        self.payload_bytes() <= PAGE_PAYLOAD_BYTES
    }

    /// Encodes the node as page `page_id` written by the checkpoint at `page_lsn`.
    pub fn encode(&self, page_id: PageId, page_lsn: u64, page: &mut [u8]) {
        let mut payload = Vec::with_capacity(self.payload_bytes());
        let (page_type, count, link) = match self {
            Node::Leaf(entries) => {
                for entry in entries {
                    payload.extend_from_slice(&(entry.key.len() as u16).to_le_bytes());
                    match &entry.value {
                        StoredValue::Inline(bytes) => {
                            payload.push(VALUE_TAG_INLINE);
                            payload.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                            payload.extend_from_slice(&entry.key);
                            payload.extend_from_slice(bytes);
                        }
                        StoredValue::Overflow {
                            first_page,
                            value_bytes,
                        } => {
                            payload.push(VALUE_TAG_OVERFLOW);
                            payload.extend_from_slice(&value_bytes.to_le_bytes());
                            payload.extend_from_slice(&entry.key);
                            payload.extend_from_slice(&first_page.to_le_bytes());
                        }
                    }
                }
                (PageType::Leaf, entries.len(), NO_PAGE)
            }
            Node::Branch {
                first_child,
                entries,
            } => {
                for (key, child) in entries {
                    payload.extend_from_slice(&(key.len() as u16).to_le_bytes());
                    payload.extend_from_slice(&child.to_le_bytes());
                    payload.extend_from_slice(key);
                }
                (PageType::Branch, entries.len(), *first_child)
            }
        };
        let header = PageHeader {
            page_type,
            count: count as u16,
            page_id,
            page_lsn,
            link,
        };
        encode_page(&header, &payload, page);
    }

    /// Decodes page `page_id`, which must be a leaf or a branch.
    pub fn decode(page: &[u8], page_id: PageId) -> Result<Node, PageDamage> {
        let node_type = match page.first().copied().and_then(PageType::from_byte) {
            Some(PageType::Branch) => PageType::Branch,
            _ => PageType::Leaf,
        };
        let (header, payload) = decode_page(page, page_id, node_type)?;
        let mut position = 0;
        let take = |position: &mut usize, len: usize| -> Result<&[u8], PageDamage> {
            let end = position.checked_add(len).ok_or(PageDamage::Malformed)?;
            let bytes = payload.get(*position..end).ok_or(PageDamage::Malformed)?;
            *position = end;
            Ok(bytes)
        };
        let node = match node_type {
            PageType::Leaf => {
                let mut entries: Vec<LeafEntry> = Vec::with_capacity(header.count as usize);
                for _ in 0..header.count {
                    let key_bytes = read_u16(take(&mut position, 2)?, 0) as usize;
                    let tag = take(&mut position, 1)?[0];
                    let value_bytes = read_u32(take(&mut position, 4)?, 0);
                    let key = take(&mut position, key_bytes)?.to_vec();
                    let value = match tag {
                        VALUE_TAG_INLINE => {
                            StoredValue::Inline(take(&mut position, value_bytes as usize)?.to_vec())
                        }
                        VALUE_TAG_OVERFLOW => StoredValue::Overflow {
                            first_page: read_u64(take(&mut position, 8)?, 0),
                            value_bytes,
                        },
                        _ => return Err(PageDamage::Malformed),
                    };
                    if entries.last().is_some_and(|last| last.key >= key) {
                        return Err(PageDamage::Malformed);
                    }
                    entries.push(LeafEntry { key, value });
                }
                Node::Leaf(entries)
            }
            _ => {
                let mut entries: Vec<(Vec<u8>, PageId)> = Vec::with_capacity(header.count as usize);
                for _ in 0..header.count {
                    let key_bytes = read_u16(take(&mut position, 2)?, 0) as usize;
                    let child = read_u64(take(&mut position, 8)?, 0);
                    let key = take(&mut position, key_bytes)?.to_vec();
                    if entries.last().is_some_and(|(last, _)| *last >= key) {
                        return Err(PageDamage::Malformed);
                    }
                    entries.push((key, child));
                }
                Node::Branch {
                    first_child: header.link,
                    entries,
                }
            }
        };
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_leaf() -> Node {
        Node::Leaf(vec![
            LeafEntry {
                key: b"apple".to_vec(),
                value: StoredValue::Inline(b"red".to_vec()),
            },
            LeafEntry {
                key: b"pear".to_vec(),
                value: StoredValue::Overflow {
                    first_page: 42,
                    value_bytes: 100_000,
                },
            },
        ])
    }

    #[test]
    fn nodes_round_trip() {
        let mut page = vec![0; PAGE_BYTES];
        let leaf = sample_leaf();
        leaf.encode(7, 3, &mut page);
        assert_eq!(Node::decode(&page, 7), Ok(leaf));
        let branch = Node::Branch {
            first_child: 9,
            entries: vec![(b"m".to_vec(), 10), (b"t".to_vec(), 11)],
        };
        branch.encode(8, 3, &mut page);
        assert_eq!(Node::decode(&page, 8), Ok(branch));
    }

    /// The smallest nodes a split can leave must fit: three maximal branch entries, two leaf
    /// entries with a maximal key and the largest inline value.
    #[test]
    fn nodes_of_maximal_entries_fit_and_round_trip() {
        let mut page = vec![0; PAGE_BYTES];
        let maximal_key = |last: u8| {
            let mut key = vec![b'k'; KEY_BYTES_MAX];
            key[KEY_BYTES_MAX - 1] = last;
            key
        };
        let branch = Node::Branch {
            first_child: 9,
            entries: (0..3)
                .map(|index| (maximal_key(index), 10 + u64::from(index)))
                .collect(),
        };
        assert!(branch.fits());
        branch.encode(8, 3, &mut page);
        assert_eq!(Node::decode(&page, 8), Ok(branch));
        let leaf = Node::Leaf(
            (0..2)
                .map(|index| LeafEntry {
                    key: maximal_key(index),
                    value: StoredValue::Inline(vec![index; INLINE_VALUE_BYTES_MAX]),
                })
                .collect(),
        );
        assert!(leaf.fits());
        leaf.encode(7, 3, &mut page);
        assert_eq!(Node::decode(&page, 7), Ok(leaf));
    }

    #[test]
    fn a_meta_page_of_another_version_is_recognised() {
        let mut page = vec![0; PAGE_BYTES];
        assert_eq!(foreign_meta_format_version(&page), None, "never written");
        page[0] = PageType::Meta as u8;
        page[1] = BTREE_FORMAT_VERSION;
        assert_eq!(foreign_meta_format_version(&page), None, "ours, damaged");
        page[1] = 1;
        assert_eq!(foreign_meta_format_version(&page), Some(1));
        page[0] = PageType::Leaf as u8;
        assert_eq!(foreign_meta_format_version(&page), None, "not a meta page");
    }

    #[test]
    fn damage_is_detected() {
        let mut page = vec![0; PAGE_BYTES];
        sample_leaf().encode(7, 3, &mut page);
        assert_eq!(Node::decode(&page, 8), Err(PageDamage::WrongPageId(7)));
        for byte in [0, 5, 9, 40, PAGE_BYTES - 1] {
            let mut flipped = page.clone();
            flipped[byte] ^= 0x40;
            assert!(Node::decode(&flipped, 7).is_err(), "flip at {byte}");
        }
        assert_eq!(Node::decode(&vec![0; PAGE_BYTES], 7), Err(PageDamage::Zero));
    }
}
