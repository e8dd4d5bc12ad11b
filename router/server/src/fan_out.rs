//! Running a batch's calls to its partitions concurrently on the router core's executor.
//!
//! A router core is one glommio executor: its `Forwarder`, table cache and admission buckets
//! are `!Send` and borrowed by every call, so the calls cannot be spawned as tasks of their own
//! (those must be `'static`). [`join_bounded`] instead polls the calls as futures of the one
//! task that awaits it, at most a given number at a time, and hands back their outputs in the
//! order the calls were given, whatever order they finished in.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Runs `calls` concurrently, at most `in_flight_max` of them at once (at least one), starting
/// each in order as an earlier one finishes, and returns their outputs in the order of `calls`.
pub async fn join_bounded<F: Future>(calls: Vec<F>, in_flight_max: usize) -> Vec<F::Output> {
    let count = calls.len();
    let in_flight_max = in_flight_max.max(1);
    let mut waiting = calls.into_iter().enumerate();
    let mut running: Vec<(usize, Pin<Box<F>>)> = Vec::with_capacity(in_flight_max.min(count));
    let mut outputs: Vec<Option<F::Output>> = (0..count).map(|_| None).collect();
    futures_lite::future::poll_fn(|context| {
        // Each pass starts calls up to the bound and polls every running one. A pass that
        // finished some call has room again: pass once more so the calls it starts are polled
        // (and register their wakers) before this task sleeps. Every pass but the last ends at
        // least one call, so this loop runs at most `count + 1` times per poll. A call polled
        // again without being woken is fine: futures allow spurious polls.
        loop {
            while running.len() < in_flight_max {
                match waiting.next() {
                    Some((index, call)) => running.push((index, Box::pin(call))),
                    None => break,
                }
            }
            if running.is_empty() {
                // Nothing runs, and nothing waits to be started.
                return Poll::Ready(());
            }
            let running_before = running.len();
            running.retain_mut(|(index, call)| match call.as_mut().poll(context) {
                Poll::Ready(output) => {
                    outputs[*index] = Some(output);
                    false
                }
                Poll::Pending => true,
            });
            if running.len() == running_before {
                return Poll::Pending;
            }
        }
    })
    .await;
    // Every call ran to its output above.
    let outputs: Vec<F::Output> = outputs.into_iter().flatten().collect();
    debug_assert_eq!(outputs.len(), count);
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A call that yields to the executor `yields` times before it ends, counting how many
    /// calls run at once.
    async fn call(yields: usize, running: Rc<Cell<usize>>, most: Rc<Cell<usize>>) {
        running.set(running.get() + 1);
        most.set(most.get().max(running.get()));
        for _ in 0..yields {
            futures_lite::future::yield_now().await;
        }
        running.set(running.get() - 1);
    }

    #[test]
    fn outputs_come_in_the_order_of_the_calls_whatever_order_they_finish_in() {
        // Later calls finish first: call i yields 10 - i times.
        let calls: Vec<_> = (0..10)
            .map(|index| async move {
                for _ in 0..(10 - index) {
                    futures_lite::future::yield_now().await;
                }
                index * 100
            })
            .collect();
        let outputs = futures_lite::future::block_on(join_bounded(calls, 4));
        assert_eq!(
            outputs,
            (0..10).map(|index| index * 100).collect::<Vec<_>>()
        );
    }

    #[test]
    fn no_more_than_the_bound_run_at_once_and_the_bound_is_used() {
        for bound in [1, 3, 8, 50] {
            let running = Rc::new(Cell::new(0));
            let most = Rc::new(Cell::new(0));
            let calls: Vec<_> = (0..20)
                .map(|index| call(1 + index % 4, running.clone(), most.clone()))
                .collect();
            let outputs = futures_lite::future::block_on(join_bounded(calls, bound));
            assert_eq!(outputs.len(), 20);
            assert_eq!(running.get(), 0, "every call finished");
            assert_eq!(most.get(), bound.min(20), "bound {bound}");
        }
    }

    #[test]
    fn no_calls_and_a_zero_bound_are_handled() {
        let none: Vec<std::future::Ready<u8>> = Vec::new();
        assert!(futures_lite::future::block_on(join_bounded(none, 4)).is_empty());
        let calls = vec![std::future::ready(1), std::future::ready(2)];
        assert_eq!(
            futures_lite::future::block_on(join_bounded(calls, 0)),
            vec![1, 2]
        );
    }
}
