//! OnDemandThroughput: the most read and write request units per second an on-demand table, or
//! one of its global secondary indexes, serves (DynamoDB's "maximum throughput for on-demand
//! tables"). Admission caps the table's (or index's) buckets at them (shoal-admission's
//! `BillingMode::PayPerRequest` maximums).
//!
//! The rules and texts are DynamoDB's as probed on the service by the ack-api-quirks DynamoDB
//! catalogue (router/server README.md): DDB-TABLE-128 (CreateTable: only on PAY_PER_REQUEST,
//! members of at least 1, the GSI texts), DDB-TABLE-051, 059, 153, 178 and 182 (UpdateTable:
//! a member-wise merge, -1 removes a maximum, 0 and below -1 are out of range, the texts on a
//! PROVISIONED table; a switch to PROVISIONED drops every maximum; DescribeTable lists the
//! maximums set and omits the struct when none is), and its service-limit entries for the quota
//! text ("Subscriber limit exceeded: Requested MaxReadRequestUnits for OnDemandThroughput for
//! table exceeds TableMaxReadCapacityUnits ...", and "for index : NAME").

use serde_json::{Value as Json, json};

use crate::error::{DynamoError, LIMIT_EXCEEDED};
use crate::metadata::Billing;
use crate::validate::{TABLE_READ_CAPACITY_UNITS_MAX, TABLE_WRITE_CAPACITY_UNITS_MAX};

const INVALID: &str = "One or more parameter values were invalid: ";
/// The member value of UpdateTable that removes a maximum.
pub const REMOVE_MAXIMUM: i64 = -1;
const READ: &str = "MaxReadRequestUnits";
const WRITE: &str = "MaxWriteRequestUnits";

/// A table's (or index's) maximums, in request units per second; `None`: no maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnDemandMaximum {
    pub read: Option<u64>,
    pub write: Option<u64>,
}

/// OnDemandThroughput as a request gives it: each member absent, a number, or (UpdateTable)
/// [`REMOVE_MAXIMUM`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnDemandRequest {
    pub read: Option<i64>,
    pub write: Option<i64>,
}

/// Whose maximums a message speaks of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    Table,
    Index(&'a str),
}

/// `body`'s OnDemandThroughput member, if it names any maximum: DynamoDB takes an empty
/// structure at CreateTable as no maximum (DDB-TABLE-024) and fails on one at UpdateTable with
/// an internal error, which Shoal answers as if the member were absent.
pub fn request(body: &Json) -> Result<Option<OnDemandRequest>, DynamoError> {
    let structure = match body.get("OnDemandThroughput") {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Object(structure)) => structure,
        Some(_) => {
            return Err(DynamoError::serialization(
                "OnDemandThroughput must be a structure",
            ));
        }
    };
    let member = |name: &str| -> Result<Option<i64>, DynamoError> {
        match structure.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(number)) => number
                .as_i64()
                .map(Some)
                .ok_or_else(|| DynamoError::serialization(&format!("{name} must be an integer"))),
            Some(_) => Err(DynamoError::serialization(&format!(
                "{name} must be a number"
            ))),
        }
    };
    let request = OnDemandRequest {
        read: member(READ)?,
        write: member(WRITE)?,
    };
    Ok((request.read.is_some() || request.write.is_some()).then_some(request))
}

