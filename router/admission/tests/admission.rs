//! Admission control behaves like DynamoDB's capacity model (src/lib.rs, "Model").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proptest::prelude::*;
use shoal_admission::{
    BURST_SECONDS, BillingMode, CapacityUnits, Operation, ReadConsistency, TableAdmission,
    read_units, write_units,
};

const SECOND: Duration = Duration::from_secs(1);
const ONE: CapacityUnits = CapacityUnits::from_units(1);

fn provisioned(read_units_per_second: u64, write_units_per_second: u64) -> BillingMode {
    BillingMode::Provisioned {
        read_units_per_second,
        write_units_per_second,
    }
}

fn on_demand() -> BillingMode {
    BillingMode::PayPerRequest {
        read_units_per_second_max: None,
        write_units_per_second_max: None,
    }
}

/// Admits `estimate`-sized requests at `now` on `partition` until one is throttled; returns how
/// many were admitted (each settled at its estimate).
fn admit_until_throttled(
    table: &mut TableAdmission,
    operation: Operation,
    partition: u64,
    estimate: CapacityUnits,
    now: Duration,
    limit: usize,
) -> usize {
    for admitted in 0..limit {
        match table.admit(operation, partition, estimate, now) {
            Ok(admission) => table.settle(admission, estimate, now),
            Err(_) => return admitted,
        }
    }
    limit
}

#[test]
fn a_provisioned_table_serves_its_rate_and_then_throttles_with_dynamodbs_error() {
    let mut table = TableAdmission::new(provisioned(5, 10), Duration::ZERO);
    // Over several partitions: each is capped at 1,000 WCU per second.
    let admitted: usize = (1..=5)
        .map(|partition| {
            admit_until_throttled(
                &mut table,
                Operation::Write,
                partition,
                ONE,
                Duration::ZERO,
                10_000,
            )
        })
        .sum();
    assert_eq!(
        admitted, 3_000,
        "a new table holds 300 s of 10 WCU as burst credit"
    );
    let throttled = table
        .admit(Operation::Write, 0, ONE, Duration::ZERO)
        .unwrap_err();
    assert_eq!(
        throttled.exception_name,
        "ProvisionedThroughputExceededException"
    );
    assert_eq!(
        throttled.message,
        "The level of configured provisioned throughput for the table was exceeded. Consider \
         increasing your provisioning level with the UpdateTable API."
    );
    assert_eq!(
        throttled.reason,
        Some("TableWriteProvisionedThroughputExceeded")
    );
    // Reads have their own bucket.
    assert!(table.admit(Operation::Read, 0, ONE, Duration::ZERO).is_ok());
    // Once the credit is spent, the table serves its rate.
    // A throttled request consumed nothing: the balance is exactly what admissions left.
    assert_eq!(
        table.table_balance_milli(Operation::Write, Duration::ZERO),
        0
    );
    // Half a second later, half the rate is back.
    let half = SECOND / 2;
    assert_eq!(
        admit_until_throttled(&mut table, Operation::Write, 0, ONE, half, 100),
        5
    );
}

#[test]
fn unused_capacity_is_banked_for_at_most_300_seconds() {
    let mut table = TableAdmission::new(provisioned(2, 2), Duration::ZERO);
    let later = SECOND * 1_000;
    let burst = admit_until_throttled(&mut table, Operation::Read, 0, ONE, later, 10_000);
    assert_eq!(burst, 600, "2 RCU x 300 s of banked capacity");
    assert_eq!(BURST_SECONDS, 300);
}

