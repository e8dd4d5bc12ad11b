//! One shard (core) of a Shoal storage node.
//!
//! A [`Shard`] lives on one glommio executor and owns, outright, that core's WAL (group commit),
//! page cache, data directory and partition replicas. Work for a partition runs only here: the
//! bus delivers a partition's messages and requests to the shard that owns it (each shard has its
//! own port), the shard table says which replicas it holds, and each replica runs as one task
//! that takes its events in order from a bounded queue.
//!
//! The dispatch rules (which replica a message is for, which requests are refused before they
//! reach one, what each replica output becomes) are a sans-IO [`dispatch::Dispatch`] that this
//! crate's glommio host and the simulator (tools/sim) both drive.
//!
//! Placement rule: every replica of a partition lives on the same shard index on its node, so a
//! replica sends to `(peer node, own shard)`. The partition map (router/metadata) chooses the
//! index when it places the partition.
//!
//! # Invariants
//! 1. A replica's `Persist` outputs are queued in the WAL in the order the replica gave them
//!    (one appender task per replica enqueues them one by one), and their durability is awaited
//!    concurrently, so group commit batches them across replicas and within one.
//! 2. Replication messages are dropped, never queued without bound, when a replica's queue is
//!    full: the protocol tolerates loss. Requests are refused with `Busy` instead. Persist
//!    completions and snapshot chunks wait for room: losing them would stall or corrupt state.

pub mod dispatch;
pub mod metrics;
mod queue;
pub mod recovery;
mod runtime;

pub use metrics::ShardMetrics;
pub use runtime::{RecoveryFailure, Shard, ShardConfig, ShardError, Transport};
