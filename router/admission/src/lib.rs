//! Admission control in DynamoDB capacity units. Pure logic: time is passed in, nothing here
//! reads a clock, sleeps or does I/O, so the router and the simulator run the same decisions.
//!
//! # Model
//! Every table has a read and a write token bucket, and so does every partition of it:
//! - **Provisioned** tables refill at their RCU/WCU per second and keep up to
//!   [`BURST_SECONDS`] (300 s) of unused capacity as burst credit, as DynamoDB does. A new
//!   provisioned table starts with [`PROVISIONED_INITIAL_SECONDS`] (all 300 s) of credit, as if
//!   it had been idle: on DynamoDB a single 400 KB write (400 WCU) to a new 5-WCU table
//!   succeeds, and test suites verified against DynamoDB write hundreds of items to new
//!   5-WCU tables at once without being throttled; a table that started with one second
//!   would throttle both (issue 21). Starting full is never stricter than DynamoDB. A new
//!   provisioning level keeps the balance (UpdateTable does not hand out credit).
//!   The table bucket holds the sum of the partitions' burst credit (each keeps 300 s of its
//!   share on DynamoDB), and any partition may draw on all of it (below).
//! - **On-demand** (PAY_PER_REQUEST) tables admit up to [`ON_DEMAND_PEAK_MULTIPLIER`] (2) times
//!   their previous peak per second instantly, and the peak grows with the traffic they serve
//!   (measured over [`ON_DEMAND_PEAK_WINDOW`]). A new table's previous peak is 6,000 RCU and
//!   2,000 WCU per second, so it serves 12,000 reads and 4,000 writes per second at once, as a new
//!   DynamoDB on-demand table does. An optional per-table maximum caps this.
//! - **Partitions** are capped at 3,000 RCU and 1,000 WCU per second each (DynamoDB's partition
//!   limits). Within that, a hot partition may use any share of its table's capacity
//!   (adaptive capacity), so provisioned capacity is not split evenly between partitions.
//!
//! # Admission and settlement
//! A request is admitted if both its table's and its partition's bucket hold a positive balance;
//! the router charges an estimate at admission (from the request: the new item's size for a put,
//! one unit for a read) and settles the difference once the partition reports what the request
//! really consumed. A request that cost more than estimated leaves the buckets in debt, and
//! nothing else is admitted until refill repays it. A rejected request consumed nothing and must
//! not be applied: it is answered with the [`Throttled`] error, whose exception name and message
//! are DynamoDB's.
//!
//! # Several routers
//! Each router holds buckets for the tables it serves. To make admission global across `n`
//! routers, each enforces a share of every table's rate and burst, starting at `1/n`, and reports
//! its consumption per table every second to the metadata group, which re-divides the shares in
//! proportion to recent demand (a router that saw no traffic for a table keeps a small floor so
//! its first requests are not throttled). Partition buckets need no coordination: routers forward
//! a partition's requests to its leader, and the leader's shard can enforce the partition limit
//! exactly with the same [`TableAdmission`] logic. Until that lands (the router issue), one
//! router's buckets are the whole story.

pub mod bucket;
pub mod units;

use std::collections::HashMap;
use std::time::Duration;

use bucket::TokenBucket;
pub use units::{CapacityUnits, ReadConsistency, read_units, write_units};

/// Seconds of unused provisioned capacity a table may bank (DynamoDB: 300).
pub const BURST_SECONDS: u64 = 300;
/// Seconds of capacity a provisioned table starts with: a full burst bucket (module docs).
pub const PROVISIONED_INITIAL_SECONDS: u64 = BURST_SECONDS;
/// DynamoDB's per-partition ceilings.
pub const PARTITION_READ_UNITS_PER_SECOND_MAX: u64 = 3_000;
pub const PARTITION_WRITE_UNITS_PER_SECOND_MAX: u64 = 1_000;
/// A partition bucket holds one second of its ceiling: the ceilings are hard per-second limits
/// on DynamoDB (burst credit is spent below them, never above).
pub const PARTITION_BURST_SECONDS: u64 = 1;
/// A new on-demand table's assumed previous peak, per second.
pub const ON_DEMAND_INITIAL_PEAK_READ_UNITS_PER_SECOND: u64 = 6_000;
pub const ON_DEMAND_INITIAL_PEAK_WRITE_UNITS_PER_SECOND: u64 = 2_000;
/// On-demand tables serve this many times their previous peak instantly.
pub const ON_DEMAND_PEAK_MULTIPLIER: u64 = 2;
/// The window over which on-demand peaks are measured.
pub const ON_DEMAND_PEAK_WINDOW: Duration = Duration::from_secs(1);
/// Partition buckets kept per table; beyond it, the fullest bucket (the one that carries the
/// least information) is dropped and recreated full on its next use.
pub const PARTITION_BUCKETS_MAX: usize = 65_536;

