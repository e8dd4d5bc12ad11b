/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/subtle-59538437d399d26b.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/subtle-2.6.1/src/lib.rs

/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libsubtle-59538437d399d26b.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/subtle-2.6.1/src/lib.rs

/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libsubtle-59538437d399d26b.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/subtle-2.6.1/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/subtle-2.6.1/src/lib.rs:
