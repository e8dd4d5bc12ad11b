//! The shard's dispatch rules, without I/O: which replica a bus message is for, which requests
//! are refused before they reach one (and with which answer), and what each replica output
//! becomes. The glommio host (`runtime.rs`) and the simulator (tools/sim) both drive a
//! [`Dispatch`]: the rules run, and are tested, as one copy.
//!
//! A host feeds it what arrives ([`Dispatch::route`]) and what its replicas produce
//! ([`Dispatch::on_output`]), with the time of its own clock, and carries out what comes back:
//! hand an event to a replica's queue, answer a connection, send on the bus, append to the WAL.
//! The host owns the replicas, their queues and the storage; `Dispatch` owns the table of the
//! partitions served here (with the epoch each was placed with), the partitions out of service,
//! the partitions being created, and the requests waiting for their replica's answer.

pub mod liveness;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use liveness::{LIVENESS_GROUP, Liveness, LivenessConfig, PeerChange, ping_incarnation};

use shoal_io::MonotonicTime;
use shoal_model::request_codec::decode_request;
use shoal_partition::{Event, Output, PartitionMeta};
use shoal_replication::{Lsn as CoreLsn, NodeId};
use shoal_wire::messages::{
    BusMessage, MembershipWire, NodeError, NodeRequest, NodeResponse, ReplicationEnvelope,
    ReplicationMessageWire, RequestFrame, ResponseFrame, ShardAddress, SnapshotChunk,
};

/// Requests in flight on a shard (waiting for their reply); more are refused with `Busy`.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 65_536;
/// The operation label of `NodeRequest::ChangeMembership` in the served-request metrics.
pub const CHANGE_MEMBERSHIP_OPERATION: &str = "ChangeMembership";
/// The operation label of `NodeRequest::TransferLeadership` in the served-request metrics.
pub const TRANSFER_LEADERSHIP_OPERATION: &str = "TransferLeadership";
/// The operation label of `NodeRequest::SplitPartition` in the served-request metrics.
pub const SPLIT_PARTITION_OPERATION: &str = "SplitPartition";

/// How a host must hand a routed event to its replica's bounded queue (crate invariant 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A replication message: dropped when the queue is full (the protocol tolerates loss);
    /// count it with `replication_message_dropped`.
    DropWhenFull,
    /// An item request: refused when the queue is full, with [`Dispatch::refuse_busy`].
    RefuseWhenFull { reply_to: u64 },
    /// A snapshot chunk: waits for room (a lost chunk restarts the whole transfer).
    WaitForRoom,
}

/// What to do with one message that arrived.
// `Replica` is the variant nearly every message takes, and a `Routed` lives only until it is
// handed on: boxing the event would add an allocation per message and save no memory.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Routed<C> {
    /// Hand `event` to the replica of `partition`.
    Replica {
        partition: u64,
        event: Event,
        delivery: Delivery,
    },
    /// Answer now: the request was refused before any replica saw it.
    Respond { connection: C, frame: ResponseFrame },
    /// Answer `NodeRequest::Status` with the statuses of the replicas (the host holds them).
    Status { connection: C, request_id: u64 },
    /// Answer `NodeRequest::Loads` with the replicas' traffic (the host holds their trackers).
    Loads { connection: C, request_id: u64 },
    /// Answer `NodeRequest::ClusterNodes` with the node list the host was given.
    ClusterNodes { connection: C, request_id: u64 },
    /// Create this replica (checked by [`Dispatch::begin_create`] first), then answer.
    Create {
        connection: C,
        request_id: u64,
        meta: PartitionMeta,
    },
    /// Delete the replica (checked by [`Dispatch::begin_delete`] first), then answer.
    Delete {
        connection: C,
        request_id: u64,
        partition: u64,
        epoch: u64,
    },
    /// A replication message no correct peer could have sent (it does not convert): dropped
    /// and counted.
    Undecodable,
}

/// A request answered, for the host's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    /// The request's operation, as `PreparedRequest::operation_label` names it.
    pub operation: &'static str,
    pub latency_nanos: u64,
    /// The error kind of the answer, if it is an error (see [`error_kind`]).
    pub error_kind: Option<&'static str>,
}

