//! The router core's metrics in the Prometheus text format (version 0.0.4): requests, errors
//! and latency by operation, admission throttles, forwarding retries, and global secondary
//! index propagation (its lag and the changes moved).
//!
//! Every family is written whole (its HELP and TYPE lines, then all its samples), which is what
//! the format requires and what Prometheus' own parsers read; the conformance suite parses
//! the output with `prometheus_client` (router/conformance/test_metrics.py).
//!
//! Labels take values from closed sets only (operation names, DynamoDB exception names,
//! ThrottlingReason codes, retry kinds), never from requests (no table names, no keys), so the
//! number of series is bounded by the code, not by clients.
//!
//! Lives on its router core, like the `Router` that owns it (`!Send`, no locks).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds (a `+Inf` bucket follows).
/// From half a millisecond (a cached read on an idle cluster) to ten seconds (past the
/// forwarding deadline of five, so every answered request falls in a finite bucket).
pub const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with [`LATENCY_BUCKETS_SECONDS`]: counts per bucket (not cumulative;
/// the renderer accumulates), the sum in microseconds and the count.
#[derive(Clone, Debug, Default)]
struct LatencyHistogram {
    buckets: [u64; LATENCY_BUCKETS_SECONDS.len()],
    over_last_bucket: u64,
    sum_us: u64,
    count: u64,
}

impl LatencyHistogram {
    fn record(&mut self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        match LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
        {
            Some(bucket) => self.buckets[bucket] += 1,
            None => self.over_last_bucket += 1,
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.sum_us = self.sum_us.saturating_add(micros);
        self.count += 1;
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<&'static str, u64>,
    latency: BTreeMap<&'static str, LatencyHistogram>,
    /// (operation, exception name) → answers with that error.
    errors: BTreeMap<(&'static str, String), u64>,
    /// (read or write, ThrottlingReason or exception) → requests admission turned away.
    throttles: BTreeMap<(&'static str, String), u64>,
    /// From a write's answer to its GSI changes applied (router/propagate.rs).
    propagation_lag: LatencyHistogram,
    /// GSI changes moved from outboxes to index partitions.
    index_changes: u64,
    /// Autoadmin events (router/autoadmin.rs) by kind: `move_started`, `move_finished`,
    /// `node_decommissioned`, `leader_transfer`.
    autoadmin: BTreeMap<&'static str, u64>,
    /// Nodes the last autoadmin pass found down; `None` while this router's autoadmin is not
    /// the active one (another router holds the lease, or the loop is paused): it does not
    /// probe the nodes then, and a count from its last active pass would go stale unseen.
    nodes_down: Option<u64>,
    /// Whether this router's last autoadmin pass was the active one.
    autoadmin_active: bool,
}

/// The metrics of one router core.
#[derive(Default)]
pub struct RouterMetrics {
    inner: RefCell<Inner>,
}

impl RouterMetrics {
    /// One answered request of `operation`, its latency, and its error's exception name.
    pub fn request_served(&self, operation: &'static str, latency: Duration, error: Option<&str>) {
        let mut inner = self.inner.borrow_mut();
        *inner.requests.entry(operation).or_default() += 1;
        inner.latency.entry(operation).or_default().record(latency);
        if let Some(exception) = error {
            *inner
                .errors
                .entry((operation, exception.to_string()))
                .or_default() += 1;
        }
    }

    /// A request that admission turned away, by direction and DynamoDB's ThrottlingReason (or
    /// the exception name where no reason applies).
    pub fn throttled(&self, direction: &'static str, reason: &str) {
        *self
            .inner
            .borrow_mut()
            .throttles
            .entry((direction, reason.to_string()))
            .or_default() += 1;
    }

    /// One autoadmin event of `kind` (router/autoadmin.rs).
    pub fn note_autoadmin(&self, kind: &'static str) {
        *self.inner.borrow_mut().autoadmin.entry(kind).or_default() += 1;
    }

    /// This router's autoadmin pass was the active one and found `count` nodes down.
    pub fn set_nodes_down(&self, count: usize) {
        let mut inner = self.inner.borrow_mut();
        inner.nodes_down = Some(u64::try_from(count).unwrap_or(u64::MAX));
        inner.autoadmin_active = true;
    }

    /// This router's autoadmin pass stood by (another router holds the lease), the loop is
    /// paused, or the pass failed: it reports no count of nodes down.
    pub fn set_autoadmin_inactive(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.nodes_down = None;
        inner.autoadmin_active = false;
    }

    /// A propagation turn emptied an outbox that a write through this router had filled
    /// `lag` ago.
    pub fn index_propagated(&self, lag: Duration) {
        self.inner.borrow_mut().propagation_lag.record(lag);
    }

    /// `count` GSI changes were applied at their index partitions.
    pub fn index_changes_applied(&self, count: u64) {
        self.inner.borrow_mut().index_changes += count;
    }

    /// The families in Prometheus text, with the forwarder's retries by kind.
    pub fn render(&self, retries: &[(&'static str, u64)]) -> String {
        let inner = self.inner.borrow();
        let mut text = String::new();
        family(
            &mut text,
            "shoal_router_requests_total",
            "counter",
            "Requests the router answered, by DynamoDB operation.",
        );
        for (operation, count) in &inner.requests {
            let _ = writeln!(
                text,
                "shoal_router_requests_total{{operation=\"{operation}\"}} {count}"
            );
        }
        family(
            &mut text,
            "shoal_router_request_errors_total",
            "counter",
            "Requests answered with an error, by operation and DynamoDB exception name.",
        );
        for ((operation, exception), count) in &inner.errors {
            let _ = writeln!(
                text,
                "shoal_router_request_errors_total{{operation=\"{operation}\",exception=\"{}\"}} {count}",
                escape(exception)
            );
        }
        family(
            &mut text,
            "shoal_router_request_duration_seconds",
            "histogram",
            "Time from a request's dispatch to its answer at the router, by operation.",
        );
        for (operation, histogram) in &inner.latency {
            histogram_samples(
                &mut text,
                "shoal_router_request_duration_seconds",
                &format!("operation=\"{operation}\""),
                histogram,
            );
        }
        family(
            &mut text,
            "shoal_router_throttled_total",
            "counter",
            "Requests admission control turned away (ProvisionedThroughputExceededException), by direction and ThrottlingReason.",
        );
        for ((direction, reason), count) in &inner.throttles {
            let _ = writeln!(
                text,
                "shoal_router_throttled_total{{direction=\"{direction}\",reason=\"{}\"}} {count}",
                escape(reason)
            );
        }
        family(
            &mut text,
            "shoal_router_forward_retries_total",
            "counter",
            "Attempts of a request to a partition made again, by why (not_leader, busy, no_answer, stale_route, keys_elsewhere).",
        );
        for (kind, count) in retries {
            let _ = writeln!(
                text,
                "shoal_router_forward_retries_total{{kind=\"{kind}\"}} {count}"
            );
        }
        family(
            &mut text,
            "shoal_router_gsi_propagation_lag_seconds",
            "histogram",
            "Time from a write's answer at this router to its global secondary index changes applied at every index partition.",
        );
        histogram_samples(
            &mut text,
            "shoal_router_gsi_propagation_lag_seconds",
            "",
            &inner.propagation_lag,
        );
        family(
            &mut text,
            "shoal_router_gsi_changes_propagated_total",
            "counter",
            "Global secondary index changes this router moved from base partitions' outboxes to index partitions.",
        );
        let _ = writeln!(
            text,
            "shoal_router_gsi_changes_propagated_total {}",
            inner.index_changes
        );
        family(
            &mut text,
            "shoal_router_autoadmin_events_total",
            "counter",
            "Autoadmin events at this router, by kind (move_started: a replica move recorded; move_finished: one ended; node_decommissioned: a drained node left the node list; leader_transfer: a leader accepted to hand over for leader balance).",
        );
        for (kind, count) in &inner.autoadmin {
            let _ = writeln!(
                text,
                "shoal_router_autoadmin_events_total{{kind=\"{kind}\"}} {count}"
            );
        }
        family(
            &mut text,
            "shoal_router_autoadmin_active",
            "gauge",
            "1 when this router's autoadmin holds the lease and its last pass ran, else 0.",
        );
        let _ = writeln!(
            text,
            "shoal_router_autoadmin_active {}",
            u8::from(inner.autoadmin_active)
        );
        family(
            &mut text,
            "shoal_router_nodes_down",
            "gauge",
            "Nodes silent past the autoadmin's threshold at its last pass (only from the active \
             autoadmin).",
        );
        if let Some(nodes_down) = inner.nodes_down {
            let _ = writeln!(text, "shoal_router_nodes_down {nodes_down}");
        }
        text
    }
}

/// The samples of one histogram (cumulative buckets, `+Inf`, sum and count) with `labels`
/// (`name="value",...`, or empty).
fn histogram_samples(text: &mut String, name: &str, labels: &str, histogram: &LatencyHistogram) {
    let separator = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0u64;
    for (bound, count) in LATENCY_BUCKETS_SECONDS.iter().zip(histogram.buckets) {
        cumulative += count;
        let _ = writeln!(
            text,
            "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        text,
        "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {}",
        histogram.count
    );
    let braces = |labels: &str| {
        if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        }
    };
    let _ = writeln!(
        text,
        "{name}_sum{} {}",
        braces(labels),
        histogram.sum_us as f64 / 1e6
    );
    let _ = writeln!(text, "{name}_count{} {}", braces(labels), histogram.count);
}

fn family(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}");
    let _ = writeln!(text, "# TYPE {name} {kind}");
}

/// A label value as the text format requires: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_whole_and_histograms_cumulative() {
        let metrics = RouterMetrics::default();
        metrics.request_served("PutItem", Duration::from_micros(700), None);
        metrics.request_served(
            "PutItem",
            Duration::from_millis(30),
            Some("ValidationException"),
        );
        metrics.request_served("GetItem", Duration::from_secs(20), None);
        metrics.throttled("write", "TableWriteProvisionedThroughputExceeded");
        metrics.index_propagated(Duration::from_millis(3));
        metrics.index_changes_applied(7);
        let text = metrics.render(&[("busy", 2), ("not_leader", 1)]);
        assert!(
            text.contains("shoal_router_gsi_propagation_lag_seconds_bucket{le=\"0.0025\"} 0\n")
        );
        assert!(text.contains("shoal_router_gsi_propagation_lag_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("shoal_router_gsi_propagation_lag_seconds_count 1\n"));
        assert!(text.contains("shoal_router_gsi_changes_propagated_total 7\n"));
        // Each family's HELP and TYPE come right before its own samples, and no family
        // appears twice.
        let mut current: Option<String> = None;
        let mut seen = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(name.clone()), "{name} twice");
                current = Some(name);
            } else if !line.starts_with('#') {
                let family = current.as_deref().unwrap();
                let sample = line.split(['{', ' ']).next().unwrap();
                assert!(sample.starts_with(family), "{sample} under {family}");
            }
        }
        assert!(text.contains("shoal_router_requests_total{operation=\"PutItem\"} 2\n"));
        assert!(text.contains(
            "shoal_router_request_errors_total{operation=\"PutItem\",exception=\"ValidationException\"} 1\n"
        ));
        // 0.7 ms is in the 1 ms bucket and every one above; 30 ms from the 50 ms bucket.
        assert!(text.contains(
            "shoal_router_request_duration_seconds_bucket{operation=\"PutItem\",le=\"0.0005\"} 0\n"
        ));
        assert!(text.contains(
            "shoal_router_request_duration_seconds_bucket{operation=\"PutItem\",le=\"0.001\"} 1\n"
        ));
        assert!(text.contains(
            "shoal_router_request_duration_seconds_bucket{operation=\"PutItem\",le=\"0.05\"} 2\n"
        ));
        // 20 s is only in +Inf.
        assert!(text.contains(
            "shoal_router_request_duration_seconds_bucket{operation=\"GetItem\",le=\"10\"} 0\n"
        ));
        assert!(text.contains(
            "shoal_router_request_duration_seconds_bucket{operation=\"GetItem\",le=\"+Inf\"} 1\n"
        ));
        assert!(
            text.contains(
                "shoal_router_request_duration_seconds_sum{operation=\"PutItem\"} 0.0307\n"
            )
        );
        assert!(text.contains(
            "shoal_router_throttled_total{direction=\"write\",reason=\"TableWriteProvisionedThroughputExceeded\"} 1\n"
        ));
        assert!(text.contains("shoal_router_forward_retries_total{kind=\"busy\"} 2\n"));
    }

    /// Only the active autoadmin reports nodes down: a router that stood by or was paused
    /// has probed nothing, and a count left from its last active pass would go stale.
    #[test]
    fn nodes_down_is_reported_only_by_the_active_autoadmin() {
        let metrics = RouterMetrics::default();
        let text = metrics.render(&[]);
        assert!(text.contains("shoal_router_autoadmin_active 0\n"));
        assert!(!text.contains("\nshoal_router_nodes_down "), "{text}");
        metrics.set_nodes_down(2);
        let text = metrics.render(&[]);
        assert!(text.contains("shoal_router_autoadmin_active 1\n"));
        assert!(text.contains("shoal_router_nodes_down 2\n"));
        metrics.set_autoadmin_inactive();
        let text = metrics.render(&[]);
        assert!(text.contains("shoal_router_autoadmin_active 0\n"));
        assert!(!text.contains("\nshoal_router_nodes_down "), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
