//! HTTP/1.x: requests and responses paired per connection from its socket I/O records.
//!
//! Per connection (tgid, fd), a request line read starts a server request and the next status line
//! written ends it; a request line written starts a client request and the next status line read ends
//! it. Requests are paired in order, so keep-alive connections work; interim `1xx` responses (except
//! `101 Switching Protocols`) do not end a request. A head line written in pieces (the peer sent
//! `GET ` and the rest separately) is put together across transfers. Requests pipelined in one read, and
//! responses written together in one write, are each counted as far as the captured bytes show them
//! (`IO_DATA_MAX`); a transfer whose captured bytes end among them is counted in
//! `vigil_http_truncated_pipelines_total` (what lies past them is not seen), and a response whose
//! request was not seen in `vigil_http_unpaired_responses_total`. Connections need no accept or connect event: one that was open before
//! vigil started, or before the process was instrumented, is adopted at its next head.
//!
//! **Duration.** Server: from the return of the read that brought the request line to the return of the
//! write that sent the status line (the response head). Client: from the write of the request line to
//! the read of the status line.
//!
//! **Body sizes.** A body's size is its `Content-Length` when the head declares one; a request without
//! length or transfer coding has none (0); so has the response to `HEAD`, and a `1xx`, `204` or `304`
//! response. A chunked body, or a response delimited by the connection's close, is counted: the bytes
//! transferred after its head (chunk framing included), a request's until its response starts, a
//! response's until its last chunk, the next response on the connection, or the close; such a response
//! body is recorded when it ends. Where the body starts is known only when vigil captured the whole
//! head (the first `IO_DATA_MAX` bytes of a transfer): a body behind a longer head is not observed and
//! counted in `vigil_http_unmeasured_bodies_total`.
//!
//! Metrics: `vigil_http_unpaired_responses_total{side}`, `vigil_http_unmeasured_bodies_total{side}`,
//! `vigil_http_truncated_pipelines_total{side}`.

mod body;
pub(crate) mod parse;

use std::collections::VecDeque;

use prometheus::{IntCounterVec, Registry};
use vigil_common::IoEventKind;

use super::ConnectionParser;
use crate::{
    kernel::IoRecord,
    metrics::{Call, Exchange, Measure, Side, counter_vec},
};
use body::{BodySize, OpenBody};
use parse::{
    Framing, HeadEnd, RequestHead, ends_chunked_body, following_requests, following_responses,
    is_incomplete_head, parse_request, parse_status, response_head_end,
};

/// Requests awaiting their response on one connection, per side; older ones are forgotten past this.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 64;

/// The counters of what HTTP/1 pairing could not measure.
#[derive(Clone)]
pub struct Http1Metrics {
    unpaired: IntCounterVec,
    unmeasured: IntCounterVec,
    truncated: IntCounterVec,
}

impl Http1Metrics {
    pub fn register(registry: &Registry) -> Self {
        let metrics = Http1Metrics {
            unpaired: counter_vec(
                registry,
                "vigil_http_unpaired_responses_total",
                "HTTP responses seen without a request to pair them with (a connection adopted mid-request), by side.",
                &["side"],
            ),
            unmeasured: counter_vec(
                registry,
                "vigil_http_unmeasured_bodies_total",
                "Request and response bodies whose size was not observed: their head was longer than vigil captures of a transfer (1024 bytes), so where the body starts is unknown. By side.",
                &["side"],
            ),
            truncated: counter_vec(
                registry,
                "vigil_http_truncated_pipelines_total",
                "Transfers carrying several requests or responses at once (pipelining) whose captured bytes (the first 1024) end among them: those past the captured bytes are not counted. By side.",
                &["side"],
            ),
        };
        for side in ["server", "client"] {
            metrics.unpaired.with_label_values(&[side]);
            metrics.unmeasured.with_label_values(&[side]);
            metrics.truncated.with_label_values(&[side]);
        }
        metrics
    }
}

/// Whether `record` starts HTTP/1: a request or status line, or what can only be the start of one.
pub fn starts(record: &IoRecord) -> bool {
    let (data, truncated) = (&record.data[..], record.is_truncated());
    parse_request(data, truncated).is_some()
        || parse_status(data).is_some()
        || (!truncated && is_incomplete_head(data))
}

/// A request waiting for its response.
#[derive(Debug)]
struct InFlight {
    method: &'static str,
    target: String,
    started_ns: u64,
    body: BodySize,
}

/// One HTTP/1 connection: its requests in flight, per side; per direction, the start of a head line
/// still incomplete and the response body being counted (sent: server side; received: client side);
/// its role.
pub struct Http1Connection {
    /// The side of its first request: `Server` when the process read it, `Client` when it wrote it.
    role: Option<Side>,
    server: VecDeque<InFlight>,
    client: VecDeque<InFlight>,
    received_piece: Option<HeadPiece>,
    sent_piece: Option<HeadPiece>,
    received_body: Option<OpenBody>,
    sent_body: Option<OpenBody>,
    metrics: Http1Metrics,
}

