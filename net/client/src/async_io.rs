//! Async frame IO (and, re-exported from shoal-io, a shareable glommio stream), used by
//! `AsyncClient` and by the router's native listener (tools/shoal).

use std::io;

use futures_lite::{AsyncRead, AsyncReadExt};
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

// The shared stream and its immediate shutdown live in shoal-io, with the bus's connections.
pub use shoal_io::tcp::{StreamHalf, shutdown_now, split};