#[test]
fn a_single_400_kb_write_to_a_new_5_wcu_table_succeeds_on_burst_credit() {
    let mut table = TableAdmission::new(provisioned(5, 5), Duration::ZERO);
    let estimate = write_units(400 * 1024);
    assert_eq!(estimate, CapacityUnits::from_units(400));
    let admission = table
        .admit(Operation::Write, 0, estimate, Duration::ZERO)
        .unwrap();
    table.settle(admission, estimate, Duration::ZERO);
    // 1,500 units of credit less 400: three more such writes, then throttled.
    assert_eq!(
        table.table_balance_milli(Operation::Write, Duration::ZERO),
        1_100_000
    );
    // Each on a partition of its own (a partition admits 1,000 WCU per second at most).
    let admitted = (1..=10)
        .filter(|partition| {
            table
                .admit(Operation::Write, *partition, estimate, Duration::ZERO)
                .is_ok()
        })
        .count();
    assert_eq!(admitted, 3);
}

#[test]
fn eventually_consistent_reads_cost_half() {
    let mut table = TableAdmission::new(provisioned(10, 1), Duration::ZERO);
    let estimate = read_units(4096, ReadConsistency::Eventual);
    let admitted = admit_until_throttled(
        &mut table,
        Operation::Read,
        0,
        estimate,
        Duration::ZERO,
        10_000,
    );
    assert_eq!(admitted, 6_000, "300 s of 10 RCU at half a unit each");
}

#[test]
fn underestimates_become_debt_and_overestimates_are_refunded() {
    let mut table = TableAdmission::new(provisioned(10, 10), Duration::ZERO);
    // Charged one unit, consumed 3,010 (a 3,010 KB update found only after reading the old
    // item, say): the 3,000 units of credit and 10 more.
    let admission = table
        .admit(Operation::Write, 0, ONE, Duration::ZERO)
        .unwrap();
    table.settle(admission, write_units(3_010 * 1024), Duration::ZERO);
    assert_eq!(
        table.table_balance_milli(Operation::Write, Duration::ZERO),
        -10_000
    );
    // Partition 0 is in debt too (for 2 s at its 1,000 WCU); partition 1 shows the table's.
    assert!(
        table.admit(Operation::Write, 1, ONE, SECOND).is_err(),
        "debt repaid only at 1 s"
    );
    assert!(
        table
            .admit(Operation::Write, 1, ONE, SECOND + SECOND / 10)
            .is_ok()
    );

    let mut table = TableAdmission::new(provisioned(10, 10), Duration::ZERO);
    let admission = table
        .admit(
            Operation::Read,
            0,
            CapacityUnits::from_units(8),
            Duration::ZERO,
        )
        .unwrap();
    table.settle(
        admission,
        read_units(100, ReadConsistency::Strong),
        Duration::ZERO,
    );
    assert_eq!(
        table.table_balance_milli(Operation::Read, Duration::ZERO),
        2_999_000
    );
}

#[test]
fn a_new_on_demand_table_serves_twice_its_initial_peak_at_once() {
    let mut table = TableAdmission::new(on_demand(), Duration::ZERO);
    // 4,000 WCU instantly, spread over four partitions (each capped at 1,000 WCU/s).
    let mut admitted = 0;
    for partition in 0..5 {
        admitted += admit_until_throttled(
            &mut table,
            Operation::Write,
            partition,
            ONE,
            Duration::ZERO,
            2_000,
        );
    }
    assert_eq!(admitted, 4_000);
    let throttled = table
        .admit(Operation::Write, 9, ONE, Duration::ZERO)
        .unwrap_err();
    // Data-plane throttling is ProvisionedThroughputExceededException in both modes.
    assert_eq!(
        throttled.exception_name,
        "ProvisionedThroughputExceededException"
    );
    assert!(
        throttled
            .message
            .starts_with("Throughput exceeds the current capacity of your table")
    );
    assert_eq!(
        table.table_rate_milli_per_second(Operation::Read, Duration::ZERO),
        12_000_000
    );
}

