//! The storage contract (src/storage/mod.rs, items 1-6), run against every implementation:
//! glommio DMA files on a real directory, the simulated disk, and the faulty wrapper with all
//! fault rates at zero.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::ErrorKind;

use futures_lite::future::block_on;
use shoal_io::storage::dma::DmaDirectory;
use shoal_io::storage::faulty::{FaultInjector, FaultRates, FaultyDirectory};
use shoal_io::storage::simulated::SimulatedDisk;
use shoal_io::testing::run_on_test_executor;
use shoal_io::{IO_ALIGNMENT_BYTES, OpenMode, SeededRng, Storage, StorageDirectory};

const BLOCK: usize = IO_ALIGNMENT_BYTES;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

async fn write<F: Storage>(file: &F, offset: u64, bytes: &[u8]) {
    let mut buffer = file.allocate_buffer(bytes.len());
    buffer.copy_from_slice(bytes);
    file.write_at(buffer, offset).await.unwrap();
}

/// Compares byte strings, reporting the first difference instead of both buffers.
fn assert_same(actual: &[u8], expected: &[u8], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    if let Some(index) = actual
        .iter()
        .zip(expected)
        .position(|(left, right)| left != right)
    {
        panic!(
            "{what}: byte {index} is {} but should be {}",
            actual[index], expected[index]
        );
    }
}

async fn read<F: Storage>(file: &F, offset: u64, len: usize) -> Vec<u8> {
    file.read_at(offset, len).await.unwrap().to_vec()
}

/// The whole contract. Each step states the contract item it checks.
async fn storage_contract<D: StorageDirectory>(directory: &D) {
    // Names: plain only, same on every implementation.
    for bad_name in ["", "a/b", "..", ".reserved", "with space"] {
        let error = directory
            .open(bad_name, OpenMode::CreateOrExisting)
            .await
            .err()
            .unwrap();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{bad_name:?}");
    }

    // Open modes.
    let missing = directory
        .open("missing", OpenMode::Existing)
        .await
        .err()
        .unwrap();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    let file = directory.open("data-1", OpenMode::CreateNew).await.unwrap();
    assert_eq!(file.name(), "data-1");
    let again = directory
        .open("data-1", OpenMode::CreateNew)
        .await
        .err()
        .unwrap();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists);
    assert_eq!(file.alignment(), BLOCK);

    // A new file is empty; reading past the end returns nothing (contract 2).
    assert_eq!(file.len().await.unwrap(), 0);
    assert!(read(&file, 0, BLOCK).await.is_empty());

    // Buffers are zeroed and as long as asked.
    let buffer = file.allocate_buffer(2 * BLOCK);
    assert_eq!(buffer.len(), 2 * BLOCK);
    assert!(buffer.iter().all(|byte| *byte == 0));
    drop(buffer);

    // Allocation extends with zeros and never shrinks (contract 5).
    file.allocate(3 * BLOCK as u64).await.unwrap();
    assert_eq!(file.len().await.unwrap(), 3 * BLOCK as u64);
    assert_same(
        &read(&file, 0, 3 * BLOCK).await,
        &[0; 3 * BLOCK],
        "allocated",
    );
    file.allocate(BLOCK as u64).await.unwrap();
    assert_eq!(file.len().await.unwrap(), 3 * BLOCK as u64);

    // A completed write is visible to later reads, neighbours untouched (contract 2, 3).
    let middle = pattern(7, BLOCK);
    write(&file, BLOCK as u64, &middle).await;
    let whole = read(&file, 0, 3 * BLOCK).await;
    assert_same(&whole[..BLOCK], &[0; BLOCK], "before the write");
    assert_same(&whole[BLOCK..2 * BLOCK], &middle, "the write");
    assert_same(&whole[2 * BLOCK..], &[0; BLOCK], "after the write");

    // Overwrite, and a multi-block write that extends the file.
    let replacement = pattern(9, BLOCK);
    write(&file, BLOCK as u64, &replacement).await;
    let tail = pattern(11, 2 * BLOCK);
    write(&file, 3 * BLOCK as u64, &tail).await;
    assert_eq!(file.len().await.unwrap(), 5 * BLOCK as u64);
    assert_same(
        &read(&file, BLOCK as u64, BLOCK).await,
        &replacement,
        "overwrite",
    );
    assert_same(
        &read(&file, 3 * BLOCK as u64, 2 * BLOCK).await,
        &tail,
        "extending write",
    );

    // A read crossing the end returns what exists (contract 2).
    assert_same(
        &read(&file, 4 * BLOCK as u64, 4 * BLOCK).await,
        &tail[BLOCK..],
        "read at end",
    );

    // Misaligned requests are rejected everywhere (contract 1).
    for (offset, len) in [(1_u64, BLOCK), (0, 100), (512, BLOCK)] {
        let error = file.read_at(offset, len).await.err().unwrap();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "read {offset} {len}");
        let buffer = file.allocate_buffer(len);
        let error = file.write_at(buffer, offset).await.err().unwrap();
        assert_eq!(
            error.kind(),
            ErrorKind::InvalidInput,
            "write {offset} {len}"
        );
    }

    // Concurrent writes to distinct fresh blocks (5..9) all land.
    {
        use futures_lite::future::zip;
        let block = |index: u8| (u64::from(index) * BLOCK as u64, pattern(20 + index, BLOCK));
        let ((offset_5, bytes_5), (offset_6, bytes_6)) = (block(5), block(6));
        let ((offset_7, bytes_7), (offset_8, bytes_8)) = (block(7), block(8));
        zip(
            zip(
                write(&file, offset_5, &bytes_5),
                write(&file, offset_6, &bytes_6),
            ),
            zip(
                write(&file, offset_7, &bytes_7),
                write(&file, offset_8, &bytes_8),
            ),
        )
        .await;
    }
    for index in 5..9u8 {
        let offset = u64::from(index) * BLOCK as u64;
        assert_same(
            &read(&file, offset, BLOCK).await,
            &pattern(20 + index, BLOCK),
            "concurrent",
        );
    }
    assert_eq!(file.len().await.unwrap(), 9 * BLOCK as u64);

    file.sync().await.unwrap();
    file.close().await.unwrap();

    // Reopening sees the same bytes.
    let reopened = directory.open("data-1", OpenMode::Existing).await.unwrap();
    assert_eq!(reopened.len().await.unwrap(), 9 * BLOCK as u64);
    assert_same(
        &read(&reopened, 3 * BLOCK as u64, 2 * BLOCK).await,
        &tail,
        "reopened",
    );
    reopened.close().await.unwrap();

    // CreateOrExisting opens the existing file without truncating it.
    let same = directory
        .open("data-1", OpenMode::CreateOrExisting)
        .await
        .unwrap();
    assert_eq!(same.len().await.unwrap(), 9 * BLOCK as u64);
    same.close().await.unwrap();

    // Listing is sorted and shows only our files; removal works once.
    let other = directory
        .open("data-0", OpenMode::CreateOrExisting)
        .await
        .unwrap();
    other.close().await.unwrap();
    directory.sync().await.unwrap();
    assert_eq!(
        directory.list().await.unwrap(),
        vec!["data-0".to_owned(), "data-1".to_owned()]
    );
    directory.remove("data-0").await.unwrap();
    assert_eq!(
        directory.remove("data-0").await.err().unwrap().kind(),
        ErrorKind::NotFound
    );
    directory.sync().await.unwrap();
    assert_eq!(directory.list().await.unwrap(), vec!["data-1".to_owned()]);
}

