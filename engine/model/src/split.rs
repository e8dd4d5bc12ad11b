//! Partition splits (issue 19): the split record a parent partition's log applies, and the child
//! each key of the parent's tree goes to (engine/model FORMAT.md, "Partition splits").
//!
//! A split is one log entry of the parent: a put of [`split_key`] whose value names the hash
//! where the parent's range is cut and the two children (their partition ids and map epochs).
//! Every replica applies it at the same slot S; from then on the parent is frozen (every later
//! entry of its log applies as a no-op) and each of its replicas builds both children from its
//! own tree at S, so the children start equal on every replica, at slot S, with the parent's
//! membership at S. Keys whose child cannot be told from the key alone would be lost or
//! doubled by a split, so their presence makes the split entry void instead
//! ([`Placement::Blocking`]): a partition with GSI changes not yet propagated, a stream, or a
//! prepared transaction splits only once they are gone.

use crate::index::{
    APPLIED_CHAIN_MARKER, COLLECTION_REGION_MARKER, INDEX_REGION_PREFIX,
    LOCAL_SECONDARY_INDEXES_MAX, MEMBERSHIP_CONFIG_MARKER,
};

/// The byte after [`INDEX_REGION_PREFIX`] of the split record, below the membership record.
pub const SPLIT_MARKER: u8 = 0xF2;
const _: () = assert!((LOCAL_SECONDARY_INDEXES_MAX as u8) < SPLIT_MARKER);
const _: () = assert!(SPLIT_MARKER < MEMBERSHIP_CONFIG_MARKER);

/// The byte after [`INDEX_REGION_PREFIX`] of the range record: the hashes a split child owns
/// (absent in a partition that was never split: it owns what its map entry says, and takes
/// any key).
pub const RANGE_MARKER: u8 = 0xF1;
const _: () = assert!((LOCAL_SECONDARY_INDEXES_MAX as u8) < RANGE_MARKER);
const _: () = assert!(RANGE_MARKER < SPLIT_MARKER);

/// The key of the range record. Its value: `first:u64 BE  last:u64 BE`, both included.
pub fn range_key() -> Vec<u8> {
    let mut key = INDEX_REGION_PREFIX.to_vec();
    key.push(RANGE_MARKER);
    key
}

/// The value of a range record.
pub fn encode_range((first, last): (u64, u64)) -> Vec<u8> {
    let mut bytes = first.to_be_bytes().to_vec();
    bytes.extend_from_slice(&last.to_be_bytes());
    bytes
}

/// A range record's `(first, last)`; `None` for bytes that are not one.
pub fn decode_range(bytes: &[u8]) -> Option<(u64, u64)> {
    let mut reader = Reader { bytes };
    let range = (reader.u64()?, reader.u64()?);
    (reader.bytes.is_empty() && range.0 <= range.1).then_some(range)
}

/// The partition hash a key of a tree belongs to: an item's (or GSI entry's) leading hash, or
/// the item's hash inside an LSI entry, item-collection record or lock key; `None` for keys
/// that belong to the partition as a whole.
pub fn key_hash(key: &[u8]) -> Option<u64> {
    let hash_at = |offset: usize| -> Option<u64> {
        key.get(offset..offset + 8)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes)
    };
    let Some(rest) = key.strip_prefix(&INDEX_REGION_PREFIX[..]) else {
        return hash_at(0);
    };
    let marker = *rest.first()?;
    let by_item = usize::from(marker) < LOCAL_SECONDARY_INDEXES_MAX
        || marker == COLLECTION_REGION_MARKER
        || marker == crate::transaction::LOCK_MARKER;
    if by_item {
        hash_at(INDEX_REGION_PREFIX.len() + 1)
    } else {
        None
    }
}

