#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Runs `shoal-bench engine` with tiny counts on a temporary directory and checks the shape of
//! its JSON: every cell for every system, counts as requested, ratios present. Timings are not
//! checked (a benchmark reports numbers; tests check behaviour).

use std::process::Command;

const OPERATIONS: u64 = 70;
const ITEMS: u64 = 300;
const REPEAT: usize = 2;
const CELLS: [&str; 6] = [
    "put-1",
    "put-8",
    "put-64",
    "get-cached",
    "get-uncached",
    "scan-100",
];
const SYSTEMS: [&str; 3] = ["shoal", "fjall", "redb"];

#[test]
fn engine_reports_every_cell_with_the_requested_counts() {
    let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let json_path = directory.path().join("engine.json");
    let output = Command::new(env!("CARGO_BIN_EXE_shoal-bench"))
        .args(["engine", "--data-dir"])
        .arg(directory.path())
        .args(["--operations", &OPERATIONS.to_string()])
        .args(["--items", &ITEMS.to_string()])
        .args(["--repeat", &REPEAT.to_string()])
        .arg("--json")
        .arg(&json_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "shoal-bench engine failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for cell in CELLS {
        assert!(stdout.contains(cell), "table misses {cell}:\n{stdout}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();

    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(report["machine"]["kernel"].as_str().is_some());
    let floor_runs = report["floor"]["runs"].as_array().unwrap();
    assert_eq!(floor_runs.len(), REPEAT);
    for run in floor_runs {
        assert_eq!(run["samples"].as_u64(), Some(OPERATIONS));
    }
    assert!(report["floor"]["median"]["p50_ns"].as_u64().unwrap() > 0);

    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), CELLS.len() * SYSTEMS.len());
    for cell in CELLS {
        for system in SYSTEMS {
            let entry = cells
                .iter()
                .find(|entry| entry["cell"] == cell && entry["system"] == system)
                .unwrap_or_else(|| panic!("no {cell} for {system}"));
            let runs = entry["runs"].as_array().unwrap();
            assert_eq!(runs.len(), REPEAT, "{cell} {system}");
            for run in runs {
                assert_eq!(
                    run["operations"].as_u64(),
                    Some(OPERATIONS),
                    "{cell} {system}"
                );
                assert_eq!(run["latency"]["samples"].as_u64(), Some(OPERATIONS));
                let latency = &run["latency"];
                assert!(latency["p50_ns"].as_u64() <= latency["p99_ns"].as_u64());
                assert!(latency["p99_ns"].as_u64() <= latency["max_ns"].as_u64());
                assert!(run["operations_per_second"].as_f64().unwrap() > 0.0);
                assert!(run["cpu_pressure_before"].is_string());
                assert!(run["cpu_pressure_after"].is_string());
            }
            let median = &entry["median"];
            assert!(median["operations_per_second"].as_f64().unwrap() > 0.0);
            assert!(median["p50_ns"].as_u64().unwrap() > 0);
        }
    }

    let ratios = &report["ratios"];
    assert!(ratios["durable_put_1_p50_over_floor_p50"].as_f64().unwrap() > 0.0);
    let peer_ratios = ratios["ours_over_peers"].as_array().unwrap();
    assert_eq!(peer_ratios.len(), CELLS.len() * (SYSTEMS.len() - 1));
    for ratio in peer_ratios {
        assert!(
            ratio["ours_over_peer_operations_per_second"]
                .as_f64()
                .unwrap()
                > 0.0
        );
    }
    // The run directory is removed: only the JSON report is left behind.
    let left: Vec<_> = std::fs::read_dir(directory.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("engine.json")]);
}

#[test]
fn engine_refuses_out_of_range_counts() {
    let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for (flag, value) in [
        ("--operations", "0"),
        ("--items", "10"),
        ("--repeat", "0"),
        ("--checkpoint-every", "0"),
        ("--checkpoint-every", "1000000"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_shoal-bench"))
            .args(["engine", "--data-dir"])
            .arg(directory.path())
            .args([flag, value])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{flag} {value} was accepted");
    }
}