const _: () = assert!(BURST_SECONDS >= PROVISIONED_INITIAL_SECONDS);
const _: () = assert!(PARTITION_READ_UNITS_PER_SECOND_MAX >= PARTITION_WRITE_UNITS_PER_SECOND_MAX);

const PROVISIONED_EXCEEDED_MESSAGE: &str = "The level of configured provisioned throughput for the \
table was exceeded. Consider increasing your provisioning level with the UpdateTable API.";
const ON_DEMAND_EXCEEDED_MESSAGE: &str = "Throughput exceeds the current capacity of your table \
or index. DynamoDB is automatically scaling your table or index so please try again shortly. If \
exceptions persist, check if you have a hot key: \
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html";
/// DynamoDB's answer to a table write that a provisioned global secondary index has no write
/// capacity left for (recorded from the service in public issue threads, for example
/// audienceproject/spark-dynamodb#61).
const INDEX_WRITE_PROVISIONED_EXCEEDED_MESSAGE: &str = "The level of configured provisioned \
throughput for one or more global secondary indexes of the table was exceeded. Consider \
increasing your provisioning level for the under-provisioned global secondary indexes with the \
UpdateTable API";
const PROVISIONED_EXCEPTION: &str = "ProvisionedThroughputExceededException";
/// Data-plane throttling of an on-demand table is ProvisionedThroughputExceededException too,
/// with its own message: the API reference lists ThrottlingException for control-plane
/// operations made too rapidly (CreateTable, UpdateTable, DeleteTable), and SDKs retry
/// ProvisionedThroughputExceededException by name on every data-plane call.
const ON_DEMAND_EXCEPTION: &str = PROVISIONED_EXCEPTION;

/// A table's billing mode, as CreateTable and UpdateTable set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingMode {
    Provisioned {
        read_units_per_second: u64,
        write_units_per_second: u64,
    },
    PayPerRequest {
        read_units_per_second_max: Option<u64>,
        write_units_per_second_max: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    Write,
}

/// A request turned away; nothing was consumed and nothing may be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// DynamoDB's exception name.
    pub exception_name: &'static str,
    pub message: &'static str,
    /// DynamoDB's ThrottlingReason code, when one describes the cause.
    pub reason: Option<&'static str>,
}

/// Proof of admission, to be settled with the request's real consumption.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "settle an admission with the consumed capacity"]
pub struct Admission {
    pub operation: Operation,
    pub partition: u64,
    pub charged: CapacityUnits,
}

/// On-demand capacity: the previous peak, and this window's consumption.
#[derive(Debug, Clone)]
struct PeakTracker {
    previous_peak_milli_per_second: u64,
    maximum_milli_per_second: Option<u64>,
    window_started_at: Duration,
    window_consumed_milli: u64,
}

impl PeakTracker {
    fn allowed_milli_per_second(&self) -> u64 {
        let doubled = self
            .previous_peak_milli_per_second
            .saturating_mul(ON_DEMAND_PEAK_MULTIPLIER);
        match self.maximum_milli_per_second {
            Some(maximum) => doubled.min(maximum),
            None => doubled,
        }
    }

    fn capped_by_maximum(&self) -> bool {
        let doubled = self
            .previous_peak_milli_per_second
            .saturating_mul(ON_DEMAND_PEAK_MULTIPLIER);
        self.maximum_milli_per_second
            .is_some_and(|maximum| maximum < doubled)
    }

    /// Closes the windows that ended before `now`; returns true if the allowed rate changed.
    fn roll(&mut self, now: Duration) -> bool {
        let Some(elapsed) = now.checked_sub(self.window_started_at) else {
            return false;
        };
        if elapsed < ON_DEMAND_PEAK_WINDOW {
            return false;
        }
        let window_nanos = ON_DEMAND_PEAK_WINDOW.as_nanos();
        let whole_windows = elapsed.as_nanos() / window_nanos;
        let before = self.allowed_milli_per_second();
        // The window is one second, so its consumption is a per-second rate.
        self.previous_peak_milli_per_second = self
            .previous_peak_milli_per_second
            .max(self.window_consumed_milli);
        self.window_consumed_milli = 0;
        let advanced = u64::try_from(whole_windows * window_nanos).unwrap_or(u64::MAX);
        self.window_started_at += Duration::from_nanos(advanced);
        self.allowed_milli_per_second() != before
    }
}

