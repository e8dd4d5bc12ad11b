//! `shoal doctor`: checks what a bare-metal storage node needs, one line per check.
//!
//! Each check is a probe (reads the system) followed by a pure evaluation (decides ok, warn or
//! fail and the fix), so the decisions are unit-tested without the machine's cooperation.
//! kernel-notes/ explains every check and the numbers behind it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use shoal_io::probe::{DirectIoAlignment, DirectProbeFile, quantile};

/// glommio 0.9 needs io_uring features from Linux 5.8.
pub const KERNEL_VERSION_MINIMUM: (u32, u32) = (5, 8);
/// 6.1 (LTS) has mature io_uring, reports direct-I/O alignment through statx, and is what we test.
pub const KERNEL_VERSION_RECOMMENDED: (u32, u32) = (6, 1);
/// io_uring memory each shard executor registers and locks (glommio's default io_memory).
pub const SHARD_LOCKED_MEMORY_BYTES: u64 = 10 << 20;
/// fdatasync rounds sampled: enough for a stable p99 and well under a second on real NVMe.
pub const FSYNC_SAMPLES: usize = 200;
/// Faster than this, a flush cannot have reached non-volatile media on a device without
/// power-loss protection: something (hypervisor, RAID controller, drive cache) acknowledges early.
pub const FSYNC_SUSPICIOUSLY_FAST: Duration = Duration::from_micros(20);
/// Slower than this at p99, durable writes cannot meet a single-digit-millisecond p99.
pub const FSYNC_P99_SLOW: Duration = Duration::from_millis(10);
/// Shoal's I/O alignment; a device that needs more cannot be driven by it.
pub const SHOAL_ALIGNMENT_BYTES: u32 = shoal_io::IO_ALIGNMENT_BYTES as u32;
/// CAP_IPC_LOCK's bit in /proc/self/status CapEff: with it, RLIMIT_MEMLOCK does not apply.
const CAPABILITY_IPC_LOCK_BIT: u32 = 14;

#[derive(Debug, clap::Args)]
pub struct DoctorOptions {
    /// The data directory a node would use.
    #[arg(long, default_value = "shoal-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    /// Not run because a check it depends on failed.
    Skip,
}

impl fmt::Display for Verdict {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.pad(match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
            Verdict::Skip => "skip",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub name: &'static str,
    pub verdict: Verdict,
    pub summary: String,
    pub fix: Option<String>,
}

impl CheckOutcome {
    fn ok(name: &'static str, summary: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Ok,
            summary: summary.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Warn,
            summary: summary.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Fail,
            summary: summary.into(),
            fix: Some(fix.into()),
        }
    }

    fn skip(name: &'static str, reason: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Skip,
            summary: reason.into(),
            fix: None,
        }
    }
}

