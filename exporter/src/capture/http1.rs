//! Recognising HTTP/1.x from the first bytes of a transfer: a request line (`GET /path HTTP/1.1`) or a
//! status line (`HTTP/1.1 200 OK`). Only the start of each read or write is seen (`IO_DATA_MAX` bytes),
//! which is enough for both lines; headers and bodies are not needed to count and time requests.

/// The request methods exported by name; any other is `_OTHER` (OpenTelemetry semantic conventions).
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The start of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// A known method, or `_OTHER`.
    pub method: &'static str,
    /// The request target as sent (possibly cut at the captured length), query included.
    pub target: String,
}

/// Parses the start of `data` as a request line. A request line cut by the capture limit still counts
/// when it starts with a known method; an unknown method needs the whole line with its `HTTP/1.x`, so
/// that arbitrary bytes are not taken for requests.
pub fn parse_request(data: &[u8]) -> Option<RequestHead> {
    let mut headers = [httparse::EMPTY_HEADER; 0];
    let mut request = httparse::Request::new(&mut headers);
    // `TooManyHeaders` still fills in the request line.
    let _ = request.parse(data);
    if let (Some(method), Some(target), Some(_)) = (request.method, request.path, request.version) {
        return Some(RequestHead {
            method: known_method(method),
            target: target.to_owned(),
        });
    }
    let line = data.split(|&byte| byte == b'\r').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let (method, target) = text.split_once(' ')?;
    let method = KNOWN_METHODS.iter().find(|known| **known == method)?;
    target.starts_with('/').then(|| RequestHead {
        method,
        target: target.split(' ').next().unwrap_or(target).to_owned(),
    })
}

/// The status code of `data` when it starts with an HTTP/1.x status line.
pub fn parse_status(data: &[u8]) -> Option<u16> {
    let rest = data
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| data.strip_prefix(b"HTTP/1.0 "))?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (100..=599).contains(&status).then_some(status)
}

fn known_method(method: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|known| **known == method)
        .copied()
        .unwrap_or("_OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_recognised() {
        let head = parse_request(b"GET /users/42?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/users/42?x=1");
        let head = parse_request(b"POST /a HTTP/1.0\r\n").unwrap();
        assert_eq!(head.method, "POST");
    }

    #[test]
    fn unknown_methods_are_other_but_need_a_whole_line() {
        assert_eq!(
            parse_request(b"PURGE /cache HTTP/1.1\r\n\r\n")
                .unwrap()
                .method,
            "_OTHER"
        );
        assert_eq!(parse_request(b"PURGE /cache"), None);
    }

    #[test]
    fn a_request_line_cut_by_the_capture_limit_still_counts() {
        let head = parse_request(b"GET /very/long/path/that/goes/on").unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/very/long/path/that/goes/on");
    }

    #[test]
    fn other_bytes_are_not_requests() {
        for data in [
            &b"{\"json\": true}"[..],
            b"HTTP/1.1 200 OK\r\n",
            b"\x16\x03\x01\x02\x00",
            b"GETTER /x",
            b"",
        ] {
            assert_eq!(parse_request(data), None, "{data:?}");
        }
    }

    #[test]
    fn status_lines_give_their_code() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 404 Not Found\r\n"), Some(404));
        assert_eq!(parse_status(b"HTTP/1.1 100 Continue\r\n\r\n"), Some(100));
        assert_eq!(parse_status(b"HTTP/1.1 2x0 OK"), None);
        assert_eq!(parse_status(b"HTTP/2 200"), None);
        assert_eq!(parse_status(b"GET / HTTP/1.1"), None);
    }
}