#[derive(Debug, Clone)]
struct Direction {
    operation: Operation,
    table: TokenBucket,
    on_demand: Option<PeakTracker>,
    /// The buckets are a global secondary index's, not a table's: throttling reasons say
    /// "Index", and a provisioned index out of write capacity answers DynamoDB's GSI text.
    index: bool,
}

impl Direction {
    fn new(
        operation: Operation,
        mode: BillingMode,
        previous_peak_milli: u64,
        now: Duration,
    ) -> Self {
        let (provisioned, maximum, initial_peak) = match (mode, operation) {
            (
                BillingMode::Provisioned {
                    read_units_per_second,
                    ..
                },
                Operation::Read,
            ) => (Some(read_units_per_second), None, 0),
            (
                BillingMode::Provisioned {
                    write_units_per_second,
                    ..
                },
                Operation::Write,
            ) => (Some(write_units_per_second), None, 0),
            (
                BillingMode::PayPerRequest {
                    read_units_per_second_max,
                    ..
                },
                Operation::Read,
            ) => (
                None,
                read_units_per_second_max,
                ON_DEMAND_INITIAL_PEAK_READ_UNITS_PER_SECOND,
            ),
            (
                BillingMode::PayPerRequest {
                    write_units_per_second_max,
                    ..
                },
                Operation::Write,
            ) => (
                None,
                write_units_per_second_max,
                ON_DEMAND_INITIAL_PEAK_WRITE_UNITS_PER_SECOND,
            ),
        };
        let milli = |units: u64| CapacityUnits::from_units(units).as_milli();
        match provisioned {
            Some(units_per_second) => {
                let rate = milli(units_per_second);
                Direction {
                    operation,
                    table: TokenBucket::new(
                        rate,
                        rate.saturating_mul(BURST_SECONDS),
                        rate.saturating_mul(PROVISIONED_INITIAL_SECONDS),
                        now,
                    ),
                    on_demand: None,
                    index: false,
                }
            }
            None => {
                let tracker = PeakTracker {
                    previous_peak_milli_per_second: milli(initial_peak).max(previous_peak_milli),
                    maximum_milli_per_second: maximum.map(milli),
                    window_started_at: now,
                    window_consumed_milli: 0,
                };
                let rate = tracker.allowed_milli_per_second();
                Direction {
                    operation,
                    table: TokenBucket::new(rate, rate, rate, now),
                    on_demand: Some(tracker),
                    index: false,
                }
            }
        }
    }

    fn advance(&mut self, now: Duration) {
        if let Some(tracker) = &mut self.on_demand
            && tracker.roll(now)
        {
            let rate = tracker.allowed_milli_per_second();
            self.table.reconfigure(rate, rate, now);
        }
        self.table.refill(now);
    }

    fn record(&mut self, charged_milli: u64) {
        if let Some(tracker) = &mut self.on_demand {
            tracker.window_consumed_milli =
                tracker.window_consumed_milli.saturating_add(charged_milli);
        }
    }

    fn unrecord(&mut self, refunded_milli: u64) {
        if let Some(tracker) = &mut self.on_demand {
            tracker.window_consumed_milli =
                tracker.window_consumed_milli.saturating_sub(refunded_milli);
        }
    }

