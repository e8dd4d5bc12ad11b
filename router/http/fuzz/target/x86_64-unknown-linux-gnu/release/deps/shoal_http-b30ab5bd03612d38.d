/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/shoal_http-b30ab5bd03612d38.d: /work/main/router/http/src/lib.rs /work/main/router/http/src/framing.rs /work/main/router/http/src/protocol.rs /work/main/router/http/src/sigv4.rs

/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libshoal_http-b30ab5bd03612d38.rlib: /work/main/router/http/src/lib.rs /work/main/router/http/src/framing.rs /work/main/router/http/src/protocol.rs /work/main/router/http/src/sigv4.rs

/work/main/router/http/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libshoal_http-b30ab5bd03612d38.rmeta: /work/main/router/http/src/lib.rs /work/main/router/http/src/framing.rs /work/main/router/http/src/protocol.rs /work/main/router/http/src/sigv4.rs

/work/main/router/http/src/lib.rs:
/work/main/router/http/src/framing.rs:
/work/main/router/http/src/protocol.rs:
/work/main/router/http/src/sigv4.rs:
