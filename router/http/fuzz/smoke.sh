#!/usr/bin/env bash
# A short fuzz smoke run of shoal-http's parsers that needs neither nightly nor cargo-fuzz, as
# engine/model/fuzz/smoke.sh does: the targets are built with libFuzzer's coverage
# instrumentation (stable rustc flags, no sanitizer) and each runs for SECONDS seconds (default
# 10) from the checked-in seeds. A crash, a timeout (an input taking over TIMEOUT_SECONDS: a
# hang) or an input using over RSS_LIMIT_MB (unbounded memory) fails the script.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-10}"
# The decoders hold at most 16 MB of body plus what they were given; 1 GiB is far above that.
rss_limit_mb=1024
timeout_seconds=10
target="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# --target keeps these flags off build scripts, which cannot link the coverage hooks.
RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
    cargo build --release --locked --bins --target "$target"
for fuzz_target in sigv4_parser request_body; do
    corpus="$(mktemp -d)"
    cp "seeds/$fuzz_target"/* "$corpus"/
    "$CARGO_TARGET_DIR/$target/release/$fuzz_target" -max_total_time="$seconds" -max_len=65536 \
        -rss_limit_mb="$rss_limit_mb" -timeout="$timeout_seconds" "$corpus"
    rm -rf "$corpus"
done
