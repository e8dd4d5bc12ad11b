//! Monotonic time as a plain value.
//!
//! Protocol code never reads a clock: it is handed a [`MonotonicTime`]. Wall-clock time never
//! decides anything in Shoal, so there is no wall-clock type.

use std::fmt;
use std::time::Duration;

/// Nanoseconds since an arbitrary origin on a clock that never goes backwards.
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonotonicTime(u64);

impl MonotonicTime {
    pub const ZERO: MonotonicTime = MonotonicTime(0);

    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration_nanos(duration)))
    }

    pub fn saturating_sub(self, duration: Duration) -> Self {
        Self(self.0.saturating_sub(duration_nanos(duration)))
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: MonotonicTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Debug for MonotonicTime {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}.{:09}s",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

/// A duration in nanoseconds, saturating at u64::MAX (about 584 years).
pub fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let time = MonotonicTime::from_nanos(10);
        assert_eq!(time.saturating_add(Duration::from_nanos(5)).as_nanos(), 15);
        assert_eq!(
            time.saturating_sub(Duration::from_nanos(50)),
            MonotonicTime::ZERO
        );
        assert_eq!(
            MonotonicTime::from_nanos(u64::MAX)
                .saturating_add(Duration::MAX)
                .as_nanos(),
            u64::MAX
        );
        assert_eq!(
            time.saturating_duration_since(MonotonicTime::from_nanos(20)),
            Duration::ZERO
        );
        assert_eq!(
            format!("{:?}", MonotonicTime::from_nanos(1_500_000_000)),
            "1.500000000s"
        );
    }
}
