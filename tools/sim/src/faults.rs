//! Fault injection: the seed's fault rates, faulty disks, bits flipped at rest, crashes and
//! restarts, and the heal phase; and which errors count as detected corruption.

use std::ops::Range;

use shoal_store::wal::inspect::{SegmentInspection, inspect_segment};

use super::*;

/// The storage fault rates of a seed (swarm): each silent kind on with probability one half.
pub(crate) fn storage_faults(rng: &mut SeededRng) -> StorageFaults {
    let mut draw = || {
        if rng.chance(0.5) {
            0.0
        } else {
            let exponent = STORAGE_FAULT_RATE_LOG10_MIN
                + rng.unit_f64() * (STORAGE_FAULT_RATE_LOG10_MAX - STORAGE_FAULT_RATE_LOG10_MIN);
            10f64.powf(exponent)
        }
    };
    let rates = StorageFaultRates {
        torn_write: draw(),
        lost_write: draw(),
        misdirected_write: draw(),
        write_bit_flip: draw(),
        read_bit_flip: draw(),
        // Not storage corruption: EIO is a reported failure (tested in shoal-store), and a
        // failed fdatasync stops the process through `fatal!`, which the simulator cannot
        // survive in-process.
        ..StorageFaultRates::none()
    };
    let at_rest_flips_per_million_steps = if rng.chance(0.5) {
        0
    } else {
        rng.below(AT_REST_FLIPS_PER_MILLION_STEPS_MAX + 1)
    };
    StorageFaults {
        rates,
        at_rest_flips_per_million_steps,
    }
}

/// The seed's faulty disks: nodes in a random order, each taken while every group it hosts
/// keeps at most a minority of faulty replicas, up to `FAULTY_DISKS_MAX`.
pub(crate) fn faulty_disks(
    rng: &mut SeededRng,
    node_count: u64,
    groups: &[Group],
) -> BTreeSet<NodeId> {
    let mut order: Vec<NodeId> = (1..=node_count).map(NodeId).collect();
    for index in (1..order.len()).rev() {
        let other = rng.below(index as u64 + 1) as usize;
        order.swap(index, other);
    }
    let wanted = 1 + rng.below(FAULTY_DISKS_MAX as u64) as usize;
    let mut chosen = BTreeSet::new();
    for node in order {
        if chosen.len() == wanted {
            break;
        }
        let fits = groups.iter().all(|group| {
            let faulty = group
                .members
                .iter()
                .filter(|member| chosen.contains(*member) || **member == node)
                .count();
            faulty <= FAULTY_REPLICAS_PER_GROUP_MAX
        });
        if fits {
            chosen.insert(node);
        }
    }
    chosen
}

/// The newest initialised WAL segment in `image` (the current or the durable bytes of each
/// segment file): its index and bytes.
fn newest_segment(
    disk: &SimulatedDisk,
    image: impl Fn(&SimulatedDisk, &str) -> Option<Vec<u8>>,
) -> Option<(u32, Vec<u8>)> {
    (0..wal_config().segment_count)
        .filter_map(|index| {
            let contents = image(disk, &segment_file_name(index))?;
            let header: [u8; SEGMENT_HEADER_BYTES] =
                contents.get(..SEGMENT_HEADER_BYTES)?.try_into().ok()?;
            match SegmentHeader::decode(&header) {
                SegmentHeaderSlot::Valid(header) => Some((header.generation, index, contents)),
                _ => None,
            }
        })
        .max_by_key(|(generation, _, _)| *generation)
        .map(|(_, index, contents)| (index, contents))
}

/// The bytes a bit flip at rest must spare: from the start of the last durable batch of the
/// newest segment to the end of the batches written after it. Damage there is the WAL's
/// documented known limit (engine/store/FORMAT.md, "Known limit"): if no later batch becomes
/// durable before a crash, it looks exactly like a torn write of an acknowledged batch, and the
/// replica forgets it (the acceptor-memory check reported it for seed 6694). Batches in flight
/// behind it are spared too, because a crash may leave them unlanded and make the damaged batch
/// the last again. Everything else (older batches and segments, the zero tail, B-tree files,
/// meta files) is still damaged, and must be detected.
pub(crate) fn wal_tail_spared_from_flips(disk: &SimulatedDisk) -> Option<(String, Range<u64>)> {
    let (index, durable) = newest_segment(disk, SimulatedDisk::durable_contents)?;
    let Ok(SegmentInspection::Initialised(durable_report)) = inspect_segment(&durable, Some(index))
    else {
        return None;
    };
    let last = durable_report.records.last()?;
    let batch_start = durable_report
        .records
        .iter()
        .find(|record| record.header.batch_first_lsn == last.header.batch_first_lsn)
        .map_or(last.offset, |record| record.offset);
    let name = segment_file_name(index);
    let written_end = match disk
        .contents(&name)
        .map(|current| inspect_segment(&current, Some(index)))
    {
        Some(Ok(SegmentInspection::Initialised(current_report))) => current_report.log_end_offset,
        _ => 0,
    };
    let end = durable_report.log_end_offset.max(written_end);
    Some((name, batch_start..end))
}