/// What a replica output becomes.
#[derive(Debug)]
pub enum Command<C> {
    /// Append to the shard WAL, in the order given (crate invariant 1); report durability with
    /// `Event::Persisted { core_lsn, wal_lsn }` to the same replica.
    Persist {
        partition: u64,
        core_lsn: CoreLsn,
        body: Vec<u8>,
    },
    /// Send on the bus without waiting (the bus may drop it).
    Replicate {
        to: ShardAddress,
        envelope: ReplicationEnvelope,
    },
    /// Send a snapshot chunk; the replica asked for room first (`Event::Tick`).
    Snapshot {
        to: ShardAddress,
        chunk: SnapshotChunk,
    },
    /// Answer the request that waited for this reply.
    Respond {
        connection: C,
        frame: ResponseFrame,
        served: Served,
    },
}

struct PendingReply<C> {
    connection: C,
    partition: u64,
    request_id: u64,
    operation: &'static str,
    received: MonotonicTime,
}

/// The answer to a request that needs a partition this shard gave up: refused before anything
/// was done, so `NotApplied`.
pub fn recovery_failed_answer(partition: u64) -> NodeResponse {
    NodeResponse::Error(NodeError::NotApplied {
        message: format!(
            "partition {partition}: its replica on this shard refused to recover and is out of \
             service; its files are kept for inspection"
        ),
    })
}

/// The kind of an error answer, as metrics label it.
pub fn error_kind(response: &NodeResponse) -> Option<&'static str> {
    match response {
        NodeResponse::Error(error) => Some(match error {
            NodeError::WrongOwner { .. } => "WrongOwner",
            NodeError::NotLeader { .. } => "NotLeader",
            NodeError::StaleEpoch { .. } => "StaleEpoch",
            NodeError::Dynamo { .. } => "Dynamo",
            NodeError::Busy { .. } => "Busy",
            NodeError::Malformed { .. } => "Malformed",
            NodeError::Internal { .. } => "Internal",
            NodeError::NotApplied { .. } => "NotApplied",
            NodeError::OutcomeUnknown { .. } => "OutcomeUnknown",
        }),
        _ => None,
    }
}

/// Whether a create or delete may go ahead, or its answer.
#[derive(Debug, PartialEq)]
pub enum Decision {
    Proceed,
    Answer(NodeResponse),
}

/// The dispatch state of one shard. `C` is how the host names the connection a request came
/// on.
pub struct Dispatch<C> {
    node: NodeId,
    shard: u16,
    /// The partitions served here, with the epoch each replica was placed with.
    routes: BTreeMap<u64, u64>,
    /// Partitions whose replica refused to recover, with their epoch: never in `routes`.
    out_of_service: BTreeMap<u64, u64>,
    /// Partitions being created right now, so that a repeated CreatePartition waits for
    /// nothing.
    creating: BTreeSet<u64>,
    /// Partitions whose replica is being deleted (out of `routes` already, its files and WAL
    /// records not released yet): a replica of the same partition created meanwhile would
    /// share its files and have its WAL records released by the deletion.
    deleting: BTreeSet<u64>,
    replies: HashMap<u64, PendingReply<C>>,
    next_reply: u64,
    requests_in_flight_max: usize,
    /// Which peer nodes this shard still hears from (`enable_liveness`), for quiesced groups.
    liveness: Option<Liveness>,
}

impl<C: Copy> Dispatch<C> {
    pub fn new(node: NodeId, shard: u16) -> Self {
        Self::with_request_limit(node, shard, REQUESTS_IN_FLIGHT_MAX)
    }

    /// A dispatch that refuses requests past `requests_in_flight_max` (tests use a small one).
    pub fn with_request_limit(node: NodeId, shard: u16, requests_in_flight_max: usize) -> Self {
        Self {
            node,
            shard,
            routes: BTreeMap::new(),
            out_of_service: BTreeMap::new(),
            creating: BTreeSet::new(),
            deleting: BTreeSet::new(),
            replies: HashMap::new(),
            next_reply: 1,
            requests_in_flight_max,
            liveness: None,
        }
    }

    /// Starts tracking the liveness of `peers` (engine/shard `dispatch::liveness`): from now on
    /// `liveness_due` pings them and every replica hears of a peer's node going silent or
    /// coming back. Hosts whose replicas quiesce must enable it.
    /// `incarnation` is drawn anew at every start of the node (its pings carry it).
    pub fn enable_liveness(
        &mut self,
        config: LivenessConfig,
        incarnation: u64,
        peers: impl IntoIterator<Item = NodeId>,
        now: MonotonicTime,
    ) {
        let mut liveness = Liveness::new(self.node, incarnation, config);
        for peer in peers {
            liveness.watch(peer, now);
        }
        self.liveness = Some(liveness);
    }