    fn table_throttle(&self) -> Throttled {
        let reason = |limit: &'static str| -> &'static str {
            match (self.index, self.operation, limit) {
                (false, Operation::Read, "Provisioned") => "TableReadProvisionedThroughputExceeded",
                (false, Operation::Write, "Provisioned") => {
                    "TableWriteProvisionedThroughputExceeded"
                }
                (false, Operation::Read, _) => "TableReadMaxOnDemandThroughputExceeded",
                (false, Operation::Write, _) => "TableWriteMaxOnDemandThroughputExceeded",
                (true, Operation::Read, "Provisioned") => "IndexReadProvisionedThroughputExceeded",
                (true, Operation::Write, "Provisioned") => {
                    "IndexWriteProvisionedThroughputExceeded"
                }
                (true, Operation::Read, _) => "IndexReadMaxOnDemandThroughputExceeded",
                (true, Operation::Write, _) => "IndexWriteMaxOnDemandThroughputExceeded",
            }
        };
        match &self.on_demand {
            None => Throttled {
                exception_name: PROVISIONED_EXCEPTION,
                message: if self.index && self.operation == Operation::Write {
                    INDEX_WRITE_PROVISIONED_EXCEEDED_MESSAGE
                } else {
                    PROVISIONED_EXCEEDED_MESSAGE
                },
                reason: Some(reason("Provisioned")),
            },
            Some(tracker) => Throttled {
                exception_name: ON_DEMAND_EXCEPTION,
                message: ON_DEMAND_EXCEEDED_MESSAGE,
                reason: tracker.capped_by_maximum().then(|| reason("MaxOnDemand")),
            },
        }
    }

    fn partition_throttle(&self) -> Throttled {
        let (exception_name, message) = match self.on_demand {
            None => (PROVISIONED_EXCEPTION, PROVISIONED_EXCEEDED_MESSAGE),
            Some(_) => (ON_DEMAND_EXCEPTION, ON_DEMAND_EXCEEDED_MESSAGE),
        };
        let reason = match (self.index, self.operation) {
            (false, Operation::Read) => "TableReadKeyRangeThroughputExceeded",
            (false, Operation::Write) => "TableWriteKeyRangeThroughputExceeded",
            (true, Operation::Read) => "IndexReadKeyRangeThroughputExceeded",
            (true, Operation::Write) => "IndexWriteKeyRangeThroughputExceeded",
        };
        Throttled {
            exception_name,
            message,
            reason: Some(reason),
        }
    }

    fn previous_peak_milli(&self) -> u64 {
        match &self.on_demand {
            Some(tracker) => tracker.previous_peak_milli_per_second,
            None => self.table.rate_milli_per_second(),
        }
    }
}

fn partition_bucket(operation: Operation, now: Duration) -> TokenBucket {
    let units_per_second = match operation {
        Operation::Read => PARTITION_READ_UNITS_PER_SECOND_MAX,
        Operation::Write => PARTITION_WRITE_UNITS_PER_SECOND_MAX,
    };
    let rate = CapacityUnits::from_units(units_per_second).as_milli();
    let capacity = rate.saturating_mul(PARTITION_BURST_SECONDS);
    TokenBucket::new(rate, capacity, capacity, now)
}

/// The admission state of one table (or one global secondary index) on one router.
#[derive(Debug, Clone)]
pub struct TableAdmission {
    mode: BillingMode,
    read: Direction,
    write: Direction,
    partitions: HashMap<(u64, Operation), TokenBucket>,
    index: bool,
}

impl TableAdmission {
    pub fn new(mode: BillingMode, now: Duration) -> Self {
        Self {
            mode,
            read: Direction::new(Operation::Read, mode, 0, now),
            write: Direction::new(Operation::Write, mode, 0, now),
            partitions: HashMap::new(),
            index: false,
        }
    }

    /// The buckets of a global secondary index: DynamoDB gives each GSI capacity of its own
    /// (its ProvisionedThroughput, or on-demand like its table), reads of the index draw on
    /// it, and its share of each table write is charged to it; a write finds it empty is
    /// throttled ([`TableAdmission::check`]). The partitions are the index's.
    pub fn for_index(mode: BillingMode, now: Duration) -> Self {
        let mut admission = Self::new(mode, now);
        admission.index = true;
        admission.read.index = true;
        admission.write.index = true;
        admission
    }

    pub fn mode(&self) -> BillingMode {
        self.mode
    }

    /// UpdateTable. Provisioned to provisioned keeps the banked balance (capped by the new burst
    /// size); a switch to on-demand starts from the higher of the provisioned rate and the new
    /// table peak; a switch to provisioned starts as a new provisioned table.
    pub fn set_mode(&mut self, mode: BillingMode, now: Duration) {
        for direction in [Operation::Read, Operation::Write] {
            let current = self.direction_mut(direction);
            current.advance(now);
            let previous_peak = current.previous_peak_milli();
            let mut replacement = Direction::new(direction, mode, previous_peak, now);
            replacement.index = current.index;
            if current.on_demand.is_none() && replacement.on_demand.is_none() {
                // Debt carries over too: a new provisioning level does not forgive consumption.
                replacement.table.set_balance(current.table.balance_milli());
            }
            *self.direction_mut(direction) = replacement;
        }
        self.mode = mode;
    }

