//! Forwarding a request to a partition's leader shard, with the retry rules of the router.
//!
//! - **NotLeader**: go to the hinted leader, or the next replica; after every replica said no,
//!   back off (an election is under way).
//! - **StaleEpoch / WrongOwner**: the map is out of date; the caller refreshes it from metadata
//!   and calls again ([`ForwardError::StaleRoute`]).
//! - **Busy, NotApplied**: back off exponentially with equal jitter and ask the same replica
//!   again. `NotApplied` says the request certainly did not take effect and never will (it was
//!   refused before it was proposed, or its proposal lost its log slot), so even a write is sent
//!   again; a replica that lost its leadership meanwhile answers NotLeader with a hint.
//! - **Connection failures, read failures**: back off and try the next replica.
//! - **A write whose outcome is unknown** (the replica answered `OutcomeUnknown`, or `Internal`
//!   from a node of an earlier build, or the request left and no answer came) is never
//!   retried: a retry could apply it twice (an `ADD`, a condition that its own first
//!   application falsified). It ends as [`ForwardError::OutcomeUnknown`], which the client sees
//!   as DynamoDB's `InternalServerError` (a 500) saying the write may or may not have been
//!   applied.
//!
//! [`after_error`] and [`after_call_failure`] are these rules as pure functions; the loop in
//! [`Forwarder::forward`] only carries them out.
//!
//! Everything is bounded by the request's deadline and [`ATTEMPTS_MAX`]. A call that is already
//! on the wire when the deadline passes still waits for its answer or [`CALL_TIMEOUT`], so a
//! request can overrun its deadline by at most one call timeout: dropping a call half way would
//! leave its pipelining slot in the client.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use shoal_bus::{BusClient, BusClientConfig, BusTls, ClientError};
use shoal_model::encoding::decode_item;
use shoal_model::json::item_to_json;
use shoal_model::request::PreparedRequest;
use shoal_model::request_codec::encode_request;
use shoal_rng::{Backoff, SeededRng};
use shoal_wire::messages::{ItemResult, NodeError, NodeRequest, NodeResponse};

use crate::error::DynamoError;
use crate::partition_map::{NodeDirectory, NodeId, PartitionEntry};

/// How long one DynamoDB request may spend in the router, retries included.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Attempts (calls to a shard) per request at most.
pub const ATTEMPTS_MAX: u32 = 64;
/// How long one call to a shard waits for its answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection attempt to a shard may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Backoff between retries: starts here and doubles up to the maximum, with equal jitter.
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
pub const BACKOFF_MAX: Duration = Duration::from_millis(400);
/// Pooled connections per router core at most (one per shard address).
pub const POOLED_CONNECTIONS_MAX: usize = 4096;
const _: () = assert!(BACKOFF_MIN.as_millis() < BACKOFF_MAX.as_millis());
const _: () = assert!(CALL_TIMEOUT.as_millis() < REQUEST_DEADLINE.as_millis());

/// A partition's successful answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// What the partition produced; each front end renders it in its own format.
    pub result: ItemResult,
    pub read_units_milli: u64,
    pub write_units_milli: u64,
    /// The node that answered: it leads the partition.
    pub leader: NodeId,
    /// The last hash of the partition that answered, as the route it was sent with says: a
    /// Scan goes on after it (the map may have changed under the Scan: a split).
    pub range_last: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ForwardError {
    /// The partition answered with a DynamoDB error (a failed condition, a validation error).
    Dynamo(DynamoError),
    /// The partition refused the request before doing any of its work (it could not decode
    /// it): the error to answer, with nothing consumed.
    Refused(DynamoError),
    /// The map the request was routed with is out of date; refresh it and route again.
    /// `newer_epoch`: the replica answered with a later epoch of the partition than the
    /// route's (a split froze it), so a refreshed map that still shows the route's epoch is
    /// behind the node and will change soon.
    StaleRoute { partition: u64, newer_epoch: bool },
    /// A write may or may not have been applied; it must not be retried.
    OutcomeUnknown { message: String },
    /// No answer within the deadline or the attempt cap. `replica_may_have_served` is false
    /// when no replica can have done the request's work: every attempt was refused (not the
    /// leader, busy, not applied) or never left this router.
    Unavailable {
        message: String,
        replica_may_have_served: bool,
    },
    /// The partition's epoch is the route's, yet it refused the request for naming a key it
    /// does not own: the request was grouped with a map from before a split of `partition`.
    /// Nothing was applied; the keys must be grouped again with the current map.
    KeysElsewhere { partition: u64 },
}

