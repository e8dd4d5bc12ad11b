//! A replica's recent traffic, for the autoadmin's split for traffic (issue 19; the DynamoDB
//! paper, section 4.1: a partition whose consumed throughput stays high is split at the key
//! that balances its traffic, unless that traffic is to a single item).
//!
//! Two things are kept, both bounded and both cheap per request:
//! - **Consumed units** of the requests this replica served (the units its answers report),
//!   in [`TRAFFIC_WINDOW_SECONDS`] one-second slots: their sum over the window is the rate.
//!   Every replica counts only what it answered, so a router adds its replicas' rates up:
//!   the leader's writes and strong reads, and eventual reads wherever they were served.
//! - **A sample of key hashes**: the partition hash of every key named by the last
//!   [`TRAFFIC_SAMPLES_MAX`] keyed requests the replica took as leader within the window, one
//!   entry per key (a follower's would be eventual reads only, and an old leader's stale).
//!   Its median is the cut that gives each child half of the recent requests, and the share
//!   of its most frequent hash tells a single hot item (or item collection, which shares its
//!   hash) from a hot range. Requests count alike whatever their size: the sample balances
//!   requests, the rate measures units.
//!
//! Idle replicas hold no sample memory: the ring is allocated by the first keyed request.

use std::collections::VecDeque;

use shoal_model::request::PreparedRequest;
use shoal_replication::MonotonicTime;

/// The window the rate is measured over, in one-second slots. Short enough to react within a
/// router's few passes; a router wants a partition hot over several windows before splitting.
pub const TRAFFIC_WINDOW_SECONDS: usize = 10;
/// Key hashes kept in the sample: 8 KB per busy leader (each with its second), and enough
/// that a median over them places the cut within a few percent of the traffic's balance
/// point.
pub const TRAFFIC_SAMPLES_MAX: usize = 512;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// What a replica reports of its traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficLoad {
    /// Read units (thousandths) this replica served per second, over the window.
    pub read_milli_per_second: u64,
    /// Write units (thousandths) this replica served per second, over the window.
    pub write_milli_per_second: u64,
    /// Key hashes in the sample.
    pub samples: u32,
    /// The hash that starts the right child of a split balancing the sampled requests; `None`
    /// when no cut leaves both sides some (the sample holds one hash, or none).
    pub cut: Option<u64>,
    /// The most frequent sampled hash's share of the sample, in thousandths.
    pub top_key_permille: u16,
}

/// One replica's traffic (module docs).
#[derive(Debug, Default)]
pub struct TrafficTracker {
    /// Thousandths of read and write units answered in each second, by second modulo the
    /// window.
    slots: [(u64, u64); TRAFFIC_WINDOW_SECONDS],
    /// The second (of the monotonic clock) the slot `second % TRAFFIC_WINDOW_SECONDS` counts.
    second: u64,
    /// Sampled key hashes with the second they were sampled in, oldest first.
    samples: VecDeque<(u64, u64)>,
}

impl TrafficTracker {
    /// Moves the window to `now`, clearing the slots of the seconds that passed.
    fn advance(&mut self, now: MonotonicTime) {
        let second = now.as_nanos() / NANOS_PER_SECOND;
        if second <= self.second {
            return;
        }
        let passed = second - self.second;
        if passed >= TRAFFIC_WINDOW_SECONDS as u64 {
            self.slots = Default::default();
        } else {
            for later in self.second + 1..=second {
                self.slots[slot_of(later)] = (0, 0);
            }
        }
        self.second = second;
        let window = TRAFFIC_WINDOW_SECONDS as u64;
        while self
            .samples
            .front()
            .is_some_and(|(_, sampled)| sampled + window <= second)
        {
            self.samples.pop_front();
        }
        if self.samples.is_empty() && self.samples.capacity() > 0 {
            // An idle replica gives its sample's memory back.
            self.samples = VecDeque::new();
        }
    }

    /// Moves the window to `now` (units answered next count in its second).
    pub fn note_time(&mut self, now: MonotonicTime) {
        self.advance(now);
    }

    /// A request the leader is about to serve at `now`: the hashes of the keys it names join
    /// the sample.
    pub fn note_request(&mut self, now: MonotonicTime, request: &PreparedRequest) {
        self.advance(now);
        let second = self.second;
        shoal_model::split::for_each_key_hash(request, |hash| {
            if self.samples.len() == TRAFFIC_SAMPLES_MAX {
                self.samples.pop_front();
            }
            self.samples.push_back((hash, second));
        });
    }

    /// Units an answer reports, counted in the second of the latest request or report.
    pub fn charge(&mut self, read_milli: u64, write_milli: u64) {
        let slot = &mut self.slots[slot_of(self.second)];
        slot.0 = slot.0.saturating_add(read_milli);
        slot.1 = slot.1.saturating_add(write_milli);
    }

    /// The rate over the window ending at `now`, and the sample's cut.
    pub fn load(&mut self, now: MonotonicTime) -> TrafficLoad {
        self.advance(now);
        let window = TRAFFIC_WINDOW_SECONDS as u64;
        let (read, write) = self.slots.iter().fold((0u64, 0u64), |sum, slot| {
            (sum.0.saturating_add(slot.0), sum.1.saturating_add(slot.1))
        });
        let mut sorted: Vec<u64> = self.samples.iter().map(|(hash, _)| *hash).collect();
        sorted.sort_unstable();
        let (cut, top_key_permille) = balancing_cut(&sorted);
        TrafficLoad {
            read_milli_per_second: read / window,
            write_milli_per_second: write / window,
            samples: u32::try_from(sorted.len()).unwrap_or(u32::MAX),
            cut,
            top_key_permille,
        }
    }
}

fn slot_of(second: u64) -> usize {
    (second % TRAFFIC_WINDOW_SECONDS as u64) as usize
}

/// For sorted hashes: the hash starting the right side of the cut whose left side (hashes
/// below it) is nearest half of them, among the cuts leaving both sides some; and the most
/// frequent hash's share in thousandths.
pub fn balancing_cut(sorted: &[u64]) -> (Option<u64>, u16) {
    if sorted.is_empty() {
        return (None, 0);
    }
    let half = sorted.len() / 2;
    let mut best: Option<(usize, u64)> = None;
    let mut top_run = 0usize;
    let mut run_start = 0usize;
    for index in 1..=sorted.len() {
        if index < sorted.len() && sorted[index] == sorted[run_start] {
            continue;
        }
        top_run = top_run.max(index - run_start);
        if index < sorted.len() {
            // A cut at sorted[index] leaves `index` hashes on the left.
            let distance = index.abs_diff(half);
            if best.is_none_or(|(best_distance, _)| distance < best_distance) {
                best = Some((distance, sorted[index]));
            }
            run_start = index;
        }
    }
    let permille = (top_run * 1000 / sorted.len()) as u16;
    (best.map(|(_, cut)| cut), permille)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_second(second: u64) -> MonotonicTime {
        MonotonicTime::from_nanos(second * NANOS_PER_SECOND)
    }

    #[test]
    fn the_cut_balances_the_sample_and_never_leaves_a_side_empty() {
        assert_eq!(balancing_cut(&[]), (None, 0));
        // One hash only: nothing to cut, and it is all of the traffic.
        assert_eq!(balancing_cut(&[7, 7, 7]), (None, 1000));
        assert_eq!(balancing_cut(&[1, 2, 3, 4]), (Some(3), 250));
        // A hot hash in the middle: the cut that leaves the left side nearest half (6 of 8
        // left of 9, against 1 of 8 left of 5).
        assert_eq!(balancing_cut(&[1, 5, 5, 5, 5, 5, 9, 9]), (Some(9), 625));
        assert_eq!(balancing_cut(&[1, 1, 1, 1, 1, 1, 1, 9]), (Some(9), 875));
    }

    fn get_of_hash(hash: u64) -> shoal_model::request::GetRequest {
        let mut storage_key = hash.to_be_bytes().to_vec();
        storage_key.extend_from_slice(&[0, 1, b'k']);
        shoal_model::request::GetRequest {
            key: Default::default(),
            storage_key,
            consistent: true,
            projection: None,
        }
    }

    #[test]
    fn the_sample_holds_the_latest_keys_named() {
        let mut tracker = TrafficTracker::default();
        // A batch names each of its keys; the oldest leave once the sample is full.
        let batch: Vec<_> = (0..TRAFFIC_SAMPLES_MAX as u64).map(get_of_hash).collect();
        tracker.note_request(at_second(1), &PreparedRequest::BatchGet(batch));
        for _ in 0..TRAFFIC_SAMPLES_MAX / 2 {
            let hot = PreparedRequest::Get(get_of_hash(1 << 40));
            tracker.note_request(at_second(1), &hot);
        }
        let load = tracker.load(at_second(1));
        assert_eq!(load.samples as usize, TRAFFIC_SAMPLES_MAX);
        assert_eq!(load.top_key_permille, 500);
        // Half the sample is hashes 256..512, half the hot one above them: the cut keeps
        // them apart.
        assert_eq!(load.cut, Some(1 << 40));
    }

    #[test]
    fn samples_leave_with_the_window() {
        let mut tracker = TrafficTracker::default();
        tracker.note_request(at_second(5), &PreparedRequest::Get(get_of_hash(1)));
        tracker.note_request(at_second(9), &PreparedRequest::Get(get_of_hash(2)));
        assert_eq!(tracker.load(at_second(14)).samples, 2);
        assert_eq!(tracker.load(at_second(15)).samples, 1);
        assert_eq!(tracker.load(at_second(19)), TrafficLoad::default());
    }

    #[test]
    fn the_rate_covers_the_window_and_forgets_what_left_it() {
        let mut tracker = TrafficTracker::default();
        let write = PreparedRequest::BatchGet(Vec::new());
        tracker.note_request(at_second(100), &write);
        tracker.charge(0, 10_000);
        tracker.note_request(at_second(101), &write);
        tracker.charge(30_000, 10_000);
        let load = tracker.load(at_second(101));
        assert_eq!(load.write_milli_per_second, 2_000);
        assert_eq!(load.read_milli_per_second, 3_000);
        // Second 100 leaves the window at second 110, second 101 at 111.
        assert_eq!(tracker.load(at_second(110)).write_milli_per_second, 1_000);
        assert_eq!(tracker.load(at_second(111)), TrafficLoad::default());
        // A clock that stands still or a jump past the whole window both work.
        tracker.charge(0, 50_000);
        assert_eq!(tracker.load(at_second(111)).write_milli_per_second, 5_000);
        assert_eq!(tracker.load(at_second(1_000)).write_milli_per_second, 0);
    }
}
