//! The partition replica runtime of a Shoal storage node.
//!
//! A [`replica::PartitionReplica`] joins the sans-IO MultiPaxos core (shoal-replication), the
//! shard's WAL and the partition's B-tree (shoal-store) and the request evaluation of the item
//! model (shoal-model). It is single-threaded and host-agnostic: the shard runtime (glommio, in
//! tools/shoal) and tests drive it by events and execute its outputs. See README.md.

mod local_index;
pub mod meta;
pub mod replica;
pub mod time_to_live;
pub mod traffic;

pub use meta::PartitionMeta;
pub use replica::{
    Event, Output, PartitionError, PartitionReplica, REPLICATION_RECORD_KIND, ReplicaConfig,
    ShardReplay,
};