pub fn run(options: &DoctorOptions) -> ExitCode {
    println!(
        "shoal doctor: data directory {}",
        options.data_dir.display()
    );
    let outcomes = run_checks(&options.data_dir);
    for outcome in &outcomes {
        println!(
            "{:<5} {:<22} {}",
            outcome.verdict, outcome.name, outcome.summary
        );
        if let Some(fix) = &outcome.fix {
            println!("{:<5} {:<22} fix: {fix}", "", "");
        }
    }
    let count = |verdict| {
        outcomes
            .iter()
            .filter(|outcome| outcome.verdict == verdict)
            .count()
    };
    let failures = count(Verdict::Fail);
    println!(
        "summary: {} ok, {} warn, {} fail, {} skipped",
        count(Verdict::Ok),
        count(Verdict::Warn),
        failures,
        count(Verdict::Skip)
    );
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub fn run_checks(data_directory: &Path) -> Vec<CheckOutcome> {
    let mut outcomes = vec![
        check_kernel(),
        check_io_uring(),
        check_locked_memory(),
        check_cores(),
        check_transparent_huge_pages(),
        check_clock_source(),
    ];
    outcomes.extend(check_data_directory(data_directory));
    outcomes
}

// ---- kernel ---------------------------------------------------------------------------------

fn check_kernel() -> CheckOutcome {
    match nix::sys::utsname::uname() {
        Ok(name) => evaluate_kernel_release(&name.release().to_string_lossy()),
        Err(error) => CheckOutcome::fail("kernel", format!("uname failed: {error}"), "none known"),
    }
}

/// Parses "6.18.44-fc-v595" into (6, 18).
pub fn parse_kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|character: char| !character.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub fn evaluate_kernel_release(release: &str) -> CheckOutcome {
    const NAME: &str = "kernel";
    let (minimum_major, minimum_minor) = KERNEL_VERSION_MINIMUM;
    let (recommended_major, recommended_minor) = KERNEL_VERSION_RECOMMENDED;
    let Some(version) = parse_kernel_release(release) else {
        return CheckOutcome::warn(
            NAME,
            format!("cannot parse kernel release {release:?}"),
            format!("use Linux {recommended_major}.{recommended_minor} or newer"),
        );
    };
    if version < KERNEL_VERSION_MINIMUM {
        CheckOutcome::fail(
            NAME,
            format!(
                "{release}: io_uring as glommio uses it needs {minimum_major}.{minimum_minor}+"
            ),
            format!("upgrade to Linux {recommended_major}.{recommended_minor} or newer"),
        )
    } else if version < KERNEL_VERSION_RECOMMENDED {
        CheckOutcome::warn(
            NAME,
            format!("{release}: works, but untested below {recommended_major}.{recommended_minor}"),
            format!("upgrade to Linux {recommended_major}.{recommended_minor} or newer"),
        )
    } else {
        CheckOutcome::ok(NAME, release.to_owned())
    }
}

// ---- io_uring -------------------------------------------------------------------------------

fn check_io_uring() -> CheckOutcome {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
    let setup = io_uring::IoUring::new(8).map(|_| ());
    evaluate_io_uring(disabled.as_deref(), setup)
}

/// `disabled_setting`: contents of /proc/sys/kernel/io_uring_disabled (absent before 6.6).
/// `setup`: the result of creating a real ring.
pub fn evaluate_io_uring(disabled_setting: Option<&str>, setup: io::Result<()>) -> CheckOutcome {
    const NAME: &str = "io_uring";
    const FIX: &str = "sysctl -w kernel.io_uring_disabled=0 (and persist it in /etc/sysctl.d)";
    match (disabled_setting.map(str::trim), setup) {
        (Some("2"), _) => CheckOutcome::fail(
            NAME,
            "disabled for every process (io_uring_disabled=2)",
            FIX,
        ),
        (_, Err(error)) => CheckOutcome::fail(
            NAME,
            format!("cannot create a ring: {error}"),
            format!("{FIX}; in a container, allow the io_uring_* syscalls in its seccomp profile"),
        ),
        (Some("1"), Ok(())) => CheckOutcome::warn(
            NAME,
            "restricted to kernel.io_uring_group (io_uring_disabled=1); this process may use it",
            "make sure the shoal service user is in kernel.io_uring_group, or set it to 0",
        ),
        (_, Ok(())) => CheckOutcome::ok(NAME, "available; a test ring was created"),
    }
}

// ---- locked memory --------------------------------------------------------------------------

fn check_locked_memory() -> CheckOutcome {
    use nix::sys::resource::{Resource, getrlimit};
    let cores = available_cores() as u64;
    let has_ipc_lock = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| effective_capabilities(&status))
        .is_some_and(|capabilities| capabilities & (1 << CAPABILITY_IPC_LOCK_BIT) != 0);
    match getrlimit(Resource::RLIMIT_MEMLOCK) {
        Ok((soft, _hard)) => evaluate_locked_memory(soft, has_ipc_lock, cores),
        Err(error) => CheckOutcome::fail("memlock", format!("getrlimit failed: {error}"), "none"),
    }
}

/// Parses the CapEff line of /proc/self/status.
pub fn effective_capabilities(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

pub fn evaluate_locked_memory(soft_limit: u64, has_ipc_lock: bool, cores: u64) -> CheckOutcome {
    const NAME: &str = "memlock";
    let required = cores.saturating_mul(SHARD_LOCKED_MEMORY_BYTES);
    let mebibytes = |bytes: u64| bytes >> 20;
    if has_ipc_lock {
        return CheckOutcome::ok(NAME, "CAP_IPC_LOCK held: RLIMIT_MEMLOCK does not apply");
    }
    if soft_limit == nix::sys::resource::RLIM_INFINITY {
        return CheckOutcome::ok(NAME, "RLIMIT_MEMLOCK unlimited");
    }
    let summary = format!(
        "RLIMIT_MEMLOCK {} MiB; {cores} shards need {} MiB of io_uring memory",
        mebibytes(soft_limit),
        mebibytes(required)
    );
    if soft_limit >= required {
        CheckOutcome::ok(NAME, summary)
    } else {
        CheckOutcome::fail(
            NAME,
            summary,
            "set LimitMEMLOCK=infinity in the systemd unit (or `ulimit -l unlimited`)",
        )
    }
}

// ---- cores ----------------------------------------------------------------------------------

fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|count| count.get())
        .unwrap_or(1)
}

fn check_cores() -> CheckOutcome {
    // SAFETY: sysconf has no memory-safety preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    evaluate_cores(available_cores(), usize::try_from(online).unwrap_or(0))
}

pub fn evaluate_cores(available: usize, online: usize) -> CheckOutcome {
    const NAME: &str = "cores";
    let summary = format!("{available} usable by this process ({online} online): one shard each");
    if available <= 1 {
        CheckOutcome::warn(
            NAME,
            summary,
            "give the node at least 2 cores: with 1, replication, I/O and requests share it",
        )
    } else {
        CheckOutcome::ok(NAME, summary)
    }
}

// ---- transparent huge pages -----------------------------------------------------------------

fn check_transparent_huge_pages() -> CheckOutcome {
    evaluate_transparent_huge_pages(
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .ok()
            .as_deref(),
    )
}

/// `setting` looks like "always [madvise] never"; the bracketed word is active.
pub fn evaluate_transparent_huge_pages(setting: Option<&str>) -> CheckOutcome {
    const NAME: &str = "transparent huge pages";
    let active = setting.and_then(|text| {
        let start = text.find('[')?;
        let end = text[start..].find(']')? + start;
        Some(text[start + 1..end].to_owned())
    });
    match active.as_deref() {
        Some("always") => CheckOutcome::warn(
            NAME,
            "always: background compaction and huge-page faults add millisecond stalls",
            "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled",
        ),
        Some(mode @ ("madvise" | "never")) => CheckOutcome::ok(NAME, mode.to_owned()),
        _ => CheckOutcome::warn(
            NAME,
            format!("unknown setting {setting:?}"),
            "expect madvise or never in /sys/kernel/mm/transparent_hugepage/enabled",
        ),
    }
}

// ---- clock source ---------------------------------------------------------------------------

fn check_clock_source() -> CheckOutcome {
    evaluate_clock_source(
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .ok()
            .as_deref(),
    )
}

pub fn evaluate_clock_source(source: Option<&str>) -> CheckOutcome {
    const NAME: &str = "clock source";
    match source.map(str::trim) {
        // Read in user space through the vDSO: tens of nanoseconds per clock read.
        Some(fast @ ("tsc" | "kvm-clock" | "arch_sys_counter")) => {
            CheckOutcome::ok(NAME, fast.to_owned())
        }
        Some(slow) => CheckOutcome::warn(
            NAME,
            format!("{slow}: every clock read is a system call, and requests read it often"),
            "use tsc (check `dmesg | grep -i clocksource` for why the kernel rejected it)",
        ),
        None => CheckOutcome::warn(
            NAME,
            "cannot read the current clock source",
            "check /sys/devices/system/clocksource/clocksource0/current_clocksource",
        ),
    }
}

// ---- data directory -------------------------------------------------------------------------

const DIRECTORY: &str = "data directory";
const DIRECT_IO: &str = "direct I/O";
const FSYNC: &str = "fdatasync latency";
const DMA_SELF_TEST: &str = "glommio DMA self-test";