/// The broken variant's damage, so that every restart of a faulty disk's node exercises it:
/// one bit at rest in the first record header of the newest WAL segment (in the log, and
/// followed by later batches unless the segment has just one).
pub(crate) fn damage_newest_segment(disk: &SimulatedDisk) {
    let Some((index, contents)) = newest_segment(disk, SimulatedDisk::contents) else {
        return;
    };
    // The LSN field of the first record header of the segment's first batch.
    let offset = shoal_store::wal::format::SEGMENT_DATA_OFFSET as usize + 16;
    if let Some(byte) = contents.get(offset) {
        disk.corrupt(&segment_file_name(index), offset as u64, &[byte ^ 0x01]);
    }
}

/// The broken variant `WalDamageTakenForEndOfLog`: opens the WAL as a recovery that takes
/// damage for the end of the log would, by zeroing the log from the damaged block on (the
/// rest of that segment and every segment of a newer generation) until it opens. Returns
/// whether it truncated anything.
pub(crate) fn truncate_at_wal_damage(disk: &SimulatedDisk, directory: &FaultyDirectory) -> bool {
    let block = shoal_store::wal::format::BLOCK_BYTES as u64;
    let mut truncated = false;
    for _ in 0..BROKEN_TRUNCATIONS_MAX {
        let opened = complete(Wal::open(directory, wal_config(), |_| {}));
        let Ok(Err(WalError::Corruption(corruption))) = opened else {
            return truncated;
        };
        let location = corruption.location;
        let generation_of = |index: u32| {
            let contents = disk.contents(&segment_file_name(index))?;
            let header: [u8; SEGMENT_HEADER_BYTES] =
                contents.get(..SEGMENT_HEADER_BYTES)?.try_into().ok()?;
            match SegmentHeader::decode(&header) {
                SegmentHeaderSlot::Valid(header) => Some(header.generation),
                _ => None,
            }
        };
        for index in 0..wal_config().segment_count {
            let name = segment_file_name(index);
            let Some(contents) = disk.contents(&name) else {
                continue;
            };
            let from = if index == location.segment_index {
                location.offset - location.offset % block
            } else if generation_of(index).is_some_and(|generation| {
                location.generation > 0 && generation > location.generation
            }) {
                0
            } else {
                continue;
            };
            let zeros = vec![0; contents.len().saturating_sub(from as usize)];
            disk.corrupt(&name, from, &zeros);
            truncated = true;
        }
    }
    truncated
}

pub(crate) fn storage_corruption(error: &StorageError) -> bool {
    error.operation == StorageOperation::ReadBack
}

pub(crate) fn wal_corruption(error: &WalError) -> bool {
    match error {
        WalError::Corruption(_) => true,
        WalError::WriteFailed(failure) => failure.read_back_mismatch,
        WalError::Storage(error) => storage_corruption(error),
        _ => false,
    }
}

pub(crate) fn partition_corruption(error: &PartitionError) -> bool {
    match error {
        PartitionError::Wal(error) => wal_corruption(error),
        PartitionError::Storage(error) => storage_corruption(error),
        PartitionError::Engine(EngineError::BTree(error)) => match error {
            BTreeError::Corruption { .. } | BTreeError::NoValidMeta => true,
            BTreeError::Storage(error) => storage_corruption(error),
            _ => false,
        },
        PartitionError::Corrupt(_) => true,
        PartitionError::Engine(_) => false,
    }
}

pub(crate) fn meta_corruption(error: &MetaError) -> bool {
    match error {
        MetaError::Corrupt { .. } => true,
        MetaError::Storage(error) => storage_corruption(error),
    }
}

/// Whether a shard's recovery failed on corruption its storage reported or its records show.
pub(crate) fn shard_corruption(error: &ShardError) -> bool {
    match error {
        ShardError::Storage(error) => storage_corruption(error),
        ShardError::Wal(error) => wal_corruption(error),
        ShardError::Partition(_, error) => partition_corruption(error),
        ShardError::Meta(_, error) => meta_corruption(error),
        ShardError::UndecodableRecords { .. } => false,
    }
}

