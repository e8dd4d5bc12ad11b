//! `shoal inspect` as an operator runs it: on the store's committed WAL fixtures (the golden
//! log, each damaged one), on a B-tree file written through the store's API, and on a copy of
//! it with one flipped byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use futures_lite::future::block_on;
use shoal_io::storage::simulated::SimulatedDisk;
use shoal_store::btree::page::PAGE_BYTES;
use shoal_store::btree::{BTree, BTreeConfig, PageCache};

const EXIT_CORRUPT: i32 = 1;
const EXIT_UNREADABLE: i32 = 2;

fn inspect(kind: &str, path: &Path, dump: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    command.args(["inspect", kind]).arg(path);
    if dump {
        command.arg("--dump");
    }
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn wal_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../engine/store/tests/fixtures/wal-v1")
        .join(name)
}

#[test]
fn the_golden_wal_segment_is_sound_and_summarised() {
    let segment = wal_fixture("golden-three-records").join("wal-0000.seg");
    let output = inspect("wal", &segment, true);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    for expected in [
        "generation 1",
        "records: 3, LSN 1..=3",
        "partitions: 2 (7, 8)",
        "log ends: offset 12288, next LSN 4: zero tail",
        "record lsn 1 partition 7 kind 1 body 5 bytes at offset 4096",
        "record lsn 2 partition 8 kind 1 body 4 bytes",
        "record lsn 3 partition 7 kind 1 body 5 bytes at offset 8192",
        "verdict: sound",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let without_dump = stdout(&inspect("wal", &segment, false));
    assert!(!without_dump.contains("record lsn"), "{without_dump}");
}

/// Every committed WAL fixture, recovered as a directory, with what the tool must say. The
/// damaged ones must fail with the location the store's error reports.
const WAL_FIXTURE_VERDICTS: [(&str, Result<&str, &str>); 12] = [
    (
        "golden-three-records",
        Ok("records: 3, LSN 1..=3, in 1 segment"),
    ),
    ("recycled-stale-tail", Ok("records: 1, LSN 20..=20")),
    ("torn-tail", Ok("next LSN 2: torn batch")),
    (
        "corrupt-record-body",
        Err("segment 0 offset 4096 (generation 1, expecting LSN 1)"),
    ),
    (
        "corrupt-record-header",
        Err("segment 0 offset 4168 (generation 1, expecting LSN 1)"),
    ),
    (
        "lsn-gap",
        Err("segment 0 offset 8192 (generation 1, expecting LSN 2): LsnGap"),
    ),
    (
        "damaged-segment-header",
        Err("segment 0 offset 0 (generation 1, expecting LSN 0): SegmentHeaderDamaged"),
    ),
    ("lost-newest-segment-header", Err("segment 1 offset 0")),
    ("data-without-header", Err("segment 0 offset 4096")),
    ("segment-header-wrong-index", Err("SegmentHeaderMismatch")),
    (
        "segment-format-version-2",
        Err("segment 0 offset 0: unsupported format version 2"),
    ),
    (
        "record-format-version-2",
        Err("segment 0 offset 4096: unsupported format version 2"),
    ),
];

#[test]
fn every_wal_fixture_directory_gets_its_verdict() {
    for (name, verdict) in WAL_FIXTURE_VERDICTS {
        let output = inspect("wal", &wal_fixture(name), true);
        let text = stdout(&output);
        match verdict {
            Ok(expected) => {
                assert!(output.status.success(), "{name}:\n{text}");
                assert!(
                    text.contains(expected),
                    "{name}: missing {expected:?}:\n{text}"
                );
            }
            Err(location) => {
                assert_eq!(output.status.code(), Some(EXIT_CORRUPT), "{name}:\n{text}");
                assert!(text.contains("verdict: CORRUPT"), "{name}:\n{text}");
                assert!(
                    text.contains(location),
                    "{name}: missing {location:?}:\n{text}"
                );
                assert!(
                    !text.contains("record lsn"),
                    "{name}: dumped records:\n{text}"
                );
            }
        }
    }
    // A fixture added to the store must be added here too.
    let committed = std::fs::read_dir(wal_fixture("")).unwrap().count();
    assert_eq!(committed, WAL_FIXTURE_VERDICTS.len());
}

#[test]
fn damaged_single_segments_are_reported_where_one_segment_can_tell() {
    for (name, file, location) in [
        (
            "corrupt-record-body",
            "wal-0000.seg",
            "segment 0 offset 4096",
        ),
        (
            "corrupt-record-header",
            "wal-0000.seg",
            "segment 0 offset 4168",
        ),
        (
            "damaged-segment-header",
            "wal-0000.seg",
            "segment 0 offset 0",
        ),
        (
            "lost-newest-segment-header",
            "wal-0001.seg",
            "segment 1 offset 4096",
        ),
        (
            "data-without-header",
            "wal-0000.seg",
            "segment 0 offset 4096",
        ),
        (
            "segment-header-wrong-index",
            "wal-0000.seg",
            "segment 0 offset 0",
        ),
        (
            "segment-format-version-2",
            "wal-0000.seg",
            "segment 0 offset 0",
        ),
        (
            "record-format-version-2",
            "wal-0000.seg",
            "segment 0 offset 4096",
        ),
    ] {
        let output = inspect("wal", &wal_fixture(name).join(file), false);
        let text = stdout(&output);
        assert_eq!(output.status.code(), Some(EXIT_CORRUPT), "{name}:\n{text}");
        assert!(
            text.contains(location),
            "{name}: missing {location:?}:\n{text}"
        );
    }
    // Alone, each half of an LSN gap is a sound segment: that is why directories exist.
    let alone = inspect("wal", &wal_fixture("lsn-gap").join("wal-0001.seg"), false);
    assert!(alone.status.success(), "{}", stdout(&alone));
}

const TREE_ITEMS: u32 = 500;
/// Every tenth value is larger than a page, so the tree has overflow chains.
const LARGE_VALUE_BYTES: usize = 6000;

fn tree_key(index: u32) -> Vec<u8> {
    format!("item-{index:06}").into_bytes()
}

/// A tree written through the store's API: puts, overwrites, deletes, three checkpoints.
fn write_tree(path: &Path) {
    const NAME: &str = "partition.btree";
    let disk = SimulatedDisk::new();
    block_on(async {
        let mut tree = BTree::open_in(
            &disk.directory(),
            NAME,
            1,
            PageCache::new(64),
            BTreeConfig::default(),
        )
        .await
        .unwrap();
        let mut lsn = 0;
        for round in 0..3u32 {
            for index in 0..TREE_ITEMS {
                lsn += 1;
                let value_bytes = if index % 10 == 0 {
                    LARGE_VALUE_BYTES
                } else {
                    50 + round as usize
                };
                tree.put(&tree_key(index), &vec![round as u8; value_bytes], lsn)
                    .await
                    .unwrap();
            }
            // Deleted in every round, re-put in the next: the last round leaves them deleted.
            for index in (0..TREE_ITEMS).step_by(7) {
                lsn += 1;
                tree.delete(&tree_key(index), lsn).await.unwrap();
            }
            tree.checkpoint().await.unwrap();
        }
    });
    std::fs::write(path, disk.contents(NAME).unwrap()).unwrap();
}

fn expected_tree_items() -> u32 {
    TREE_ITEMS - TREE_ITEMS.div_ceil(7)
}

#[test]
fn a_tree_written_by_the_store_is_sound_and_dumped_in_key_order() {
    let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = directory.path().join("partition.btree");
    write_tree(&path);
    let output = inspect("btree", &path, true);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    let items = expected_tree_items();
    assert!(text.contains(&format!("items: {items} (")), "{text}");
    assert!(text.contains("current: slot 1, checkpoint LSN"), "{text}");
    assert!(text.contains("height: 2"), "{text}");
    assert!(text.contains("verdict: sound"), "{text}");
    let dumped: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("item "))
        .collect();
    let expected: Vec<String> = (0..TREE_ITEMS)
        .filter(|index| index % 7 != 0)
        .map(|index| {
            let key = tree_key(index);
            let hex: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
            let value_bytes = if index % 10 == 0 {
                LARGE_VALUE_BYTES
            } else {
                52
            };
            format!(
                "item key {hex} ({} bytes) value {value_bytes} bytes",
                key.len()
            )
        })
        .collect();
    assert_eq!(dumped, expected);
}

/// The page the tool names as the root of the current checkpoint.
fn current_root_page(text: &str) -> u64 {
    let current_slot: usize = text
        .lines()
        .find_map(|line| line.strip_prefix("current: slot "))
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    let meta_line = text
        .lines()
        .find(|line| line.starts_with(&format!("meta slot {current_slot}: valid")))
        .unwrap();
    meta_line
        .split("root page ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_flipped_byte_in_a_tree_page_fails_with_the_page_id() {
    let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = directory.path().join("partition.btree");
    write_tree(&path);
    let root = current_root_page(&stdout(&inspect("btree", &path, false)));
    assert!(root >= 2, "the root is a tree page, not a meta slot");
    let damaged = directory.path().join("damaged.btree");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[root as usize * PAGE_BYTES + PAGE_BYTES - 1] ^= 0x04;
    std::fs::write(&damaged, bytes).unwrap();
    let output = inspect("btree", &damaged, true);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(EXIT_CORRUPT), "{text}");
    assert!(
        text.contains(&format!("B-tree page {root} is damaged: Checksum")),
        "{text}"
    );
    assert!(
        !text.contains("item key"),
        "items of a damaged tree dumped:\n{text}"
    );
}

#[test]
fn the_golden_btree_fixture_is_sound() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../engine/store/tests/fixtures/btree-v2/golden.btree");
    let output = inspect("btree", &path, false);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("items: 3 ("), "{text}");
    assert!(text.contains("overflow"), "{text}");
}

/// The version-1 sample (4 KiB pages) is kept for this: it must be refused by name, never
/// reported as an empty or a sound tree.
#[test]
fn an_older_btree_format_version_is_refused_by_name() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../engine/store/tests/fixtures/btree-v1/golden.btree");
    let output = inspect("btree", &path, false);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(EXIT_CORRUPT), "{text}");
    assert!(
        text.contains("B-tree file of format version 1; this build reads version 2"),
        "{text}"
    );
}

#[test]
fn a_missing_file_is_unreadable_not_corrupt() {
    let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for kind in ["wal", "btree"] {
        let output = inspect(kind, &directory.path().join("absent"), false);
        assert_eq!(output.status.code(), Some(EXIT_UNREADABLE), "{kind}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
    }
    let empty_wal_directory = inspect("wal", directory.path(), false);
    assert_eq!(empty_wal_directory.status.code(), Some(EXIT_UNREADABLE));
}
