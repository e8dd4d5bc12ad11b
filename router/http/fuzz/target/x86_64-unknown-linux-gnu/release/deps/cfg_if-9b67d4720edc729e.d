/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/cfg_if-9b67d4720edc729e.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cfg-if-1.0.5/src/lib.rs

/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libcfg_if-9b67d4720edc729e.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cfg-if-1.0.5/src/lib.rs

/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libcfg_if-9b67d4720edc729e.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cfg-if-1.0.5/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cfg-if-1.0.5/src/lib.rs:
