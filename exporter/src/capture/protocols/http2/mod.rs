//! HTTP/2 (cleartext h2c, and over TLS where vigil reads the plaintext): requests and gRPC calls,
//! paired by stream per connection from its socket I/O records.
//!
//! **Recognition.** A connection whose first transfer starts with the client preface, or with the
//! server's (a SETTINGS frame: servers send theirs without waiting for the client's), is HTTP/2 from its
//! start: the side that read the client preface, or wrote the server's, serves it. One first seen mid-way (open before vigil started,
//! or before its process was captured) is taken for HTTP/2 when a transfer captured whole is a run of
//! plausible frames from its first byte to its last; its HPACK state is unknown from the start (counted
//! in `vigil_http2_desync_total{reason="adopted"}`).
//!
//! **Frames** ([`frames`]), per direction, across transfers; header blocks (HEADERS and its
//! CONTINUATIONs) are decoded with HPACK state per direction ([`headers`]). A stream starts with the
//! request headers (a block carrying `:method`): read by the process, it serves the stream; written, it
//! is the client. The response's `:status` comes in the other direction; the stream ends with the
//! `END_STREAM` flag of the response's last DATA frame or of its trailers, with a reset (RST_STREAM), or
//! with the connection's close.
//!
//! **Duration.** Server: from the return of the read that brought the request headers to the return of
//! the write that ended the response. Client: from the write of the request headers to the read of the
//! end of the response.
//!
//! **gRPC** (`content-type: application/grpc*` in the request or the response; when neither could be
//! read, a response with `grpc-status` or ending with trailers): recorded as a call with its method (`:path`) and status name
//! ([`grpc`]); other streams as HTTP requests (`http_*`), with their DATA bytes as body sizes.
//!
//! **Desync.** Frame heads past the captured bytes of a transfer (`reason="frames"`), a header block not
//! captured whole or that does not decode (`"headers"`): the direction's HPACK state may be wrong from
//! then on, and its later blocks are read only for fields that do not depend on it; a method or path not
//! read is `_OTHER` / `*`, never a guess. A connection with [`MAX_STREAMS_PER_CONNECTION`] streams in
//! flight forgets its oldest (`"streams"`): a response lost with frames would otherwise keep one forever.
//!
//! Metrics: `vigil_http2_desync_total{reason}`.

mod frames;
pub mod grpc;
pub(crate) mod headers;

use std::collections::BTreeMap;

use prometheus::{IntCounterVec, Registry};
use vigil_common::IoEventKind;

use super::ConnectionParser;
use crate::{
    kernel::IoRecord,
    metrics::{Call, Exchange, Measure, Side, counter_vec},
};
use frames::{
    CONTINUATION, DATA, END_HEADERS, END_STREAM, Frame, FrameEvent, FrameReader, HEADERS, PREFACE,
    RST_STREAM, SETTINGS, SETTINGS_ACK, chains_exactly, header_block_fragment,
};
use grpc::Ending;
use headers::{Decoding, Fields, HeaderDecoder};

/// Streams followed per connection at most; past it the oldest is forgotten.
const MAX_STREAMS_PER_CONNECTION: usize = 1024;

/// Why a connection's HTTP/2 state was (partly) lost.
#[derive(Clone, Copy)]
enum Desync {
    Adopted,
    Frames,
    Headers,
    Streams,
}

impl Desync {
    const ALL: [Desync; 4] = [
        Desync::Adopted,
        Desync::Frames,
        Desync::Headers,
        Desync::Streams,
    ];

    fn label(self) -> &'static str {
        match self {
            Desync::Adopted => "adopted",
            Desync::Frames => "frames",
            Desync::Headers => "headers",
            Desync::Streams => "streams",
        }
    }
}

/// The counter of what HTTP/2 following lost.
#[derive(Clone)]
pub struct Http2Metrics {
    desync: IntCounterVec,
}

impl Http2Metrics {
    pub fn register(registry: &Registry) -> Self {
        let metrics = Http2Metrics {
            desync: counter_vec(
                registry,
                "vigil_http2_desync_total",
                "HTTP/2 connection directions whose state vigil lost, by reason: adopted (first seen mid-way), frames (frame heads past the captured bytes of a transfer), headers (a header block not captured whole, or undecodable), streams (a stream forgotten unanswered among too many in flight). Their later requests are counted with the method and path vigil can still read, _OTHER and * otherwise.",
                &["reason"],
            ),
        };
        for reason in Desync::ALL {
            metrics.desync.with_label_values(&[reason.label()]);
        }
        metrics
    }

