//! What the metrics stage records: a finished exchange (a request and its response, or a response body
//! that ended later), as capture's protocol parsers yield them.

/// The side of an exchange the captured process was on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// It read the request and wrote the response.
    Server,
    /// It wrote the request and read the response.
    Client,
}

impl Side {
    /// The `side` label value.
    pub fn label(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }
}

/// A completed request, or the end of a response body counted after it.
#[derive(Debug)]
pub struct Exchange {
    pub side: Side,
    pub method: &'static str,
    /// The request target as sent (query included); the route is derived from it when recorded.
    pub target: String,
    pub status: u16,
    pub measure: Measure,
}

/// What an exchange measured.
#[derive(Debug)]
pub enum Measure {
    /// A request answered: its duration, and its bodies' sizes known by then.
    Request {
        seconds: f64,
        request_body: Option<u64>,
        response_body: Option<u64>,
    },
    /// A response body that ended after its head was recorded.
    ResponseBody(u64),
}
