/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libfuzzer_sys-8a496901afcf471c.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/libfuzzer-sys-0.4.13/src/lib.rs

/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/liblibfuzzer_sys-8a496901afcf471c.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/libfuzzer-sys-0.4.13/src/lib.rs

/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/liblibfuzzer_sys-8a496901afcf471c.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/libfuzzer-sys-0.4.13/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/libfuzzer-sys-0.4.13/src/lib.rs:
