//! The blocking direct-I/O probe used by `shoal doctor` and the benchmark floor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use shoal_io::probe::{DirectProbeFile, PROBE_FILE_NAME};

#[test]
fn probe_round_trips_and_cleans_up_on_the_build_disk() {
    let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let probe = DirectProbeFile::create(directory.path()).unwrap();
    probe.round_trip().unwrap();
    assert_eq!(probe.write_sync_latencies(3).unwrap().len(), 3);
    if let Some(alignment) = probe.alignment().unwrap() {
        assert!(alignment.offset_bytes.is_power_of_two());
        assert!(alignment.offset_bytes as usize <= shoal_io::IO_ALIGNMENT_BYTES);
    }
    drop(probe);
    assert!(!directory.path().join(PROBE_FILE_NAME).exists());
}

#[test]
fn probe_fails_in_a_missing_directory() {
    let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let error = DirectProbeFile::create(&directory.path().join("missing")).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
}