    fn count(&self, reason: Desync) {
        self.desync.with_label_values(&[reason.label()]).inc();
    }
}

/// How a connection was recognised as HTTP/2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Its first transfer carries the client preface.
    Preface,
    /// Its first transfer is the server's preface: a SETTINGS frame (not an acknowledgement).
    ServerPreface,
    /// It was first seen mid-way, in a transfer of whole frames.
    MidConnection,
}

/// Whether `record` starts HTTP/2, and how.
pub fn starts(record: &IoRecord) -> Option<Start> {
    let data = &record.data[..];
    let preface = match data.len() >= PREFACE.len() {
        true => data.starts_with(PREFACE),
        // The preface written or read in pieces.
        false => data.len() >= 4 && !record.is_truncated() && PREFACE.starts_with(data),
    };
    if preface {
        return Some(Start::Preface);
    }
    if !chains_exactly(data, record.length) {
        return None;
    }
    match is_server_preface(data) {
        true => Some(Start::ServerPreface),
        false => Some(Start::MidConnection),
    }
}

/// One direction of a connection: its framing, its HPACK state, and a header block being put together
/// from CONTINUATION frames.
struct Direction {
    frames: FrameReader,
    headers: HeaderDecoder,
    block: Option<OpenBlock>,
}

/// A header block whose HEADERS frame did not end it.
struct OpenBlock {
    stream: u32,
    end_stream: bool,
    /// `None` once a fragment was not captured whole.
    bytes: Option<Vec<u8>>,
}

/// A stream in flight.
#[derive(Debug)]
struct Stream {
    side: Side,
    started_ns: u64,
    method: &'static str,
    path: Option<String>,
    /// Whether the request or the response said gRPC; `None` while neither was read.
    grpc: Option<bool>,
    status: Option<u16>,
    grpc_status: Option<u8>,
    /// A response header block of it was not read whole.
    unreadable: bool,
    request_body: u64,
    response_body: u64,
}

/// One HTTP/2 connection: per direction its framing and HPACK state, and its streams in flight.
pub struct Http2Connection {
    role: Option<Side>,
    received: Direction,
    sent: Direction,
    /// By stream id: ids grow, so the first is the oldest.
    streams: BTreeMap<u32, Stream>,
    metrics: Http2Metrics,
    /// Frames the transfer being followed completed (kept for its allocation).
    events: Vec<FrameEvent>,
}

impl Http2Connection {
    /// The parser of a connection recognised from `record` ([`starts`]).
    pub fn new(metrics: Http2Metrics, record: &IoRecord, start: Start) -> Self {
        let received = record.kind == IoEventKind::Receive;
        // The side the process is on, and whether the client preface is still to come in the received
        // direction (true) or the sent one (false).
        let (role, client_preface_received) = match start {
            Start::Preface => (Some(side_reading_requests(received)), received),
            // The server wrote its preface first: the client's comes in the other direction.
            Start::ServerPreface => (Some(side_reading_requests(!received)), !received),
            Start::MidConnection => (None, false),
        };
        let reliable = start != Start::MidConnection;
        let direction = |carries_client_preface: bool| Direction {
            frames: FrameReader::at_frame_start(match reliable && carries_client_preface {
                true => PREFACE.len(),
                false => 0,
            }),
            headers: HeaderDecoder::new(reliable),
            block: None,
        };
        if !reliable {
            metrics.count(Desync::Adopted);
        }
        Http2Connection {
            role,
            received: direction(client_preface_received),
            sent: direction(!client_preface_received),
            streams: BTreeMap::new(),
            metrics,
            events: Vec::new(),
        }
    }

    fn direction(&mut self, received: bool) -> &mut Direction {
        match received {
            true => &mut self.received,
            false => &mut self.sent,
        }
    }

