//! Stopping the process when continuing would risk data.
//!
//! Some failures cannot be handled by returning an error: a failed fdatasync (the kernel may
//! have dropped the dirty pages and cleared the error, so a retry would "succeed" over lost
//! data; see PostgreSQL's 2018 fsyncgate), or an invariant that the code relies on for safety.
//! For those we log the context and abort. The process restarts and recovers from what is
//! durable; a replica that is gone is better than one that lies.

/// Logs `message` at error level with the caller's location, flushes stderr and aborts.
///
/// Aborting (rather than panicking) makes the stop independent of the panic strategy and of
/// any `catch_unwind` above us: no destructor runs and no more I/O is issued.
#[macro_export]
macro_rules! fatal {
    ($($argument:tt)+) => {{
        $crate::fatal::stop(::std::format_args!($($argument)+), ::std::panic::Location::caller())
    }};
}

#[doc(hidden)]
#[track_caller]
#[cold]
pub fn stop(
    message: std::fmt::Arguments<'_>,
    location: &'static std::panic::Location<'static>,
) -> ! {
    tracing::error!(target: "shoal::fatal", %location, "fatal: {message}");
    // Write directly too: the tracing subscriber may not be installed, or may buffer.
    eprintln!("shoal: fatal at {location}: {message}");
    if test_hook::stops_are_panics() {
        // Test builds can observe a fatal stop as a panic with the same message.
        panic!("fatal: {message}");
    }
    std::process::abort();
}

/// Lets tests observe `fatal!` without aborting the test binary.
pub mod test_hook {
    use std::cell::Cell;

    thread_local! {
        static STOPS_ARE_PANICS: Cell<bool> = const { Cell::new(false) };
    }

    /// For tests only: from now on, `fatal!` on this thread panics instead of aborting.
    pub fn turn_stops_into_panics() {
        STOPS_ARE_PANICS.with(|flag| flag.set(true));
    }

    pub(crate) fn stops_are_panics() -> bool {
        STOPS_ARE_PANICS.with(Cell::get)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fatal_carries_its_message() {
        super::test_hook::turn_stops_into_panics();
        let outcome =
            std::panic::catch_unwind(|| -> () { crate::fatal!("invariant {} broken", 3) });
        let payload = outcome.expect_err("fatal! must not return");
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert_eq!(message, "fatal: invariant 3 broken");
    }
}
