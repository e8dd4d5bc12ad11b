//! Per-shard counters and HDR latency histograms, rendered as Prometheus text.
//!
//! Each shard keeps its own metrics on its own core (no sharing on the hot path) and renders
//! them to text about once a second; the node's admin endpoint concatenates the latest text of
//! every shard. Histograms are exported as summaries (p50, p90, p99, p99.9, max) because HDR
//! buckets do not map onto Prometheus' fixed buckets without losing what HDR is for.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use hdrhistogram::Histogram;
use shoal_store::btree::cache::CacheStats;
use shoal_store::wal::WalStats;
use shoal_wire::messages::{ReplicaRole, ReplicaStatus};

use crate::runtime::RecoveryFailure;

/// Latencies above this are recorded as this (an hour, in microseconds).
const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Records per WAL batch above this are recorded as this.
const BATCH_RECORDS_MAX: u64 = 1 << 20;
const SIGNIFICANT_DIGITS: u8 = 3;

fn histogram(max: u64) -> Histogram<u64> {
    match Histogram::new_with_bounds(1, max, SIGNIFICANT_DIGITS) {
        Ok(histogram) => histogram,
        Err(error) => shoal_io::fatal!("histogram bounds are constants and valid: {error}"),
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<&'static str, u64>,
    request_errors: BTreeMap<&'static str, u64>,
    request_latency_us: BTreeMap<&'static str, Histogram<u64>>,
    wal_batch_records: Option<Histogram<u64>>,
    wal_sync_latency_us: Option<Histogram<u64>>,
    replication_messages_dropped: u64,
    requests_refused_busy: u64,
    time_to_live_deletes_proposed: u64,
    /// Bytes of stream records per partition replica on the shard (only those with any).
    stream_record_bytes: BTreeMap<u64, u64>,
}

/// The metrics of one shard. Single-threaded, like everything else on the shard.
#[derive(Default)]
pub struct ShardMetrics {
    inner: RefCell<Inner>,
}

impl ShardMetrics {
    pub fn request_served(
        &self,
        operation: &'static str,
        latency: Duration,
        error: Option<&'static str>,
    ) {
        let mut inner = self.inner.borrow_mut();
        *inner.requests.entry(operation).or_default() += 1;
        if let Some(kind) = error {
            *inner.request_errors.entry(kind).or_default() += 1;
        }
        let micros = (latency.as_micros() as u64).clamp(1, LATENCY_US_MAX);
        inner
            .request_latency_us
            .entry(operation)
            .or_insert_with(|| histogram(LATENCY_US_MAX))
            .saturating_record(micros);
    }

    pub fn wal_batch(&self, records: usize, sync: Duration) {
        let mut inner = self.inner.borrow_mut();
        inner
            .wal_batch_records
            .get_or_insert_with(|| histogram(BATCH_RECORDS_MAX))
            .saturating_record((records as u64).clamp(1, BATCH_RECORDS_MAX));
        inner
            .wal_sync_latency_us
            .get_or_insert_with(|| histogram(LATENCY_US_MAX))
            .saturating_record((sync.as_micros() as u64).clamp(1, LATENCY_US_MAX));
    }

    pub fn replication_message_dropped(&self) {
        self.inner.borrow_mut().replication_messages_dropped += 1;
    }

    pub fn request_refused_busy(&self) {
        self.inner.borrow_mut().requests_refused_busy += 1;
    }

    /// The bytes of stream records a replica holds now (shoal_model::stream; bounded per
    /// partition by the trim): 0 forgets the partition, as does its deletion.
    pub fn stream_record_bytes(&self, partition: u64, bytes: u64) {
        let mut inner = self.inner.borrow_mut();
        if bytes == 0 {
            inner.stream_record_bytes.remove(&partition);
        } else {
            inner.stream_record_bytes.insert(partition, bytes);
        }
    }

    /// Deletes of expired items a sweeper on this shard proposed.
    pub fn time_to_live_deletes_proposed(&self, count: u64) {
        self.inner.borrow_mut().time_to_live_deletes_proposed += count;
    }

    /// The shard's metrics in the Prometheus text format, samples only: the node serves them
    /// with every other shard's under the families' HELP/TYPE lines ([`HEADERS`],
    /// [`exposition`]).
    pub fn render(
        &self,
        node: u64,
        shard: u16,
        cache: &CacheStats,
        wal: &WalStats,
        replicas: &[ReplicaStatus],
        recovery_failures: &[RecoveryFailure],
    ) -> String {
        let inner = self.inner.borrow();
        let labels = format!("node=\"{node}\",shard=\"{shard}\"");
        let mut text = String::new();
        for (operation, count) in &inner.requests {
            let _ = writeln!(
                text,
                "shoal_requests_total{{{labels},operation=\"{operation}\"}} {count}"
            );
        }
        for (kind, count) in &inner.request_errors {
            let _ = writeln!(
                text,
                "shoal_request_errors_total{{{labels},kind=\"{kind}\"}} {count}"
            );
        }
        for (operation, histogram) in &inner.request_latency_us {
            summary(
                &mut text,
                "shoal_request_latency_us",
                &format!("{labels},operation=\"{operation}\""),
                histogram,
            );
        }
        if let Some(histogram) = &inner.wal_batch_records {
            summary(&mut text, "shoal_wal_batch_records", &labels, histogram);
        }
        if let Some(histogram) = &inner.wal_sync_latency_us {
            summary(
                &mut text,
                "shoal_wal_fdatasync_latency_us",
                &labels,
                histogram,
            );
        }
        let _ = writeln!(
            text,
            "shoal_wal_records_total{{{labels}}} {}",
            wal.records_appended
        );
        let _ = writeln!(
            text,
            "shoal_wal_batches_total{{{labels}}} {}",
            wal.batches_written
        );
        let _ = writeln!(
            text,
            "shoal_wal_segments_recycled_total{{{labels}}} {}",
            wal.segments_recycled
        );
        let _ = writeln!(
            text,
            "shoal_wal_waits_for_checkpoint_total{{{labels}}} {}",
            wal.waits_for_checkpoint
        );
        let _ = writeln!(
            text,
            "shoal_wal_pending_records{{{labels}}} {}",
            wal.pending_records
        );
        let _ = writeln!(
            text,
            "shoal_wal_lsn_durable{{{labels}}} {}",
            wal.lsn_durable.0
        );
        let _ = writeln!(text, "shoal_cache_hits_total{{{labels}}} {}", cache.hits);
        let _ = writeln!(
            text,
            "shoal_cache_misses_total{{{labels}}} {}",
            cache.misses
        );
        let _ = writeln!(
            text,
            "shoal_cache_evictions_total{{{labels}}} {}",
            cache.evictions
        );
        let _ = writeln!(
            text,
            "shoal_replication_messages_dropped_total{{{labels}}} {}",
            inner.replication_messages_dropped
        );
        let _ = writeln!(
            text,
            "shoal_requests_refused_busy_total{{{labels}}} {}",
            inner.requests_refused_busy
        );
        let _ = writeln!(
            text,
            "shoal_ttl_deletes_proposed_total{{{labels}}} {}",
            inner.time_to_live_deletes_proposed
        );
        let leaders = replicas
            .iter()
            .filter(|replica| {
                matches!(
                    replica.role,
                    ReplicaRole::Leader | ReplicaRole::LeaderWithLease
                )
            })
            .count();
        let _ = writeln!(text, "shoal_replicas{{{labels}}} {}", replicas.len());
        let _ = writeln!(text, "shoal_leaders{{{labels}}} {leaders}");
        for replica in replicas {
            let partition = format!("{labels},partition=\"{}\"", replica.partition);
            let _ = writeln!(
                text,
                "shoal_partition_commit_slot{{{partition}}} {}",
                replica.commit_slot
            );
            let _ = writeln!(
                text,
                "shoal_partition_applied_slot{{{partition}}} {}",
                replica.applied_slot
            );
            let _ = writeln!(
                text,
                "shoal_partition_items{{{partition}}} {}",
                replica.item_count
            );
        }
        for (partition, bytes) in &inner.stream_record_bytes {
            let _ = writeln!(
                text,
                "shoal_partition_stream_record_bytes{{{labels},partition=\"{partition}\"}} {bytes}"
            );
        }
        for failure in recovery_failures {
            let _ = writeln!(
                text,
                "shoal_partition_recovery_failed{{{labels},partition=\"{}\"}} 1",
                failure.partition
            );
        }
        text
    }
}

fn summary(text: &mut String, name: &str, labels: &str, histogram: &Histogram<u64>) {
    for quantile in [0.5, 0.9, 0.99, 0.999] {
        let _ = writeln!(
            text,
            "{name}{{{labels},quantile=\"{quantile}\"}} {}",
            histogram.value_at_quantile(quantile)
        );
    }
    let _ = writeln!(
        text,
        "{name}{{{labels},quantile=\"1\"}} {}",
        histogram.max()
    );
    let _ = writeln!(text, "{name}_count{{{labels}}} {}", histogram.len());
}

/// One Prometheus text exposition from the HELP/TYPE lines of every family (`headers`, in the
/// order to serve them) and sample lines from several renderers (`chunks`, one per shard):
/// each family's HELP and TYPE followed by all of its samples, as the text format requires.
/// Writing every header first and the shards' samples after them made Prometheus' Python
/// client and the OpenMetrics parser misread the whole page (issue 21). A sample belongs to
/// the family of its name, or, for a summary or histogram, of its name without `_sum`,
/// `_count` or `_bucket`. Samples of no declared family (a renderer without its header, a
/// bug) are served last, untyped, so nothing is lost from a scrape.
pub fn exposition(headers: &str, chunks: &[&str]) -> String {
    let mut families: Vec<(&str, Vec<&str>, Vec<&str>)> = Vec::new();
    for line in headers.lines() {
        let Some(name) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .and_then(|rest| rest.split(' ').next())
        else {
            continue;
        };
        match families.iter_mut().find(|(family, _, _)| *family == name) {
            Some((_, header_lines, _)) => header_lines.push(line),
            None => families.push((name, vec![line], Vec::new())),
        }
    }
    let mut undeclared = Vec::new();
    for line in chunks.iter().flat_map(|chunk| chunk.lines()) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split(['{', ' ']).next().unwrap_or(line);
        let family = families.iter_mut().find(|(family, _, _)| {
            name == *family
                || ["_sum", "_count", "_bucket"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(*family))
        });
        match family {
            Some((_, _, samples)) => samples.push(line),
            None => undeclared.push(line),
        }
    }
    let mut text = String::new();
    for line in families
        .iter()
        .flat_map(|(_, header_lines, samples)| header_lines.iter().chain(samples))
        .chain(&undeclared)
    {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// HELP and TYPE lines for every metric a shard renders; written once per scrape.
pub const HEADERS: &str = "\
# HELP shoal_requests_total Requests served by a shard, by operation.
# TYPE shoal_requests_total counter
# HELP shoal_request_errors_total Requests answered with an error, by kind.
# TYPE shoal_request_errors_total counter
# HELP shoal_request_latency_us Time from a request's arrival at the shard to its reply, microseconds.
# TYPE shoal_request_latency_us summary
# HELP shoal_wal_batch_records Records per WAL group-commit batch.
# TYPE shoal_wal_batch_records summary
# HELP shoal_wal_fdatasync_latency_us fdatasync latency of WAL batches, microseconds.
# TYPE shoal_wal_fdatasync_latency_us summary
# HELP shoal_wal_records_total Records appended to the shard WAL.
# TYPE shoal_wal_records_total counter
# HELP shoal_wal_waits_for_checkpoint_total Times the WAL committer waited for a checkpoint to free the next segment.
# TYPE shoal_wal_waits_for_checkpoint_total counter
# HELP shoal_wal_pending_records Records queued for the WAL and not yet written.
# TYPE shoal_wal_pending_records gauge
# HELP shoal_wal_lsn_durable The WAL is durable through this LSN.
# TYPE shoal_wal_lsn_durable gauge
# HELP shoal_wal_batches_total Batches written to the shard WAL.
# TYPE shoal_wal_batches_total counter
# HELP shoal_wal_segments_recycled_total WAL segments reused after checkpoints.
# TYPE shoal_wal_segments_recycled_total counter
# HELP shoal_cache_hits_total Page cache hits.
# TYPE shoal_cache_hits_total counter
# HELP shoal_cache_misses_total Page cache misses.
# TYPE shoal_cache_misses_total counter
# HELP shoal_cache_evictions_total Page cache evictions.
# TYPE shoal_cache_evictions_total counter
# HELP shoal_replication_messages_dropped_total Replication messages dropped because a replica's queue was full.
# TYPE shoal_replication_messages_dropped_total counter
# HELP shoal_requests_refused_busy_total Requests refused because a replica's queue was full.
# TYPE shoal_requests_refused_busy_total counter
# HELP shoal_ttl_deletes_proposed_total Deletes of expired items (Time to Live) the shard's partition leaders proposed.
# TYPE shoal_ttl_deletes_proposed_total counter
# HELP shoal_replicas Partition replicas on the shard.
# TYPE shoal_replicas gauge
# HELP shoal_leaders Partition replicas on the shard that lead their group.
# TYPE shoal_leaders gauge
# HELP shoal_partition_commit_slot The replica's commit slot; replication lag is the leader's commit slot minus a follower's applied slot.
# TYPE shoal_partition_commit_slot gauge
# HELP shoal_partition_applied_slot The replica's applied slot.
# TYPE shoal_partition_applied_slot gauge
# HELP shoal_partition_stream_record_bytes Bytes of DynamoDB Streams records the replica holds (replicas with none are left out).
# TYPE shoal_partition_stream_record_bytes gauge
# HELP shoal_partition_items Items in the replica.
# TYPE shoal_partition_items gauge
# HELP shoal_partition_recovery_failed 1 for a partition whose replica on the shard refused to recover at start: out of service, files kept, the reason in the log.
# TYPE shoal_partition_recovery_failed gauge
";

#[cfg(test)]
mod exposition_tests {
    use super::*;

    #[test]
    fn every_family_is_served_whole_with_the_samples_of_every_shard() {
        let headers =
            "# HELP a_total A.\n# TYPE a_total counter\n# HELP b_us B.\n# TYPE b_us summary\n";
        let shard_0 = "a_total{shard=\"0\"} 1\nb_us{shard=\"0\",quantile=\"0.5\"} 7\nb_us_count{shard=\"0\"} 2\n";
        let shard_1 = "b_us{shard=\"1\",quantile=\"0.5\"} 9\na_total{shard=\"1\"} 3\nstray 1\n";
        assert_eq!(
            exposition(headers, &[shard_0, shard_1]),
            "# HELP a_total A.\n# TYPE a_total counter\na_total{shard=\"0\"} 1\na_total{shard=\"1\"} 3\n\
             # HELP b_us B.\n# TYPE b_us summary\nb_us{shard=\"0\",quantile=\"0.5\"} 7\n\
             b_us_count{shard=\"0\"} 2\nb_us{shard=\"1\",quantile=\"0.5\"} 9\nstray 1\n"
        );
    }

    #[test]
    fn every_sample_a_shard_renders_has_a_declared_family() {
        let metrics = ShardMetrics::default();
        metrics.request_served("PutItem", Duration::from_micros(10), Some("Busy"));
        metrics.wal_batch(3, Duration::from_micros(100));
        metrics.replication_message_dropped();
        let rendered = metrics.render(1, 0, &CacheStats::default(), &WalStats::default(), &[], &[]);
        assert!(rendered.contains("shoal_request_latency_us"));
        let text = exposition(HEADERS, &[&rendered, &rendered]);
        // Every sample follows the TYPE line of its own family.
        let mut family = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap();
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(
                    name.starts_with(family),
                    "{name} after the TYPE of {family}"
                );
            }
        }
        assert_eq!(
            text.lines().filter(|line| !line.starts_with('#')).count(),
            2 * rendered.lines().count()
        );
    }
}
