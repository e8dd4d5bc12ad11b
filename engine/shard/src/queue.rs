//! A replica's bounded queue (its events, its `Persist` outputs), single-threaded like the shard.
//!
//! glommio's bounded `local_channel` allocates its whole bound up front
//! (`VecDeque::with_capacity`). A replica's event queue is bounded at
//! [`crate::runtime::REPLICA_QUEUE_EVENTS_MAX`] events of a few hundred bytes, so each replica
//! held about 1.4 MB for a queue that is almost always empty. With transparent huge pages the
//! memory became resident as the ring's head moved through it: an idle node hosting 1,000
//! replicas measured 1.6 GB resident, and the first write into each fresh page showed up as
//! the largest item of its idle CPU profile (bench/results/2026-12-07-dev-vm-queue-memory.md).
//!
//! This queue keeps the same bound and the same two ways to meet it (fail at once, or wait for
//! room), but its memory follows what is queued: it grows as events arrive and gives its memory
//! back once it has drained after a burst.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// A drained queue keeps a buffer of this many slots: a burst must not keep its high-water
/// memory for the replica's lifetime.
pub const RETAINED_SLOTS_MAX: usize = 32;
/// ... but gives the buffer back only once it has grown past this many slots, so that a queue
/// whose bursts are a little over the retained size does not reallocate at every one.
pub const SHRINK_ABOVE_SLOTS: usize = 4 * RETAINED_SLOTS_MAX;

/// Why [`QueueSender::try_send`] did not queue an item; the item comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The queue holds its bound.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

struct State<T> {
    items: VecDeque<T>,
    bound: usize,
    senders: usize,
    receiver_open: bool,
    receiver_waker: Option<Waker>,
    /// Senders waiting for room. All are woken whenever an item leaves, so a waiter that gave
    /// up (its future dropped) never swallows the wake-up another needs.
    room_wakers: Vec<Waker>,
}

/// Creates a queue that holds at most `bound` items.
pub fn bounded<T>(bound: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    assert!(bound > 0, "a queue needs room for one item");
    let state = Rc::new(RefCell::new(State {
        items: VecDeque::new(),
        bound,
        senders: 1,
        receiver_open: true,
        receiver_waker: None,
        room_wakers: Vec::new(),
    }));
    (
        QueueSender {
            state: state.clone(),
        },
        QueueReceiver { state },
    )
}

pub struct QueueSender<T> {
    state: Rc<RefCell<State<T>>>,
}