impl OnDemandRequest {
    fn members(&self) -> [(&'static str, Option<i64>); 2] {
        [(READ, self.read), (WRITE, self.write)]
    }

    /// Refuses maximums on a PROVISIONED table, naming the first member given (CreateTable's
    /// and UpdateTable's texts differ in "the" and the full stop, as the service's do).
    fn check_billing(
        &self,
        billing: Billing,
        owner: Owner<'_>,
        create: bool,
    ) -> Result<(), DynamoError> {
        let Billing::Provisioned { .. } = billing else {
            return Ok(());
        };
        let Some((member, _)) = self
            .members()
            .into_iter()
            .find(|(_, value)| value.is_some())
        else {
            return Ok(());
        };
        Err(DynamoError::validation(match (owner, create) {
            (Owner::Table, true) => format!(
                "{INVALID}{member} for OnDemandThroughput cannot be specified when table BillingMode is PROVISIONED."
            ),
            (Owner::Index(index), true) => format!(
                "{INVALID}{member} for OnDemandThroughput for index: {index} cannot be specified when table BillingMode is PROVISIONED."
            ),
            (Owner::Table, false) => format!(
                "{INVALID}{member} for OnDemandThroughput cannot be specified when the table BillingMode is PROVISIONED"
            ),
            (Owner::Index(index), false) => format!(
                "{INVALID}{member} for OnDemandThroughput for index : {index} cannot be specified when the table BillingMode is PROVISIONED"
            ),
        }))
    }

    /// The maximums of a new table or index on `billing`: each member at least 1.
    pub fn for_create(
        &self,
        billing: Billing,
        owner: Owner<'_>,
    ) -> Result<OnDemandMaximum, DynamoError> {
        self.check_billing(billing, owner, true)?;
        let mut maximum = OnDemandMaximum::default();
        for ((member, value), slot) in self
            .members()
            .into_iter()
            .zip([&mut maximum.read, &mut maximum.write])
        {
            if let Some(value) = value {
                *slot = Some(in_range(member, value, owner)?);
            }
        }
        Ok(maximum)
    }

    /// `current` with this request's members over it: a number sets a maximum, -1 removes it,
    /// an absent member keeps it. `billing` is the table's after the request.
    pub fn merged(
        &self,
        current: OnDemandMaximum,
        billing: Billing,
        owner: Owner<'_>,
    ) -> Result<OnDemandMaximum, DynamoError> {
        self.check_billing(billing, owner, false)?;
        let mut maximum = current;
        for ((member, value), slot) in self
            .members()
            .into_iter()
            .zip([&mut maximum.read, &mut maximum.write])
        {
            match value {
                None => {}
                Some(REMOVE_MAXIMUM) => *slot = None,
                Some(value) => *slot = Some(in_range(member, value, owner)?),
            }
        }
        Ok(maximum)
    }
}

fn in_range(member: &str, value: i64, owner: Owner<'_>) -> Result<u64, DynamoError> {
    u64::try_from(value).ok().filter(|value| *value >= 1).ok_or_else(|| {
        DynamoError::validation(match owner {
            Owner::Table => format!(
                "{INVALID}Requested {member} for OnDemandThroughput for table is outside of valid range"
            ),
            Owner::Index(index) => format!(
                "{INVALID}Requested {member} for OnDemandThroughput for index : {index} is outside of valid range"
            ),
        })
    })
}

impl OnDemandMaximum {
    /// Refuses maximums above the per-table quotas (LimitExceededException, named with the
    /// router's region), as DynamoDB does.
    pub fn check_quota(&self, owner: Owner<'_>, region: &str) -> Result<(), DynamoError> {
        for (member, value, quota, quota_name) in [
            (
                READ,
                self.read,
                TABLE_READ_CAPACITY_UNITS_MAX,
                "TableMaxReadCapacityUnits",
            ),
            (
                WRITE,
                self.write,
                TABLE_WRITE_CAPACITY_UNITS_MAX,
                "TableMaxWriteCapacityUnits",
            ),
        ] {
            if value.is_some_and(|value| value > quota) {
                let whose = match owner {
                    Owner::Table => "table".to_string(),
                    Owner::Index(index) => format!("index : {index}"),
                };
                return Err(DynamoError::new(
                    LIMIT_EXCEEDED,
                    format!(
                        "Subscriber limit exceeded: Requested {member} for OnDemandThroughput for {whose} exceeds {quota_name} of the account in region {region}"
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn is_set(&self) -> bool {
        self.read.is_some() || self.write.is_some()
    }

    /// A table's DescribeTable member: the maximums set, `None` when none is (DDB-TABLE-182).
    pub fn table_json(&self) -> Option<Json> {
        if !self.is_set() {
            return None;
        }
        let mut structure = serde_json::Map::new();
        if let Some(read) = self.read {
            structure.insert(READ.to_string(), json!(read));
        }
        if let Some(write) = self.write {
            structure.insert(WRITE.to_string(), json!(write));
        }
        Some(Json::Object(structure))
    }

    /// An on-demand GSI's DescribeTable member: both maximums, -1 for none.
    pub fn index_json(&self) -> Json {
        let or_none =
            |value: Option<u64>| value.map_or(json!(REMOVE_MAXIMUM), |value| json!(value));
        json!({ READ: or_none(self.read), WRITE: or_none(self.write) })
    }
}