impl ForwardError {
    /// Whether a replica may have done the request's work, so the capacity charged for it
    /// stays charged. DynamoDB charges nothing for a request it refused; it does charge a
    /// write refused by its condition, which read the item.
    pub fn may_have_consumed(&self) -> bool {
        match self {
            ForwardError::Dynamo(_) | ForwardError::OutcomeUnknown { .. } => true,
            ForwardError::Refused(_)
            | ForwardError::StaleRoute { .. }
            | ForwardError::KeysElsewhere { .. } => false,
            ForwardError::Unavailable {
                replica_may_have_served,
                ..
            } => *replica_may_have_served,
        }
    }

    /// The error a client sees when the router gives up on this one.
    pub fn into_dynamo(self) -> DynamoError {
        match self {
            ForwardError::Dynamo(error) | ForwardError::Refused(error) => error,
            ForwardError::StaleRoute { partition, .. } => DynamoError::internal(format!(
                "The partition map for partition {partition} kept changing; retry the request"
            )),
            ForwardError::OutcomeUnknown { message } => DynamoError::internal(format!(
                "Internal server error (the write may or may not have been applied: {message})"
            )),
            ForwardError::Unavailable { message, .. } => {
                DynamoError::internal(format!("Internal server error ({message})"))
            }
            // A batch returns these keys unprocessed (an internal error is what its settling
            // treats as "not served"); a transaction groups them again before this is seen.
            ForwardError::KeysElsewhere { partition } => DynamoError::internal(format!(
                "Internal server error (partition {partition} does not own every key of the \
                 request (the partition was split); send them again)"
            )),
        }
    }
}

/// Whether a request changes data: decides if an unanswered request may be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Read,
    Write,
}

impl Effect {
    pub fn of(request: &PreparedRequest) -> Effect {
        if request.is_write() {
            Effect::Write
        } else {
            Effect::Read
        }
    }
}

/// A prepared item request, encoded once (the typed item request encoding) for every attempt
/// the forwarder makes.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemCall {
    pub effect: Effect,
    pub encoded: Vec<u8>,
}

impl ItemCall {
    pub fn new(request: &PreparedRequest) -> ItemCall {
        ItemCall {
            effect: Effect::of(request),
            encoded: encode_request(request),
        }
    }
}

