//! The router's core (README.md next to this crate's Cargo.toml): where a table's partitions
//! go (`placement`), how a key finds its partition and shard (`partition_map`), the cluster's
//! metadata kept in partition 0 (`metadata`), forwarding to partition leaders with the retry
//! rules (`forward`), request checks (`validate`), batches' calls to their partitions run
//! concurrently (`fan_out`), and the DynamoDB operations the front end calls
//! (`router::Router`, one per router core); access keys and what each may do (`access`).

pub mod access;
pub mod cluster_status;
pub mod error;
pub mod fan_out;
pub mod forward;
pub mod index_definitions;
pub mod metadata;
pub mod metrics;
pub mod on_demand;
pub mod operation;
pub mod partition_map;
pub mod placement;
pub mod router;
pub mod table_settings;
pub mod validate;

pub use error::DynamoError;
pub use metadata::{ClusterRecord, NodeAddress};
pub use operation::Operation as RouterOperation;
pub use router::{Router, RouterConfig};
