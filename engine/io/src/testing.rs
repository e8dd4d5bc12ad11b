//! Support for tests that need a glommio executor.
//!
//! kernel-notes/glommio-runtime.md: multi-executor code has shown rare hangs under glommio 0.9, so every test that
//! runs on an executor runs under a watchdog that fails the test loudly instead of hanging CI.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

/// Registered I/O memory per test executor. glommio's default is 10 MiB per executor; 1 MiB
/// starts five times faster and is plenty for tests (executors refuse to start below 512 KiB).
pub const TEST_EXECUTOR_IO_MEMORY_BYTES: usize = 1 << 20;

/// How long a test executor may run before the watchdog fails the test.
pub const TEST_WATCHDOG: Duration = Duration::from_secs(120);

/// Runs `make_future()` to completion on a fresh, unpinned glommio executor on its own thread.
/// Panics (failing the test) if the future panics or does not finish within `TEST_WATCHDOG`.
pub fn run_on_test_executor<MakeFuture, Work>(name: &str, make_future: MakeFuture)
where
    MakeFuture: FnOnce() -> Work + Send + 'static,
    Work: Future<Output = ()> + 'static,
{
    let (finished_sender, finished_receiver) = mpsc::channel();
    let thread_name = name.to_owned();
    let thread = std::thread::Builder::new()
        .name(thread_name.clone())
        .spawn(move || {
            let executor = LocalExecutorBuilder::new(Placement::Unbound)
                .name(&thread_name)
                .io_memory(TEST_EXECUTOR_IO_MEMORY_BYTES)
                .make()
                .unwrap_or_else(|error| panic!("cannot start a glommio executor: {error}"));
            executor.run(make_future());
            // The receiver may be gone if the watchdog already fired; nothing to report then.
            let _ = finished_sender.send(());
        })
        .unwrap_or_else(|error| panic!("cannot spawn the executor thread: {error}"));
    match finished_receiver.recv_timeout(TEST_WATCHDOG) {
        Ok(()) => {
            if thread.join().is_err() {
                panic!("executor thread {name} panicked after finishing");
            }
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The thread ended without reporting: it panicked; surface its panic message.
            match thread.join() {
                Err(payload) => std::panic::resume_unwind(payload),
                Ok(()) => panic!("executor thread {name} ended without finishing its work"),
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("watchdog: executor test {name} still running after {TEST_WATCHDOG:?}")
        }
    }
}