#[test]
fn contract_holds_for_simulated_storage() {
    let disk = SimulatedDisk::new();
    block_on(storage_contract(&disk.directory()));
}

#[test]
fn contract_holds_for_faulty_storage_without_faults() {
    let injector = FaultInjector::new(FaultRates::none(), SeededRng::new(1), None);
    let directory = FaultyDirectory::new(SimulatedDisk::new().directory(), injector.clone());
    block_on(storage_contract(&directory));
    assert!(injector.injected().is_empty());
}

#[test]
fn contract_holds_for_dma_storage() {
    // On the build's disk, not /tmp (which may be tmpfs, where glommio silently drops O_DIRECT).
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = root.path().to_path_buf();
    run_on_test_executor("dma-contract", move || async move {
        let directory = DmaDirectory::open(&path).await.unwrap();
        storage_contract(&directory).await;
    });
}

/// Regression for glommio 0.9's IOPOLL probe (kernel-notes/glommio-runtime.md): opening an empty file first used to
/// make every later DMA read on the executor fail with EOPNOTSUPP.
#[test]
fn dma_reads_work_after_an_empty_file_was_opened_first() {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = root.path().to_path_buf();
    std::fs::write(path.join("written"), pattern(3, BLOCK)).unwrap();
    run_on_test_executor("dma-empty-first", move || async move {
        let directory = DmaDirectory::open(&path).await.unwrap();
        let empty = directory.open("empty", OpenMode::CreateNew).await.unwrap();
        assert!(read(&empty, 0, BLOCK).await.is_empty());
        let written = directory.open("written", OpenMode::Existing).await.unwrap();
        assert_same(
            &read(&written, 0, BLOCK).await,
            &pattern(3, BLOCK),
            "written file",
        );
        empty.close().await.unwrap();
        written.close().await.unwrap();
    });
}

#[test]
fn dma_directory_refuses_missing_or_non_directory_paths() {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let missing = root.path().join("does-not-exist");
    let plain_file = root.path().join("plain-file");
    std::fs::write(&plain_file, b"x").unwrap();
    run_on_test_executor("dma-refuses", move || async move {
        let error = DmaDirectory::open(&missing).await.err().unwrap();
        assert_eq!(error.kind(), ErrorKind::NotFound);
        let error = DmaDirectory::open(&plain_file).await.err().unwrap();
        assert_eq!(error.kind(), ErrorKind::NotADirectory);
    });
}