#[test]
fn a_hot_partition_is_throttled_while_others_are_served() {
    let mut table = TableAdmission::new(on_demand(), Duration::ZERO);
    assert_eq!(
        admit_until_throttled(&mut table, Operation::Write, 7, ONE, Duration::ZERO, 5_000),
        1_000
    );
    let throttled = table
        .admit(Operation::Write, 7, ONE, Duration::ZERO)
        .unwrap_err();
    assert_eq!(
        throttled.reason,
        Some("TableWriteKeyRangeThroughputExceeded")
    );
    assert!(
        table
            .admit(Operation::Write, 8, ONE, Duration::ZERO)
            .is_ok()
    );
    // Reads of the hot partition have their own, larger ceiling.
    assert_eq!(
        admit_until_throttled(&mut table, Operation::Read, 7, ONE, Duration::ZERO, 5_000),
        3_000
    );

    // On a provisioned table the same limit answers with the provisioned exception.
    let mut table = TableAdmission::new(provisioned(10_000, 10_000), SECOND * 1_000);
    assert_eq!(
        admit_until_throttled(&mut table, Operation::Write, 1, ONE, SECOND * 1_000, 5_000),
        1_000
    );
    let throttled = table
        .admit(Operation::Write, 1, ONE, SECOND * 1_000)
        .unwrap_err();
    assert_eq!(
        throttled.exception_name,
        "ProvisionedThroughputExceededException"
    );
    assert_eq!(
        throttled.reason,
        Some("TableWriteKeyRangeThroughputExceeded")
    );
}

#[test]
fn on_demand_capacity_grows_with_the_traffic_it_serves() {
    let mut table = TableAdmission::new(on_demand(), Duration::ZERO);
    let mut now = Duration::ZERO;
    // Serve the full 4,000 WCU/s for a few seconds over many partitions.
    for _ in 0..3 {
        let mut served = 0;
        for partition in 0..100 {
            served += admit_until_throttled(&mut table, Operation::Write, partition, ONE, now, 100);
        }
        assert!(served >= 4_000, "served {served}");
        now += SECOND;
    }
    // The peak is now above the initial 2,000, so the table allows more than 4,000 per second.
    assert!(table.table_rate_milli_per_second(Operation::Write, now) >= 8_000_000);
}

#[test]
fn a_maximum_on_demand_throughput_caps_the_table() {
    let mode = BillingMode::PayPerRequest {
        read_units_per_second_max: Some(50),
        write_units_per_second_max: None,
    };
    let mut table = TableAdmission::new(mode, Duration::ZERO);
    assert_eq!(
        admit_until_throttled(&mut table, Operation::Read, 0, ONE, Duration::ZERO, 1_000),
        50
    );
    let throttled = table
        .admit(Operation::Read, 1, ONE, Duration::ZERO)
        .unwrap_err();
    assert_eq!(
        throttled.reason,
        Some("TableReadMaxOnDemandThroughputExceeded")
    );
}

#[test]
fn update_table_changes_the_rate_and_keeps_the_balance() {
    let mut table = TableAdmission::new(provisioned(1, 1), Duration::ZERO);
    assert_eq!(
        admit_until_throttled(&mut table, Operation::Write, 0, ONE, Duration::ZERO, 1_000),
        300
    );
    table.set_mode(provisioned(1, 100), Duration::ZERO);
    assert!(
        table
            .admit(Operation::Write, 0, ONE, Duration::ZERO)
            .is_err(),
        "no free capacity"
    );
    assert_eq!(
        admit_until_throttled(&mut table, Operation::Write, 0, ONE, SECOND, 1_000),
        100
    );
    table.set_mode(on_demand(), SECOND);
    assert_eq!(table.mode(), on_demand());
    assert!(table.admit(Operation::Write, 1, ONE, SECOND).is_ok());
}

