//! The autoadmin (issue 19, "the cluster heals and grows by itself"): its step machines and its
//! policies, with no I/O, so that the routers that drive them over the bus and the simulator
//! that drives them through simulated nodes run the same code.
//!
//! - [`replica_move`]: moving one replica of a partition from one node to another, the
//!   primitive behind re-replication and balance.
//! - [`split`]: splitting one partition at a hash into two children.
//! - [`policy`]: which replicas to move where.

pub mod policy;
pub mod replica_move;
pub mod split;

pub use replica_move::{MoveAction, MoveStep, NodeId, Progress, ReplicaMove, UnexpectedAnswer};
