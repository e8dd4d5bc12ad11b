//! Crash images of the simulated disk: synced data survives; every sector of an unsynced write is
//! its old or one of its new contents, never anything else (contract 4); directory changes are
//! durable only after a directory sync (contract 6).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_lite::future::block_on;
use proptest::prelude::*;
use shoal_io::storage::simulated::SimulatedDisk;
use shoal_io::{IO_ALIGNMENT_BYTES, OpenMode, SECTOR_BYTES, SeededRng, Storage, StorageDirectory};

const BLOCK: usize = IO_ALIGNMENT_BYTES;
const FILE_BLOCKS: usize = 8;

async fn write<F: Storage>(file: &F, offset: u64, bytes: &[u8]) {
    let mut buffer = file.allocate_buffer(bytes.len());
    buffer.copy_from_slice(bytes);
    file.write_at(buffer, offset).await.unwrap();
}

/// Unique content per (version, sector): a sector's bytes say which write produced them.
fn versioned_bytes(version: u16, first_sector: usize, len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    for sector in 0..len / SECTOR_BYTES {
        let tag = [
            version.to_le_bytes(),
            ((first_sector + sector) as u16).to_le_bytes(),
        ]
        .concat();
        bytes.extend(tag.iter().cycle().take(SECTOR_BYTES));
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn unsynced_sectors_are_old_or_new_never_other(
        writes in proptest::collection::vec((0..FILE_BLOCKS + 2, 1..3usize), 1..12),
        crash_seed in any::<u64>(),
    ) {
        let disk = SimulatedDisk::new();
        // sector index -> every content it ever held after the last sync (index 0: durable).
        let mut versions: Vec<Vec<Vec<u8>>> = Vec::new();
        block_on(async {
            let directory = disk.directory();
            let file = directory.open("f", OpenMode::CreateNew).await.unwrap();
            let initial = versioned_bytes(0, 0, FILE_BLOCKS * BLOCK);
            write(&file, 0, &initial).await;
            file.sync().await.unwrap();
            directory.sync().await.unwrap();
            versions = initial.chunks(SECTOR_BYTES).map(|sector| vec![sector.to_vec()]).collect();
            for (version, (block, block_count)) in writes.iter().enumerate() {
                let first_sector = block * BLOCK / SECTOR_BYTES;
                let bytes = versioned_bytes(version as u16 + 1, first_sector, block_count * BLOCK);
                write(&file, (block * BLOCK) as u64, &bytes).await;
                for (index, sector) in bytes.chunks(SECTOR_BYTES).enumerate() {
                    let sector_index = first_sector + index;
                    if versions.len() <= sector_index {
                        // Beyond the synced end: a crash may also leave zeros or no bytes at all.
                        versions.resize(sector_index + 1, vec![vec![0; SECTOR_BYTES]]);
                    }
                    versions[sector_index].push(sector.to_vec());
                }
            }
        });
        let crashed = disk.crash_image(&mut SeededRng::new(crash_seed));
        let image = crashed.contents("f").unwrap();
        prop_assert!(image.len() >= FILE_BLOCKS * BLOCK, "synced length lost");
        prop_assert_eq!(image.len() % SECTOR_BYTES, 0);
        for (sector_index, sector) in image.chunks(SECTOR_BYTES).enumerate() {
            let allowed = &versions[sector_index];
            prop_assert!(
                allowed.iter().any(|version| version == sector),
                "sector {} holds bytes no write ever put there", sector_index
            );
        }
        // Determinism: the same seed gives the same image.
        let again = disk.crash_image(&mut SeededRng::new(crash_seed));
        prop_assert_eq!(again.contents("f").unwrap(), image);
    }
}

#[test]
fn synced_data_survives_every_crash() {
    let disk = SimulatedDisk::new();
    let synced = versioned_bytes(1, 0, 2 * BLOCK);
    block_on(async {
        let directory = disk.directory();
        let file = directory.open("f", OpenMode::CreateNew).await.unwrap();
        write(&file, 0, &synced).await;
        file.sync().await.unwrap();
        directory.sync().await.unwrap();
        write(&file, 2 * BLOCK as u64, &versioned_bytes(2, 16, BLOCK)).await;
    });
    for seed in 0..200 {
        let crashed = disk.crash_image(&mut SeededRng::new(seed));
        let image = crashed.contents("f").unwrap();
        assert_eq!(&image[..2 * BLOCK], synced.as_slice(), "seed {seed}");
    }
    let dropped = disk.crash_image_dropping_unsynced().contents("f").unwrap();
    assert_eq!(dropped, synced);
    let kept = disk.crash_image_keeping_unsynced().contents("f").unwrap();
    assert_eq!(kept.len(), 3 * BLOCK);
}

#[test]
fn crashes_tear_unsynced_writes_at_sector_granularity() {
    let disk = SimulatedDisk::new();
    block_on(async {
        let directory = disk.directory();
        let file = directory.open("f", OpenMode::CreateNew).await.unwrap();
        write(&file, 0, &versioned_bytes(0, 0, BLOCK)).await;
        file.sync().await.unwrap();
        directory.sync().await.unwrap();
        write(&file, 0, &versioned_bytes(1, 0, BLOCK)).await;
    });
    let new = versioned_bytes(1, 0, BLOCK);
    let mut saw_torn = false;
    let mut saw_all_old = false;
    let mut saw_all_new = false;
    for seed in 0..200 {
        let image = disk
            .crash_image(&mut SeededRng::new(seed))
            .contents("f")
            .unwrap();
        let new_sectors = image
            .chunks(SECTOR_BYTES)
            .zip(new.chunks(SECTOR_BYTES))
            .filter(|(landed, written)| landed == written)
            .count();
        match new_sectors {
            0 => saw_all_old = true,
            8 => saw_all_new = true,
            _ => saw_torn = true,
        }
    }
    assert!(
        saw_torn && saw_all_old && saw_all_new,
        "torn {saw_torn} old {saw_all_old} new {saw_all_new}"
    );
}

#[test]
fn directory_changes_need_a_directory_sync() {
    let disk = SimulatedDisk::new();
    block_on(async {
        let directory = disk.directory();
        let kept = directory.open("kept", OpenMode::CreateNew).await.unwrap();
        write(&kept, 0, &versioned_bytes(1, 0, BLOCK)).await;
        kept.sync().await.unwrap();
        directory.sync().await.unwrap();
        // Created and even fdatasync'ed, but the directory entry was never synced.
        let unnamed = directory
            .open("unnamed", OpenMode::CreateNew)
            .await
            .unwrap();
        write(&unnamed, 0, &versioned_bytes(2, 0, BLOCK)).await;
        unnamed.sync().await.unwrap();
        // Removed, but the removal was never synced.
        directory.remove("kept").await.unwrap();
    });
    let crashed = disk.crash_image_dropping_unsynced();
    let names = block_on(crashed.directory().list()).unwrap();
    assert_eq!(names, vec!["kept".to_owned()]);
    assert_eq!(
        crashed.contents("kept").unwrap(),
        versioned_bytes(1, 0, BLOCK)
    );

    let settled = disk.crash_image_keeping_unsynced();
    assert_eq!(
        block_on(settled.directory().list()).unwrap(),
        vec!["unnamed".to_owned()]
    );
}

#[test]
fn a_crash_image_is_independent_of_the_old_disk() {
    let disk = SimulatedDisk::new();
    let crashed = block_on(async {
        let directory = disk.directory();
        let file = directory.open("f", OpenMode::CreateNew).await.unwrap();
        write(&file, 0, &versioned_bytes(1, 0, BLOCK)).await;
        file.sync().await.unwrap();
        directory.sync().await.unwrap();
        let crashed = disk.crash_image_dropping_unsynced();
        // A write through the old handle after the crash must not reach the new disk.
        write(&file, 0, &versioned_bytes(2, 0, BLOCK)).await;
        file.sync().await.unwrap();
        crashed
    });
    assert_eq!(crashed.contents("f").unwrap(), versioned_bytes(1, 0, BLOCK));
}
