//! `shoal-sim --seeds N [--seed S] [--minutes M]`: runs seeds of the deterministic simulator and
//! prints per-run figures; on a violation, the command that replays the seed.

use std::process::ExitCode;
use std::time::Duration;

use shoal_sim::{SimulationOptions, run};

struct Arguments {
    first_seed: u64,
    seed_count: u64,
    minutes: f64,
}

fn parse() -> Result<Arguments, String> {
    let mut arguments = Arguments {
        first_seed: 0,
        seed_count: 1,
        minutes: 1.0,
    };
    let mut iterator = std::env::args().skip(1);
    while let Some(flag) = iterator.next() {
        let value = iterator
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seed" => {
                arguments.first_seed = value.parse().map_err(|_| format!("bad seed {value}"))?;
            }
            "--seeds" => {
                arguments.seed_count = value.parse().map_err(|_| format!("bad count {value}"))?;
            }
            "--minutes" => {
                arguments.minutes = value.parse().map_err(|_| format!("bad minutes {value}"))?;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(arguments)
}

fn main() -> ExitCode {
    let arguments = match parse() {
        Ok(arguments) => arguments,
        Err(error) => {
            eprintln!("shoal-sim: {error}\nusage: shoal-sim --seeds N [--seed S] [--minutes M]");
            return ExitCode::from(2);
        }
    };
    let simulated = Duration::from_secs_f64(arguments.minutes * 60.0);
    let mut failed = 0u64;
    let mut operations = 0u64;
    for seed in arguments.first_seed..arguments.first_seed + arguments.seed_count {
        let report = run(SimulationOptions {
            seed,
            simulated,
            broken_reads_without_lease: false,
        });
        operations += report.operations_checked;
        println!(
            "seed {seed}: simulated {:.2} min, {} operations checked ({} writes acknowledged, {} \
             strong reads, {} keys undecided), faults {:?}, violations {}, trace {:016x}",
            report.simulated_ms as f64 / 60_000.0,
            report.operations_checked,
            report.writes_acknowledged,
            report.reads_served,
            report.keys_unchecked,
            report.faults,
            report.violations.len(),
            report.trace_hash
        );
        if !report.violations.is_empty() {
            failed += 1;
            for violation in &report.violations {
                println!("  violation: {violation}");
            }
            println!(
                "  replay: cargo run -p shoal-sim -- --seed {seed} --seeds 1 --minutes {}",
                arguments.minutes
            );
        }
    }
    println!(
        "{} seeds, {operations} operations checked, {failed} with violations",
        arguments.seed_count
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