    /// The liveness pings to send now, each to the same shard of its node, and the events that
    /// tell every replica of a peer gone silent. Hosts call it at least every ping interval.
    pub fn liveness_due(&mut self, now: MonotonicTime) -> (Vec<Command<C>>, Vec<Routed<C>>) {
        let Some(liveness) = self.liveness.as_mut() else {
            return (Vec::new(), Vec::new());
        };
        let (pings, changes) = liveness.due(now);
        let commands = pings
            .into_iter()
            .map(|envelope| Command::Replicate {
                to: self.peer(NodeId(envelope.to)),
                envelope,
            })
            .collect();
        let events = changes
            .into_iter()
            .flat_map(|change| self.peer_change_events(change))
            .collect();
        (commands, events)
    }

    /// Watches exactly `peers` from now on, if liveness is tracked: a node that joined the
    /// cluster is watched from `now` (reachable until silent for the threshold), one that left
    /// is forgotten.
    pub fn set_peers(&mut self, peers: &BTreeSet<NodeId>, now: MonotonicTime) {
        let Some(liveness) = self.liveness.as_mut() else {
            return;
        };
        let gone: Vec<NodeId> = liveness
            .watched()
            .filter(|peer| !peers.contains(peer))
            .collect();
        for peer in gone {
            liveness.forget(peer);
        }
        for peer in peers {
            liveness.watch(*peer, now);
        }
    }

    /// Whether `peer` is reachable, if liveness is tracked and the peer watched.
    pub fn peer_reachable(&self, peer: NodeId) -> Option<bool> {
        self.liveness.as_ref()?.reachable(peer)
    }

    /// One event per replica served here. They wait for room in a full queue: a lost one could
    /// leave a quiesced follower waiting for a dead leader for good.
    fn peer_change_events(&self, change: PeerChange) -> Vec<Routed<C>> {
        self.routes
            .keys()
            .map(|partition| Routed::Replica {
                partition: *partition,
                event: match change {
                    PeerChange::Unreachable(node) => Event::PeerUnreachable(node),
                    PeerChange::Reachable(node) => Event::PeerReachable(node),
                },
                delivery: Delivery::WaitForRoom,
            })
            .collect()
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Where the replica of a partition on `node` lives: placement puts every replica of a
    /// partition on the same shard index of its node.
    pub fn peer(&self, node: NodeId) -> ShardAddress {
        ShardAddress {
            node: node.0,
            shard: self.shard,
        }
    }

    /// A replica now served here (created or recovered).
    pub fn add_replica(&mut self, partition: u64, epoch: u64) {
        self.out_of_service.remove(&partition);
        self.routes.insert(partition, epoch);
    }

    /// A replica that refused to recover: its requests are refused, its traffic dropped.
    pub fn add_out_of_service(&mut self, partition: u64, epoch: u64) {
        self.routes.remove(&partition);
        self.out_of_service.insert(partition, epoch);
    }

    pub fn epoch_of(&self, partition: u64) -> Option<u64> {
        self.routes.get(&partition).copied()
    }

    pub fn partitions(&self) -> impl Iterator<Item = u64> + '_ {
        self.routes.keys().copied()
    }

    /// Item requests handed to replicas and not answered yet, by partition.
    pub fn pending_replies(&self) -> BTreeMap<u64, usize> {
        let mut by_partition = BTreeMap::new();
        for pending in self.replies.values() {
            *by_partition.entry(pending.partition).or_default() += 1;
        }
        by_partition
    }

    /// Routes one message from the bus.
    pub fn route(
        &mut self,
        connection: C,
        message: BusMessage,
        now: MonotonicTime,
    ) -> Vec<Routed<C>> {
        match message {
            BusMessage::Replication(envelopes) => {
                let mut routed = Vec::new();
                // Anything from a peer says its node is alive; a ping also says which
                // incarnation of it.
                let heard: Vec<(u64, Option<u64>)> = envelopes
                    .iter()
                    .map(|envelope| (envelope.from, ping_incarnation(envelope)))
                    .collect();
                for (sender, incarnation) in heard {
                    let changes = match self.liveness.as_mut() {
                        Some(liveness) => liveness.heard(NodeId(sender), now, incarnation),
                        None => Vec::new(),
                    };
                    for change in changes {
                        routed.extend(self.peer_change_events(change));
                    }
                }
                routed.extend(self.route_replication(envelopes));
                routed
            }
            BusMessage::Snapshot(chunk) => {
                if chunk.to != self.node.0 || !self.routes.contains_key(&chunk.group) {
                    return Vec::new();
                }
                vec![Routed::Replica {
                    partition: chunk.group,
                    event: Event::Snapshot(chunk),
                    delivery: Delivery::WaitForRoom,
                }]
            }
            BusMessage::Request(RequestFrame {
                request_id,
                request,
            }) => vec![self.route_request(connection, request_id, request, now)],
            BusMessage::Response(_) | BusMessage::Hello { .. } => Vec::new(),
        }
    }

    fn route_replication(&self, envelopes: Vec<ReplicationEnvelope>) -> Vec<Routed<C>> {
        envelopes
            .into_iter()
            .filter(|envelope| {
                envelope.to == self.node.0
                    && envelope.group != LIVENESS_GROUP
                    && self.routes.contains_key(&envelope.group)
            })
            .map(
                |envelope| match shoal_replication::Message::try_from(envelope.message) {
                    Ok(message) => Routed::Replica {
                        partition: envelope.group,
                        event: Event::Message {
                            from: NodeId(envelope.from),
                            message,
                        },
                        delivery: Delivery::DropWhenFull,
                    },
                    Err(_) => Routed::Undecodable,
                },
            )
            .collect()
    }

    fn route_request(
        &mut self,
        connection: C,
        request_id: u64,
        request: NodeRequest,
        now: MonotonicTime,
    ) -> Routed<C> {
        let answer = |response| Routed::Respond {
            connection,
            frame: ResponseFrame {
                request_id,
                response,
            },
        };
        match request {
            NodeRequest::Status => Routed::Status {
                connection,
                request_id,
            },
            NodeRequest::ClusterNodes => Routed::ClusterNodes {
                connection,
                request_id,
            },
            NodeRequest::Loads => Routed::Loads {
                connection,
                request_id,
            },
            NodeRequest::TransferLeadership {
                partition,
                epoch,
                to,
            } => {
                let admitted =
                    self.admit_to_replica(connection, request_id, partition, epoch, now, || {
                        Ok((TRANSFER_LEADERSHIP_OPERATION, NodeId(to)))
                    });
                match admitted {
                    Ok((reply_to, to)) => Routed::Replica {
                        partition,
                        event: Event::TransferLeadership {
                            reply_to,
                            epoch,
                            to,
                        },
                        delivery: Delivery::RefuseWhenFull { reply_to },
                    },
                    Err(error) => answer(NodeResponse::Error(error)),
                }
            }
            NodeRequest::SplitPartition {
                partition,
                epoch,
                at_hash,
                left,
                right,
            } => {
                let admitted =
                    self.admit_to_replica(connection, request_id, partition, epoch, now, || {
                        let split = shoal_model::split::SplitRecord {
                            at_hash,
                            left: shoal_model::split::SplitChild {
                                partition: left.partition,
                                epoch: left.epoch,
                            },
                            right: shoal_model::split::SplitChild {
                                partition: right.partition,
                                epoch: right.epoch,
                            },
                            applied: None,
                        };
                        shoal_partition::replica::split_is_valid(&split, partition, epoch)
                            .map_err(|message| NodeError::Malformed { message })?;
                        Ok((SPLIT_PARTITION_OPERATION, split))
                    });
                match admitted {
                    Ok((reply_to, split)) => Routed::Replica {
                        partition,
                        event: Event::Split {
                            reply_to,
                            epoch,
                            split,
                        },
                        delivery: Delivery::RefuseWhenFull { reply_to },
                    },
                    Err(error) => answer(NodeResponse::Error(error)),
                }
            }
            NodeRequest::DeletePartition { partition, epoch } => Routed::Delete {
                connection,
                request_id,
                partition,
                epoch,
            },
            NodeRequest::CreatePartition {
                partition,
                epoch,
                key_schema,
                membership,
            } => match PartitionMeta::from_parts(partition, epoch, &key_schema, &membership)
                .filter(|meta| meta.membership.member_count() > 0)
            {
                Some(meta) => Routed::Create {
                    connection,
                    request_id,
                    meta,
                },
                None => answer(NodeResponse::Error(NodeError::Malformed {
                    message: "the replica set is not a valid membership".to_string(),
                })),
            },
            NodeRequest::JoinPartition {
                partition,
                epoch,
                key_schema,
            } => {
                // A joiner starts with no members: it is not one until the group adds it.
                match PartitionMeta::from_parts(
                    partition,
                    epoch,
                    &key_schema,
                    &MembershipWire::default(),
                ) {
                    Some(meta) => Routed::Create {
                        connection,
                        request_id,
                        meta,
                    },
                    None => answer(NodeResponse::Error(NodeError::Malformed {
                        message: "the key schema is not valid".to_string(),
                    })),
                }
            }
            NodeRequest::Item {
                partition,
                epoch,
                request,
            } => {
                let admitted =
                    self.admit_to_replica(connection, request_id, partition, epoch, now, || {
                        // The router encoded what it prepared; a request that does not decode came
                        // from a build with another format or a bug, and is refused unapplied.
                        decode_request(&request)
                            .map(|request| (request.operation_label(), request))
                            .map_err(|error| NodeError::Malformed {
                                message: error.message().to_string(),
                            })
                    });
                match admitted {
                    Ok((reply_to, request)) => Routed::Replica {
                        partition,
                        event: Event::Request {
                            reply_to,
                            epoch,
                            // The shard reads the clock when the replica takes the event.
                            unix_ms: 0,
                            request,
                        },
                        delivery: Delivery::RefuseWhenFull { reply_to },
                    },
                    Err(error) => answer(NodeResponse::Error(error)),
                }
            }
            NodeRequest::ChangeMembership {
                partition,
                epoch,
                change,
            } => {
                let admitted =
                    self.admit_to_replica(connection, request_id, partition, epoch, now, || {
                        Ok((CHANGE_MEMBERSHIP_OPERATION, change.into()))
                    });
                match admitted {
                    Ok((reply_to, change)) => Routed::Replica {
                        partition,
                        event: Event::ChangeMembership {
                            reply_to,
                            epoch,
                            change,
                        },
                        delivery: Delivery::RefuseWhenFull { reply_to },
                    },
                    Err(error) => answer(NodeResponse::Error(error)),
                }
            }
        }
    }

