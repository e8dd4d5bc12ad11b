//! A glommio `TcpStream` shared by a reader task and a writer task, with an immediate shutdown.
//! Used by the bus (net/bus), the native client and the router's native listener.
//!
//! Why not `futures_lite::io::split`: we need a handle on the socket to end the connection at
//! once. Dropping a glommio stream closes its descriptor, but glommio may have an io_uring poll
//! armed on it (it arms one early after a short read), and the kernel keeps the connection
//! open until that poll's cancellation has been processed by the reactor, which a cancelled
//! task cannot be relied on to reach promptly. `shutdown_now` sends the FIN (or a reset)
//! immediately, so a peer we drop, and every client when the bus shuts down, sees the end at
//! once.

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// One end's handle on a shared stream. Both halves poll the same stream; that is safe because
/// glommio keeps separate readiness sources for reading and writing, and a poll never holds the
/// `RefCell` borrow past its return.
pub struct StreamHalf {
    stream: Rc<RefCell<TcpStream>>,
}

/// Splits `stream` into a read handle, a write handle and a handle for `shutdown_now`.
pub fn split(stream: TcpStream) -> (StreamHalf, StreamHalf, Rc<RefCell<TcpStream>>) {
    let stream = Rc::new(RefCell::new(stream));
    (
        StreamHalf {
            stream: stream.clone(),
        },
        StreamHalf {
            stream: stream.clone(),
        },
        stream,
    )
}

/// Shuts the connection down in both directions now. The peer sees the end of the stream
/// (or a reset) at once; our own pending reads and writes fail.
pub fn shutdown_now(stream: &RefCell<TcpStream>) {
    let descriptor = stream.borrow().as_raw_fd();
    // SAFETY: `descriptor` belongs to the TcpStream borrowed above, which is alive for the whole
    // call, so it names our socket and not a reused descriptor. shutdown(2) takes no pointers.
    // Its error (ENOTCONN once the peer is gone) needs no handling: the goal is a closed socket.
    unsafe {
        libc::shutdown(descriptor, libc::SHUT_RDWR);
    }
}

impl AsyncRead for StreamHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream.borrow_mut()).poll_read(context, buffer)
    }
}

impl AsyncWrite for StreamHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream.borrow_mut()).poll_write(context, buffer)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream.borrow_mut()).poll_flush(context)
    }

    fn poll_close(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream.borrow_mut()).poll_close(context)
    }
}
