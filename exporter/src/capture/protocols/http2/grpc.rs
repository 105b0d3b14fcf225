//! gRPC over HTTP/2: the status a call ended with, by name, as `rpc_response_status_code` carries it
//! (OpenTelemetry semantic conventions 1.41), and the documented fallbacks for a call whose
//! `grpc-status` vigil did not see.

use super::headers::is_plausible_path;
use crate::metrics::UNKNOWN_METHOD;

/// Status names by code (`grpc/status.h`).
const STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The status of a call whose `grpc-status` was sent but could not be read (its header block referred to
/// HPACK state vigil lost): neither success nor a named failure.
pub const UNREADABLE_STATUS: &str = "_OTHER";

/// How a call ended, as far as vigil saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Its trailers (or a trailers-only response) carried `grpc-status`.
    Status(u8),
    /// Its response ended with a header block vigil could not read whole.
    Unreadable,
    /// Its response ended (`END_STREAM`) without `grpc-status`: the HTTP status says what happened.
    WithoutStatus { http_status: Option<u16> },
    /// Its stream was reset (`RST_STREAM`) before a status.
    Reset,
    /// Its connection closed before a status.
    Closed,
}

/// The `rpc_response_status_code` of a call that ended so.
///
/// Without `grpc-status`, the fallbacks are gRPC's own rules for what a client reports: an HTTP status
/// other than 200 maps as in gRPC's "HTTP to gRPC status code mapping" (400 `INTERNAL`, 401
/// `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`, 404 `UNIMPLEMENTED`, 429/502/503/504 `UNAVAILABLE`,
/// others `UNKNOWN`), a 200 without status is `UNKNOWN`, a reset stream `CANCELLED`, a closed connection
/// `UNAVAILABLE`; an unreadable status is [`UNREADABLE_STATUS`].
pub fn status_name(ending: Ending) -> &'static str {
    match ending {
        Ending::Status(code) => STATUS_NAMES
            .get(usize::from(code))
            .copied()
            .unwrap_or("UNKNOWN"),
        Ending::Unreadable => UNREADABLE_STATUS,
        Ending::WithoutStatus { http_status } => match http_status {
            Some(400) => "INTERNAL",
            Some(401) => "UNAUTHENTICATED",
            Some(403) => "PERMISSION_DENIED",
            Some(404) => "UNIMPLEMENTED",
            Some(429 | 502 | 503 | 504) => "UNAVAILABLE",
            _ => "UNKNOWN",
        },
        Ending::Reset => "CANCELLED",
        Ending::Closed => "UNAVAILABLE",
    }
}

/// The `rpc_method` of a call to `path` (`/package.Service/Method` → `package.Service/Method`), or
/// `_OTHER` when the path was not read or is not one.
pub fn rpc_method(path: Option<&str>) -> String {
    path.filter(|path| is_plausible_path(path) && !path.contains('?'))
        .and_then(|path| path.strip_prefix('/'))
        .filter(|method| method.split('/').count() == 2 && !method.ends_with('/'))
        .unwrap_or(UNKNOWN_METHOD)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_named_and_fallbacks_follow_grpc_rules() {
        assert_eq!(status_name(Ending::Status(0)), "OK");
        assert_eq!(status_name(Ending::Status(5)), "NOT_FOUND");
        assert_eq!(status_name(Ending::Status(13)), "INTERNAL");
        assert_eq!(status_name(Ending::Status(16)), "UNAUTHENTICATED");
        assert_eq!(status_name(Ending::Status(99)), "UNKNOWN");
        assert_eq!(
            status_name(Ending::WithoutStatus {
                http_status: Some(503)
            }),
            "UNAVAILABLE"
        );
        assert_eq!(
            status_name(Ending::WithoutStatus {
                http_status: Some(200)
            }),
            "UNKNOWN"
        );
        assert_eq!(status_name(Ending::Reset), "CANCELLED");
        assert_eq!(status_name(Ending::Closed), "UNAVAILABLE");
        assert_eq!(status_name(Ending::Unreadable), "_OTHER");
    }

    #[test]
    fn methods_come_from_plausible_paths_only() {
        assert_eq!(rpc_method(Some("/shop.Cart/Add")), "shop.Cart/Add");
        assert_eq!(rpc_method(Some("/shop.Cart")), "_OTHER");
        assert_eq!(rpc_method(Some("/a/b/c")), "_OTHER");
        assert_eq!(rpc_method(Some("/a b/c")), "_OTHER");
        assert_eq!(rpc_method(None), "_OTHER");
    }
}