fn check_data_directory(path: &Path) -> Vec<CheckOutcome> {
    let dependents = [DIRECT_IO, FSYNC, DMA_SELF_TEST];
    let skipped = |outcome: CheckOutcome| {
        let mut outcomes = vec![outcome];
        outcomes.extend(
            dependents
                .iter()
                .map(|name| CheckOutcome::skip(name, "the data directory is unusable")),
        );
        outcomes
    };
    let directory = evaluate_directory(path, std::fs::metadata(path), filesystem_magic(path));
    if directory.verdict == Verdict::Fail {
        return skipped(directory);
    }
    let probe = match DirectProbeFile::create(path) {
        Ok(probe) => probe,
        Err(error) => {
            let mut outcomes = vec![directory, evaluate_direct_open_error(path, &error)];
            outcomes.extend(
                [FSYNC, DMA_SELF_TEST]
                    .iter()
                    .map(|name| CheckOutcome::skip(name, "direct I/O is unusable")),
            );
            return outcomes;
        }
    };
    let direct_io = match probe.round_trip() {
        Ok(()) => evaluate_alignment(probe.alignment().ok().flatten()),
        Err(error) => CheckOutcome::fail(
            DIRECT_IO,
            format!("O_DIRECT write, fdatasync, read back failed: {error}"),
            "check the device with `dmesg`; do not put data on it until this passes",
        ),
    };
    let fsync = match probe.write_sync_latencies(FSYNC_SAMPLES) {
        Ok(latencies) => evaluate_fsync_latency(
            quantile(&latencies, 0.5).unwrap_or_default(),
            quantile(&latencies, 0.99).unwrap_or_default(),
        ),
        Err(error) => CheckOutcome::fail(
            FSYNC,
            format!("fdatasync failed: {error}"),
            "a failing flush means data loss: replace or repair the device",
        ),
    };
    drop(probe);
    vec![directory, direct_io, fsync, check_dma_self_test(path)]
}

fn filesystem_magic(path: &Path) -> Option<i64> {
    nix::sys::statfs::statfs(path)
        .ok()
        .map(|stat| stat.filesystem_type().0)
}

/// tmpfs and ramfs accept writes but keep nothing across a reboot and have no direct I/O.
const VOLATILE_FILESYSTEM_MAGICS: [(i64, &str); 2] =
    [(0x0102_1994, "tmpfs"), (0x8584_58f6, "ramfs")];

pub fn evaluate_directory(
    path: &Path,
    metadata: io::Result<std::fs::Metadata>,
    filesystem_magic: Option<i64>,
) -> CheckOutcome {
    let shown = path.display();
    match metadata {
        Err(error) if error.kind() == io::ErrorKind::NotFound => CheckOutcome::fail(
            DIRECTORY,
            format!("{shown} does not exist"),
            format!("mkdir -p {shown} (on the NVMe filesystem that will hold the data)"),
        ),
        Err(error) => CheckOutcome::fail(
            DIRECTORY,
            format!("cannot inspect {shown}: {error}"),
            "check the path and its permissions",
        ),
        Ok(metadata) if !metadata.is_dir() => CheckOutcome::fail(
            DIRECTORY,
            format!("{shown} is not a directory"),
            "point --data-dir at a directory",
        ),
        Ok(_) => match VOLATILE_FILESYSTEM_MAGICS
            .iter()
            .find(|(magic, _)| Some(*magic) == filesystem_magic)
        {
            Some((_, name)) => CheckOutcome::fail(
                DIRECTORY,
                format!(
                    "{shown} is on {name}: nothing survives a reboot and there is no direct I/O"
                ),
                "put the data directory on an ext4 or xfs filesystem on local NVMe",
            ),
            None => CheckOutcome::ok(DIRECTORY, format!("{shown} exists")),
        },
    }
}

pub fn evaluate_direct_open_error(path: &Path, error: &io::Error) -> CheckOutcome {
    let shown = path.display();
    match error.raw_os_error() {
        Some(libc::EROFS) => CheckOutcome::fail(
            DIRECT_IO,
            format!("{shown} is read-only (EROFS): a node cannot write its WAL"),
            "remount the filesystem read-write, or choose another --data-dir",
        ),
        Some(libc::EACCES | libc::EPERM) => CheckOutcome::fail(
            DIRECT_IO,
            format!("{shown} is not writable by this user ({error})"),
            format!("chown the directory to the shoal service user: chown shoal: {shown}"),
        ),
        Some(libc::EINVAL) => CheckOutcome::fail(
            DIRECT_IO,
            format!("the filesystem of {shown} refuses O_DIRECT"),
            "use ext4 or xfs on a block device",
        ),
        _ => CheckOutcome::fail(
            DIRECT_IO,
            format!("cannot create a file with O_DIRECT in {shown}: {error}"),
            "check the directory, its filesystem and free space",
        ),
    }
}