/// Calls `found` with the partition hash of every key `request` names: each item key of a
/// write, read, batch or transaction step, each entry key of a GSI partition's apply, and a
/// Query's partition key (its bounds share the hash). A Scan and the partition-wide requests
/// (outbox, streams, backfill, lock listing) name none. A child refuses a request naming a hash outside its range, and a
/// replica's traffic sample counts these hashes.
pub fn for_each_key_hash(request: &crate::request::PreparedRequest, mut found: impl FnMut(u64)) {
    use crate::request::PreparedRequest;
    use std::ops::Bound;
    let mut key = |key: &[u8]| {
        if let Some(hash) = key_hash(key) {
            found(hash);
        }
    };
    match request {
        PreparedRequest::Write(write) => key(&write.storage_key),
        PreparedRequest::BatchWrite(writes) => {
            writes.iter().for_each(|write| key(&write.storage_key));
        }
        PreparedRequest::Get(get) => key(&get.storage_key),
        PreparedRequest::BatchGet(gets) | PreparedRequest::TransactRead { gets } => {
            gets.iter().for_each(|get| key(&get.storage_key));
        }
        PreparedRequest::TransactPrepare { actions, .. } => actions
            .iter()
            .for_each(|action| key(&action.write.storage_key)),
        PreparedRequest::TransactConfirm { storage_keys, .. } => {
            storage_keys.iter().for_each(|storage_key| key(storage_key));
        }
        // A GSI partition's entries are placed by their own leading hash, like items.
        PreparedRequest::IndexApply { changes, .. } => changes
            .iter()
            .for_each(|change| key(&change.change.entry_key)),
        PreparedRequest::Range(range) => {
            if let (
                Bound::Included(lower) | Bound::Excluded(lower),
                Bound::Included(upper) | Bound::Excluded(upper),
            ) = (&range.lower, &range.upper)
            {
                let hash = key_hash(lower);
                if hash.is_some() && hash == key_hash(upper) {
                    key(lower);
                }
            }
        }
        _ => {}
    }
}

/// The range of the `side` child (Left or Right) of a split at `at_hash` of a partition
/// owning `parent`.
pub fn child_range(parent: (u64, u64), at_hash: u64, side: Placement) -> (u64, u64) {
    match side {
        Placement::Left => (parent.0, at_hash.saturating_sub(1).max(parent.0)),
        _ => (at_hash.max(parent.0), parent.1),
    }
}

/// The version byte that starts a split record's value.
const SPLIT_RECORD_VERSION: u8 = 1;
/// Bytes of a split record as the leader proposes it: version, the cut, two children.
const PROPOSED_RECORD_BYTES: usize = 1 + 8 + 2 * 16;
/// The most members a membership written into an applied split record may list (per kind).
/// Groups have a handful; the bound keeps a damaged record from asking for a huge allocation.
const RECORD_MEMBERS_MAX: usize = 64;

/// The key of the split record.
pub fn split_key() -> Vec<u8> {
    let mut key = INDEX_REGION_PREFIX.to_vec();
    key.push(SPLIT_MARKER);
    key
}

/// One child of a split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SplitChild {
    /// Cluster-wide partition id, never used before.
    pub partition: u64,
    /// The partition map epoch the child is routed with.
    pub epoch: u64,
}

/// What every replica adds to the record as it applies the entry: the slot, where the parent's
/// tree stays frozen and the children's logs continue, and the membership the children start
/// with, the parent's applied membership at that slot (the leader cannot know either when it
/// proposes: a membership change may commit between its proposal and its slot).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SplitApplied {
    pub slot: u64,
    pub full_replicas: Vec<u64>,
    pub log_replicas: Vec<u64>,
}

/// A split: the parent's keys whose partition hash is below `at_hash` go to `left`, the others
/// to `right`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitRecord {
    pub at_hash: u64,
    pub left: SplitChild,
    pub right: SplitChild,
    /// `None` in the proposed entry; set by `apply` on every replica.
    pub applied: Option<SplitApplied>,
}

