//! Recognising HTTP/1.x from the first bytes of a transfer: a request line (`GET /path HTTP/1.1`) or a
//! status line (`HTTP/1.1 200 OK`), and, when the whole head is among them, where it ends and how the
//! body after it is delimited. Only the start of each read or write is seen (`IO_DATA_MAX` bytes): the
//! lines are enough to count and time requests, the rest of the head gives the body sizes.

use super::super::known_method;
use crate::metrics::UNKNOWN_METHOD;

/// The start of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// A known method, or `_OTHER`.
    pub method: &'static str,
    /// The request target as sent (possibly cut at the captured length), query included.
    pub target: String,
    /// Where the head ends and how its body is delimited, when the head was captured whole (and its
    /// `Content-Length`, if any, is a number).
    pub end: Option<HeadEnd>,
}

/// Parses the start of `data` as a request line, and the rest of the head when it is all there. When
/// the capture limit cut the transfer (`truncated`), a line that starts with a known method and a path
/// still counts; otherwise (and always for an unknown method) the whole line with its `HTTP/1.x` is
/// needed, so that arbitrary bytes are not taken for requests.
pub fn parse_request(data: &[u8], truncated: bool) -> Option<RequestHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    // A head that is cut, or has too many or malformed headers, still fills in the request line.
    let parsed = request.parse(data);
    if let (Some(method), Some(target), Some(_)) = (request.method, request.path, request.version) {
        let end = match parsed {
            Ok(httparse::Status::Complete(length)) => framing(request.headers, Framing::Length(0))
                .map(|framing| HeadEnd { length, framing }),
            _ => None,
        };
        return Some(RequestHead {
            method: known_method(method.as_bytes()),
            target: target.to_owned(),
            end,
        });
    }
    if !truncated {
        return None;
    }
    let line = data.split(|&byte| byte == b'\r').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let (method, target) = text.split_once(' ')?;
    let method = known_method(method.as_bytes());
    (method != UNKNOWN_METHOD && target.starts_with('/')).then(|| RequestHead {
        method,
        target: target.split(' ').next().unwrap_or(target).to_owned(),
        end: None,
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

/// How the body after a head is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` bytes (0 for a request that declares neither length nor transfer coding).
    Length(u64),
    /// A transfer coding (`chunked`): the body ends with its last chunk.
    Chunked,
    /// A response with neither: the body ends when the connection closes.
    UntilClose,
}

/// A head captured whole: its length in bytes (through the blank line) and its body's framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadEnd {
    pub length: usize,
    pub framing: Framing,
}

/// Headers parsed per head; a head with more is treated as not captured whole.
const MAX_HEADERS: usize = 64;

/// The end and body framing of the response head at the start of `data`, from its headers only (the
/// caller knows whether the request was `HEAD` or the status has no body); `None` unless `data` holds
/// the whole head.
pub fn response_head_end(data: &[u8]) -> Option<HeadEnd> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(length) = response.parse(data).ok()? else {
        return None;
    };
    let framing = framing(response.headers, Framing::UntilClose)?;
    Some(HeadEnd { length, framing })
}

/// A transfer coding wins over `Content-Length`; neither gives `otherwise`.
fn framing(headers: &[httparse::Header], otherwise: Framing) -> Option<Framing> {
    let mut framing = otherwise;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Some(Framing::Chunked);
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            let length = std::str::from_utf8(header.value)
                .ok()?
                .trim()
                .parse()
                .ok()?;
            framing = Framing::Length(length);
        }
    }
    Some(framing)
}

/// Whether a chunked body ends in `data` (the last bytes of a transfer): its last, empty chunk.
pub fn ends_chunked_body(data: &[u8]) -> bool {
    data.ends_with(b"0\r\n\r\n")
}

/// A message pipelined after the first one of a transfer: its head, and where the head starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pipelined<Head> {
    pub head: Head,
    pub offset: usize,
}

impl<Head> Pipelined<Head> {
    /// The bytes of its transfer (`transfer_length` long) after its head, which ends at `end`.
    pub fn bytes_after_head(&self, end: Option<HeadEnd>, transfer_length: u64) -> u64 {
        end.map_or(0, |end| {
            transfer_length.saturating_sub((self.offset + end.length) as u64)
        })
    }
}

/// The messages after the first one of `data` (several sent in one transfer), as far as the captured
/// bytes show them: each head before them must be complete and its body delimited by
/// `Content-Length` (a chunked body ends the scan). `parse` reads a head at the start of its bytes.
/// Also whether the scan ran into the end of the captured bytes of a `truncated` transfer: the messages
/// past them, if any, are not seen.
fn following<Head>(
    data: &[u8],
    first: Option<HeadEnd>,
    truncated: bool,
    parse: impl Fn(&[u8]) -> Option<(Head, Option<HeadEnd>)>,
) -> (Vec<Pipelined<Head>>, bool) {
    let mut following = Vec::new();
    let mut offset: usize = 0;
    let mut end = first;
    while let Some(HeadEnd {
        length,
        framing: Framing::Length(body),
    }) = end
    {
        offset = offset.saturating_add(length).saturating_add(body as usize);
        if offset >= data.len() {
            return (following, truncated);
        }
        let Some((head, head_end)) = parse(&data[offset..]) else {
            // A head cut by the capture, or bytes that are no head.
            return (following, truncated);
        };
        end = head_end;
        following.push(Pipelined { head, offset });
    }
    // The last head seen was cut by the capture (no end) in a truncated transfer: more may follow.
    (following, truncated && end.is_none())
}