    fn direction_mut(&mut self, operation: Operation) -> &mut Direction {
        match operation {
            Operation::Read => &mut self.read,
            Operation::Write => &mut self.write,
        }
    }

    /// Admits a request against `partition` charging `estimate`, or throttles it having
    /// consumed nothing.
    pub fn admit(
        &mut self,
        operation: Operation,
        partition: u64,
        estimate: CapacityUnits,
        now: Duration,
    ) -> Result<Admission, Throttled> {
        self.make_room_for_partition(partition, operation, now);
        let direction = self.direction_mut(operation);
        direction.advance(now);
        if direction.table.tokens_milli(now) <= 0 {
            return Err(direction.table_throttle());
        }
        let partition_throttle = direction.partition_throttle();
        let bucket = self
            .partitions
            .entry((partition, operation))
            .or_insert_with(|| partition_bucket(operation, now));
        if bucket.tokens_milli(now) <= 0 {
            return Err(partition_throttle);
        }
        bucket.take(estimate.as_milli());
        let direction = self.direction_mut(operation);
        direction.table.take(estimate.as_milli());
        direction.record(estimate.as_milli());
        Ok(Admission {
            operation,
            partition,
            charged: estimate,
        })
    }

    /// Charges (or refunds) the difference between what the request consumed and its estimate.
    pub fn settle(&mut self, admission: Admission, consumed: CapacityUnits, now: Duration) {
        let charged = admission.charged.as_milli();
        let actual = consumed.as_milli();
        let operation = admission.operation;
        let partition_bucket = self.partitions.get_mut(&(admission.partition, operation));
        if let Some(bucket) = partition_bucket {
            bucket.refill(now);
            if actual >= charged {
                bucket.take(actual - charged);
            } else {
                bucket.give_back(charged - actual);
            }
        }
        let direction = self.direction_mut(operation);
        direction.advance(now);
        if actual >= charged {
            direction.table.take(actual - charged);
            direction.record(actual - charged);
        } else {
            direction.table.give_back(charged - actual);
            direction.unrecord(charged - actual);
        }
    }

    fn make_room_for_partition(&mut self, partition: u64, operation: Operation, now: Duration) {
        if self.partitions.len() < PARTITION_BUCKETS_MAX
            || self.partitions.contains_key(&(partition, operation))
        {
            return;
        }
        for bucket in self.partitions.values_mut() {
            bucket.refill(now);
        }
        let fullest = self
            .partitions
            .iter()
            .max_by_key(|(_, bucket)| bucket.balance_milli())
            .map(|(key, _)| *key);
        if let Some(key) = fullest {
            self.partitions.remove(&key);
        }
    }

    /// Whether the table (or index) bucket holds a positive balance for `operation`: what a
    /// table write checks of each of its global secondary indexes before it is sent, since its
    /// index units are known only once the leader evaluated it. Charges nothing.
    pub fn check(&mut self, operation: Operation, now: Duration) -> Result<(), Throttled> {
        let direction = self.direction_mut(operation);
        direction.advance(now);
        if direction.table.tokens_milli(now) <= 0 {
            return Err(direction.table_throttle());
        }
        Ok(())
    }

    /// Charges `consumed` to the table (or index) bucket alone: an index's share of a table
    /// write, known after the write (no partition of the index is named by it).
    pub fn charge(&mut self, operation: Operation, consumed: CapacityUnits, now: Duration) {
        let direction = self.direction_mut(operation);
        direction.advance(now);
        direction.table.take(consumed.as_milli());
        direction.record(consumed.as_milli());
    }

    /// The table bucket's balance now, in milli-units (negative while in debt).
    pub fn table_balance_milli(&mut self, operation: Operation, now: Duration) -> i64 {
        let direction = self.direction_mut(operation);
        direction.advance(now);
        direction.table.tokens_milli(now)
    }

    /// The rate the table bucket refills at now, in milli-units per second.
    pub fn table_rate_milli_per_second(&mut self, operation: Operation, now: Duration) -> u64 {
        let direction = self.direction_mut(operation);
        direction.advance(now);
        direction.table.rate_milli_per_second()
    }
}