impl SplitRecord {
    /// ```text
    /// version:u8 (1)  at_hash:u64 BE  left_partition:u64 BE  left_epoch:u64 BE
    /// right_partition:u64 BE  right_epoch:u64 BE
    /// [slot:u64 BE  full_count:u16 BE  full:u64 BE*  log_count:u16 BE  log:u64 BE*]
    ///                                                                    once applied
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(PROPOSED_RECORD_BYTES + 4);
        bytes.push(SPLIT_RECORD_VERSION);
        bytes.extend_from_slice(&self.at_hash.to_be_bytes());
        for child in [self.left, self.right] {
            bytes.extend_from_slice(&child.partition.to_be_bytes());
            bytes.extend_from_slice(&child.epoch.to_be_bytes());
        }
        if let Some(applied) = &self.applied {
            bytes.extend_from_slice(&applied.slot.to_be_bytes());
            for members in [&applied.full_replicas, &applied.log_replicas] {
                bytes.extend_from_slice(&(members.len() as u16).to_be_bytes());
                for member in members {
                    bytes.extend_from_slice(&member.to_be_bytes());
                }
            }
        }
        bytes
    }

    /// `None` for bytes that are not a split record of this version.
    pub fn decode(bytes: &[u8]) -> Option<SplitRecord> {
        let mut reader = Reader { bytes };
        if reader.u8()? != SPLIT_RECORD_VERSION {
            return None;
        }
        let at_hash = reader.u64()?;
        let left = SplitChild {
            partition: reader.u64()?,
            epoch: reader.u64()?,
        };
        let right = SplitChild {
            partition: reader.u64()?,
            epoch: reader.u64()?,
        };
        let applied = if reader.bytes.is_empty() {
            None
        } else {
            let slot = reader.u64()?;
            let mut lists = [Vec::new(), Vec::new()];
            for list in &mut lists {
                let count = usize::from(reader.u16()?);
                if count > RECORD_MEMBERS_MAX {
                    return None;
                }
                for _ in 0..count {
                    list.push(reader.u64()?);
                }
            }
            if !reader.bytes.is_empty() {
                return None;
            }
            let [full_replicas, log_replicas] = lists;
            Some(SplitApplied {
                slot,
                full_replicas,
                log_replicas,
            })
        };
        Some(SplitRecord {
            at_hash,
            left,
            right,
            applied,
        })
    }

    /// The child a key goes to, by [`placement`].
    pub fn child_of(&self, placement: Placement) -> Option<SplitChild> {
        match placement {
            Placement::Left => Some(self.left),
            Placement::Right => Some(self.right),
            Placement::Both | Placement::Neither | Placement::Blocking => None,
        }
    }

    /// Whether a proposal of `self` describes the same split as `other` (what apply adds is
    /// left out).
    pub fn same_split(&self, other: &SplitRecord) -> bool {
        self.at_hash == other.at_hash && self.left == other.left && self.right == other.right
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[byte]| byte)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }
}

/// Where a key of a parent's tree goes when it splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// To the child below the cut.
    Left,
    /// To the child at or above the cut.
    Right,
    /// To both: a GSI partition's record of how far each base partition's changes are
    /// applied, which either child needs to apply the next ones once.
    Both,
    /// To neither: the parent's own bookkeeping (applied chain, membership record, the split
    /// record itself, its range record), which each child starts afresh.
    Neither,
    /// The key belongs to the partition as a whole, or to state a split cannot divide yet
    /// (outbox records, stream records and settings, transaction locks): a split entry applied
    /// while any such key exists is void.
    Blocking,
}

