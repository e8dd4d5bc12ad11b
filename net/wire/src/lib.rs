//! Shoal's internal wire formats (see FORMAT.md next to this file).
//!
//! Everything a shard sends or receives over the bus is one [`messages::BusMessage`], archived
//! with rkyv behind the fixed frame header of [`frame`]. The same archived
//! [`messages::PersistRecord`] bytes are the body of a replication WAL record. Pure: no IO, no
//! async, no glommio; the bus (net/bus) moves the bytes.

pub mod messages;
