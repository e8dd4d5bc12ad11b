//! `BlockingClient`: a std::net client of one shard for tests and CLI tools (no glommio).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use shoal_wire::messages::{BusMessage, NodeRequest, NodeResponse, RequestFrame, ResponseFrame};
use shoal_wire::{FrameDecoder, encode_frame};

use crate::error::ClientError;
use crate::limits::{BLOCKING_UNCLAIMED_RESPONSES_MAX, READ_CHUNK_BYTES};

/// A blocking client: `call` sends a request and reads until its response arrives, within
/// `timeout`. `send` and `receive` allow pipelining by hand.
pub struct BlockingClient {
    stream: TcpStream,
    decoder: FrameDecoder,
    buffer: Vec<u8>,
    /// Bytes of `buffer` read from the socket and not yet fed to the decoder.
    buffered: std::ops::Range<usize>,
    timeout: Duration,
    next_request_id: u64,
    /// Responses received while waiting for another request's response.
    unclaimed: VecDeque<ResponseFrame>,
    broken: bool,
}

impl BlockingClient {
    /// Connects within `timeout`; `timeout` is also each call's deadline.
    pub fn connect(address: SocketAddr, timeout: Duration) -> Result<BlockingClient, ClientError> {
        let timeout = timeout.max(Duration::from_millis(1));
        let stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(BlockingClient {
            stream,
            decoder: FrameDecoder::new(),
            buffer: vec![0u8; READ_CHUNK_BYTES],
            buffered: 0..0,
            timeout,
            next_request_id: 1,
            unclaimed: VecDeque::new(),
            broken: false,
        })
    }

    /// Sends a request and returns its response.
    pub fn call(&mut self, request: NodeRequest) -> Result<NodeResponse, ClientError> {
        let request_id = self.send(request)?;
        let deadline = Instant::now() + self.timeout;
        // Bounded by the unclaimed limit: each pass returns or stores one other response.
        for _ in 0..=BLOCKING_UNCLAIMED_RESPONSES_MAX {
            let frame = self.read_response(deadline)?;
            if frame.request_id == request_id {
                return Ok(frame.response);
            }
            if self.unclaimed.len() >= BLOCKING_UNCLAIMED_RESPONSES_MAX {
                break;
            }
            self.unclaimed.push_back(frame);
        }
        self.broken = true;
        Err(ClientError::Protocol {
            message: "too many responses to other requests".into(),
        })
    }

    /// Sends a request without waiting; returns its request id.
    pub fn send(&mut self, request: NodeRequest) -> Result<u64, ClientError> {
        if self.broken {
            return Err(ClientError::ConnectionClosed);
        }
        let request_id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        let frame = encode_frame(&BusMessage::Request(RequestFrame {
            request_id,
            request,
        }))
        .map_err(ClientError::Encode)?;
        if let Err(error) = self.stream.write_all(&frame) {
            self.broken = true;
            return Err(error.into());
        }
        Ok(request_id)
    }

    /// The next response (any request id), within the timeout.
    pub fn receive(&mut self) -> Result<ResponseFrame, ClientError> {
        if let Some(frame) = self.unclaimed.pop_front() {
            return Ok(frame);
        }
        let deadline = Instant::now() + self.timeout;
        self.read_response(deadline)
    }

    fn read_response(&mut self, deadline: Instant) -> Result<ResponseFrame, ClientError> {
        if self.broken {
            return Err(ClientError::ConnectionClosed);
        }
        let result = self.read_response_inner(deadline);
        if result.is_err() {
            // A timeout leaves a partial frame or a late response behind: the stream is no
            // longer in step with our requests.
            self.broken = true;
        }
        result
    }

    fn read_response_inner(&mut self, deadline: Instant) -> Result<ResponseFrame, ClientError> {
        // Each pass decodes buffered bytes or waits on the socket until at most the deadline;
        // the deadline ends the loop.
        loop {
            if !self.buffered.is_empty() {
                let mut input = &self.buffer[self.buffered.clone()];
                let before = input.len();
                let decoded = self.decoder.decode(&mut input);
                self.buffered.start += before - input.len();
                match decoded {
                    Ok(Some(BusMessage::Response(frame))) => return Ok(frame),
                    Ok(Some(other)) => {
                        return Err(ClientError::Protocol {
                            message: format!(
                                "expected a response, got {:?}",
                                shoal_wire::MessageKind::of(&other)
                            ),
                        });
                    }
                    Ok(None) => {}
                    Err(error) => return Err(ClientError::Frame(error)),
                }
                continue;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ClientError::Timeout);
            }
            self.stream.set_read_timeout(Some(remaining))?;
            let read = match self.stream.read(&mut self.buffer) {
                Ok(read) => read,
                // SO_RCVTIMEO can expire a little before our deadline (it counts in kernel
                // ticks), and a signal can interrupt the read: check the deadline again.
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            if read == 0 {
                return Err(ClientError::ConnectionClosed);
            }
            self.buffered = 0..read;
        }
    }
}