/// The placement of `key` in a split at `at_hash`; `None` for a key no Shoal tree holds.
pub fn placement(key: &[u8], at_hash: u64) -> Option<Placement> {
    let side = |hash: u64| {
        if hash < at_hash {
            Placement::Left
        } else {
            Placement::Right
        }
    };
    let hash_at = |offset: usize| -> Option<u64> {
        key.get(offset..offset + 8)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes)
    };
    let Some(rest) = key.strip_prefix(&INDEX_REGION_PREFIX[..]) else {
        // An item (or a GSI partition's entry): its storage key starts with its hash.
        return hash_at(0).map(side);
    };
    let marker = *rest.first()?;
    let header = INDEX_REGION_PREFIX.len() + 1;
    match marker {
        // LSI entries, item-collection size records: the item's storage-key prefix follows.
        _ if usize::from(marker) < LOCAL_SECONDARY_INDEXES_MAX
            || marker == COLLECTION_REGION_MARKER =>
        {
            hash_at(header).map(side)
        }
        crate::index::global::SOURCE_POSITION_MARKER => Some(Placement::Both),
        APPLIED_CHAIN_MARKER | MEMBERSHIP_CONFIG_MARKER | SPLIT_MARKER | RANGE_MARKER => {
            Some(Placement::Neither)
        }
        crate::transaction::LOCK_MARKER
        | crate::index::global::OUTBOX_MARKER
        | crate::index::global::OUTBOX_PENDING_MARKER => Some(Placement::Blocking),
        _ if (crate::stream::CONFIG_MARKER..=crate::stream::TRIMMED_MARKER).contains(&marker) => {
            Some(Placement::Blocking)
        }
        _ => None,
    }
}