/// A partition's answer as the DynamoDB JSON body of the operation it served (for a Scan, the
/// body of the one partition's part). `count_only` is the request's `Select: COUNT`, which
/// leaves `Items` out.
pub fn render_result(result: &ItemResult, count_only: bool) -> Result<Json, DynamoError> {
    let mut body = serde_json::Map::new();
    match result {
        ItemResult::Write { attributes } => {
            if let Some(attributes) = attributes {
                body.insert("Attributes".to_string(), item_json(attributes)?);
            }
        }
        // ItemCollectionMetrics is added by the operation when the request asked for it.
        ItemResult::WriteInCollection { attributes, .. }
        | ItemResult::WriteWithIndexes { attributes, .. } => {
            if let Some(attributes) = attributes {
                body.insert("Attributes".to_string(), item_json(attributes)?);
            }
        }
        ItemResult::BatchWrite
        | ItemResult::BatchWriteInCollections { .. }
        | ItemResult::BatchWriteWithIndexes { .. } => {}
        // Only the GSI propagator asks for outbox records; it reads them without rendering.
        // The GSI propagator and the Streams operations read these themselves.
        ItemResult::Outbox { .. }
        | ItemResult::Backfill { .. }
        | ItemResult::StreamRecords { .. }
        | ItemResult::StreamShards { .. } => {}
        // The transaction coordinator reads these itself.
        ItemResult::TransactPrepared { .. }
        | ItemResult::TransactFinished { .. }
        | ItemResult::TransactRead { .. }
        | ItemResult::TransactConfirmed { .. }
        | ItemResult::TransactLocks { .. } => {}
        ItemResult::Get { item } => {
            if let Some(item) = item {
                body.insert("Item".to_string(), item_json(item)?);
            }
        }
        ItemResult::BatchGet { items } => {
            let items = items
                .iter()
                .map(|item| item_json(item))
                .collect::<Result<Vec<_>, _>>()?;
            body.insert("Responses".to_string(), Json::Array(items));
        }
        ItemResult::Range {
            items,
            count,
            scanned_count,
            last_evaluated_key,
            ..
        } => {
            if !count_only {
                let items = items
                    .iter()
                    .map(|item| item_json(item))
                    .collect::<Result<Vec<_>, _>>()?;
                body.insert("Items".to_string(), Json::Array(items));
            }
            body.insert("Count".to_string(), Json::from(*count));
            body.insert("ScannedCount".to_string(), Json::from(*scanned_count));
            if let Some(key) = last_evaluated_key {
                body.insert("LastEvaluatedKey".to_string(), item_json(key)?);
            }
        }
    }
    Ok(Json::Object(body))
}

/// An item (or key) of a partition's answer, in DynamoDB JSON.
pub fn item_json(bytes: &[u8]) -> Result<Json, DynamoError> {
    let item = decode_item(bytes).map_err(|error| {
        DynamoError::internal(format!(
            "Internal server error (a partition answered an item that does not decode: {error})"
        ))
    })?;
    Ok(item_to_json(&item))
}

/// What the forwarder does next after a replica's error answer or a failed call: the retry
/// rules of the module docs, decided by [`after_error`] and [`after_call_failure`].
#[derive(Clone, Debug, PartialEq)]
pub enum Retry {
    /// Ask the hinted leader when it is one of the partition's replicas, else the next
    /// replica; pause once every replica has refused since the last pause (an election is
    /// under way).
    FollowLeader { hint: Option<NodeId> },
    /// Pause, then ask the same replica again: it is busy, or it refused the request as not
    /// applied.
    SameReplica,
    /// Pause, then ask the next replica: this one could not serve a read, or could not be
    /// reached. `replica_may_have_served` says whether it may have done the work anyway.
    NextReplica { replica_may_have_served: bool },
    /// The partition map is out of date: the caller refreshes it and routes again.
    RefreshRoute,
    /// Give up with this error.
    Stop(ForwardError),
}

/// The retry rule for a replica's error answer to a request of `effect`.
pub fn after_error(error: NodeError, effect: Effect) -> Retry {
    match error {
        NodeError::NotLeader { leader_hint, .. } => Retry::FollowLeader { hint: leader_hint },
        NodeError::StaleEpoch { .. } | NodeError::WrongOwner { .. } => Retry::RefreshRoute,
        // Nothing was done, and the request can take effect only if sent again.
        NodeError::Busy { .. } | NodeError::NotApplied { .. } => Retry::SameReplica,
        NodeError::Dynamo {
            type_name,
            message,
            item,
        } => {
            let item = item.and_then(|bytes| item_json(&bytes).ok());
            Retry::Stop(ForwardError::Dynamo(DynamoError {
                type_name,
                message,
                item,
                cancellation_reasons: None,
            }))
        }
        // The router built the request; a node that cannot decode it will not decode it on a
        // retry either.
        NodeError::Malformed { message } => {
            Retry::Stop(ForwardError::Refused(DynamoError::internal(format!(
                "Internal server error (request refused as malformed: {message})"
            ))))
        }
        // `Internal` comes from nodes of an earlier build, which sent it whether or not the
        // request could have taken effect: read it as the kind that is safe for both.
        NodeError::OutcomeUnknown { message } | NodeError::Internal { message } => match effect {
            Effect::Write => Retry::Stop(ForwardError::OutcomeUnknown { message }),
            // A read changes nothing: repeating it anywhere is safe.
            Effect::Read => Retry::NextReplica {
                replica_may_have_served: true,
            },
        },
    }
}

