/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/sigv4_parser-54bfb98a20e15389.d: fuzz_targets/sigv4_parser.rs

/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/sigv4_parser-54bfb98a20e15389: fuzz_targets/sigv4_parser.rs

fuzz_targets/sigv4_parser.rs:
