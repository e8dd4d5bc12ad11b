/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/request_body-4aee55c4cb3559e9.d: fuzz_targets/request_body.rs

/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/request_body-4aee55c4cb3559e9: fuzz_targets/request_body.rs

fuzz_targets/request_body.rs:
