//! A plain HTTP/1.1 client that sends an exact number of requests and counts the responses by path
//! and status: the ground truth capture scenarios compare vigil's series with.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
};

/// Responses received, by (request path, status code).
pub type Tally = BTreeMap<(String, u16), u64>;

/// A connection to a server on 127.0.0.1.
pub struct Connection {
    reader: BufReader<TcpStream>,
    port: u16,
}

impl Connection {
    pub fn open(port: u16) -> Connection {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the server");
        Connection {
            reader: BufReader::new(stream),
            port,
        }
    }

    /// Its socket.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// The client's end of the connection (the server's peer address).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.reader.get_ref().local_addr().unwrap()
    }

    /// Sends `GET path` on this keep-alive connection and reads the whole response; returns the status.
    /// The server must answer with a `Content-Length`.
    pub fn get(&mut self, path: &str) -> u16 {
        // One write per request, as real clients do (and without waiting on Nagle's algorithm).
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        );
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .expect("sending the request");
        let (status, length, _) = read_head(&mut self.reader);
        let mut body = vec![0; length.expect("a Content-Length")];
        self.reader.read_exact(&mut body).expect("reading the body");
        status
    }
}

/// Sends `GET path` on a new connection with `Connection: close` and reads until the server closes it.
pub fn get_once(port: u16, path: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the server");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("sending the request");
    let mut reader = BufReader::new(stream);
    let (status, _, _) = read_head(&mut reader);
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).expect("reading to the end");
    status
}

/// `connections` keep-alive connections in parallel, each sending `per_connection` requests cycling
/// through `paths`; the tally of all responses.
pub fn keep_alive_load(
    port: u16,
    connections: usize,
    per_connection: usize,
    paths: &[String],
) -> Tally {
    let workers: Vec<_> = (0..connections)
        .map(|worker| {
            let paths = paths.to_vec();
            std::thread::spawn(move || {
                let mut connection = Connection::open(port);
                let mut tally = Tally::new();
                for n in 0..per_connection {
                    let path = &paths[(worker + n) % paths.len()];
                    let status = connection.get(path);
                    *tally.entry((path.clone(), status)).or_default() += 1;
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::new();
    for worker in workers {
        for (key, count) in worker.join().expect("a load worker") {
            *total.entry(key).or_default() += count;
        }
    }
    total
}

/// Sends `request` (a whole request head, and body if any) on `reader`'s connection and reads the
/// response with the framing HTTP/1.1 prescribes: none for HEAD, 1xx, 204 and 304; chunked; by
/// Content-Length; or until the server closes. Interim `100 Continue` responses are skipped. Returns
/// the final status.
pub fn exchange(reader: &mut BufReader<TcpStream>, request: &str) -> u16 {
    exchange_with_body(reader, request).0
}

/// [`exchange`], returning also the bytes of the final response after its head as they came over the
/// connection (chunk framing included).
pub fn exchange_with_body(reader: &mut BufReader<TcpStream>, request: &str) -> (u16, u64) {
    reader
        .get_mut()
        .write_all(request.as_bytes())
        .expect("sending the request");
    read_response_with_body(reader, request.starts_with("HEAD "))
}

/// Reads one response, framed as [`exchange`] says; returns its final status.
pub fn read_response(reader: &mut BufReader<TcpStream>, head_request: bool) -> u16 {
    read_response_with_body(reader, head_request).0
}

/// [`read_response`], returning also the bytes of the response after its head as transferred.
pub fn read_response_with_body(
    reader: &mut BufReader<TcpStream>,
    head_request: bool,
) -> (u16, u64) {
    loop {
        let (status, length, chunked) = read_head(reader);
        if status == 100 {
            continue;
        }
        if head_request || status == 204 || status == 304 {
            return (status, 0);
        }
        if chunked {
            let mut transferred = 0;
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).expect("reading a chunk size");
                let size_value = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
                let mut chunk = vec![0; size_value + 2];
                reader.read_exact(&mut chunk).expect("reading a chunk");
                transferred += (size.len() + chunk.len()) as u64;
                if size_value == 0 {
                    return (status, transferred);
                }
            }
        }
        let mut body = Vec::new();
        match length {
            Some(length) => {
                body.resize(length, 0);
                reader.read_exact(&mut body).expect("reading the body");
            }
            None => {
                reader.read_to_end(&mut body).expect("reading to the end");
            }
        }
        return (status, body.len() as u64);
    }
}

/// Reads a status line and headers; returns the status, the Content-Length if any, and whether the body
/// is chunked.
fn read_head(reader: &mut BufReader<TcpStream>) -> (u16, Option<usize>, bool) {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .expect("reading the status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader.read_line(&mut line).expect("reading a header");
        let header = line.trim_end();
        if header.is_empty() {
            return (status, length, chunked);
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.trim().eq_ignore_ascii_case("chunked");
            }
        }
    }
}