/// The requests pipelined after `first`, the request at the start of `data`; and whether the capture
/// cut the transfer among them (see [`following`]).
pub fn following_requests(
    data: &[u8],
    first: &RequestHead,
    truncated: bool,
) -> (Vec<Pipelined<RequestHead>>, bool) {
    following(data, first.end, truncated, |bytes| {
        parse_request(bytes, truncated).map(|head| {
            let end = head.end;
            (head, end)
        })
    })
}

/// A response head: its status, and where it ends when captured whole.
pub type ResponseHead = (u16, Option<HeadEnd>);

/// The response heads (status and end) written after the first one of `data`, whose head ends at
/// `first`; and whether the capture cut the transfer among them.
pub fn following_responses(
    data: &[u8],
    first: Option<HeadEnd>,
    truncated: bool,
) -> (Vec<Pipelined<ResponseHead>>, bool) {
    following(data, first, truncated, |bytes| {
        let status = parse_status(bytes)?;
        let end = response_head_end(bytes);
        Some(((status, end), end))
    })
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
        let following = |data: &[u8], truncated| {
            let first = parse_request(data, truncated).unwrap();
            following_requests(data, &first, truncated)
        };
        let (pipelined, cut) = following(data, true);
        assert!(
            cut,
            "the capture cut the transfer at /d: what follows it is not seen"
        );
        let targets: Vec<&str> = pipelined.iter().map(|p| p.head.target.as_str()).collect();
        // /d is cut by the capture limit: it still counts, the transfer being truncated.
        assert_eq!(targets, ["/b", "/c", "/d"]);
        let ends: Vec<Option<HeadEnd>> = pipelined.iter().map(|p| p.head.end).collect();
        assert_eq!(
            ends,
            [
                Some(HeadEnd {
                    length: 39,
                    framing: Framing::Length(3)
                }),
                Some(HeadEnd {
                    length: 19,
                    framing: Framing::Length(0)
                }),
                None
            ]
        );
        assert_eq!(pipelined[1].offset, 19 + 39 + 3);
        assert_eq!(
            following(b"GET /a HTTP/1.1\r\n\r\n", false),
            (Vec::new(), false)
        );
        // A head the capture cut, or a chunked body, ends the scan.
        assert_eq!(
            following(b"GET /a HTTP/1.1\r\nHost: x", true),
            (Vec::new(), true)
        );
        assert_eq!(
            following(
                b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
                false
            ),
            (Vec::new(), false)
        );
    }

    #[test]
    fn responses_written_together_are_each_found() {
        let data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\nHTTP/1.1 500 Err\r\nContent-Le";
        let first = response_head_end(data);
        let (following, cut) = following_responses(data, first, true);
        let statuses: Vec<u16> = following.iter().map(|p| p.head.0).collect();
        assert_eq!(statuses, [404, 500]);
        assert_eq!(following[0].offset, 38 + 2);
        assert!(
            cut,
            "the 500's head was cut: responses after it are not seen"
        );
        let whole = &data[..data.len() - 29];
        assert!(!following_responses(whole, first, false).1);
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

    #[test]
    fn head_ends_give_the_body_framing() {
        let request_head_end = |data: &[u8]| parse_request(data, false).and_then(|head| head.end);
        let request = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 8\r\n\r\n{\"a\": 1}";
        assert_eq!(
            request_head_end(request),
            Some(HeadEnd {
                length: 48,
                framing: Framing::Length(8)
            })
        );
        // A request without length or coding has no body; a coding wins over a length.
        assert_eq!(
            request_head_end(b"GET / HTTP/1.1\r\n\r\n").map(|end| end.framing),
            Some(Framing::Length(0))
        );
        assert_eq!(
            request_head_end(
                b"PUT / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .map(|end| end.framing),
            Some(Framing::Chunked)
        );
        // A response without either is delimited by the connection's close.
        assert_eq!(
            response_head_end(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody").map(|end| end.framing),
            Some(Framing::UntilClose)
        );
        assert_eq!(
            response_head_end(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            Some(HeadEnd {
                length: 38,
                framing: Framing::Length(0)
            })
        );
        // Not whole, or not a number: unknown.
        assert_eq!(response_head_end(b"HTTP/1.1 200 OK\r\nContent-Le"), None);
        assert_eq!(
            request_head_end(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            None
        );
        assert!(ends_chunked_body(b"5\r\nhello\r\n0\r\n\r\n"));
        assert!(!ends_chunked_body(b"5\r\nhello\r\n"));
    }
}