impl Simulation {
    /// Latent damage: one bit of one file of a faulty disk flips, in both the bytes reads see
    /// and the durable image, whether the node is up or down. Only checksums can find it.
    pub(crate) fn flip_bits_at_rest(&mut self) {
        let rate = self.storage_faults.at_rest_flips_per_million_steps;
        let faulty: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.faulty_disk)
            .map(|(id, _)| *id)
            .collect();
        for id in faulty {
            if self.storage_rng.below(1_000_000) >= rate {
                continue;
            }
            let disk = self.nodes[&id].disk.clone();
            let Ok(Ok(names)) = complete(disk.directory().list()) else {
                continue;
            };
            if names.is_empty() {
                continue;
            }
            let name = &names[self.storage_rng.below(names.len() as u64) as usize];
            let Some(contents) = disk.contents(name).filter(|bytes| !bytes.is_empty()) else {
                continue;
            };
            let offset = self.storage_rng.below(contents.len() as u64);
            let bit = self.storage_rng.below(8);
            if wal_tail_spared_from_flips(&disk)
                .is_some_and(|(spared, range)| spared == *name && range.contains(&offset))
            {
                self.fault("storage: bit flip at rest spared (last WAL batch, a known limit)");
                continue;
            }
            disk.corrupt(name, offset, &[contents[offset as usize] ^ (1 << bit)]);
            self.fault("storage: bit flip at rest");
            self.trace(id, usize::MAX, &[5, offset, bit]);
        }
    }

    /// The broken variant `WalDamageTakenForEndOfLog` crashes every running faulty disk's node
    /// once, so that its recovery runs in every seed.
    pub(crate) fn crash_faulty_disks(&mut self) {
        let faulty: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.faulty_disk && node.is_up())
            .map(|(id, _)| *id)
            .collect();
        for id in faulty {
            self.crash(id);
            let node = self.nodes.get_mut(&id).expect("node exists");
            node.restart_at_nanos = Some(self.now_nanos + BROKEN_RESTART_NANOS);
        }
    }

    pub(crate) fn inject_faults(&mut self) {
        self.isolate_a_quiesced_leader();
        self.flip_bits_at_rest();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let node = ids[self.fault_rng.below(ids.len() as u64) as usize];
        if self.fault_rng.below(1_000_000) < self.rates.crash_per_million_steps && self.is_up(node)
        {
            let downtime = 50_000_000 + self.fault_rng.below(2_000_000_000);
            self.crash(node);
            let state = self.nodes.get_mut(&node).expect("node exists");
            state.restart_at_nanos = Some(self.now_nanos + downtime);
            self.fault("crash");
        }
        if self.fault_rng.below(1_000_000) < self.rates.isolate_per_million_steps {
            if self.isolated.is_empty() {
                let one_way = self.fault_rng.below(2) == 0;
                self.isolated.insert(node, one_way);
                self.fault(if one_way {
                    "isolate one way"
                } else {
                    "isolate"
                });
            } else {
                self.isolated.clear();
            }
        }
        // Clogs come one at a time (FoundationDB's swizzle-clogging clogs nodes in turn).
        if self.clogged.is_none()
            && self.fault_rng.below(1_000_000) < self.rates.clog_per_million_steps
        {
            let duration = CLOG_NANOS_MIN + self.fault_rng.below(self.rates.clog_nanos_max);
            self.clogged = Some((node, self.now_nanos + duration));
            self.fault("clog");
            self.trace(node, usize::MAX, &[2]);
        }
    }

    /// The quiet spell's targeted fault (`QUIESCED_LEADER_ISOLATION_DELAY_NANOS`): cuts off the
    /// lowest node that leads a quiesced group, if no node is cut off already.
    fn isolate_a_quiesced_leader(&mut self) {
        let Some(at) = self.quiesced_leader_isolation_at else {
            return;
        };
        if self.now_nanos < at {
            return;
        }
        self.quiesced_leader_isolation_at = None;
        if !self.isolated.is_empty() {
            return;
        }
        let leader = self.nodes.iter().find_map(|(id, node)| {
            let runtime = node.runtime.as_ref()?;
            runtime
                .replicas
                .values()
                .any(|replica| {
                    replica.core().quiesced()
                        && replica.core().role() == shoal_replication::RoleKind::Leader
                })
                .then_some(*id)
        });
        if let Some(leader) = leader {
            self.isolated.insert(leader, false);
            self.fault("isolate a quiesced leader");
        }
    }

    pub(crate) fn heal(&mut self) {
        self.healing = true;
        self.isolated.clear();
        if let Some((_, until)) = self.clogged.as_mut() {
            *until = self.now_nanos;
        }
        self.unclog_due();
        for node in self.nodes.values_mut() {
            // Storage heals too; what it already damaged stays on the disk.
            node.injector.set_enabled(false);
            if !node.is_up() && !node.stopped {
                node.restart_at_nanos = Some(0);
            }
        }
        self.restart_due();
    }

    pub(crate) fn fault(&mut self, kind: &'static str) {
        *self.report.faults.entry(kind).or_default() += 1;
    }
}