impl<T> QueueSender<T> {
    /// Queues `item` now, or gives it back: the queue is full, or its receiver is gone.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut state = self.state.borrow_mut();
        if !state.receiver_open {
            return Err(TrySendError::Closed(item));
        }
        if state.items.len() >= state.bound {
            return Err(TrySendError::Full(item));
        }
        state.items.push_back(item);
        if let Some(waker) = state.receiver_waker.take() {
            drop(state);
            waker.wake();
        }
        Ok(())
    }

    /// Queues `item`, waiting for room; gives it back if the receiver is gone.
    pub async fn send(&self, item: T) -> Result<(), T> {
        let mut item = Some(item);
        poll_fn(|context| {
            let Some(pending) = item.take() else {
                unreachable!("polled after it finished");
            };
            match self.try_send(pending) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(TrySendError::Closed(pending)) => Poll::Ready(Err(pending)),
                Err(TrySendError::Full(pending)) => {
                    item = Some(pending);
                    let mut state = self.state.borrow_mut();
                    if !state
                        .room_wakers
                        .iter()
                        .any(|waker| waker.will_wake(context.waker()))
                    {
                        state.room_wakers.push(context.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        self.state.borrow_mut().senders += 1;
        QueueSender {
            state: self.state.clone(),
        }
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        let mut state = self.state.borrow_mut();
        state.senders -= 1;
        if state.senders == 0
            && let Some(waker) = state.receiver_waker.take()
        {
            drop(state);
            waker.wake();
        }
    }
}

pub struct QueueReceiver<T> {
    state: Rc<RefCell<State<T>>>,
}

impl<T> QueueReceiver<T> {
    /// The next item; `None` once the queue is empty and every sender is gone.
    pub async fn recv(&self) -> Option<T> {
        poll_fn(|context| {
            let mut state = self.state.borrow_mut();
            if let Some(item) = state.items.pop_front() {
                if state.items.is_empty() && state.items.capacity() > SHRINK_ABOVE_SLOTS {
                    state.items.shrink_to(RETAINED_SLOTS_MAX);
                }
                let waiting = std::mem::take(&mut state.room_wakers);
                drop(state);
                for waker in waiting {
                    waker.wake();
                }
                return Poll::Ready(Some(item));
            }
            if state.senders == 0 {
                return Poll::Ready(None);
            }
            state.receiver_waker = Some(context.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        let (items, waiting) = {
            let mut state = self.state.borrow_mut();
            state.receiver_open = false;
            (
                std::mem::take(&mut state.items),
                std::mem::take(&mut state.room_wakers),
            )
        };
        // Dropped outside the borrow: an item's own drop may touch this queue.
        drop(items);
        for waker in waiting {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Wake};

    use super::*;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting_waker() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (counter.clone(), Waker::from(counter))
    }

    fn queued<T>(sender: &QueueSender<T>) -> usize {
        sender.state.borrow().items.len()
    }

    fn poll_once<F: Future>(future: std::pin::Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn items_come_out_in_order_and_the_bound_refuses_the_next() {
        let (sender, receiver) = bounded(3);
        for item in 0..3 {
            sender.try_send(item).unwrap();
        }
        assert_eq!(sender.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(queued(&sender), 3);
        let (_, waker) = counting_waker();
        for expected in 0..3 {
            let mut recv = pin!(receiver.recv());
            assert_eq!(
                poll_once(recv.as_mut(), &waker),
                Poll::Ready(Some(expected))
            );
        }
        assert_eq!(queued(&sender), 0);
    }

    #[test]
    fn a_sender_waiting_for_room_is_woken_when_an_item_leaves() {
        let (sender, receiver) = bounded(1);
        sender.try_send(1).unwrap();
        let (woken, waker) = counting_waker();
        let mut send = pin!(sender.send(2));
        assert_eq!(poll_once(send.as_mut(), &waker), Poll::Pending);
        assert_eq!(woken.0.load(Ordering::SeqCst), 0);
        let mut recv = pin!(receiver.recv());
        assert_eq!(poll_once(recv.as_mut(), &waker), Poll::Ready(Some(1)));
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_once(send.as_mut(), &waker), Poll::Ready(Ok(())));
        assert_eq!(queued(&sender), 1);
    }

    #[test]
    fn the_receiver_is_woken_by_an_item_and_ends_when_every_sender_is_gone() {
        let (sender, receiver) = bounded(4);
        let second = sender.clone();
        let (woken, waker) = counting_waker();
        let mut recv = pin!(receiver.recv());
        assert_eq!(poll_once(recv.as_mut(), &waker), Poll::Pending);
        second.try_send(7).unwrap();
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_once(recv.as_mut(), &waker), Poll::Ready(Some(7)));
        let mut next = pin!(receiver.recv());
        assert_eq!(poll_once(next.as_mut(), &waker), Poll::Pending);
        drop(sender);
        assert_eq!(poll_once(next.as_mut(), &waker), Poll::Pending);
        drop(second);
        assert_eq!(woken.0.load(Ordering::SeqCst), 2);
        assert_eq!(poll_once(next.as_mut(), &waker), Poll::Ready(None));
    }

    #[test]
    fn items_queued_before_the_last_sender_left_are_still_received() {
        let (sender, receiver) = bounded(4);
        sender.try_send(1).unwrap();
        drop(sender);
        let (_, waker) = counting_waker();
        let mut first = pin!(receiver.recv());
        assert_eq!(poll_once(first.as_mut(), &waker), Poll::Ready(Some(1)));
        let mut end = pin!(receiver.recv());
        assert_eq!(poll_once(end.as_mut(), &waker), Poll::Ready(None));
    }

    #[test]
    fn senders_get_their_item_back_once_the_receiver_is_gone() {
        let (sender, receiver) = bounded(1);
        sender.try_send(1).unwrap();
        let (woken, waker) = counting_waker();
        let mut send = pin!(sender.send(2));
        assert_eq!(poll_once(send.as_mut(), &waker), Poll::Pending);
        drop(receiver);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_once(send.as_mut(), &waker), Poll::Ready(Err(2)));
        assert_eq!(sender.try_send(3), Err(TrySendError::Closed(3)));
    }

    #[test]
    fn memory_follows_what_is_queued() {
        let bound = 4096;
        let (sender, receiver) = bounded::<[u8; 336]>(bound);
        // Nothing is reserved for the bound up front.
        assert_eq!(receiver.state.borrow().items.capacity(), 0);
        for _ in 0..1000 {
            sender.try_send([0; 336]).unwrap();
        }
        assert!(receiver.state.borrow().items.capacity() >= 1000);
        let (_, waker) = counting_waker();
        for _ in 0..1000 {
            let mut recv = pin!(receiver.recv());
            assert!(matches!(
                poll_once(recv.as_mut(), &waker),
                Poll::Ready(Some(_))
            ));
        }
        // Drained after the burst: the buffer is given back down to the retained size.
        assert!(receiver.state.borrow().items.capacity() <= RETAINED_SLOTS_MAX);
    }
}
