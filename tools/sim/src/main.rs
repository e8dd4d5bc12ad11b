//! `shoal-sim --seeds N [--seed S] [--minutes M] [--time-to-live true] [--global-index true]
//! [--streams true|trim] [--transactions true] [--membership true]`: runs seeds of the deterministic simulator and
//! prints per-run figures; on a violation, the command that replays the seed. With
//! `SHOAL_LOG` set (for example `SHOAL_LOG=info`), the replicas' own log lines go to stderr, as
//! `shoal node` writes them: the way to see what a failing seed's replicas did.

use std::process::ExitCode;
use std::time::Duration;

use shoal_sim::{Report, SimulationOptions, run};

struct Arguments {
    first_seed: u64,
    seed_count: u64,
    minutes: f64,
    time_to_live: bool,
    global_index: bool,
    streams: bool,
    stream_trim: bool,
    transactions: bool,
    membership_changes: bool,
    splits: bool,
}

fn init_logging() {
    // Off unless asked: a soak of thousands of seeds must not pay for formatting.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
}

fn parse() -> Result<Arguments, String> {
    let mut arguments = Arguments {
        first_seed: 0,
        seed_count: 1,
        minutes: 1.0,
        time_to_live: false,
        global_index: false,
        streams: false,
        stream_trim: false,
        transactions: false,
        membership_changes: false,
        splits: false,
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
            "--time-to-live" => {
                arguments.time_to_live = value
                    .parse()
                    .map_err(|_| format!("bad --time-to-live {value} (true or false)"))?;
            }
            "--global-index" => {
                arguments.global_index = value
                    .parse()
                    .map_err(|_| format!("bad --global-index {value} (true or false)"))?;
            }
            "--streams" => match value.as_str() {
                "true" | "false" => {
                    arguments.streams = value == "true";
                    arguments.stream_trim = false;
                }
                "trim" => {
                    arguments.streams = true;
                    arguments.stream_trim = true;
                }
                _ => return Err(format!("bad --streams {value} (true, trim or false)")),
            },
            "--transactions" => {
                arguments.transactions = value
                    .parse()
                    .map_err(|_| format!("bad --transactions {value} (true or false)"))?;
            }
            "--membership" => {
                arguments.membership_changes = value
                    .parse()
                    .map_err(|_| format!("bad --membership {value} (true or false)"))?;
            }
            "--splits" => {
                arguments.splits = value
                    .parse()
                    .map_err(|_| format!("bad --splits {value} (true or false)"))?;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(arguments)
}

/// Adds one run's counts to the totals printed at the end.
fn add(total: &mut Report, report: &Report) {
    total.operations_checked += report.operations_checked;
    total.puts_checked += report.puts_checked;
    total.compare_and_sets_checked += report.compare_and_sets_checked;
    total.compare_and_sets_succeeded += report.compare_and_sets_succeeded;
    total.writes_not_applied += report.writes_not_applied;
    total.strong_reads_checked += report.strong_reads_checked;
    total.eventual_reads_checked += report.eventual_reads_checked;
    total.keys_unchecked += report.keys_unchecked;
    total.applied_states_compared += report.applied_states_compared;
    total.wal_segments_recycled += report.wal_segments_recycled;
    total.expiring_writes_acknowledged += report.expiring_writes_acknowledged;
    total.expired_deletes_checked += report.expired_deletes_checked;
    total.global_index_changes_propagated += report.global_index_changes_propagated;
    total.global_index_states_observed += report.global_index_states_observed;
    total.global_index_calls_timed_out += report.global_index_calls_timed_out;
    total.global_index_entries_checked += report.global_index_entries_checked;
    total.stream_records_checked += report.stream_records_checked;
    total.stream_records += report.stream_records;
    total.stream_shards += report.stream_shards;
    total.stream_writes_checked += report.stream_writes_checked;
    total.stream_groups_trimmed += report.stream_groups_trimmed;
    total.transactions_started += report.transactions_started;
    total.transactions_committed += report.transactions_committed;
    total.transactions_cancelled += report.transactions_cancelled;
    total.transactions_abandoned += report.transactions_abandoned;
    total.transactions_recovered += report.transactions_recovered;
    total.transaction_calls_timed_out += report.transaction_calls_timed_out;
    total.transact_reads_consistent += report.transact_reads_consistent;
    total.transact_reads_cancelled += report.transact_reads_cancelled;
    total.account_reads_checked += report.account_reads_checked;
    total.conflicting_writes_refused += report.conflicting_writes_refused;
    total.accounts_checked += report.accounts_checked;
    total.ledger_records_pending += report.ledger_records_pending;
    total.moves_finished += report.moves_finished;
    total.move_nanos_max = total.move_nanos_max.max(report.move_nanos_max);
    total.splits_finished += report.splits_finished;
    total.split_nanos_max = total.split_nanos_max.max(report.split_nanos_max);
    total.split_write_pause_nanos_max = total
        .split_write_pause_nanos_max
        .max(report.split_write_pause_nanos_max);
    for (kind, count) in &report.faults {
        *total.faults.entry(kind).or_default() += count;
    }
}

/// The transactions' figures of a run or of the totals.
fn transactions_line(report: &Report) -> String {
    format!(
        "{} transfers started ({} committed, {} cancelled, {} abandoned by their coordinator), \
         {} recovered, {} calls timed out, {} TransactGetItems consistent and {} cancelled, {} \
         strong account reads, {} writes refused by a lock, {} accounts checked at the end, {} \
         ledger records left pending",
        report.transactions_started,
        report.transactions_committed,
        report.transactions_cancelled,
        report.transactions_abandoned,
        report.transactions_recovered,
        report.transaction_calls_timed_out,
        report.transact_reads_consistent,
        report.transact_reads_cancelled,
        report.account_reads_checked,
        report.conflicting_writes_refused,
        report.accounts_checked,
        report.ledger_records_pending
    )
}

/// The splits' figures of a run or of the totals.
fn splits_line(report: &Report) -> String {
    format!(
        "{} splits finished, the longest in {:.2} s; writes paused at most {:.3} s (a parent's \
         freezing to its children's routing)",
        report.splits_finished,
        report.split_nanos_max as f64 / 1e9,
        report.split_write_pause_nanos_max as f64 / 1e9
    )
}

/// The membership changes' figures of a run or of the totals.
fn membership_line(report: &Report) -> String {
    format!(
        "{} replica moves finished, the longest in {:.2} s",
        report.moves_finished,
        report.move_nanos_max as f64 / 1e9
    )
}

fn main() -> ExitCode {
    init_logging();
    let arguments = match parse() {
        Ok(arguments) => arguments,
        Err(error) => {
            eprintln!(
                "shoal-sim: {error}\nusage: shoal-sim --seeds N [--seed S] [--minutes M] [--time-to-live true] [--global-index true] [--streams true|trim] [--transactions true] [--membership true] [--splits true]"
            );
            return ExitCode::from(2);
        }
    };
    if arguments.splits
        && (arguments.time_to_live
            || arguments.global_index
            || arguments.streams
            || arguments.transactions)
    {
        eprintln!(
            "shoal-sim: --splits runs without --time-to-live, --global-index, --streams and \
             --transactions (src/splits.rs says why)"
        );
        return ExitCode::from(2);
    }
    let simulated = Duration::from_secs_f64(arguments.minutes * 60.0);
    let mut failed = 0u64;
    let mut total = Report::default();
    for seed in arguments.first_seed..arguments.first_seed + arguments.seed_count {
        let report = run(SimulationOptions {
            time_to_live: arguments.time_to_live,
            global_index: arguments.global_index,
            streams: arguments.streams,
            stream_trim: arguments.stream_trim,
            transactions: arguments.transactions,
            membership_changes: arguments.membership_changes,
            splits: arguments.splits,
            ..SimulationOptions::new(seed, simulated)
        });
        println!(
            "seed {seed}: {} nodes, {} groups, simulated {:.2} min, {} operations checked ({} \
             puts, {} compare-and-sets of which {} succeeded, {} strong reads, {} eventual \
             reads; {} keys undecided), {} writes answered not applied, {} applied states \
             compared, {} WAL segments recycled, \
             faults {:?}, violations {}, trace {:016x}",
            report.node_count,
            report.group_count,
            report.simulated_ms as f64 / 60_000.0,
            report.operations_checked,
            report.puts_checked,
            report.compare_and_sets_checked,
            report.compare_and_sets_succeeded,
            report.strong_reads_checked,
            report.eventual_reads_checked,
            report.keys_unchecked,
            report.writes_not_applied,
            report.applied_states_compared,
            report.wal_segments_recycled,
            report.faults,
            report.violations.len(),
            report.trace_hash
        );
        if arguments.time_to_live {
            println!(
                "  time to live: {} expired items written, {} checked deleted at the end",
                report.expiring_writes_acknowledged, report.expired_deletes_checked
            );
        }
        if arguments.global_index {
            println!(
                "  global index: {} changes applied, {} index states checked, {} propagation \
                 calls timed out, {} base items' entries compared at the end",
                report.global_index_changes_propagated,
                report.global_index_states_observed,
                report.global_index_calls_timed_out,
                report.global_index_entries_checked
            );
        }
        if arguments.streams {
            println!(
                "  streams: {} records and {} shards held, {} record reads checked, {} writes' records \
                 counted, {} groups trimmed",
                report.stream_records,
                report.stream_shards,
                report.stream_records_checked,
                report.stream_writes_checked,
                report.stream_groups_trimmed
            );
        }
        if arguments.transactions {
            println!("  transactions: {}", transactions_line(&report));
        }
        if arguments.membership_changes {
            println!("  membership: {}", membership_line(&report));
        }
        if arguments.splits {
            println!("  splits: {}", splits_line(&report));
        }
        if !report.violations.is_empty() {
            failed += 1;
            for violation in &report.violations {
                println!("  violation: {violation}");
            }
            println!(
                "  replay: cargo run -p shoal-sim -- --seed {seed} --seeds 1 --minutes {}{}{}{}{}{}{}",
                arguments.minutes,
                if arguments.time_to_live {
                    " --time-to-live true"
                } else {
                    ""
                },
                if arguments.global_index {
                    " --global-index true"
                } else {
                    ""
                },
                match (arguments.streams, arguments.stream_trim) {
                    (true, true) => " --streams trim",
                    (true, false) => " --streams true",
                    _ => "",
                },
                if arguments.transactions {
                    " --transactions true"
                } else {
                    ""
                },
                if arguments.membership_changes {
                    " --membership true"
                } else {
                    ""
                },
                if arguments.splits {
                    " --splits true"
                } else {
                    ""
                }
            );
        }
        add(&mut total, &report);
    }
    println!(
        "{} seeds x {} simulated minutes: {} operations checked ({} puts, {} compare-and-sets of \
         which {} succeeded, {} strong reads, {} eventual reads; {} keys undecided), {} writes \
         answered not applied, {} applied states compared, {} WAL segments recycled, faults {:?}, {failed} seeds with violations",
        arguments.seed_count,
        arguments.minutes,
        total.operations_checked,
        total.puts_checked,
        total.compare_and_sets_checked,
        total.compare_and_sets_succeeded,
        total.strong_reads_checked,
        total.eventual_reads_checked,
        total.keys_unchecked,
        total.writes_not_applied,
        total.applied_states_compared,
        total.wal_segments_recycled,
        total.faults,
    );
    if arguments.global_index {
        println!(
            "global index: {} changes applied, {} index states checked, {} propagation calls \
             timed out, {} base items' entries compared at the end",
            total.global_index_changes_propagated,
            total.global_index_states_observed,
            total.global_index_calls_timed_out,
            total.global_index_entries_checked
        );
    }
    if arguments.streams {
        println!(
            "streams: {} records and {} shards held, {} record reads checked, {} writes' records \
             counted, {} groups trimmed",
            total.stream_records,
            total.stream_shards,
            total.stream_records_checked,
            total.stream_writes_checked,
            total.stream_groups_trimmed
        );
    }
    if arguments.membership_changes {
        println!("membership: {}", membership_line(&total));
    }
    if arguments.splits {
        println!("splits: {}", splits_line(&total));
    }
    if arguments.transactions {
        println!("transactions: {}", transactions_line(&total));
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
