//! What the metrics stage records: a finished exchange (an HTTP request and its response, a gRPC call,
//! or a response body that ended later), as capture's protocol parsers yield them.

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
    pub call: Call,
    pub measure: Measure,
}

/// What was asked and answered.
#[derive(Debug)]
pub enum Call {
    /// An HTTP request (HTTP/1.x, or HTTP/2 that is not gRPC): `http_*` families.
    Http {
        /// A known method, or `_OTHER` (also when vigil could not read it).
        method: &'static str,
        /// The request target as sent (query included); the route is derived from it when recorded.
        /// Empty when vigil could not read it (the route is then [`UNKNOWN_ROUTE`]).
        target: String,
        /// 0 when vigil could not read it.
        status: u16,
    },
    /// A gRPC call: `rpc_*` families.
    Rpc {
        /// `package.Service/Method`, or `_OTHER` when vigil could not read it.
        method: String,
        /// The status name (`OK`, `NOT_FOUND`, …).
        status: &'static str,
    },
}

/// The `http_route` of a request whose target vigil could not read.
pub const UNKNOWN_ROUTE: &str = "*";

/// The `http_request_method` / `rpc_method` of a request whose method vigil could not read (OpenTelemetry
/// semantic conventions' value for a method the instrumentation does not know).
pub const UNKNOWN_METHOD: &str = "_OTHER";

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
