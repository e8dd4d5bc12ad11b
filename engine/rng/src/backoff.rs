//! Exponential backoff with seeded jitter: the one implementation behind the bus's reconnects,
//! the router's retries ([`Backoff`], equal jitter) and the native client's retries
//! ([`full_jitter_delay`]).

use std::time::Duration;

use crate::SeededRng;

/// The delays between attempts: each failure doubles the base delay, from `min` up to `max`;
/// the delay actually waited is drawn uniformly from the upper half of the base ("equal
/// jitter"), never below `min`. Jitter keeps the shards of a restarted node from reconnecting in
/// lockstep, and routers retrying one busy partition from arriving together; the seed makes a
/// test's delays reproducible.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    base: Duration,
    rng: SeededRng,
}

impl Backoff {
    /// `min` is raised to at least one millisecond and `max` to at least `min`.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        let max = max.max(min);
        Backoff {
            min,
            max,
            base: min,
            rng: SeededRng::new(seed),
        }
    }

    /// The delay before the next attempt; the one after it will be about twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let base_nanos = u64::try_from(self.base.as_nanos()).unwrap_or(u64::MAX);
        let half = base_nanos / 2;
        let jitter = self.rng.below(half.saturating_add(1));
        let delay = Duration::from_nanos(half.saturating_add(jitter)).max(self.min);
        self.base = self.base.saturating_mul(2).min(self.max);
        delay
    }

    /// After a successful connection: the next failure waits about `min` again.
    pub fn reset(&mut self) {
        self.base = self.min;
    }
}

/// The wait before retry number `retry` (0 for the first retry) of a client: uniform in
/// `[0, min(max, base × 2^retry)]` ("full jitter"). A client's retries answer throttling,
/// where many clients were refused together: spreading them over the whole window, down to
/// zero, unbunches them best (the AWS SDKs back off so). [`Backoff`] keeps a floor instead,
/// which a reconnecting peer needs.
pub fn full_jitter_delay(
    base: Duration,
    max: Duration,
    retry: u32,
    rng: &mut SeededRng,
) -> Duration {
    let base = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
    let cap = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    let shift = retry.min(63);
    let ceiling = base
        .checked_shl(shift)
        .filter(|shifted| shifted >> shift == base)
        .unwrap_or(u64::MAX)
        .min(cap);
    Duration::from_nanos(rng.below(ceiling.saturating_add(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_within_the_doubling_window_and_its_cap() {
        let mut rng = SeededRng::new(7);
        let base = Duration::from_millis(25);
        let max = Duration::from_secs(2);
        for retry in 0..80 {
            let window = base
                .checked_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
                .unwrap_or(max)
                .min(max);
            for _ in 0..50 {
                assert!(full_jitter_delay(base, max, retry, &mut rng) <= window);
            }
        }
        // Full jitter reaches down to zero and up to the window: over many draws at the
        // cap, both ends of [0, 2 s] are approached.
        let draws: Vec<Duration> = (0..2000)
            .map(|_| full_jitter_delay(base, max, 20, &mut rng))
            .collect();
        assert!(draws.iter().any(|delay| *delay < Duration::from_millis(20)));
        assert!(
            draws
                .iter()
                .any(|delay| *delay > Duration::from_millis(1980))
        );
    }

    #[test]
    fn delays_grow_stay_within_bounds_and_reset() {
        let min = Duration::from_millis(10);
        let max = Duration::from_millis(300);
        let mut backoff = Backoff::new(min, max, 7);
        let delays: Vec<Duration> = (0..12).map(|_| backoff.next_delay()).collect();
        for delay in &delays {
            assert!(
                *delay >= min && *delay <= max,
                "{delay:?} outside [{min:?}, {max:?}]"
            );
        }
        // The base doubles: by the sixth attempt (base 320 ms capped at 300 ms) the delay is at
        // least half the maximum.
        assert!(delays[6..].iter().all(|delay| *delay >= max / 2));
        backoff.reset();
        assert!(backoff.next_delay() <= min);
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let run = |seed| {
            let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_secs(1), seed);
            (0..10).map(|_| backoff.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