impl Http1Connection {
    fn piece(&mut self, received: bool) -> &mut Option<HeadPiece> {
        match received {
            true => &mut self.received_piece,
            false => &mut self.sent_piece,
        }
    }

    fn open_body(&mut self, received: bool) -> &mut Option<OpenBody> {
        match received {
            true => &mut self.received_body,
            false => &mut self.sent_body,
        }
    }

    fn queue(&mut self, side: Side) -> &mut VecDeque<InFlight> {
        match side {
            Side::Server => &mut self.server,
            Side::Client => &mut self.client,
        }
    }
}

/// The start of a request or status line whose rest has not been transferred yet.
#[derive(Debug)]
struct HeadPiece {
    bytes: Vec<u8>,
    at_ns: u64,
}

/// What the start of a transfer is.
enum Head {
    Request(RequestHead),
    Status(u16),
}

/// What a transfer is to its connection.
enum Transfer {
    /// It starts a head (possibly completing pieces transferred before).
    Head {
        head: Head,
        started_ns: u64,
        /// Where the head ends, when captured whole.
        end: Option<HeadEnd>,
        /// Bytes of the head carried by earlier transfers (pieces).
        earlier: u64,
    },
    /// The start of a head line, kept until the rest comes.
    Piece,
    /// Anything else: body bytes, or bytes vigil does not follow.
    Other,
}

impl Http1Connection {
    pub fn new(metrics: Http1Metrics) -> Self {
        Http1Connection {
            role: None,
            server: VecDeque::new(),
            client: VecDeque::new(),
            received_piece: None,
            sent_piece: None,
            received_body: None,
            sent_body: None,
            metrics,
        }
    }

    /// Follows one transfer of the connection; what it finishes goes to `out`.
    fn follow(&mut self, record: &IoRecord, received: bool, out: &mut Vec<Exchange>) {
        {
            let (head, started_ns, end, earlier) = match self.recognise(received, record) {
                Transfer::Head {
                    head,
                    started_ns,
                    end,
                    earlier,
                } => (head, started_ns, end, earlier),
                Transfer::Piece => return,
                Transfer::Other => {
                    self.count_body(received, record, out);
                    return;
                }
            };
            // The message's bytes after its head, in this transfer.
            let after_head = end.map_or(0, |end| {
                (earlier + record.length).saturating_sub(end.length as u64)
            });
            match (head, received) {
                (Head::Request(head), true) => {
                    // Only a head that starts this transfer can have others after it here.
                    let following = match earlier {
                        0 => {
                            let (following, cut) =
                                following_requests(&record.data, &head, record.is_truncated());
                            if cut {
                                self.truncated(Side::Server);
                            }
                            following
                        }
                        _ => Vec::new(),
                    };
                    let body = BodySize::of_request(end, after_head);
                    self.start(Side::Server, head, started_ns, body);
                    for pipelined in following {
                        let end = pipelined.head.end;
                        let after_head = pipelined.bytes_after_head(end, record.length);
                        let body = BodySize::of_request(end, after_head);
                        self.start(Side::Server, pipelined.head, started_ns, body);
                    }
                }
                (Head::Request(head), false) => {
                    let body = BodySize::of_request(end, after_head);
                    self.start(Side::Client, head, started_ns, body);
                }
                (Head::Status(status), received) => {
                    let side = match received {
                        true => Side::Client,
                        false => Side::Server,
                    };
                    let ends_body = !record.is_truncated() && ends_chunked_body(&record.data);
                    // Responses written (or read) together: each answers the next request. Only a
                    // head that starts this transfer can have others after it here.
                    let (following, cut) = match earlier {
                        0 => following_responses(&record.data, end, record.is_truncated()),
                        _ => (Vec::new(), false),
                    };
                    let heads = following.into_iter().map(|pipelined| {
                        let (status, end) = pipelined.head;
                        (status, end, pipelined.bytes_after_head(end, record.length))
                    });
                    for (status, end, after_head) in
                        std::iter::once((status, end, after_head)).chain(heads)
                    {
                        let response = Response {
                            status,
                            end,
                            after_head,
                            ends_body,
                            at_ns: record.boot_time_ns,
                        };
                        self.finish(side, response, out);
                    }
                    if cut {
                        self.truncated(side);
                    }
                }
            }
        }
    }

