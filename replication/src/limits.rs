//! Named limits. Every queue and every batch in the core is bounded by one of these, and
//! backpressure (a refused proposal) comes from the bounds.

/// Uncommitted entries a leader may hold (slots after its commit index). A proposal beyond this
/// is refused with `ProposeError::Backpressure`; this is also the pipelining window of phase 2.
pub const IN_FLIGHT_SLOTS_MAX: u64 = 256;

/// Entries in one Accept message. Catch-up and re-proposal after an election send batches of at
/// most this many entries.
pub const ACCEPT_BATCH_ENTRIES_MAX: usize = 64;

/// Entries a leader has sent to one follower beyond what that follower acknowledged.
pub const FOLLOWER_IN_FLIGHT_SLOTS_MAX: u64 = 256;

/// Entries kept in memory between the last checkpoint and the end of the log. Past this, the
/// leader refuses proposals until the host checkpoints and truncates.
pub const LOG_ENTRIES_IN_MEMORY_MAX: usize = 8192;

/// Payload bytes kept in memory by the log, for the same reason.
pub const LOG_BYTES_IN_MEMORY_MAX: usize = 64 * 1024 * 1024;

/// The largest command payload. A DynamoDB item is at most 400 KB by DynamoDB's count, but its
/// binary encoding is larger when it has many small attributes (each costs lengths and a tag
/// that DynamoDB does not count), and a BatchWriteItem puts several items of one partition in
/// one command. 2 MiB holds any single item of ordinary shape and most batches; a command past
/// it is refused at proposal (the client gets a ValidationException), never half-applied.
pub const COMMAND_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Payload bytes in one Accept message (beyond its first entry, which is always sent): keeps
/// every Accept within one bus frame whatever the entry count.
pub const ACCEPT_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Replies held back until the writes they depend on are durable. If the host stops reporting
/// durability, the oldest held reply is dropped, which the protocol treats as message loss.
pub const HELD_REPLIES_MAX: usize = 1024;

/// Heartbeat rounds whose send time the leader remembers for lease accounting. A reply to an
/// older round is ignored for the lease (never for the log), which is only ever conservative.
pub const LEASE_ROUNDS_TRACKED_MAX: usize = 64;

/// Members of one replication group (full and log replicas together).
pub const MEMBERS_MAX: usize = 7;

const _: () = assert!(ACCEPT_BATCH_ENTRIES_MAX as u64 <= FOLLOWER_IN_FLIGHT_SLOTS_MAX);
const _: () = assert!(IN_FLIGHT_SLOTS_MAX < LOG_ENTRIES_IN_MEMORY_MAX as u64);
const _: () = assert!(COMMAND_BYTES_MAX < LOG_BYTES_IN_MEMORY_MAX);
const _: () = assert!(COMMAND_BYTES_MAX <= ACCEPT_BATCH_BYTES_MAX);
const _: () = assert!(MEMBERS_MAX % 2 == 1);
