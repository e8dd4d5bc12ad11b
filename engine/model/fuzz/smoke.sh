#!/usr/bin/env bash
# A short fuzz smoke run that needs neither nightly nor cargo-fuzz: it builds the targets with
# libFuzzer's coverage instrumentation (stable rustc flags, no sanitizer) and runs each one for
# SECONDS seconds (default 30) from the checked-in seeds. Any crash fails the script.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
target="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# --target keeps these flags off build scripts, which cannot link the coverage hooks.
RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
    cargo build --release --locked --bins --target "$target"
for fuzz_target in expression_parser item_decoder request_decoder; do
    corpus="$(mktemp -d)"
    cp "seeds/$fuzz_target"/* "$corpus"/
    "$CARGO_TARGET_DIR/$target/release/$fuzz_target" -max_total_time="$seconds" -max_len=4200 \
        "$corpus"
    rm -rf "$corpus"
done
