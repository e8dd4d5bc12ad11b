//! `shoal-bench`: how we measure (bench/BENCHMARKS.md). For now it measures the physical
//! floors that every Shoal figure is reported against:
//! - `durable-write`: one 4 KiB O_DIRECT write + fdatasync, the cheapest durable write the
//!   device can do (a durable put can never be faster);
//! - `loopback-rtt`: a small-message TCP round trip on 127.0.0.1 (a replicated write needs at
//!   least one).
//!
//! and the storage engine against its peers (`engine`): durable puts, point gets and range
//! scans on our WAL + B-tree, fjall and redb, next to the durable-write floor, in one run;
//! the load generator (`run`: Shoal native, DynamoDB HTTP, etcd) and Shoal side by side with
//! a peer (`compare --config`: etcd, or dynalite through the DynamoDB HTTP API).

mod compare;
mod engine;
mod floor;
mod load;
mod plot;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL_ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "shoal-bench",
    version,
    about = "Shoal benchmarks and load generator"
)]
struct Command {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Measure the physical floors: durable 4 KiB write and loopback round trip.
    Floor(floor::FloorOptions),
    /// Our storage engine against fjall and redb and the durable-write floor, on one directory.
    Engine(engine::EngineOptions),
    /// The load generator: a YCSB-style workload against Shoal (or etcd with `--features etcd`).
    Run(load::RunOptions),
    /// Shoal (`shoal dev`) and a peer (etcd, or dynalite over HTTP) side by side, interleaved,
    /// as a config file describes; a markdown report, JSON and SVG plots.
    Compare(compare::CompareOptions),
}

fn main() -> ExitCode {
    match Command::parse().action {
        Action::Floor(options) => match floor::run(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("shoal-bench floor: {error}");
                ExitCode::FAILURE
            }
        },
        Action::Engine(options) => match engine::run(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("shoal-bench engine: {error}");
                ExitCode::FAILURE
            }
        },
        Action::Run(options) => match load::run(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("shoal-bench run: {error}");
                ExitCode::FAILURE
            }
        },
        Action::Compare(options) => match compare::run(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("shoal-bench compare: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