/// The retry rule for a call to a replica that got no answer: `sent` says whether the request
/// left this router.
pub fn after_call_failure(sent: bool, effect: Effect, message: String) -> Retry {
    match (sent, effect) {
        // It left and no answer came: the replica may have applied it.
        (true, Effect::Write) => Retry::Stop(ForwardError::OutcomeUnknown { message }),
        (true, Effect::Read) => Retry::NextReplica {
            replica_may_have_served: true,
        },
        // It never left: even a write can go elsewhere.
        (false, _) => Retry::NextReplica {
            replica_may_have_served: false,
        },
    }
}

/// The router core's connections to shards and its node directory. Lives on one glommio
/// executor (it holds `BusClient`s, which are `!Send`).
pub struct Forwarder {
    pool: RefCell<HashMap<SocketAddr, Rc<BusClient>>>,
    directory: RefCell<NodeDirectory>,
    rng: RefCell<SeededRng>,
    /// Attempts made again, by [`RETRY_KINDS`] (for /metrics).
    retries: RefCell<[u64; RETRY_KINDS.len()]>,
    /// Mutual TLS with the cluster CA on every bus connection (net/bus/src/tls.rs).
    bus_tls: Option<BusTls>,
}

/// Why an attempt was made again, as /metrics names it: a replica was not the leader (or
/// not in the directory), was busy or had not applied the request, did not answer, the
/// partition map was stale (the router refreshes it and routes again), or the request was
/// grouped with a map from before a split and its keys must be grouped again
/// ([`ForwardError::KeysElsewhere`]).
pub const RETRY_KINDS: [&str; 5] = [
    "not_leader",
    "busy",
    "no_answer",
    "stale_route",
    "keys_elsewhere",
];
/// [`RETRY_KINDS`]' index of `keys_elsewhere`.
const KEYS_ELSEWHERE_RETRY: usize = 4;

/// Why a single call to a shard ([`Forwarder::call_once`]) got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallFailure {
    /// The request never left this router: the shard could not be reached (its node is down,
    /// or not in the directory).
    NotSent(String),
    /// The request left and no answer came in time: the node is slow or stopped meanwhile,
    /// and may have done the work.
    Lost(String),
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::NotSent(message) => write!(formatter, "{message} (not sent)"),
            CallFailure::Lost(message) => write!(formatter, "{message} (no answer)"),
        }
    }
}

/// What a single call to a shard came to.
enum CallOutcome {
    Answer(NodeResponse),
    /// The request never left this router: it can be sent again, even a write.
    NotSent(ClientError),
    /// It left and no answer came: a write's outcome is unknown.
    Lost(ClientError),
}

impl Forwarder {
    pub fn new(directory: NodeDirectory, seed: u64) -> Forwarder {
        Forwarder {
            pool: RefCell::new(HashMap::new()),
            directory: RefCell::new(directory),
            rng: RefCell::new(SeededRng::new(seed)),
            retries: RefCell::new([0; RETRY_KINDS.len()]),
            bus_tls: None,
        }
    }

    /// Connects to the shards with mutual TLS (`Some`): the cluster's buses then refuse
    /// anything else.
    pub fn with_bus_tls(mut self, bus_tls: Option<BusTls>) -> Forwarder {
        self.bus_tls = bus_tls;
        self
    }

    /// Attempts made again so far, by kind.
    pub fn retries(&self) -> Vec<(&'static str, u64)> {
        RETRY_KINDS
            .into_iter()
            .zip(self.retries.borrow().iter().copied())
            .collect()
    }

    fn count_retry(&self, kind: usize) {
        if let Some(count) = self.retries.borrow_mut().get_mut(kind) {
            *count = count.saturating_add(1);
        }
    }