    /// What `record` is to its connection: a head (joined to the piece of a head line the previous
    /// transfer in this direction left, if any), such a piece, or other bytes.
    fn recognise(&mut self, received: bool, record: &IoRecord) -> Transfer {
        let (data, truncated, at_ns) =
            (&record.data[..], record.is_truncated(), record.boot_time_ns);
        let classify = |bytes: &[u8]| {
            if let Some(head) = parse_request(bytes, truncated) {
                let end = head.end;
                return Some((Head::Request(head), end));
            }
            parse_status(bytes).map(|status| (Head::Status(status), response_head_end(bytes)))
        };
        // A transfer that is a head by itself wins over joining it to an earlier piece (which was then
        // something else, a body that happened to look like a head).
        let piece = self.piece(received).take();
        if let Some((head, end)) = classify(data) {
            return Transfer::Head {
                head,
                started_ns: at_ns,
                end,
                earlier: 0,
            };
        }
        if let Some(piece) = piece {
            let earlier = piece.bytes.len() as u64;
            let mut joined = piece.bytes;
            joined.extend_from_slice(data);
            if let Some((head, end)) = classify(&joined) {
                return Transfer::Head {
                    head,
                    started_ns: piece.at_ns,
                    end,
                    earlier,
                };
            }
            if !truncated && is_incomplete_head(&joined) {
                *self.piece(received) = Some(HeadPiece {
                    bytes: joined,
                    at_ns: piece.at_ns,
                });
                return Transfer::Piece;
            }
        }
        if !truncated && is_incomplete_head(data) {
            *self.piece(received) = Some(HeadPiece {
                bytes: data.to_vec(),
                at_ns,
            });
            return Transfer::Piece;
        }
        Transfer::Other
    }

    /// A transfer of `side` cut by the capture among pipelined messages.
    fn truncated(&self, side: Side) {
        self.metrics
            .truncated
            .with_label_values(&[side.label()])
            .inc();
    }

    fn start(&mut self, side: Side, head: RequestHead, now_ns: u64, body: BodySize) {
        self.role.get_or_insert(side);
        let queue = self.queue(side);
        if queue.len() == MAX_IN_FLIGHT_PER_CONNECTION {
            queue.pop_front();
        }
        queue.push_back(InFlight {
            method: head.method,
            target: head.target,
            started_ns: now_ns,
            body,
        });
    }

    /// A response head on `side`: ends the request it answers (and the body counted of the response
    /// before it).
    fn finish(&mut self, side: Side, response: Response, out: &mut Vec<Exchange>) {
        let status = response.status;
        // An interim response: the request goes on (101 ends HTTP/1 on the connection, so it counts).
        if (100..200).contains(&status) && status != 101 {
            return;
        }
        let sent = side == Side::Server;
        self.end_body(!sent, out);
        let Some(request) = self.queue(side).pop_front() else {
            self.metrics
                .unpaired
                .with_label_values(&[side.label()])
                .inc();
            return;
        };
        let request_body = match request.body {
            BodySize::Known(bytes) | BodySize::Counting(bytes) => Some(bytes),
            BodySize::Unknown => None,
        };
        let bodiless = request.method == "HEAD" || matches!(status, 101 | 204 | 304);
        let framing = response.end.map(|end| end.framing);
        let response_body = match framing {
            _ if bodiless => Some(0),
            Some(Framing::Length(length)) => Some(length),
            Some(Framing::Chunked) if response.ends_body => Some(response.after_head),
            Some(framing) => {
                // Counted from here until the body ends; recorded then.
                *self.open_body(!sent) = Some(OpenBody {
                    side,
                    method: request.method,
                    target: request.target.clone(),
                    status,
                    chunked: framing == Framing::Chunked,
                    bytes: response.after_head,
                });
                None
            }
            None => None,
        };
        let unmeasured =
            u64::from(request_body.is_none()) + u64::from(framing.is_none() && !bodiless);
        if unmeasured > 0 {
            self.metrics
                .unmeasured
                .with_label_values(&[side.label()])
                .inc_by(unmeasured);
        }
        out.push(Exchange {
            side,
            call: Call::Http {
                method: request.method,
                target: request.target,
                status,
            },
            measure: Measure::Request {
                seconds: response.at_ns.saturating_sub(request.started_ns) as f64 / 1e9,
                request_body,
                response_body,
            },
        });
    }
}

impl ConnectionParser for Http1Connection {
    fn transfer(&mut self, record: &IoRecord, out: &mut Vec<Exchange>) {
        match record.kind {
            IoEventKind::Receive => self.follow(record, true, out),
            IoEventKind::Send => self.follow(record, false, out),
            IoEventKind::Close => self.close(record.boot_time_ns, out),
        }
    }

    /// The bodies it was counting end.
    fn close(&mut self, _at_ns: u64, out: &mut Vec<Exchange>) {
        self.end_body(true, out);
        self.end_body(false, out);
    }

    fn role(&self) -> Option<Side> {
        self.role
    }

    fn in_flight(&self, side: Side) -> usize {
        match side {
            Side::Server => self.server.len(),
            Side::Client => self.client.len(),
        }
    }
}

/// A response head as captured.
struct Response {
    status: u16,
    /// Where the head ends, when captured whole.
    end: Option<HeadEnd>,
    /// The response's bytes after its head, in the transfer that carried the head.
    after_head: u64,
    /// Whether that transfer ends a chunked body (its last chunk is there).
    ends_body: bool,
    at_ns: u64,
}
