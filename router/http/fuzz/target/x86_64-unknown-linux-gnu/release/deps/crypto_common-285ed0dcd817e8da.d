/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/crypto_common-285ed0dcd817e8da.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crypto-common-0.1.7/src/lib.rs

/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libcrypto_common-285ed0dcd817e8da.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crypto-common-0.1.7/src/lib.rs

/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libcrypto_common-285ed0dcd817e8da.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crypto-common-0.1.7/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crypto-common-0.1.7/src/lib.rs:
