//! DynamoDB capacity units, kept exact in thousandths.
//!
//! A read capacity unit (RCU) is one strongly consistent read of up to 4 KB per second; an
//! eventually consistent read costs half. A write capacity unit (WCU) is one write of up to 1 KB
//! per second. Item sizes round up to the next unit, and every request costs at least one unit
//! (half for an eventually consistent read), even when it finds nothing. Consumed capacity is
//! reported to clients as a decimal such as 0.5, so units are stored in thousandths (integers):
//! no floating point decides whether a request is admitted.

use std::fmt;
use std::ops::{Add, Sub};

/// Bytes of item data one read capacity unit covers.
pub const READ_UNIT_BYTES: u64 = 4 * 1024;
/// Bytes of item data one write capacity unit covers.
pub const WRITE_UNIT_BYTES: u64 = 1024;
/// Thousandths per unit.
pub const MILLI_PER_UNIT: u64 = 1000;

/// An amount of read or write capacity, in thousandths of a unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CapacityUnits(u64);

impl CapacityUnits {
    pub const ZERO: CapacityUnits = CapacityUnits(0);

    pub const fn from_units(units: u64) -> Self {
        Self(units.saturating_mul(MILLI_PER_UNIT))
    }

    pub const fn from_milli(milli: u64) -> Self {
        Self(milli)
    }

    pub const fn as_milli(self) -> u64 {
        self.0
    }

    /// For ConsumedCapacity in responses (a JSON number such as 0.5). Never used to decide.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / MILLI_PER_UNIT as f64
    }
}

impl Add for CapacityUnits {
    type Output = CapacityUnits;
    fn add(self, other: CapacityUnits) -> CapacityUnits {
        CapacityUnits(self.0.saturating_add(other.0))
    }
}

impl Sub for CapacityUnits {
    type Output = CapacityUnits;
    fn sub(self, other: CapacityUnits) -> CapacityUnits {
        CapacityUnits(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for CapacityUnits {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}.{:03}",
            self.0 / MILLI_PER_UNIT,
            self.0 % MILLI_PER_UNIT
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadConsistency {
    Strong,
    Eventual,
}

/// Units for reading `bytes_read` of item data in one request (GetItem: the item's size; Query
/// and Scan: the sum of the sizes of every item read, rounded up once for the request).
pub fn read_units(bytes_read: u64, consistency: ReadConsistency) -> CapacityUnits {
    let blocks = bytes_read.div_ceil(READ_UNIT_BYTES).max(1);
    let milli_per_block = match consistency {
        ReadConsistency::Strong => MILLI_PER_UNIT,
        ReadConsistency::Eventual => MILLI_PER_UNIT / 2,
    };
    CapacityUnits(blocks.saturating_mul(milli_per_block))
}

/// Units for writing an item of `item_bytes` (for an update or delete, the larger of the item's
/// size before and after).
pub fn write_units(item_bytes: u64) -> CapacityUnits {
    CapacityUnits::from_units(item_bytes.div_ceil(WRITE_UNIT_BYTES).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_round_up_to_four_kilobytes() {
        let strong = |bytes| read_units(bytes, ReadConsistency::Strong);
        let eventual = |bytes| read_units(bytes, ReadConsistency::Eventual);
        assert_eq!(strong(0), CapacityUnits::from_units(1));
        assert_eq!(strong(4096), CapacityUnits::from_units(1));
        assert_eq!(strong(4097), CapacityUnits::from_units(2));
        assert_eq!(strong(400 * 1024), CapacityUnits::from_units(100));
        assert_eq!(eventual(0), CapacityUnits::from_milli(500));
        assert_eq!(eventual(8192), CapacityUnits::from_units(1));
        assert_eq!(eventual(8193), CapacityUnits::from_milli(1500));
    }

    #[test]
    fn writes_round_up_to_one_kilobyte() {
        assert_eq!(write_units(0), CapacityUnits::from_units(1));
        assert_eq!(write_units(1024), CapacityUnits::from_units(1));
        assert_eq!(write_units(1025), CapacityUnits::from_units(2));
        assert_eq!(write_units(400 * 1024), CapacityUnits::from_units(400));
    }

    #[test]
    fn display_and_reporting() {
        assert_eq!(CapacityUnits::from_milli(1500).to_string(), "1.500");
        assert_eq!(CapacityUnits::from_milli(500).as_f64(), 0.5);
    }
}
