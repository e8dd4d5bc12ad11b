//! The physical floors. Every loop is bounded by `--samples`; network traffic stays on loopback.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use shoal_io::probe::DirectProbeFile;

/// Round-trip message size: a small request header, like a replication heartbeat.
pub const ROUND_TRIP_MESSAGE_BYTES: usize = 64;
/// The most samples one run may take (keeps every run bounded).
pub const SAMPLES_MAX: usize = 1_000_000;
/// Histogram range: 1 ns to 60 s at 3 significant digits.
const HISTOGRAM_NANOS_MAX: u64 = 60_000_000_000;

#[derive(Debug, clap::Args)]
pub struct FloorOptions {
    /// Directory on the device to measure (the data directory's filesystem).
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
    /// Samples per floor.
    #[arg(long, default_value_t = 2_000)]
    pub samples: usize,
    /// Write the results as JSON to this file too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Percentiles of one floor, in nanoseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Percentiles {
    pub samples: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub(crate) fn from_histogram(histogram: &Histogram<u64>) -> Self {
        Self {
            samples: histogram.len(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        json!({
            "samples": self.samples, "p50_ns": self.p50, "p90_ns": self.p90,
            "p99_ns": self.p99, "p999_ns": self.p999, "max_ns": self.max,
        })
    }
}

pub(crate) fn histogram() -> io::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HISTOGRAM_NANOS_MAX, 3)
        .map_err(|error| io::Error::other(format!("histogram: {error}")))
}

pub(crate) fn record(histogram: &mut Histogram<u64>, duration: Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    histogram.saturating_record(nanos.clamp(1, HISTOGRAM_NANOS_MAX));
}

pub fn durable_write_floor(options: &FloorOptions) -> io::Result<Percentiles> {
    let probe = DirectProbeFile::create(&options.data_dir)?;
    let mut histogram = histogram()?;
    for latency in probe.write_sync_latencies(options.samples)? {
        record(&mut histogram, latency);
    }
    Ok(Percentiles::from_histogram(&histogram))
}

/// Ping-pong of `ROUND_TRIP_MESSAGE_BYTES` between this thread and an echo thread over
/// 127.0.0.1, with Nagle off as every Shoal connection has it.
pub fn loopback_round_trip_floor(samples: usize) -> io::Result<Percentiles> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut message = [0u8; ROUND_TRIP_MESSAGE_BYTES];
        for _ in 0..samples {
            stream.read_exact(&mut message)?;
            stream.write_all(&message)?;
        }
        Ok(())
    });
    let mut stream = TcpStream::connect(address)?;
    stream.set_nodelay(true)?;
    let mut histogram = histogram()?;
    let mut message = [0u8; ROUND_TRIP_MESSAGE_BYTES];
    for round in 0..samples {
        message[0] = round as u8;
        let started = Instant::now();
        stream.write_all(&message)?;
        stream.read_exact(&mut message)?;
        record(&mut histogram, started.elapsed());
    }
    echo.join()
        .map_err(|_| io::Error::other("echo thread panicked"))??;
    Ok(Percentiles::from_histogram(&histogram))
}

/// What BENCHMARKS.md asks every result to carry about the machine.
pub(crate) fn machine_description() -> serde_json::Value {
    let kernel = nix::sys::utsname::uname()
        .map(|name| name.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|count| count.get())
        .unwrap_or(0);
    let pressure = std::fs::read_to_string("/proc/pressure/cpu").unwrap_or_default();
    json!({ "kernel": kernel, "cores": cores, "cpu_pressure": pressure.trim() })
}

pub(crate) fn micros(nanos: u64) -> String {
    format!("{:.1}", nanos as f64 / 1_000.0)
}

pub fn run(options: &FloorOptions) -> io::Result<()> {
    if options.samples == 0 || options.samples > SAMPLES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--samples must be between 1 and {SAMPLES_MAX}"),
        ));
    }
    let durable = durable_write_floor(options)?;
    let round_trip = loopback_round_trip_floor(options.samples)?;
    println!(
        "floor (us)                         samples      p50      p90      p99    p99.9      max"
    );
    for (name, floor) in [
        ("4 KiB O_DIRECT write + fdatasync", &durable),
        ("loopback TCP round trip (64 B)", &round_trip),
    ] {
        println!(
            "{name:<34} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}",
            floor.samples,
            micros(floor.p50),
            micros(floor.p90),
            micros(floor.p99),
            micros(floor.p999),
            micros(floor.max)
        );
    }
    let report = json!({
        "machine": machine_description(),
        "data_dir": options.data_dir.display().to_string(),
        "durable_write_4k": durable.to_json(),
        "loopback_round_trip_64b": round_trip.to_json(),
    });
    if let Some(path) = &options.json {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&report).map_err(io::Error::other)?,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_measure_the_requested_number_of_samples() {
        let round_trip = loopback_round_trip_floor(50).unwrap();
        assert_eq!(round_trip.samples, 50);
        assert!(round_trip.p50 <= round_trip.p99 && round_trip.p99 <= round_trip.max);
        let directory = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let options = FloorOptions {
            data_dir: directory.path().to_path_buf(),
            samples: 20,
            json: None,
        };
        assert_eq!(durable_write_floor(&options).unwrap().samples, 20);
    }

    #[test]
    fn sample_counts_are_bounded() {
        for samples in [0, SAMPLES_MAX + 1] {
            let options = FloorOptions {
                data_dir: PathBuf::from("."),
                samples,
                json: None,
            };
            assert_eq!(
                run(&options).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
    }
}