    pub fn directory(&self) -> NodeDirectory {
        self.directory.borrow().clone()
    }

    /// A request's backoff between retries ([`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`], equal
    /// jitter), seeded from this router core's generator.
    fn backoff(&self) -> Backoff {
        Backoff::new(BACKOFF_MIN, BACKOFF_MAX, self.rng.borrow_mut().next_u64())
    }

    /// Replaces the node directory (after reading the cluster item). Pooled connections stay:
    /// a connection to an address that went away fails and is dropped on its next use.
    pub fn set_directory(&self, directory: NodeDirectory) {
        *self.directory.borrow_mut() = directory;
    }

    pub fn shard_address(&self, node: NodeId, shard: u16) -> Option<SocketAddr> {
        self.directory.borrow().shard_address(node, shard)
    }

    async fn client(&self, address: SocketAddr) -> Result<Rc<BusClient>, ClientError> {
        if let Some(client) = self.pool.borrow().get(&address) {
            return Ok(client.clone());
        }
        let config = BusClientConfig {
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: CALL_TIMEOUT,
            tls: self.bus_tls.clone(),
            ..BusClientConfig::default()
        };
        let client = Rc::new(BusClient::connect(address, config).await?);
        let mut pool = self.pool.borrow_mut();
        if pool.len() >= POOLED_CONNECTIONS_MAX {
            // Rare (more shards than the bound): drop an arbitrary connection; it reconnects
            // on its next use.
            if let Some(victim) = pool.keys().next().copied() {
                pool.remove(&victim);
            }
        }
        // Another task may have connected meanwhile; keep the first, drop ours.
        Ok(pool.entry(address).or_insert(client).clone())
    }

    async fn call(&self, address: SocketAddr, request: NodeRequest) -> CallOutcome {
        let client = match self.client(address).await {
            Ok(client) => client,
            Err(error) => return CallOutcome::NotSent(error),
        };
        // `requests_sent` counts requests queued for the wire: if it did not move, the call
        // failed before its request could leave (a connection already known to be broken).
        let sent_before = client.stats().requests_sent;
        match client.call(request).await {
            Ok(response) => CallOutcome::Answer(response),
            Err(error) => {
                // A failed connection stays failed; the next call reconnects.
                let mut pool = self.pool.borrow_mut();
                if pool
                    .get(&address)
                    .is_some_and(|pooled| Rc::ptr_eq(pooled, &client))
                    && error != ClientError::Timeout
                {
                    pool.remove(&address);
                }
                if client.stats().requests_sent == sent_before {
                    CallOutcome::NotSent(error)
                } else {
                    CallOutcome::Lost(error)
                }
            }
        }
    }

    /// One request to the shard listening on `address`, whose node id may be unknown (a seed
    /// of `shoal node --join`), with no retries.
    pub async fn call_address(
        &self,
        address: SocketAddr,
        request: NodeRequest,
    ) -> Result<NodeResponse, CallFailure> {
        match self.call(address, request).await {
            CallOutcome::Answer(response) => Ok(response),
            CallOutcome::NotSent(error) => Err(CallFailure::NotSent(format!("{address}: {error}"))),
            CallOutcome::Lost(error) => Err(CallFailure::Lost(format!("{address}: {error}"))),
        }
    }

    /// One request to one shard with no retries (CreatePartition, Status); `Err` says why no
    /// answer came.
    pub async fn call_once(
        &self,
        node: NodeId,
        shard: u16,
        request: NodeRequest,
    ) -> Result<NodeResponse, CallFailure> {
        let address = self
            .shard_address(node, shard)
            .ok_or_else(|| CallFailure::NotSent(format!("node {node} is not in the directory")))?;
        match self.call(address, request).await {
            CallOutcome::Answer(response) => Ok(response),
            CallOutcome::NotSent(error) => Err(CallFailure::NotSent(format!(
                "node {node} shard {shard}: {error}"
            ))),
            CallOutcome::Lost(error) => Err(CallFailure::Lost(format!(
                "node {node} shard {shard}: {error}"
            ))),
        }
    }

