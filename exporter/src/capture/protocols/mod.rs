//! The protocols capture parses. A connection's protocol is recognised from the first transfer that
//! starts one ([`Protocols::recognise`]); from then on its records are fed to that protocol's parser
//! ([`ConnectionParser`]), which yields finished exchanges for the metrics stage. A connection whose
//! bytes start no protocol vigil knows is not followed.
//!
//! Protocols: HTTP/2 and gRPC over it ([`http2`]), HTTP/1.x ([`http1`]). A new protocol is a new
//! module here and one line in [`Protocols::recognise`].

pub mod http1;
pub mod http2;

use prometheus::Registry;

use crate::{
    kernel::IoRecord,
    metrics::{Exchange, Side, UNKNOWN_METHOD},
};

/// The request methods exported by name; any other is `_OTHER` (OpenTelemetry semantic conventions).
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// `method` as exported: a known method by name, any other `_OTHER`.
fn known_method(method: &[u8]) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|known| known.as_bytes() == method)
        .copied()
        .unwrap_or(UNKNOWN_METHOD)
}

/// One connection's parser: follows its transfers in order and yields what they finish.
pub trait ConnectionParser: Send {
    /// Follows one record of the connection (a transfer, or its close); finished exchanges go to
    /// `out`.
    fn transfer(&mut self, record: &IoRecord, out: &mut Vec<Exchange>);
    /// The connection closed at `at_ns` (boot clock): what ends with it goes to `out`.
    fn close(&mut self, at_ns: u64, out: &mut Vec<Exchange>);
    /// The side of its first request, once known.
    fn role(&self) -> Option<Side>;
    /// Requests of `side` waiting for their response.
    fn in_flight(&self, side: Side) -> usize;
    /// Whether the protocol needs every byte of its transfers that the kernel can copy (HTTP/2: every
    /// frame head), rather than their start.
    fn needs_whole_transfers(&self) -> bool {
        false
    }
}

/// The protocols vigil parses, with their metric families.
#[derive(Clone)]
pub struct Protocols {
    http1: http1::Http1Metrics,
    http2: http2::Http2Metrics,
}

impl Protocols {
    pub fn register(registry: &Registry) -> Self {
        Protocols {
            http1: http1::Http1Metrics::register(registry),
            http2: http2::Http2Metrics::register(registry),
        }
    }

    /// A parser for the connection whose `record` starts a protocol vigil parses; `None` otherwise.
    pub fn recognise(&self, record: &IoRecord) -> Option<Box<dyn ConnectionParser>> {
        if let Some(start) = http2::starts(record) {
            let parser = http2::Http2Connection::new(self.http2.clone(), record, start);
            return Some(Box::new(parser));
        }
        if http1::starts(record) {
            return Some(Box::new(http1::Http1Connection::new(self.http1.clone())));
        }
        None
    }
}