proptest! {
    /// Whatever the arrival pattern, a provisioned table never admits more than its initial
    /// capacity plus what accrued (the burst cap can only lower that).
    #[test]
    fn a_provisioned_table_never_admits_more_than_accrued(
        rate in 1u64..50,
        steps in proptest::collection::vec((0u64..2_000, 1u64..5), 1..200),
    ) {
        let mut table = TableAdmission::new(provisioned(rate, rate), Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut admitted_milli: u64 = 0;
        for (advance_millis, units) in steps {
            now += Duration::from_millis(advance_millis);
            let estimate = CapacityUnits::from_units(units);
            if let Ok(admission) = table.admit(Operation::Write, 0, estimate, now) {
                table.settle(admission, estimate, now);
                admitted_milli += estimate.as_milli();
            }
            let accrued_milli = rate * 1_000 * BURST_SECONDS
                + (rate * 1_000 * now.as_millis() as u64) / 1_000;
            // Admission needs a positive balance, so at most one request's estimate of debt.
            prop_assert!(admitted_milli <= accrued_milli + 5_000, "{} > {}", admitted_milli, accrued_milli);
            prop_assert!(table.table_balance_milli(Operation::Write, now) > -5_000);
        }
    }
}

/// A provisioned GSI has capacity of its own: its share of table writes is charged to it after
/// each write, and once its burst credit is spent a table write is refused with DynamoDB's GSI
/// message until the index's rate refills it; reads of the index draw on its read bucket.
#[test]
fn a_provisioned_index_throttles_its_table_writes_once_its_capacity_is_spent() {
    let start = Duration::from_secs(1);
    let mut index = TableAdmission::for_index(provisioned(2, 3), start);
    assert!(index.check(Operation::Write, start).is_ok());
    // Three units a second, 300 s of burst credit: 900 units are there at once.
    index.charge(Operation::Write, CapacityUnits::from_units(900), start);
    let throttled = index.check(Operation::Write, start).unwrap_err();
    assert_eq!(
        throttled.exception_name,
        "ProvisionedThroughputExceededException"
    );
    assert_eq!(
        throttled.message,
        "The level of configured provisioned throughput for one or more global secondary indexes of the table was exceeded. Consider increasing your provisioning level for the under-provisioned global secondary indexes with the UpdateTable API"
    );
    assert_eq!(
        throttled.reason,
        Some("IndexWriteProvisionedThroughputExceeded")
    );
    // One second refills three units.
    assert!(index.check(Operation::Write, start + SECOND).is_ok());
    // Reads: their own bucket, their own reason.
    let read = admit_until_throttled(&mut index, Operation::Read, 7, ONE, start, 10_000);
    assert_eq!(read, 600);
    let throttled = index.admit(Operation::Read, 7, ONE, start).unwrap_err();
    assert_eq!(
        throttled.reason,
        Some("IndexReadProvisionedThroughputExceeded")
    );
    // A table's own write throttle keeps the table's message and reason.
    let mut table = TableAdmission::new(provisioned(1, 1), start);
    table.charge(Operation::Write, CapacityUnits::from_units(300), start);
    let throttled = table.check(Operation::Write, start).unwrap_err();
    assert_eq!(
        throttled.reason,
        Some("TableWriteProvisionedThroughputExceeded")
    );
    assert!(
        throttled.message.starts_with(
            "The level of configured provisioned throughput for the table was exceeded"
        )
    );
}

/// An on-demand GSI (an on-demand table's) serves what an on-demand table does and keeps its
/// index flag across a mode change.
#[test]
fn an_on_demand_index_admits_like_an_on_demand_table() {
    let start = Duration::from_secs(1);
    let mut index = TableAdmission::for_index(on_demand(), start);
    index.charge(Operation::Write, CapacityUnits::from_units(3_999), start);
    assert!(index.check(Operation::Write, start).is_ok());
    index.charge(Operation::Write, CapacityUnits::from_units(2), start);
    let throttled = index.check(Operation::Write, start).unwrap_err();
    assert_eq!(
        throttled.exception_name,
        "ProvisionedThroughputExceededException"
    );
    assert!(
        throttled
            .message
            .starts_with("Throughput exceeds the current capacity of your table or index")
    );
    index.set_mode(provisioned(1, 1), start);
    index.charge(Operation::Write, CapacityUnits::from_units(301), start);
    assert_eq!(
        index.check(Operation::Write, start).unwrap_err().reason,
        Some("IndexWriteProvisionedThroughputExceeded")
    );
}
