//! HTTP/1 body sizes: a body's size is its `Content-Length` when the head declares one; a chunked body,
//! or a response delimited by the connection's close, is counted from the bytes transferred after its
//! head (see the module header of [`super`]).

use super::{
    Http1Connection, InFlight,
    parse::{Framing, HeadEnd, ends_chunked_body},
};
use crate::{
    kernel::IoRecord,
    metrics::{Call, Exchange, Measure, Side},
};

/// What is known of a request body's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodySize {
    /// From the head: its `Content-Length`, or 0 without length or transfer coding.
    Known(u64),
    /// Chunked: the bytes transferred after the head so far.
    Counting(u64),
    /// The head was longer than what vigil captured of it.
    Unknown,
}

impl BodySize {
    /// A request's, from the end of its head and the bytes after it in the same transfer.
    pub(super) fn of_request(end: Option<HeadEnd>, bytes_after_head: u64) -> BodySize {
        match end.map(|end| end.framing) {
            Some(Framing::Length(length)) => BodySize::Known(length),
            Some(Framing::Chunked | Framing::UntilClose) => BodySize::Counting(bytes_after_head),
            None => BodySize::Unknown,
        }
    }
}

/// A response whose body ends with its last chunk or the connection's close, counted until then.
#[derive(Debug)]
pub(super) struct OpenBody {
    pub(super) side: Side,
    pub(super) method: &'static str,
    pub(super) target: String,
    pub(super) status: u16,
    pub(super) chunked: bool,
    pub(super) bytes: u64,
}

impl Http1Connection {
    /// Bytes that are not a head: part of the response body being counted in their direction, or of the
    /// chunked body of the last request.
    pub(super) fn count_body(
        &mut self,
        received: bool,
        record: &IoRecord,
        out: &mut Vec<Exchange>,
    ) {
        if let Some(open) = self.open_body(received) {
            open.bytes += record.length;
            if open.chunked && !record.is_truncated() && ends_chunked_body(&record.data) {
                self.end_body(received, out);
            }
            return;
        }
        let side = match received {
            true => Side::Server,
            false => Side::Client,
        };
        if let Some(InFlight {
            body: BodySize::Counting(bytes),
            ..
        }) = self.queue(side).back_mut()
        {
            *bytes += record.length;
        }
    }

    /// Records the size of the response body counted in a direction of a connection, if one is.
    pub(super) fn end_body(&mut self, received: bool, out: &mut Vec<Exchange>) {
        let Some(open) = self.open_body(received).take() else {
            return;
        };
        out.push(Exchange {
            side: open.side,
            call: Call::Http {
                method: open.method,
                target: open.target,
                status: open.status,
            },
            measure: Measure::ResponseBody(open.bytes),
        });
    }
}