    /// Follows one transfer; what it finishes goes to `out`.
    fn follow(&mut self, record: &IoRecord, received: bool, out: &mut Vec<Exchange>) {
        let mut events = std::mem::take(&mut self.events);
        self.direction(received).frames.transfer(
            &record.data,
            record.length,
            record.boot_time_ns,
            &mut events,
        );
        for event in events.drain(..) {
            match event {
                FrameEvent::Lost => {
                    let direction = self.direction(received);
                    direction.block = None;
                    if direction.headers.lose() {
                        self.metrics.count(Desync::Frames);
                    }
                }
                FrameEvent::Frame(frame) => self.frame(received, frame, out),
            }
        }
        self.events = events;
    }

    fn frame(&mut self, received: bool, frame: Frame, out: &mut Vec<Exchange>) {
        let head = frame.head;
        match head.kind {
            HEADERS => {
                let fragment = frame
                    .payload
                    .as_deref()
                    .and_then(|payload| header_block_fragment(head.flags, payload))
                    .map(<[u8]>::to_vec);
                let block = OpenBlock {
                    stream: head.stream,
                    end_stream: head.flags & END_STREAM != 0,
                    bytes: fragment,
                };
                match head.flags & END_HEADERS != 0 {
                    true => self.header_block(received, block, frame.at_ns, out),
                    false => self.direction(received).block = Some(block),
                }
            }
            CONTINUATION => {
                let direction = self.direction(received);
                let Some(mut block) = direction.block.take_if(|block| block.stream == head.stream)
                else {
                    return;
                };
                block.bytes = block.bytes.zip(frame.payload).map(|(mut bytes, more)| {
                    bytes.extend_from_slice(&more);
                    bytes
                });
                match head.flags & END_HEADERS != 0 {
                    true => self.header_block(received, block, frame.at_ns, out),
                    false => direction.block = Some(block),
                }
            }
            DATA => {
                let Some(stream) = self.streams.get_mut(&head.stream) else {
                    return;
                };
                let is_response = stream_response_direction(stream.side) == received;
                match is_response {
                    true => stream.response_body += u64::from(head.length),
                    false => stream.request_body += u64::from(head.length),
                }
                if is_response && head.flags & END_STREAM != 0 {
                    let ending = Ending::WithoutStatus {
                        http_status: stream.status,
                    };
                    self.finish(head.stream, ending, frame.at_ns, out);
                }
            }
            RST_STREAM => self.reset(head.stream, frame.at_ns, out),
            _ => {}
        }
    }

    /// A complete header block of `received`'s direction.
    fn header_block(
        &mut self,
        received: bool,
        mut block: OpenBlock,
        at_ns: u64,
        out: &mut Vec<Exchange>,
    ) {
        let (fields, decoding) = self.direction(received).headers.decode(block.bytes.take());
        if decoding == Decoding::JustLost {
            self.metrics.count(Desync::Headers);
        }
        let Some(stream) = self.streams.get_mut(&block.stream) else {
            self.start_stream(received, block.stream, fields, at_ns);
            return;
        };
        if stream_response_direction(stream.side) != received {
            // Request trailers.
            return;
        }
        // A second response block is trailers: a response whose content-type was not read but that
        // carries grpc-status or ends with trailers is gRPC's (plain HTTP/2 responses rarely carry
        // trailers).
        let trailers = stream.status.is_some();
        if (trailers && block.end_stream || fields.grpc_status.is_some()) && stream.grpc.is_none() {
            stream.grpc = Some(true);
        }
        if stream.status.is_none() {
            stream.status = fields.status;
        }
        if fields.grpc.is_some() && stream.grpc != Some(true) {
            stream.grpc = fields.grpc;
        }
        if fields.grpc_status.is_some() {
            stream.grpc_status = fields.grpc_status;
        }
        if decoding != Decoding::Reliable && fields.grpc_status.is_none() {
            stream.unreadable = true;
        }
        if block.end_stream {
            let ending = match (stream.grpc_status, stream.unreadable) {
                (Some(code), _) => Ending::Status(code),
                (None, true) => Ending::Unreadable,
                (None, false) => Ending::WithoutStatus {
                    http_status: stream.status,
                },
            };
            self.finish(block.stream, ending, at_ns, out);
        }
    }

