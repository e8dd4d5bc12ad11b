//! The peers, fjall 3 and redb, run the same cells through their own APIs. They are blocking
//! libraries: concurrent writers are threads sharing one database.

use std::io;
use std::path::Path;
use std::time::Instant;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use hdrhistogram::Histogram;
use redb::{ReadableDatabase, TableDefinition};

use super::{Cell, Measurement, Plan, SCAN_ITEMS, failed, item_key, timed};
use crate::floor;

/// Cache of the copy that serves cached gets, scans and puts: large enough for the data set.
const CACHED_CACHE_BYTES: u64 = 512 << 20;
/// Cache of the copy that serves uncached gets: 1 MiB, like ours.
const UNCACHED_CACHE_BYTES: u64 = 1 << 20;
/// Items per write batch (fjall) or transaction (redb) while loading; loading is not measured.
const LOAD_BATCH_ITEMS: u64 = 1024;
const FJALL_KEYSPACE: &str = "items";
const REDB_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");

/// Runs `operations(worker)` on `writers` threads at once; merges their latencies.
fn on_threads(
    writers: usize,
    operation: impl Fn(usize) -> io::Result<Histogram<u64>> + Sync,
) -> io::Result<Measurement> {
    let started = Instant::now();
    let histograms: Vec<io::Result<Histogram<u64>>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..writers)
            .map(|writer| {
                let operation = &operation;
                scope.spawn(move || operation(writer))
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("a writer thread panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut latency = floor::histogram()?;
    for histogram in histograms {
        latency
            .add(&histogram?)
            .map_err(failed("merge histograms"))?;
    }
    Ok(Measurement {
        operations: latency.len(),
        elapsed,
        latency,
    })
}

/// Runs `operation(key index)` `plan.operations` times on this thread with keys from `pick`.
fn sequential(
    plan: &Plan,
    pick: impl Fn(&Plan, &mut shoal_io::SeededRng) -> u64,
    operation: impl Fn(u64) -> io::Result<()>,
) -> io::Result<Measurement> {
    let mut keys = plan.keys_of(0);
    let mut latency = floor::histogram()?;
    let started = Instant::now();
    for _ in 0..plan.operations {
        let index = pick(plan, &mut keys);
        timed(&mut latency, || operation(index))?;
    }
    Ok(Measurement {
        operations: latency.len(),
        elapsed: started.elapsed(),
        latency,
    })
}

fn missing() -> io::Error {
    io::Error::other("get: a loaded key is missing")
}

fn short_scan(count: usize) -> io::Error {
    io::Error::other(format!("scan: {count} items instead of {SCAN_ITEMS}"))
}

pub struct FjallPeer {
    cached_database: Database,
    cached: Keyspace,
    /// Kept open for `uncached`, which it owns.
    _uncached_database: Database,
    uncached: Keyspace,
}

fn open_fjall(
    path: &Path,
    cache_bytes: u64,
    items: u64,
    value: &[u8],
) -> io::Result<(Database, Keyspace)> {
    let database = Database::builder(path)
        .cache_size(cache_bytes)
        .open()
        .map_err(failed("fjall: open"))?;
    let keyspace = database
        .keyspace(FJALL_KEYSPACE, KeyspaceCreateOptions::default)
        .map_err(failed("fjall: keyspace"))?;
    for index in 0..items {
        keyspace
            .insert(&item_key(index)[..], value)
            .map_err(failed("fjall: load"))?;
        if (index + 1).is_multiple_of(LOAD_BATCH_ITEMS) {
            database
                .persist(PersistMode::SyncData)
                .map_err(failed("fjall: load persist"))?;
        }
    }
    database
        .persist(PersistMode::SyncData)
        .map_err(failed("fjall: load persist"))?;
    // Move the data set from the memtable into tables on disk, so that reads go through
    // fjall's block cache as they would for a data set loaded long ago.
    keyspace
        .rotate_memtable_and_wait()
        .map_err(failed("fjall: flush"))?;
    Ok((database, keyspace))
}

impl FjallPeer {
    pub fn open(path: &Path, items: u64, value: &[u8]) -> io::Result<Self> {
        let (cached_database, cached) =
            open_fjall(&path.join("cached"), CACHED_CACHE_BYTES, items, value)?;
        let (uncached_database, uncached) =
            open_fjall(&path.join("uncached"), UNCACHED_CACHE_BYTES, items, value)?;
        Ok(Self {
            cached_database,
            cached,
            _uncached_database: uncached_database,
            uncached,
        })
    }

    pub fn run(&self, cell: Cell, plan: &Plan, value: &[u8]) -> io::Result<Measurement> {
        match cell {
            Cell::DurablePut { writers } => on_threads(writers, |writer| {
                let mut keys = plan.keys_of(writer);
                let mut latency = floor::histogram()?;
                for _ in 0..plan.share_of(writer, writers) {
                    let key = item_key(plan.random_item(&mut keys));
                    timed(&mut latency, || {
                        self.cached
                            .insert(&key[..], value)
                            .map_err(failed("fjall: insert"))?;
                        self.cached_database
                            .persist(PersistMode::SyncData)
                            .map_err(failed("fjall: persist"))
                    })?;
                }
                Ok(latency)
            }),
            Cell::CachedGet => fjall_gets(&self.cached, plan),
            Cell::UncachedGet => fjall_gets(&self.uncached, plan),
            Cell::Scan => sequential(plan, Plan::random_scan_start, |index| {
                let mut count = 0;
                for item in self.cached.range(item_key(index)..).take(SCAN_ITEMS) {
                    item.into_inner().map_err(failed("fjall: scan"))?;
                    count += 1;
                }
                if count == SCAN_ITEMS {
                    Ok(())
                } else {
                    Err(short_scan(count))
                }
            }),
        }
    }
}

fn fjall_gets(keyspace: &Keyspace, plan: &Plan) -> io::Result<Measurement> {
    sequential(plan, Plan::random_item, |index| {
        keyspace
            .get(item_key(index))
            .map_err(failed("fjall: get"))?
            .map(drop)
            .ok_or_else(missing)
    })
}

pub struct RedbPeer {
    cached: redb::Database,
    uncached: redb::Database,
}

fn open_redb(
    path: &Path,
    cache_bytes: u64,
    items: u64,
    value: &[u8],
) -> io::Result<redb::Database> {
    let database = redb::Database::builder()
        .set_cache_size(usize::try_from(cache_bytes).unwrap_or(usize::MAX))
        .create(path)
        .map_err(failed("redb: create"))?;
    let mut first = 0;
    while first < items {
        let transaction = database.begin_write().map_err(failed("redb: load begin"))?;
        {
            let mut table = transaction
                .open_table(REDB_TABLE)
                .map_err(failed("redb: load open table"))?;
            for index in first..items.min(first + LOAD_BATCH_ITEMS) {
                table
                    .insert(&item_key(index)[..], value)
                    .map_err(failed("redb: load insert"))?;
            }
        }
        transaction.commit().map_err(failed("redb: load commit"))?;
        first += LOAD_BATCH_ITEMS;
    }
    Ok(database)
}

impl RedbPeer {
    pub fn open(path: &Path, items: u64, value: &[u8]) -> io::Result<Self> {
        std::fs::create_dir(path)?;
        Ok(Self {
            cached: open_redb(&path.join("cached.redb"), CACHED_CACHE_BYTES, items, value)?,
            uncached: open_redb(
                &path.join("uncached.redb"),
                UNCACHED_CACHE_BYTES,
                items,
                value,
            )?,
        })
    }

    pub fn run(&self, cell: Cell, plan: &Plan, value: &[u8]) -> io::Result<Measurement> {
        match cell {
            // redb serialises write transactions: the threads queue on begin_write.
            Cell::DurablePut { writers } => on_threads(writers, |writer| {
                let mut keys = plan.keys_of(writer);
                let mut latency = floor::histogram()?;
                for _ in 0..plan.share_of(writer, writers) {
                    let key = item_key(plan.random_item(&mut keys));
                    timed(&mut latency, || {
                        let transaction =
                            self.cached.begin_write().map_err(failed("redb: begin"))?;
                        {
                            let mut table = transaction
                                .open_table(REDB_TABLE)
                                .map_err(failed("redb: open table"))?;
                            table
                                .insert(&key[..], value)
                                .map_err(failed("redb: insert"))?;
                        }
                        transaction.commit().map_err(failed("redb: commit"))
                    })?;
                }
                Ok(latency)
            }),
            Cell::CachedGet => redb_gets(&self.cached, plan),
            Cell::UncachedGet => redb_gets(&self.uncached, plan),
            Cell::Scan => sequential(plan, Plan::random_scan_start, |index| {
                let transaction = self
                    .cached
                    .begin_read()
                    .map_err(failed("redb: begin read"))?;
                let table = transaction
                    .open_table(REDB_TABLE)
                    .map_err(failed("redb: open table"))?;
                let mut count = 0;
                for item in table
                    .range(&item_key(index)[..]..)
                    .map_err(failed("redb: range"))?
                    .take(SCAN_ITEMS)
                {
                    item.map_err(failed("redb: scan"))?;
                    count += 1;
                }
                if count == SCAN_ITEMS {
                    Ok(())
                } else {
                    Err(short_scan(count))
                }
            }),
        }
    }
}

/// One read transaction per get, as a request handler would open.
fn redb_gets(database: &redb::Database, plan: &Plan) -> io::Result<Measurement> {
    sequential(plan, Plan::random_item, |index| {
        let transaction = database.begin_read().map_err(failed("redb: begin read"))?;
        let table = transaction
            .open_table(REDB_TABLE)
            .map_err(failed("redb: open table"))?;
        table
            .get(&item_key(index)[..])
            .map_err(failed("redb: get"))?
            .map(drop)
            .ok_or_else(missing)
    })
}