    async fn pause(&self, backoff: &mut Backoff, deadline: Instant) {
        let delay = backoff.next_delay();
        let remaining = deadline.saturating_duration_since(Instant::now());
        glommio::timer::sleep(delay.min(remaining)).await;
    }

    /// Sends an item request to the leader of `route`'s partition and retries by the rules in
    /// the module docs until an answer, an error that must not be retried, or `deadline`.
    pub async fn forward(
        &self,
        route: &PartitionEntry,
        call: &ItemCall,
        deadline: Instant,
    ) -> Result<Reply, ForwardError> {
        let effect = call.effect;
        let mut backoff = self.backoff();
        let Some(mut target) = route.first_target() else {
            return Err(ForwardError::Unavailable {
                message: format!("partition {} has no replicas", route.id),
                replica_may_have_served: false,
            });
        };
        // Replicas asked since the last pause: once all said "not leader", wait.
        let mut refusals_since_pause = 0usize;
        let mut last_problem = String::from("no attempt made");
        let mut replica_may_have_served = false;
        for _attempt in 0..ATTEMPTS_MAX {
            if Instant::now() >= deadline {
                break;
            }
            let retry = match self.shard_address(target, route.shard) {
                None => {
                    last_problem = format!("node {target} is not in the node directory");
                    // Like a replica that refused: move on, and pause once all were tried.
                    Retry::FollowLeader { hint: None }
                }
                Some(address) => {
                    let request = NodeRequest::Item {
                        partition: route.id,
                        epoch: route.epoch,
                        request: call.encoded.clone(),
                    };
                    match self.call(address, request).await {
                        CallOutcome::Answer(NodeResponse::Item {
                            result,
                            read_units_milli,
                            write_units_milli,
                        }) => {
                            return Ok(Reply {
                                result,
                                read_units_milli,
                                write_units_milli,
                                leader: target,
                                range_last: route.range.last,
                            });
                        }
                        CallOutcome::Answer(NodeResponse::Error(error)) => {
                            last_problem = problem_of(&error, route.id, target);
                            if let NodeError::StaleEpoch { current_epoch, .. } = error {
                                if current_epoch > route.epoch {
                                    return Err(ForwardError::StaleRoute {
                                        partition: route.id,
                                        newer_epoch: true,
                                    });
                                }
                                if current_epoch == route.epoch {
                                    // The partition's epoch is the route's, so the map is not
                                    // stale: the request names a key the partition does not
                                    // own (a split child's range; a batch or transaction
                                    // grouped with a map older than the split). Routing it the
                                    // same way cannot help: nothing was applied.
                                    self.count_retry(KEYS_ELSEWHERE_RETRY);
                                    return Err(ForwardError::KeysElsewhere {
                                        partition: route.id,
                                    });
                                }
                            }
                            after_error(error, effect)
                        }
                        CallOutcome::Answer(other) => {
                            return Err(ForwardError::Dynamo(DynamoError::internal(format!(
                                "Internal server error (unexpected answer to an item request: {other:?})"
                            ))));
                        }
                        CallOutcome::Lost(error) => {
                            last_problem = format!("node {target}: {error}");
                            after_call_failure(true, effect, error.to_string())
                        }
                        CallOutcome::NotSent(error) => {
                            last_problem = format!("node {target}: {error}");
                            after_call_failure(false, effect, error.to_string())
                        }
                    }
                }
            };
            self.count_retry(match &retry {
                Retry::FollowLeader { .. } => 0,
                Retry::SameReplica => 1,
                Retry::NextReplica { .. } => 2,
                Retry::RefreshRoute => 3,
                Retry::Stop(_) => RETRY_KINDS.len(),
            });
            match retry {
                Retry::FollowLeader { hint } => {
                    let hinted =
                        hint.filter(|hint| *hint != target && route.replicas.contains(hint));
                    refusals_since_pause += 1;
                    if refusals_since_pause >= route.replicas.len() {
                        refusals_since_pause = 0;
                        self.pause(&mut backoff, deadline).await;
                    }
                    target = hinted
                        .or_else(|| route.next_replica(target))
                        .unwrap_or(target);
                }
                Retry::SameReplica => self.pause(&mut backoff, deadline).await,
                Retry::NextReplica {
                    replica_may_have_served: served,
                } => {
                    replica_may_have_served |= served;
                    target = route.next_replica(target).unwrap_or(target);
                    self.pause(&mut backoff, deadline).await;
                }
                Retry::RefreshRoute => {
                    return Err(ForwardError::StaleRoute {
                        partition: route.id,
                        newer_epoch: false,
                    });
                }
                Retry::Stop(error) => return Err(error),
            }
        }
        Err(ForwardError::Unavailable {
            message: format!("partition {}: {last_problem}", route.id),
            replica_may_have_served,
        })
    }
}