    /// Admits a request for a replica of this shard: the replica is here and routed with the
    /// same epoch, and there is room for one more reply in flight. `decode` turns the request
    /// into the replica's form and names its operation. On success, the token its reply comes
    /// back with, which is registered as pending.
    fn admit_to_replica<T>(
        &mut self,
        connection: C,
        request_id: u64,
        partition: u64,
        epoch: u64,
        now: MonotonicTime,
        decode: impl FnOnce() -> Result<(&'static str, T), NodeError>,
    ) -> Result<(u64, T), NodeError> {
        let Some(current_epoch) = self.routes.get(&partition).copied() else {
            // A replica that refused to recover is still this shard's: answering WrongOwner
            // would send the router to refresh a map that is right. It is not the leader, and
            // never will be until rebuilt, so the router tries the next replica.
            return Err(if self.out_of_service.contains_key(&partition) {
                NodeError::NotLeader {
                    partition,
                    leader_hint: None,
                }
            } else {
                NodeError::WrongOwner { partition }
            });
        };
        if current_epoch != epoch {
            return Err(NodeError::StaleEpoch {
                partition,
                current_epoch,
            });
        }
        if self.replies.len() >= self.requests_in_flight_max {
            return Err(NodeError::Busy { partition });
        }
        let (operation, decoded) = decode()?;
        let reply_to = self.next_reply;
        self.next_reply += 1;
        self.replies.insert(
            reply_to,
            PendingReply {
                connection,
                partition,
                request_id,
                operation,
                received: now,
            },
        );
        Ok((reply_to, decoded))
    }

    /// The answer to a request whose replica's queue was full.
    pub fn refuse_busy(&mut self, reply_to: u64, now: MonotonicTime) -> Option<Command<C>> {
        let partition = self.replies.get(&reply_to)?.partition;
        self.reply(
            reply_to,
            NodeResponse::Error(NodeError::Busy { partition }),
            now,
        )
    }

    fn reply(
        &mut self,
        reply_to: u64,
        response: NodeResponse,
        now: MonotonicTime,
    ) -> Option<Command<C>> {
        let pending = self.replies.remove(&reply_to)?;
        let served = Served {
            operation: pending.operation,
            latency_nanos: now.as_nanos().saturating_sub(pending.received.as_nanos()),
            error_kind: error_kind(&response),
        };
        Some(Command::Respond {
            connection: pending.connection,
            frame: ResponseFrame {
                request_id: pending.request_id,
                response,
            },
            served,
        })
    }

    /// What one output of the replica of `partition` becomes. `None` for a reply nobody waits
    /// for any more (its replica was deleted and recreated, say).
    pub fn on_output(
        &mut self,
        partition: u64,
        output: Output,
        now: MonotonicTime,
    ) -> Option<Command<C>> {
        match output {
            Output::Persist { core_lsn, body } => Some(Command::Persist {
                partition,
                core_lsn,
                body,
            }),
            Output::Send { to, message } => Some(Command::Replicate {
                to: self.peer(to),
                envelope: ReplicationEnvelope {
                    group: partition,
                    from: self.node.0,
                    to: to.0,
                    message: ReplicationMessageWire::from(message),
                },
            }),
            Output::Snapshot(chunk) => Some(Command::Snapshot {
                to: self.peer(NodeId(chunk.to)),
                chunk,
            }),
            Output::Reply { reply_to, response } => self.reply(reply_to, response, now),
        }
    }

    /// Whether CreatePartition may create `meta`'s replica here now. On `Proceed` the
    /// partition counts as being created until [`Dispatch::end_create`].
    pub fn begin_create(&mut self, meta: &PartitionMeta) -> Decision {
        let partition = meta.partition;
        if self.out_of_service.contains_key(&partition) {
            return Decision::Answer(recovery_failed_answer(partition));
        }
        if let Some(epoch) = self.routes.get(&partition) {
            return Decision::Answer(if *epoch == meta.epoch {
                NodeResponse::Created
            } else {
                NodeResponse::Error(NodeError::StaleEpoch {
                    partition,
                    current_epoch: *epoch,
                })
            });
        }
        // An empty replica set is a joiner's (`JoinPartition`); any other must include us.
        let joining = meta.membership.member_count() == 0;
        if !joining && !meta.membership.contains(self.node) {
            return Decision::Answer(NodeResponse::Error(NodeError::Malformed {
                message: format!(
                    "node {} is not in the replica set of partition {partition}",
                    self.node.0
                ),
            }));
        }
        if meta.membership.member_count() > shoal_replication::limits::MEMBERS_MAX {
            return Decision::Answer(NodeResponse::Error(NodeError::Malformed {
                message: format!(
                    "a replica set has 1 to {} members",
                    shoal_replication::limits::MEMBERS_MAX
                ),
            }));
        }
        if self.deleting.contains(&partition) {
            // Not applied; the sender asks again once the deletion is done.
            return Decision::Answer(NodeResponse::Error(NodeError::Busy { partition }));
        }
        if !self.creating.insert(partition) {
            return Decision::Answer(NodeResponse::Error(NodeError::Busy { partition }));
        }
        Decision::Proceed
    }

    /// The creation begun by `begin_create` ended (a replica it created is added with
    /// `add_replica`).
    pub fn end_create(&mut self, partition: u64) {
        self.creating.remove(&partition);
    }

    /// Whether DeletePartition may delete the replica of `partition` now. On `Proceed` the
    /// replica is out of the table already: nothing more is routed to it, whatever happens to
    /// its files.
    pub fn begin_delete(&mut self, partition: u64, epoch: u64) -> Decision {
        if self.out_of_service.contains_key(&partition) {
            // Its files stay for inspection until an operator removes them.
            return Decision::Answer(recovery_failed_answer(partition));
        }
        if self.creating.contains(&partition) {
            // Its CreatePartition is still running (requests are dispatched concurrently).
            // Answering Deleted now, as for a replica that is not there, let the creation
            // finish afterwards and leave a replica nobody would delete (issue 15). Busy: not
            // applied, the sender asks again later.
            return Decision::Answer(NodeResponse::Error(NodeError::Busy { partition }));
        }
        if self.deleting.contains(&partition) {
            // An earlier deletion is still running (its caller gave up waiting): not done yet.
            return Decision::Answer(NodeResponse::Error(NodeError::Busy { partition }));
        }
        match self.routes.get(&partition) {
            None => Decision::Answer(NodeResponse::Deleted),
            Some(current) if *current > epoch => {
                Decision::Answer(NodeResponse::Error(NodeError::StaleEpoch {
                    partition,
                    current_epoch: *current,
                }))
            }
            Some(_) => {
                self.routes.remove(&partition);
                self.deleting.insert(partition);
                Decision::Proceed
            }
        }
    }

    /// The deletion begun by `begin_delete` released the replica's files and WAL records: a
    /// replica of the partition may be created here again.
    pub fn end_delete(&mut self, partition: u64) {
        self.deleting.remove(&partition);
    }
}

#[cfg(test)]
mod tests;
