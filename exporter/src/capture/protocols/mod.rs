//! The protocols capture parses. A connection's protocol is recognised from the first transfer that
//! starts one ([`Protocols::recognise`]); from then on its records are fed to that protocol's parser
//! ([`ConnectionParser`]), which yields finished exchanges for the metrics stage. A connection whose
//! bytes start no protocol vigil knows is not followed.
//!
//! Protocols: HTTP/1.x ([`http1`]). A new protocol is a new module here and one line in
//! [`Protocols::recognise`].

pub mod http1;

use prometheus::Registry;

use crate::{
    kernel::IoRecord,
    metrics::{Exchange, Side},
};

/// One connection's parser: follows its transfers in order and yields what they finish.
pub trait ConnectionParser: Send {
    /// Follows one record of the connection (a transfer, or its close); finished exchanges go to
    /// `out`.
    fn transfer(&mut self, record: &IoRecord, out: &mut Vec<Exchange>);
    /// The connection closed: what ends with it goes to `out`.
    fn close(&mut self, out: &mut Vec<Exchange>);
    /// The side of its first request, once known.
    fn role(&self) -> Option<Side>;
    /// Requests of `side` waiting for their response.
    fn in_flight(&self, side: Side) -> usize;
}

/// The protocols vigil parses, with their metric families.
#[derive(Clone)]
pub struct Protocols {
    http1: http1::Http1Metrics,
}

impl Protocols {
    pub fn register(registry: &Registry) -> Self {
        Protocols {
            http1: http1::Http1Metrics::register(registry),
        }
    }

    /// A parser for the connection whose `record` starts a protocol vigil parses; `None` otherwise.
    pub fn recognise(&self, record: &IoRecord) -> Option<Box<dyn ConnectionParser>> {
        if http1::starts(record) {
            return Some(Box::new(http1::Http1Connection::new(self.http1.clone())));
        }
        None
    }
}
