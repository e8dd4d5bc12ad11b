//! Async frame IO and a shareable glommio stream, used by `AsyncClient` and by the router's
//! native listener (tools/shoal).

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite};
use glommio::net::TcpStream;
use shoal_protocol::frame::{FrameError, FrameHeader, ReadFrameError};
use shoal_protocol::limits::HEADER_BYTES;

/// Reads one frame and returns its checked body (the length is checked before the body is
/// buffered, the crc32c before anyone decodes it).
pub async fn read_frame_async(
    reader: &mut (impl AsyncRead + Unpin),
) -> Result<Vec<u8>, ReadFrameError> {
    let mut header = [0u8; HEADER_BYTES];
    let mut filled = 0;
    while filled < HEADER_BYTES {
        match reader.read(&mut header[filled..]).await {
            Ok(0) if filled == 0 => return Err(ReadFrameError::Closed),
            Ok(0) => {
                return Err(ReadFrameError::Frame(FrameError::Truncated {
                    bytes_read: filled,
                    bytes_expected: HEADER_BYTES,
                }));
            }
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(ReadFrameError::Io(error)),
        }
    }
    let header = FrameHeader::decode(&header).map_err(ReadFrameError::Frame)?;
    let mut body = vec![0u8; header.body_length];
    let mut filled = 0;
    while filled < body.len() {
        match reader.read(&mut body[filled..]).await {
            Ok(0) => {
                return Err(ReadFrameError::Frame(FrameError::Truncated {
                    bytes_read: HEADER_BYTES + filled,
                    bytes_expected: HEADER_BYTES + header.body_length,
                }));
            }
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(ReadFrameError::Io(error)),
        }
    }
    header.check_body(&body).map_err(ReadFrameError::Frame)?;
    Ok(body)
}

/// One end's handle on a glommio stream shared by a reader task and a writer task. Both poll
/// the same stream: glommio keeps separate readiness sources for reading and writing, and a
/// poll never holds the `RefCell` borrow past its return (the same design as shoal-bus).
pub struct StreamHalf {
    stream: Rc<RefCell<TcpStream>>,
}

/// Splits `stream` into a read half, a write half and a handle for `shutdown_now`.
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

/// Shuts the connection down in both directions now. Dropping a glommio stream may leave it
/// open until an armed io_uring poll is cancelled (shoal-bus, stream.rs); a bad frame must close
/// the connection at once.
pub fn shutdown_now(stream: &RefCell<TcpStream>) {
    let descriptor = stream.borrow().as_raw_fd();
    // SAFETY: `descriptor` belongs to the TcpStream borrowed above, alive for the whole call, so
    // it names our socket. shutdown(2) takes no pointers; its error (ENOTCONN when the peer is
    // gone) needs no handling: the goal is a closed socket.
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
