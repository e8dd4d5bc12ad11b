//! The storage engine of a Shoal shard: the write-ahead log that every partition replica on the
//! shard's core appends to, and the copy-on-write B-tree of each partition replica behind the
//! shard's page cache. See README.md for what this crate owns and where its objects live,
//! and FORMAT.md for the bytes on disk.

pub mod btree;
pub mod engine;
mod little_endian;
pub mod wal;
