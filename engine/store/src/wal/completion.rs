//! A one-shot completion cell for a single thread: the committer resolves it, an appender
//! awaits it. No locks and no atomics: everything in a shard runs on one executor thread.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::Lsn;
use super::error::WalError;

#[derive(Debug, Default)]
struct CompletionState {
    result: Option<Result<Lsn, WalError>>,
    waker: Option<Waker>,
    completed: bool,
}

/// Both ends of the cell: the committer keeps one clone, the appender awaits another.
#[derive(Debug, Clone, Default)]
pub(crate) struct Completion {
    state: Rc<RefCell<CompletionState>>,
}

impl Completion {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Resolves the cell. A second completion is a broken invariant of the committer.
    pub(crate) fn complete(&self, result: Result<Lsn, WalError>) {
        let waker = {
            let mut state = self.state.borrow_mut();
            assert!(!state.completed, "a WAL append was completed twice");
            state.completed = true;
            state.result = Some(result);
            state.waker.take()
        };
        // Wake outside the borrow: a waker may poll synchronously on some executors.
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Future for Completion {
    type Output = Result<Lsn, WalError>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.state.borrow_mut();
        match state.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                assert!(
                    !state.completed,
                    "a WAL append completion was polled after it finished"
                );
                state.waker = Some(context.waker().clone());
                Poll::Pending
            }
        }
    }
}
