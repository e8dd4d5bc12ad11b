//! A token bucket in thousandths of a capacity unit, refilled exactly on monotonic time.

use std::time::Duration;

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Tokens accrue at `rate_milli_per_second` up to `capacity_milli`. The balance may go negative
/// (debt) when a request turns out to cost more than was charged at admission; no request is
/// admitted until the debt is repaid by refill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    rate_milli_per_second: u64,
    capacity_milli: u64,
    tokens_milli: i64,
    updated_at: Duration,
    /// Refill carried between calls, in (milli-units x nanoseconds): without it, frequent calls
    /// would each round a fraction of a token away and the bucket would refill too slowly.
    refill_remainder: u128,
}

impl TokenBucket {
    pub fn new(
        rate_milli_per_second: u64,
        capacity_milli: u64,
        initial_milli: u64,
        now: Duration,
    ) -> Self {
        Self {
            rate_milli_per_second,
            capacity_milli,
            tokens_milli: clamp_to_i64(initial_milli.min(capacity_milli)),
            updated_at: now,
            refill_remainder: 0,
        }
    }

    pub fn rate_milli_per_second(&self) -> u64 {
        self.rate_milli_per_second
    }

    pub fn capacity_milli(&self) -> u64 {
        self.capacity_milli
    }

    /// The balance after refilling up to `now` (negative while in debt).
    pub fn tokens_milli(&mut self, now: Duration) -> i64 {
        self.refill(now);
        self.tokens_milli
    }

    /// Adds what accrued since the last call. Time that appears to go backwards adds nothing.
    pub fn refill(&mut self, now: Duration) {
        let Some(elapsed) = now.checked_sub(self.updated_at) else {
            return;
        };
        self.updated_at = now;
        let accrued =
            u128::from(self.rate_milli_per_second) * elapsed.as_nanos() + self.refill_remainder;
        self.refill_remainder = accrued % NANOS_PER_SECOND;
        let added = clamp_to_i64_u128(accrued / NANOS_PER_SECOND);
        let capacity = clamp_to_i64(self.capacity_milli);
        self.tokens_milli = self.tokens_milli.saturating_add(added).min(capacity);
        if self.tokens_milli == capacity {
            // A full bucket holds no partial token either.
            self.refill_remainder = 0;
        }
    }

    /// The balance as of the last refill (negative while in debt).
    pub fn balance_milli(&self) -> i64 {
        self.tokens_milli
    }

    /// Sets the balance, capped by the capacity (keeping a balance across a reconfiguration).
    pub fn set_balance(&mut self, balance_milli: i64) {
        self.tokens_milli = balance_milli.min(clamp_to_i64(self.capacity_milli));
    }

    /// Takes `amount` (may leave the balance negative). Callers decide admission first.
    pub fn take(&mut self, amount_milli: u64) {
        self.tokens_milli = self.tokens_milli.saturating_sub(clamp_to_i64(amount_milli));
    }

    /// Returns `amount` that was charged but not consumed.
    pub fn give_back(&mut self, amount_milli: u64) {
        let capacity = clamp_to_i64(self.capacity_milli);
        self.tokens_milli = self
            .tokens_milli
            .saturating_add(clamp_to_i64(amount_milli))
            .min(capacity);
    }

    /// Changes rate and capacity (UpdateTable, on-demand growth) keeping the balance, capped.
    pub fn reconfigure(&mut self, rate_milli_per_second: u64, capacity_milli: u64, now: Duration) {
        self.refill(now);
        self.rate_milli_per_second = rate_milli_per_second;
        self.capacity_milli = capacity_milli;
        self.tokens_milli = self.tokens_milli.min(clamp_to_i64(capacity_milli));
    }
}

fn clamp_to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn clamp_to_i64_u128(value: u128) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn refills_at_its_rate_up_to_capacity() {
        let mut bucket = TokenBucket::new(1_000, 5_000, 0, Duration::ZERO);
        assert_eq!(bucket.tokens_milli(SECOND), 1_000);
        assert_eq!(bucket.tokens_milli(SECOND * 3), 3_000);
        assert_eq!(bucket.tokens_milli(SECOND * 100), 5_000);
    }

    #[test]
    fn many_tiny_refills_add_up_exactly() {
        // 1 unit/s polled every microsecond: each poll accrues a millionth of a milli-unit.
        let mut bucket = TokenBucket::new(1_000, 10_000, 0, Duration::ZERO);
        for micros in 1..=2_000_000u64 {
            bucket.refill(Duration::from_micros(micros));
        }
        assert_eq!(bucket.tokens_milli(Duration::from_secs(2)), 2_000);
    }

    #[test]
    fn debt_is_repaid_before_anything_else() {
        let mut bucket = TokenBucket::new(1_000, 1_000, 1_000, Duration::ZERO);
        bucket.take(5_000);
        assert_eq!(bucket.tokens_milli(Duration::ZERO), -4_000);
        assert_eq!(bucket.tokens_milli(SECOND * 4), 0);
        assert_eq!(bucket.tokens_milli(SECOND * 5), 1_000);
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let mut bucket = TokenBucket::new(1_000, 10_000, 0, SECOND * 10);
        assert_eq!(bucket.tokens_milli(SECOND * 5), 0);
        assert_eq!(bucket.tokens_milli(SECOND * 11), 1_000);
    }

    #[test]
    fn give_back_is_capped() {
        let mut bucket = TokenBucket::new(1_000, 2_000, 2_000, Duration::ZERO);
        bucket.take(500);
        bucket.give_back(10_000);
        assert_eq!(bucket.tokens_milli(Duration::ZERO), 2_000);
    }
}
