//! The GSI propagation lag a run caused, read from the router's /metrics after it: the
//! histogram `shoal_router_gsi_propagation_lag_seconds` (time from a write's answer at the
//! router to its index changes applied at every index partition; router/server metrics.rs).
//!
//! Quantiles of a bucketed histogram are known only to a bucket: each is reported as the upper
//! bound of the bucket that holds it (what Prometheus' `histogram_quantile` would interpolate
//! inside), so the figures are upper bounds, never optimistic.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value as Json, json};

const FAMILY: &str = "shoal_router_gsi_propagation_lag_seconds";
/// How long the scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// The /metrics page is small (a few hundred lines); anything larger is not a router's.
const PAGE_BYTES_MAX: u64 = 4 << 20;
/// The quantiles reported.
const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// The lag histogram of one router core: cumulative counts per upper bound (seconds, the last
/// `+Inf`), and the sum.
#[derive(Clone, Debug, PartialEq)]
pub struct Lag {
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Lag {
    /// The upper bound (seconds) of the bucket holding quantile `q`; `None` without samples
    /// or when it is in the `+Inf` bucket.
    pub fn quantile_upper_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        self.buckets
            .iter()
            .find(|(_, cumulative)| *cumulative >= rank)
            .map(|(bound, _)| *bound)
            .filter(|bound| bound.is_finite())
    }

    pub fn table_row(&self) -> String {
        let mut row = format!(
            "GSI propagation lag (router /metrics, {} writes): mean {:.2} ms",
            self.count,
            if self.count == 0 {
                0.0
            } else {
                self.sum_seconds / self.count as f64 * 1e3
            }
        );
        for q in QUANTILES {
            match self.quantile_upper_bound(q) {
                Some(bound) => row.push_str(&format!(", p{} <= {} ms", q * 100.0, bound * 1e3)),
                None => row.push_str(&format!(", p{} beyond the last bucket", q * 100.0)),
            }
        }
        row
    }

    pub fn to_json(&self) -> Json {
        json!({
            "count": self.count,
            "sum_seconds": self.sum_seconds,
            "buckets": self.buckets.iter().map(|(bound, count)| json!({
                "le": if bound.is_finite() { json!(bound) } else { json!("+Inf") },
                "cumulative": count,
            })).collect::<Vec<_>>(),
            "quantile_upper_bounds_seconds": QUANTILES.iter().map(|q| json!({
                "quantile": q,
                "le": self.quantile_upper_bound(*q),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Reads the lag histogram from the router at `endpoint` (its HTTP port).
pub fn scrape(endpoint: SocketAddr) -> Result<Lag, String> {
    let mut stream = TcpStream::connect_timeout(&endpoint, SCRAPE_TIMEOUT)
        .map_err(|error| format!("{endpoint}/metrics: {error}"))?;
    stream
        .set_read_timeout(Some(SCRAPE_TIMEOUT))
        .map_err(|error| error.to_string())?;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|error| format!("{endpoint}/metrics: {error}"))?;
    let mut page = String::new();
    stream
        .take(PAGE_BYTES_MAX)
        .read_to_string(&mut page)
        .map_err(|error| format!("{endpoint}/metrics: {error}"))?;
    parse(&page).ok_or_else(|| format!("{endpoint}/metrics has no {FAMILY} histogram"))
}

/// The lag histogram in a Prometheus text page; `None` if the page has none.
pub fn parse(page: &str) -> Option<Lag> {
    let mut buckets = Vec::new();
    let mut sum_seconds = None;
    let mut count = None;
    for line in page.lines() {
        let Some(rest) = line.strip_prefix(FAMILY) else {
            continue;
        };
        let (series, value) = rest.rsplit_once(' ')?;
        if let Some(labels) = series.strip_prefix("_bucket{le=\"") {
            let bound = labels.strip_suffix("\"}")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            buckets.push((bound, value.parse().ok()?));
        } else if series == "_sum" {
            sum_seconds = value.parse().ok();
        } else if series == "_count" {
            count = value.parse().ok();
        }
    }
    Some(Lag {
        buckets,
        sum_seconds: sum_seconds?,
        count: count?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_the_bounds_of_the_buckets_that_hold_them() {
        let page = "# HELP shoal_router_gsi_propagation_lag_seconds x\n\
            shoal_router_gsi_propagation_lag_seconds_bucket{le=\"0.001\"} 10\n\
            shoal_router_gsi_propagation_lag_seconds_bucket{le=\"0.005\"} 90\n\
            shoal_router_gsi_propagation_lag_seconds_bucket{le=\"0.01\"} 99\n\
            shoal_router_gsi_propagation_lag_seconds_bucket{le=\"+Inf\"} 100\n\
            shoal_router_gsi_propagation_lag_seconds_sum 0.3\n\
            shoal_router_gsi_propagation_lag_seconds_count 100\n\
            shoal_router_gsi_changes_propagated_total 250\n";
        let lag = parse(page).unwrap();
        assert_eq!(lag.count, 100);
        assert_eq!(lag.quantile_upper_bound(0.5), Some(0.005));
        assert_eq!(lag.quantile_upper_bound(0.9), Some(0.005));
        assert_eq!(lag.quantile_upper_bound(0.99), Some(0.01));
        assert_eq!(lag.quantile_upper_bound(1.0), None);
        assert!(parse("shoal_router_requests_total 3\n").is_none());
        let empty = Lag {
            buckets: vec![(f64::INFINITY, 0)],
            sum_seconds: 0.0,
            count: 0,
        };
        assert_eq!(empty.quantile_upper_bound(0.5), None);
    }
}