/// What went wrong with one attempt, for the message of a request that runs out of attempts.
fn problem_of(error: &NodeError, partition: u64, node: NodeId) -> String {
    match error {
        NodeError::NotLeader { .. } => format!("node {node} is not the leader"),
        NodeError::Busy { .. } => format!("partition {partition} is busy"),
        NodeError::NotApplied { message }
        | NodeError::OutcomeUnknown { message }
        | NodeError::Internal { message }
        | NodeError::Malformed { message } => message.clone(),
        NodeError::StaleEpoch { .. } | NodeError::WrongOwner { .. } => {
            format!("node {node} routes partition {partition} with another map")
        }
        NodeError::Dynamo { type_name, .. } => format!("node {node} answered {type_name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_the_operations_that_change_data() {
        use shoal_model::key::{KeySchema, KeyType};
        use shoal_model::request::{ItemOperation, prepare};
        let schema = KeySchema::partition_only("pk", KeyType::String);
        let key = serde_json::json!({"Key": {"pk": {"S": "a"}}});
        let effect = |operation, parameters: &Json| {
            Effect::of(&prepare(operation, parameters, &schema).unwrap())
        };
        assert_eq!(
            effect(
                ItemOperation::BatchWrite,
                &serde_json::json!([{"DeleteRequest": {"Key": {"pk": {"S": "a"}}}}])
            ),
            Effect::Write
        );
        assert_eq!(effect(ItemOperation::UpdateItem, &key), Effect::Write);
        assert_eq!(effect(ItemOperation::DeleteItem, &key), Effect::Write);
        assert_eq!(effect(ItemOperation::GetItem, &key), Effect::Read);
        assert_eq!(
            effect(ItemOperation::Scan, &serde_json::json!({})),
            Effect::Read
        );
        assert_eq!(
            effect(
                ItemOperation::BatchGet,
                &serde_json::json!({"Keys": [{"pk": {"S": "a"}}]})
            ),
            Effect::Read
        );
    }

    /// Every kind of error a replica answers, each with the rule that follows it, for a read
    /// and for a write.
    #[test]
    fn each_error_kind_has_its_retry_rule() {
        let message = || "m".to_string();
        let cases: Vec<(NodeError, Retry, Retry)> = vec![
            (
                NodeError::NotLeader {
                    partition: 1,
                    leader_hint: Some(3),
                },
                Retry::FollowLeader { hint: Some(3) },
                Retry::FollowLeader { hint: Some(3) },
            ),
            (
                NodeError::StaleEpoch {
                    partition: 1,
                    current_epoch: 2,
                },
                Retry::RefreshRoute,
                Retry::RefreshRoute,
            ),
            (
                NodeError::WrongOwner { partition: 1 },
                Retry::RefreshRoute,
                Retry::RefreshRoute,
            ),
            (
                NodeError::Busy { partition: 1 },
                Retry::SameReplica,
                Retry::SameReplica,
            ),
            // Certainly not applied: a write is sent again too.
            (
                NodeError::NotApplied { message: message() },
                Retry::SameReplica,
                Retry::SameReplica,
            ),
            // Perhaps applied: a read goes elsewhere, a write stops.
            (
                NodeError::OutcomeUnknown { message: message() },
                Retry::NextReplica {
                    replica_may_have_served: true,
                },
                Retry::Stop(ForwardError::OutcomeUnknown { message: message() }),
            ),
            // An earlier build's `Internal` is read as an unknown outcome.
            (
                NodeError::Internal { message: message() },
                Retry::NextReplica {
                    replica_may_have_served: true,
                },
                Retry::Stop(ForwardError::OutcomeUnknown { message: message() }),
            ),
            (
                NodeError::Malformed { message: message() },
                Retry::Stop(ForwardError::Refused(DynamoError::internal(
                    "Internal server error (request refused as malformed: m)",
                ))),
                Retry::Stop(ForwardError::Refused(DynamoError::internal(
                    "Internal server error (request refused as malformed: m)",
                ))),
            ),
            (
                NodeError::Dynamo {
                    type_name: "ConditionalCheckFailedException".to_string(),
                    message: message(),
                    item: Some(shoal_model::encoding::encode_item(
                        &shoal_model::json::item_from_json(&serde_json::json!({"pk": {"S": "a"}}))
                            .unwrap(),
                    )),
                },
                Retry::Stop(ForwardError::Dynamo(DynamoError {
                    type_name: "ConditionalCheckFailedException".to_string(),
                    message: message(),
                    item: Some(serde_json::json!({"pk": {"S": "a"}})),
                    cancellation_reasons: None,
                })),
                Retry::Stop(ForwardError::Dynamo(DynamoError {
                    type_name: "ConditionalCheckFailedException".to_string(),
                    message: message(),
                    item: Some(serde_json::json!({"pk": {"S": "a"}})),
                    cancellation_reasons: None,
                })),
            ),
        ];
        for (error, read, write) in cases {
            assert_eq!(
                after_error(error.clone(), Effect::Read),
                read,
                "read, {error:?}"
            );
            assert_eq!(
                after_error(error.clone(), Effect::Write),
                write,
                "write, {error:?}"
            );
        }
    }

    #[test]
    fn a_call_without_an_answer_stops_only_a_write_that_left() {
        let message = || "timed out".to_string();
        assert_eq!(
            after_call_failure(true, Effect::Write, message()),
            Retry::Stop(ForwardError::OutcomeUnknown { message: message() })
        );
        assert_eq!(
            after_call_failure(true, Effect::Read, message()),
            Retry::NextReplica {
                replica_may_have_served: true
            }
        );
        for effect in [Effect::Read, Effect::Write] {
            assert_eq!(
                after_call_failure(false, effect, message()),
                Retry::NextReplica {
                    replica_may_have_served: false
                }
            );
        }
    }

    #[test]
    fn only_errors_after_a_replica_may_have_served_keep_their_charge() {
        let conditional = DynamoError::new("ConditionalCheckFailedException", "failed");
        assert!(ForwardError::Dynamo(conditional.clone()).may_have_consumed());
        assert!(
            ForwardError::OutcomeUnknown {
                message: "m".to_string()
            }
            .may_have_consumed()
        );
        assert!(!ForwardError::Refused(conditional).may_have_consumed());
        assert!(
            !ForwardError::StaleRoute {
                partition: 1,
                newer_epoch: false
            }
            .may_have_consumed()
        );
        for served in [false, true] {
            let unavailable = ForwardError::Unavailable {
                message: "m".to_string(),
                replica_may_have_served: served,
            };
            assert_eq!(unavailable.may_have_consumed(), served);
        }
    }

    #[test]
    fn give_up_errors_are_internal_server_errors() {
        let error = ForwardError::OutcomeUnknown {
            message: "disk".to_string(),
        }
        .into_dynamo();
        assert_eq!(error.type_name, "InternalServerError");
        assert_eq!(
            error.message,
            "Internal server error (the write may or may not have been applied: disk)"
        );
        let conditional = DynamoError::new(
            "ConditionalCheckFailedException",
            "The conditional request failed",
        );
        assert_eq!(
            ForwardError::Dynamo(conditional.clone()).into_dynamo(),
            conditional
        );
    }
}