/// The key ranges (lower inclusive, upper exclusive) holding every key whose placement is
/// [`Placement::Blocking`]: what `apply` checks is empty before a split takes effect.
pub fn blocking_ranges() -> Vec<(Vec<u8>, Vec<u8>)> {
    let marker_range = |first: u8, last: u8| {
        let mut lower = INDEX_REGION_PREFIX.to_vec();
        lower.push(first);
        let mut upper = INDEX_REGION_PREFIX.to_vec();
        upper.push(last + 1);
        (lower, upper)
    };
    vec![
        // Locks (0xF4) and the stream markers after them (0xF5-0xFA), then pending outbox
        // records (0xFB): contiguous.
        marker_range(
            crate::transaction::LOCK_MARKER,
            crate::index::global::OUTBOX_PENDING_MARKER,
        ),
        marker_range(
            crate::index::global::OUTBOX_MARKER,
            crate::index::global::OUTBOX_MARKER,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(applied: Option<SplitApplied>) -> SplitRecord {
        SplitRecord {
            at_hash: 0x8000_0000_0000_0000,
            left: SplitChild {
                partition: 11,
                epoch: 2,
            },
            right: SplitChild {
                partition: 12,
                epoch: 2,
            },
            applied,
        }
    }

    #[test]
    fn records_round_trip_proposed_and_applied() {
        let proposed = record(None);
        assert_eq!(proposed.encode().len(), PROPOSED_RECORD_BYTES);
        assert_eq!(
            SplitRecord::decode(&proposed.encode()),
            Some(proposed.clone())
        );
        let applied = record(Some(SplitApplied {
            slot: 40,
            full_replicas: vec![1, 2, 3],
            log_replicas: vec![],
        }));
        assert_eq!(
            SplitRecord::decode(&applied.encode()),
            Some(applied.clone())
        );
        assert!(applied.same_split(&proposed));
        let mut bytes = applied.encode();
        bytes.push(0);
        assert_eq!(SplitRecord::decode(&bytes), None, "trailing bytes");
        assert_eq!(SplitRecord::decode(&bytes[..20]), None, "truncated");
        assert_eq!(
            SplitRecord::decode(&bytes[..PROPOSED_RECORD_BYTES + 4]),
            None,
            "truncated after the cut"
        );
    }

    #[test]
    fn the_record_layout_is_pinned() {
        let bytes = record(Some(SplitApplied {
            slot: 9,
            full_replicas: vec![5],
            log_replicas: vec![],
        }))
        .encode();
        let expected: Vec<u8> = [
            &[1u8][..],
            &[0x80, 0, 0, 0, 0, 0, 0, 0],
            &11u64.to_be_bytes(),
            &2u64.to_be_bytes(),
            &12u64.to_be_bytes(),
            &2u64.to_be_bytes(),
            &9u64.to_be_bytes(),
            &[0, 1],
            &5u64.to_be_bytes(),
            &[0, 0],
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn keys_go_to_the_child_of_their_hash() {
        let at = 0x8000_0000_0000_0000;
        let item = |hash: u64| {
            let mut key = hash.to_be_bytes().to_vec();
            key.extend_from_slice(&[0, 1, b'a']);
            key
        };
        assert_eq!(placement(&item(at - 1), at), Some(Placement::Left));
        assert_eq!(placement(&item(at), at), Some(Placement::Right));
        // An item key may start with eight 0xFF bytes; its ninth byte is a length's high byte.
        assert_eq!(placement(&item(u64::MAX), at), Some(Placement::Right));
        let region = |marker: u8, hash: u64| {
            let mut key = INDEX_REGION_PREFIX.to_vec();
            key.push(marker);
            key.extend_from_slice(&hash.to_be_bytes());
            key
        };
        assert_eq!(placement(&region(0, 1), at), Some(Placement::Left));
        assert_eq!(placement(&region(4, at), at), Some(Placement::Right));
        assert_eq!(
            placement(&region(COLLECTION_REGION_MARKER, 3), at),
            Some(Placement::Left)
        );
        assert_eq!(
            placement(&crate::index::applied_chain_key(), at),
            Some(Placement::Neither)
        );
        assert_eq!(
            placement(&crate::index::membership_config_key(), at),
            Some(Placement::Neither)
        );
        assert_eq!(placement(&split_key(), at), Some(Placement::Neither));
        assert_eq!(placement(&range_key(), at), Some(Placement::Neither));
        assert_eq!(decode_range(&encode_range((3, 9))), Some((3, 9)));
        assert_eq!(decode_range(&encode_range((9, 3))), None);
        assert_eq!(child_range((0, u64::MAX), at, Placement::Left), (0, at - 1));
        assert_eq!(
            child_range((0, u64::MAX), at, Placement::Right),
            (at, u64::MAX)
        );
        assert_eq!(key_hash(&item(7)), Some(7));
        assert_eq!(key_hash(&region(2, 8)), Some(8));
        assert_eq!(key_hash(&crate::index::applied_chain_key()), None);
        assert_eq!(
            placement(&region(crate::index::global::SOURCE_POSITION_MARKER, 3), at),
            Some(Placement::Both)
        );
        for marker in [
            crate::transaction::LOCK_MARKER,
            crate::stream::CONFIG_MARKER,
            crate::stream::TRIMMED_MARKER,
            crate::index::global::OUTBOX_MARKER,
        ] {
            let key = region(marker, 3);
            assert_eq!(placement(&key, at), Some(Placement::Blocking));
            assert!(
                blocking_ranges()
                    .iter()
                    .any(|(lower, upper)| key >= *lower && key < *upper),
                "marker {marker:#x} is in a blocking range"
            );
        }
        for key in [
            region(0, 1),
            region(COLLECTION_REGION_MARKER, 1),
            region(crate::index::global::SOURCE_POSITION_MARKER, 1),
            split_key(),
            crate::index::membership_config_key(),
            crate::index::applied_chain_key(),
        ] {
            assert!(
                !blocking_ranges()
                    .iter()
                    .any(|(lower, upper)| key >= *lower && key < *upper),
                "{key:x?} is outside every blocking range"
            );
        }
    }

    #[test]
    fn a_gsi_partitions_apply_names_each_entry_keys_hash() {
        use crate::index::global::{
            EntryChange, GlobalIndexChange, OutboxPosition, PositionedChange,
        };
        use crate::request::PreparedRequest;
        let entry = |hash: u64, ordinal: u32| PositionedChange {
            position: OutboxPosition { slot: 4, ordinal },
            change: GlobalIndexChange {
                index_number: 1,
                entry_key: [&hash.to_be_bytes()[..], &[0, 1, b'g']].concat(),
                change: EntryChange::Delete,
            },
        };
        let apply = PreparedRequest::IndexApply {
            source: 3,
            changes: vec![entry(10, 0), entry(u64::MAX - 1, 1)],
        };
        let mut hashes = Vec::new();
        for_each_key_hash(&apply, |hash| hashes.push(hash));
        // A child refuses an apply naming a hash outside its range, as it refuses a write.
        assert_eq!(hashes, vec![10, u64::MAX - 1]);
    }
}
