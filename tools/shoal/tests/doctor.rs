//! `shoal doctor` as a user runs it: passes on this machine's build disk, fails with a clear
//! message for a data directory that does not exist or is read-only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn doctor(data_directory: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["doctor", "--data-dir"])
        .arg(data_directory)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn doctor_passes_on_the_build_disk() {
    let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let output = doctor(directory.path());
    let text = stdout(&output);
    assert!(output.status.success(), "doctor failed here:\n{text}");
    for check in [
        "kernel",
        "io_uring",
        "memlock",
        "cores",
        "transparent huge pages",
        "clock source",
        "data directory",
        "direct I/O",
        "fdatasync latency",
        "glommio DMA self-test",
    ] {
        // The check's own line (verdict column, then the name) must pass.
        let passed = text.lines().any(|line| {
            let mut columns = line.splitn(2, ' ');
            let verdict = columns.next().unwrap_or_default();
            let rest = columns.next().unwrap_or_default().trim_start();
            matches!(verdict, "ok" | "warn") && rest.starts_with(check)
        });
        assert!(passed, "check {check} missing or not passing:\n{text}");
    }
    assert!(text.contains("p50") && text.contains("p99"), "{text}");
    assert!(
        text.contains("summary:") && text.contains("0 fail"),
        "{text}"
    );
    // The probes clean up after themselves.
    assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 0);
}

#[test]
fn doctor_fails_for_a_missing_directory() {
    let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let missing = directory.path().join("not-created");
    let output = doctor(&missing);
    let text = stdout(&output);
    assert!(!output.status.success(), "{text}");
    let line = text.lines().find(|line| line.starts_with("fail")).unwrap();
    assert!(
        line.contains("data directory") && line.contains("does not exist"),
        "{text}"
    );
    assert!(text.contains("fix: mkdir -p"), "{text}");
    assert!(text.contains("skip  direct I/O"), "{text}");
}

#[test]
fn doctor_fails_for_a_file_instead_of_a_directory() {
    let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = directory.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let output = doctor(&file);
    assert!(!output.status.success());
    assert!(stdout(&output).contains("is not a directory"));
}

/// Makes `path` read-only for this process: mode bits for an ordinary user; root ignores
/// those, so for root a read-only bind mount of the directory onto itself. Returns a guard that
/// undoes it, or None when this machine allows neither.
fn make_read_only(path: &Path) -> Option<ReadOnlyGuard> {
    let is_root = nix::unistd::geteuid().is_root();
    if !is_root {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o555)).ok()?;
        return Some(ReadOnlyGuard {
            path: path.to_path_buf(),
            mounted: false,
        });
    }
    let run = |arguments: &[&str]| {
        Command::new("mount")
            .args(arguments)
            .arg(path)
            .arg(path)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !run(&["--bind"]) {
        return None;
    }
    let guard = ReadOnlyGuard {
        path: path.to_path_buf(),
        mounted: true,
    };
    if !run(&["-o", "remount,bind,ro"]) {
        return None;
    }
    Some(guard)
}

struct ReadOnlyGuard {
    path: std::path::PathBuf,
    mounted: bool,
}

impl Drop for ReadOnlyGuard {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.path).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn doctor_fails_for_a_read_only_directory() {
    let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let read_only = directory.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    let Some(guard) = make_read_only(&read_only) else {
        // Neither mode bits (root) nor mounts (no CAP_SYS_ADMIN) can make it read-only here.
        eprintln!("cannot make a read-only directory on this machine; nothing to check");
        return;
    };
    let output = doctor(&read_only);
    drop(guard);
    let text = stdout(&output);
    println!("{text}");
    assert!(!output.status.success(), "{text}");
    let line = text
        .lines()
        .find(|line| line.contains("direct I/O"))
        .unwrap();
    assert!(line.starts_with("fail"), "{text}");
    assert!(
        line.contains("read-only") || line.contains("not writable"),
        "{text}"
    );
}