    /// Request headers of a stream not followed yet (a block without `:method` is the response or
    /// trailers of a stream begun before vigil saw the connection: not followed).
    fn start_stream(&mut self, received: bool, id: u32, fields: Fields, at_ns: u64) {
        let side = side_reading_requests(received);
        let Some(method) = fields.method else {
            return;
        };
        if self.role.is_some_and(|role| role != side) {
            return;
        }
        self.role = Some(side);
        if self.streams.len() >= MAX_STREAMS_PER_CONNECTION {
            self.streams.pop_first();
            self.metrics.count(Desync::Streams);
        }
        self.streams.insert(
            id,
            Stream {
                side,
                started_ns: at_ns,
                method,
                path: fields.path,
                grpc: fields.grpc,
                status: None,
                grpc_status: None,
                unreadable: false,
                request_body: 0,
                response_body: 0,
            },
        );
    }

    /// A stream reset: a gRPC call ends cancelled, an HTTP request ends if its response had started.
    fn reset(&mut self, id: u32, at_ns: u64, out: &mut Vec<Exchange>) {
        match self.streams.get(&id) {
            Some(stream) if stream.grpc == Some(true) || stream.status.is_some() => {
                self.finish(id, Ending::Reset, at_ns, out)
            }
            Some(_) => {
                self.streams.remove(&id);
            }
            None => {}
        }
    }

    /// Ends stream `id`: its exchange goes to `out`.
    fn finish(&mut self, id: u32, ending: Ending, at_ns: u64, out: &mut Vec<Exchange>) {
        let Some(stream) = self.streams.remove(&id) else {
            return;
        };
        out.push(stream.exchange(ending, at_ns));
    }
}

impl Stream {
    fn exchange(self, ending: Ending, at_ns: u64) -> Exchange {
        let seconds = at_ns.saturating_sub(self.started_ns) as f64 / 1e9;
        if self.grpc == Some(true) {
            return Exchange {
                side: self.side,
                call: Call::Rpc {
                    method: grpc::rpc_method(self.path.as_deref()),
                    status: grpc::status_name(ending),
                },
                measure: Measure::Request {
                    seconds,
                    request_body: None,
                    response_body: None,
                },
            };
        }
        Exchange {
            side: self.side,
            call: Call::Http {
                method: self.method,
                target: self.path.unwrap_or_default(),
                status: self.status.unwrap_or(0),
            },
            measure: Measure::Request {
                seconds,
                request_body: Some(self.request_body),
                response_body: Some(self.response_body),
            },
        }
    }
}

/// The side of a process that reads requests (`received`) or writes them.
fn side_reading_requests(received: bool) -> Side {
    match received {
        true => Side::Server,
        false => Side::Client,
    }
}

/// Whether a transfer of whole frames starts with a server's connection preface: a SETTINGS frame
/// that is not an acknowledgement.
fn is_server_preface(data: &[u8]) -> bool {
    data.len() >= 9 && data[3] == SETTINGS && data[4] & SETTINGS_ACK == 0
}

/// Whether a stream's response comes in the received direction (a client's) or the sent one.
fn stream_response_direction(side: Side) -> bool {
    side == Side::Client
}

impl ConnectionParser for Http2Connection {
    fn transfer(&mut self, record: &IoRecord, out: &mut Vec<Exchange>) {
        match record.kind {
            IoEventKind::Receive => self.follow(record, true, out),
            IoEventKind::Send => self.follow(record, false, out),
            IoEventKind::Close => self.close(record.boot_time_ns, out),
        }
    }

    /// Streams in flight end: gRPC calls as closed (`UNAVAILABLE`), HTTP requests whose response had
    /// started with it; the others are not counted.
    fn close(&mut self, at_ns: u64, out: &mut Vec<Exchange>) {
        for (_, stream) in std::mem::take(&mut self.streams) {
            if stream.grpc == Some(true) || stream.status.is_some() {
                out.push(stream.exchange(Ending::Closed, at_ns));
            }
        }
    }

    fn role(&self) -> Option<Side> {
        self.role
    }

    fn in_flight(&self, side: Side) -> usize {
        self.streams
            .values()
            .filter(|stream| stream.side == side)
            .count()
    }

    fn needs_whole_transfers(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod hpack_encoder;
#[cfg(test)]
mod tests;
