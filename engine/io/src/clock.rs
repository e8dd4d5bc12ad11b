//! Monotonic time, real or simulated.
//!
//! Protocol code never reads a clock: it is handed a [`MonotonicTime`] with every tick. The
//! [`Clock`] trait is how the code that drives it (a shard, the simulator) gets that time.
//! Wall-clock time never decides anything in Shoal, so there is no wall clock here.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

pub use shoal_time::MonotonicTime;

/// A source of monotonic time.
pub trait Clock {
    fn now(&self) -> MonotonicTime;
}

/// The kernel's CLOCK_MONOTONIC: not adjusted by NTP steps, so leases measured on it are sound
/// as long as the rate drift between nodes stays inside the configured bound.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> MonotonicTime {
        match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
            Ok(spec) => {
                let nanos = (spec.tv_sec() as u64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(spec.tv_nsec() as u64);
                MonotonicTime::from_nanos(nanos)
            }
            // CLOCK_MONOTONIC cannot fail on Linux with a valid pointer; if it does, time itself
            // is broken and no lease can be trusted.
            Err(error) => crate::fatal!("clock_gettime(CLOCK_MONOTONIC) failed: {error}"),
        }
    }
}

/// Virtual time for deterministic tests and the simulator: it moves only when told to.
///
/// Cloning shares the same time line. Sleepers register a timer; the driver advances time to the
/// next timer with [`SimulatedClock::advance_to_next_timer`], which wakes every sleeper that is due.
#[derive(Clone, Default)]
pub struct SimulatedClock {
    shared: Rc<SimulatedClockShared>,
}

#[derive(Default)]
struct SimulatedClockShared {
    now: Cell<u64>,
    next_timer_id: Cell<u64>,
    /// Min-heap of (deadline, timer id); ties fire in registration order.
    timers: RefCell<BinaryHeap<Reverse<(u64, u64)>>>,
    wakers: RefCell<std::collections::HashMap<u64, Waker>>,
}

impl fmt::Debug for SimulatedClock {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SimulatedClock")
            .field("now", &MonotonicTime::from_nanos(self.shared.now.get()))
            .field("timers", &self.shared.timers.borrow().len())
            .finish()
    }
}

impl SimulatedClock {
    pub fn new(start: MonotonicTime) -> Self {
        let clock = Self::default();
        clock.shared.now.set(start.as_nanos());
        clock
    }

    /// Moves time forward to `time` (never backwards) and wakes every sleeper that is due.
    pub fn advance_to(&self, time: MonotonicTime) {
        if time.as_nanos() > self.shared.now.get() {
            self.shared.now.set(time.as_nanos());
        }
        self.wake_due();
    }

    pub fn advance_by(&self, duration: Duration) {
        self.advance_to(self.now().saturating_add(duration));
    }

    /// The earliest registered deadline, if any sleeper is waiting.
    pub fn next_timer(&self) -> Option<MonotonicTime> {
        self.shared
            .timers
            .borrow()
            .peek()
            .map(|Reverse((deadline, _))| MonotonicTime::from_nanos(*deadline))
    }

    /// Jumps to the earliest deadline and wakes its sleepers. Returns false if nobody sleeps.
    pub fn advance_to_next_timer(&self) -> bool {
        match self.next_timer() {
            Some(deadline) => {
                self.advance_to(deadline);
                true
            }
            None => false,
        }
    }

    /// A future that completes once virtual time reaches `deadline`.
    pub fn sleep_until(&self, deadline: MonotonicTime) -> SimulatedSleep {
        SimulatedSleep {
            clock: self.clone(),
            deadline,
            timer_id: None,
        }
    }

    pub fn sleep(&self, duration: Duration) -> SimulatedSleep {
        self.sleep_until(self.now().saturating_add(duration))
    }

    fn wake_due(&self) {
        let now = self.shared.now.get();
        loop {
            let due = {
                let mut timers = self.shared.timers.borrow_mut();
                match timers.peek() {
                    Some(Reverse((deadline, id))) if *deadline <= now => {
                        let id = *id;
                        timers.pop();
                        Some(id)
                    }
                    _ => None,
                }
            };
            let Some(id) = due else { break };
            // Take the waker out before waking: a woken task may register a new timer.
            let waker = self.shared.wakers.borrow_mut().remove(&id);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> MonotonicTime {
        MonotonicTime::from_nanos(self.shared.now.get())
    }
}

/// Returned by [`SimulatedClock::sleep_until`].
#[derive(Debug)]
pub struct SimulatedSleep {
    clock: SimulatedClock,
    deadline: MonotonicTime,
    timer_id: Option<u64>,
}

impl Future for SimulatedSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.clock.now() >= self.deadline {
            return Poll::Ready(());
        }
        let shared = Rc::clone(&self.clock.shared);
        let id = match self.timer_id {
            Some(id) => id,
            None => {
                let id = shared.next_timer_id.get();
                shared.next_timer_id.set(id + 1);
                shared
                    .timers
                    .borrow_mut()
                    .push(Reverse((self.deadline.as_nanos(), id)));
                self.timer_id = Some(id);
                id
            }
        };
        shared
            .wakers
            .borrow_mut()
            .insert(id, context.waker().clone());
        Poll::Pending
    }
}

impl Drop for SimulatedSleep {
    fn drop(&mut self) {
        // The heap entry stays until it comes due (removing from a BinaryHeap is O(n)); only the
        // waker is dropped so a cancelled sleep never wakes anyone.
        if let Some(id) = self.timer_id {
            self.clock.shared.wakers.borrow_mut().remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_never_goes_backwards() {
        let clock = SystemClock;
        let mut previous = clock.now();
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= previous);
            previous = now;
        }
    }

    #[test]
    fn simulated_sleep_completes_only_when_time_reaches_deadline() {
        let clock = SimulatedClock::new(MonotonicTime::from_nanos(1_000));
        let mut sleep = Box::pin(clock.sleep(Duration::from_nanos(500)));
        let waker = Waker::noop();
        let mut context = Context::from_waker(waker);
        assert!(sleep.as_mut().poll(&mut context).is_pending());
        assert_eq!(clock.next_timer(), Some(MonotonicTime::from_nanos(1_500)));
        clock.advance_by(Duration::from_nanos(499));
        assert!(sleep.as_mut().poll(&mut context).is_pending());
        assert!(clock.advance_to_next_timer());
        assert_eq!(clock.now(), MonotonicTime::from_nanos(1_500));
        assert!(sleep.as_mut().poll(&mut context).is_ready());
        assert!(!clock.advance_to_next_timer());
    }

    #[test]
    fn time_never_moves_backwards() {
        let clock = SimulatedClock::new(MonotonicTime::from_nanos(10));
        clock.advance_to(MonotonicTime::from_nanos(5));
        assert_eq!(clock.now(), MonotonicTime::from_nanos(10));
    }
}