pub fn evaluate_alignment(alignment: Option<DirectIoAlignment>) -> CheckOutcome {
    match alignment {
        Some(alignment) if alignment.offset_bytes > SHOAL_ALIGNMENT_BYTES => CheckOutcome::fail(
            DIRECT_IO,
            format!(
                "the device needs {} B aligned I/O; Shoal issues {SHOAL_ALIGNMENT_BYTES} B",
                alignment.offset_bytes
            ),
            "use a device with a logical block size of 4096 B or less",
        ),
        Some(alignment) => CheckOutcome::ok(
            DIRECT_IO,
            format!(
                "O_DIRECT round trip ok; device alignment {} B (memory {} B), Shoal uses {}",
                alignment.offset_bytes, alignment.memory_bytes, SHOAL_ALIGNMENT_BYTES
            ),
        ),
        None => CheckOutcome::ok(
            DIRECT_IO,
            format!(
                "O_DIRECT round trip ok; alignment not reported by statx, Shoal uses {}",
                SHOAL_ALIGNMENT_BYTES
            ),
        ),
    }
}

pub fn evaluate_fsync_latency(p50: Duration, p99: Duration) -> CheckOutcome {
    let summary = format!(
        "4 KiB O_DIRECT write + fdatasync: p50 {} us, p99 {} us ({FSYNC_SAMPLES} samples)",
        p50.as_micros(),
        p99.as_micros()
    );
    if p50 < FSYNC_SUSPICIOUSLY_FAST {
        CheckOutcome::warn(
            FSYNC,
            summary,
            "flushes this fast are acknowledged by a volatile cache unless the device has \
             power-loss protection: confirm it has (kernel-notes/durability.md)",
        )
    } else if p99 > FSYNC_P99_SLOW {
        CheckOutcome::warn(
            FSYNC,
            summary,
            "slow flushes: use NVMe with power-loss protection, or expect higher write latency",
        )
    } else {
        CheckOutcome::ok(FSYNC, summary)
    }
}

/// The exact start-up path of a storage node's shard: a glommio executor opening the directory
/// with the IOPOLL probe and the write/fdatasync/read-back self-test.
fn check_dma_self_test(path: &Path) -> CheckOutcome {
    let path = path.to_path_buf();
    let spawned = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("doctor")
        .io_memory(shoal_io::testing::TEST_EXECUTOR_IO_MEMORY_BYTES)
        .spawn(move || async move {
            shoal_io::storage::dma::DmaDirectory::open(&path)
                .await
                .map(|_| ())
        });
    let outcome = match spawned {
        Ok(handle) => handle.join().map_err(|error| error.to_string()),
        Err(error) => Err(format!("cannot start a glommio executor: {error}")),
    };
    match outcome {
        Ok(Ok(())) => CheckOutcome::ok(
            DMA_SELF_TEST,
            "executor started; write, fdatasync, read back ok",
        ),
        Ok(Err(error)) => CheckOutcome::fail(
            DMA_SELF_TEST,
            error.to_string(),
            "see kernel-notes/io_uring-and-memlock.md and kernel-notes/direct-io.md",
        ),
        Err(error) => CheckOutcome::fail(
            DMA_SELF_TEST,
            error,
            "see kernel-notes/io_uring-and-memlock.md (memlock, io_uring availability)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases() {
        assert_eq!(parse_kernel_release("6.18.44-fc-v595"), Some((6, 18)));
        assert_eq!(parse_kernel_release("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_kernel_release("garbage"), None);
        assert_eq!(
            evaluate_kernel_release("6.18.44-fc-v595").verdict,
            Verdict::Ok
        );
        assert_eq!(evaluate_kernel_release("5.15.0").verdict, Verdict::Warn);
        assert_eq!(evaluate_kernel_release("5.4.0").verdict, Verdict::Fail);
        assert_eq!(evaluate_kernel_release("4.19.0").verdict, Verdict::Fail);
        assert_eq!(evaluate_kernel_release("x").verdict, Verdict::Warn);
    }

    #[test]
    fn io_uring_settings() {
        let created = || Ok(());
        let refused = || Err(io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(
            evaluate_io_uring(Some("0\n"), created()).verdict,
            Verdict::Ok
        );
        assert_eq!(evaluate_io_uring(None, created()).verdict, Verdict::Ok);
        assert_eq!(
            evaluate_io_uring(Some("1"), created()).verdict,
            Verdict::Warn
        );
        assert_eq!(
            evaluate_io_uring(Some("2"), created()).verdict,
            Verdict::Fail
        );
        assert_eq!(
            evaluate_io_uring(Some("0"), refused()).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn locked_memory() {
        let unlimited = nix::sys::resource::RLIM_INFINITY;
        assert_eq!(
            evaluate_locked_memory(8 << 20, true, 4).verdict,
            Verdict::Ok
        );
        assert_eq!(
            evaluate_locked_memory(unlimited, false, 64).verdict,
            Verdict::Ok
        );
        assert_eq!(
            evaluate_locked_memory(8 << 20, false, 2).verdict,
            Verdict::Fail
        );
        assert_eq!(
            evaluate_locked_memory(64 << 20, false, 4).verdict,
            Verdict::Ok
        );
        assert_eq!(
            effective_capabilities("Name:\tx\nCapEff:\t000001ffffffffff\n"),
            Some(0x1ff_ffff_ffff)
        );
        assert_eq!(effective_capabilities("CapEff:\t0000000000000000"), Some(0));
    }

    #[test]
    fn huge_pages_and_clock_sources() {
        let thp = |text| evaluate_transparent_huge_pages(Some(text)).verdict;
        assert_eq!(thp("[always] madvise never"), Verdict::Warn);
        assert_eq!(thp("always [madvise] never\n"), Verdict::Ok);
        assert_eq!(thp("always madvise [never]"), Verdict::Ok);
        assert_eq!(evaluate_transparent_huge_pages(None).verdict, Verdict::Warn);
        assert_eq!(evaluate_clock_source(Some("tsc\n")).verdict, Verdict::Ok);
        assert_eq!(evaluate_clock_source(Some("hpet")).verdict, Verdict::Warn);
        assert_eq!(evaluate_clock_source(None).verdict, Verdict::Warn);
    }

    #[test]
    fn cores() {
        assert_eq!(evaluate_cores(1, 1).verdict, Verdict::Warn);
        assert_eq!(evaluate_cores(16, 16).verdict, Verdict::Ok);
    }

    #[test]
    fn direct_io_errors_name_their_cause() {
        let path = Path::new("/data");
        let outcome = evaluate_direct_open_error(path, &io::Error::from_raw_os_error(libc::EROFS));
        assert_eq!(outcome.verdict, Verdict::Fail);
        assert!(outcome.summary.contains("read-only"), "{}", outcome.summary);
        let outcome = evaluate_direct_open_error(path, &io::Error::from_raw_os_error(libc::EINVAL));
        assert!(outcome.summary.contains("O_DIRECT"), "{}", outcome.summary);
    }

    #[test]
    fn alignment_and_fsync() {
        let aligned = |offset_bytes| DirectIoAlignment {
            memory_bytes: 4,
            offset_bytes,
        };
        assert_eq!(evaluate_alignment(Some(aligned(512))).verdict, Verdict::Ok);
        assert_eq!(evaluate_alignment(Some(aligned(4096))).verdict, Verdict::Ok);
        assert_eq!(
            evaluate_alignment(Some(aligned(8192))).verdict,
            Verdict::Fail
        );
        assert_eq!(evaluate_alignment(None).verdict, Verdict::Ok);
        let micros = Duration::from_micros;
        assert_eq!(
            evaluate_fsync_latency(micros(80), micros(300)).verdict,
            Verdict::Ok
        );
        assert_eq!(
            evaluate_fsync_latency(micros(5), micros(9)).verdict,
            Verdict::Warn
        );
        assert_eq!(
            evaluate_fsync_latency(micros(900), micros(40_000)).verdict,
            Verdict::Warn
        );
    }

    #[test]
    fn volatile_filesystems_fail() {
        let directory = std::env::temp_dir();
        let metadata = std::fs::metadata(&directory);
        let outcome = evaluate_directory(&directory, metadata, Some(0x0102_1994));
        assert_eq!(outcome.verdict, Verdict::Fail);
        assert!(outcome.summary.contains("tmpfs"));
    }
}
