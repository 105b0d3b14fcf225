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

/// Parses the start of `data` as a request line. When the capture limit cut the transfer (`truncated`),
/// a line that starts with a known method and a path still counts; otherwise (and always for an unknown
/// method) the whole line with its `HTTP/1.x` is needed, so that arbitrary bytes are not taken for
/// requests.
pub fn parse_request(data: &[u8], truncated: bool) -> Option<RequestHead> {
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
    if !truncated {
        return None;
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

/// The requests pipelined after the first one in `data` (several requests sent in one transfer), as far
/// as the captured bytes show them: each head must be complete, and a body is skipped by its
/// `Content-Length` (a chunked body ends the scan).
pub fn following_requests(data: &[u8], truncated: bool) -> Vec<RequestHead> {
    let mut following = Vec::new();
    let mut offset = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(head_length)) = request.parse(&data[offset..]) else {
            return following;
        };
        let mut body_length = 0;
        for header in request.headers.iter() {
            if header.name.eq_ignore_ascii_case("transfer-encoding") {
                return following;
            }
            if header.name.eq_ignore_ascii_case("content-length") {
                let Some(length) = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|value| value.trim().parse::<usize>().ok())
                else {
                    return following;
                };
                body_length = length;
            }
        }
        offset += head_length + body_length;
        if offset >= data.len() {
            return following;
        }
        match parse_request(&data[offset..], truncated) {
            Some(head) => following.push(head),
            None => return following,
        }
    }
}

/// Whether `data` may be the start of a request or status line whose rest comes in the next transfer
/// (the peer wrote the head in pieces): no line end yet, and a method-like word or a prefix of
/// `HTTP/1.x NNN`.
pub fn is_incomplete_head(data: &[u8]) -> bool {
    if data.is_empty() || data.len() > MAX_HEAD_PIECE || data.contains(&b'\n') {
        return false;
    }
    if data.starts_with(b"HTTP/1.") || b"HTTP/1.".starts_with(data) {
        return parse_status(data).is_none();
    }
    let method_end = data
        .iter()
        .position(|&byte| byte == b' ')
        .unwrap_or(data.len());
    let rest = &data[method_end..];
    (1..=16).contains(&method_end)
        && data[..method_end].iter().all(u8::is_ascii_uppercase)
        && rest
            .iter()
            .all(|&byte| byte.is_ascii_graphic() || byte == b' ')
}

/// The longest head piece kept while waiting for the rest of its line.
pub const MAX_HEAD_PIECE: usize = 512;

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
        let head = parse_request(b"GET /users/42?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", false).unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/users/42?x=1");
        let head = parse_request(b"POST /a HTTP/1.0\r\n", false).unwrap();
        assert_eq!(head.method, "POST");
    }

    #[test]
    fn unknown_methods_are_other_but_need_a_whole_line() {
        assert_eq!(
            parse_request(b"PURGE /cache HTTP/1.1\r\n\r\n", false)
                .unwrap()
                .method,
            "_OTHER"
        );
        assert_eq!(parse_request(b"PURGE /cache", true), None);
    }

    #[test]
    fn a_request_line_cut_by_the_capture_limit_still_counts() {
        let head = parse_request(b"GET /very/long/path/that/goes/on", true).unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/very/long/path/that/goes/on");
        // The same bytes as a whole read are half a line: the rest comes next.
        assert_eq!(
            parse_request(b"GET /very/long/path/that/goes/on", false),
            None
        );
        assert!(is_incomplete_head(b"GET /very/long/path/that/goes/on"));
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
            assert_eq!(parse_request(data, true), None, "{data:?}");
        }
    }

    #[test]
    fn pipelined_requests_are_found_after_the_first() {
        let data = b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\n\r\nGET /d";
        let targets: Vec<String> = following_requests(data, true)
            .into_iter()
            .map(|head| head.target)
            .collect();
        // /d is cut by the capture limit: it still counts, the transfer being truncated.
        assert_eq!(targets, ["/b", "/c", "/d"]);
        assert!(following_requests(b"GET /a HTTP/1.1\r\n\r\n", false).is_empty());
        // A head the capture cut, or a chunked body, ends the scan.
        assert!(following_requests(b"GET /a HTTP/1.1\r\nHost: x", true).is_empty());
        assert!(
            following_requests(
                b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
                false
            )
            .is_empty()
        );
    }

    #[test]
    fn pieces_of_heads_are_told_from_other_bytes() {
        for piece in [&b"GET"[..], b"GET ", b"POST /upl", b"HTTP/1", b"HTTP/1.1 2"] {
            assert!(is_incomplete_head(piece), "{piece:?}");
        }
        for other in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"HTTP/1.1 200 OK",
            b"{\"a\": 1}",
            b"lower case",
            b"\x00\x01",
            b"",
        ] {
            assert!(!is_incomplete_head(other), "{other:?}");
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
