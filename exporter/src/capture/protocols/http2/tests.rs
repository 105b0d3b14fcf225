//! HTTP/2 connections followed from records the tests write, with a real HPACK encoder per direction.

use prometheus::Registry;

use super::{frames::frame, hpack_encoder::IndexingEncoder, *};

/// One side of a conversation: writes frames with its own HPACK encoder.
struct Peer {
    encoder: IndexingEncoder,
}

impl Peer {
    fn new() -> Self {
        Peer {
            encoder: IndexingEncoder::default(),
        }
    }

    fn headers(&mut self, stream: u32, flags: u8, fields: &[(&str, &str)]) -> Vec<u8> {
        let block = self.encoder.encode(fields);
        frame(HEADERS, flags | END_HEADERS, stream, &block)
    }
}

fn settings() -> Vec<u8> {
    frame(0x4, 0, 0, &[])
}

fn record(kind: IoEventKind, at_ms: u64, data: &[u8]) -> IoRecord {
    IoRecord {
        kind,
        tgid: 1,
        fd: 5,
        boot_time_ns: at_ms * 1_000_000,
        length: data.len() as u64,
        data: data.to_vec(),
        session: 0,
    }
}

/// A parser fed like capture feeds it: recognised from the first record, then every record.
struct Follow {
    parser: Option<Http2Connection>,
    metrics: Http2Metrics,
    registry: Registry,
    out: Vec<Exchange>,
}

impl Follow {
    fn new() -> Self {
        let registry = Registry::new();
        Follow {
            parser: None,
            metrics: Http2Metrics::register(&registry),
            registry,
            out: Vec::new(),
        }
    }

    fn feed(&mut self, record: IoRecord) {
        if self.parser.is_none() {
            let start = starts(&record).expect("recognised as HTTP/2");
            self.parser = Some(Http2Connection::new(self.metrics.clone(), &record, start));
        }
        self.parser
            .as_mut()
            .unwrap()
            .transfer(&record, &mut self.out);
    }

    fn receive(&mut self, at_ms: u64, data: &[u8]) {
        self.feed(record(IoEventKind::Receive, at_ms, data));
    }

    fn send(&mut self, at_ms: u64, data: &[u8]) {
        self.feed(record(IoEventKind::Send, at_ms, data));
    }

    fn desync(&self, reason: &str) -> f64 {
        self.registry
            .gather()
            .iter()
            .filter(|family| family.name() == "vigil_http2_desync_total")
            .flat_map(|family| family.get_metric())
            .filter(|metric| {
                metric
                    .get_label()
                    .iter()
                    .any(|label| label.value() == reason)
            })
            .map(|metric| metric.get_counter().get_value())
            .sum()
    }

    /// The exchanges yielded, as (side, call label, seconds).
    fn calls(&self) -> Vec<(Side, String, f64)> {
        self.out
            .iter()
            .map(|exchange| {
                let call = match &exchange.call {
                    Call::Http {
                        method,
                        target,
                        status,
                    } => format!("{method} {target} {status}"),
                    Call::Rpc { method, status } => format!("rpc {method} {status}"),
                };
                let Measure::Request { seconds, .. } = exchange.measure else {
                    panic!("a request");
                };
                (exchange.side, call, (seconds * 1000.0).round() / 1000.0)
            })
            .collect()
    }
}

fn grpc_request(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
}

const GRPC_RESPONSE: [(&str, &str); 2] = [(":status", "200"), ("content-type", "application/grpc")];

/// A gRPC message frame (5-byte prefix and `size` bytes).
fn message(stream: u32, flags: u8, size: usize) -> Vec<u8> {
    let mut payload = vec![0];
    payload.extend_from_slice(&(size as u32).to_be_bytes());
    payload.extend(std::iter::repeat_n(b'x', size));
    frame(DATA, flags, stream, &payload)
}

#[test]
fn grpc_calls_served_are_paired_by_stream_with_their_status_names() {
    let (mut client, mut server) = (Peer::new(), Peer::new());
    let mut follow = Follow::new();
    // The client's preface, settings and three calls in one read; the server answers out of order.
    let mut read = PREFACE.to_vec();
    read.extend(settings());
    for (stream, method) in [(1, "Get"), (3, "Get"), (5, "Put")] {
        read.extend(client.headers(stream, 0, &grpc_request(&format!("/shop.Cart/{method}"))));
        read.extend(message(stream, END_STREAM, 3));
    }
    follow.receive(10, &read);
    let mut write = settings();
    write.extend(server.headers(3, 0, &GRPC_RESPONSE));
    write.extend(message(3, 0, 10));
    write.extend(server.headers(3, END_STREAM, &[("grpc-status", "5")]));
    follow.send(12, &write);
    // A trailers-only response.
    let mut trailers_only = GRPC_RESPONSE.to_vec();
    trailers_only.push(("grpc-status", "13"));
    follow.send(15, &server.headers(1, END_STREAM, &trailers_only));
    // A response split over two writes, its trailers read from the dynamic table.
    let mut write = server.headers(5, 0, &GRPC_RESPONSE);
    write.extend(message(5, 0, 4));
    follow.send(17, &write[..7]);
    follow.send(18, &write[7..]);
    follow.send(20, &server.headers(5, END_STREAM, &[("grpc-status", "0")]));
    assert_eq!(
        follow.calls(),
        vec![
            (Side::Server, "rpc shop.Cart/Get NOT_FOUND".into(), 0.002),
            (Side::Server, "rpc shop.Cart/Get INTERNAL".into(), 0.005),
            (Side::Server, "rpc shop.Cart/Put OK".into(), 0.010),
        ]
    );
    assert_eq!(follow.parser.as_ref().unwrap().role(), Some(Side::Server));
    assert_eq!(
        follow.desync("adopted") + follow.desync("frames") + follow.desync("headers"),
        0.0
    );
}

#[test]
fn streaming_calls_end_with_their_trailers_and_a_stream_failing_midway_keeps_its_status() {
    let (mut client, mut server) = (Peer::new(), Peer::new());
    let mut follow = Follow::new();
    // A client: it writes the preface.
    let mut write = PREFACE.to_vec();
    write.extend(settings());
    write.extend(client.headers(1, 0, &grpc_request("/echo.Echo/Chat")));
    follow.send(0, &write);
    for at in 1..=3 {
        follow.send(at, &message(1, 0, 2));
        let mut read = match at {
            1 => server.headers(1, 0, &GRPC_RESPONSE),
            _ => Vec::new(),
        };
        read.extend(message(1, 0, 2));
        follow.receive(at, &read);
    }
    follow.send(4, &frame(DATA, END_STREAM, 1, &[]));
    // A server stream failing midway: two messages, then ABORTED.
    follow.send(5, &client.headers(3, 0, &grpc_request("/echo.Echo/Watch")));
    follow.send(5, &message(3, END_STREAM, 1));
    let mut read = server.headers(3, 0, &GRPC_RESPONSE);
    read.extend(message(3, 0, 1));
    read.extend(message(3, 0, 1));
    follow.receive(7, &read);
    follow.receive(
        8,
        &server.headers(
            3,
            END_STREAM,
            &[("grpc-status", "10"), ("grpc-message", "boom")],
        ),
    );
    assert!(follow.calls().is_empty() || follow.out.len() == 1);
    follow.receive(9, &server.headers(1, END_STREAM, &[("grpc-status", "0")]));
    assert_eq!(
        follow.calls(),
        vec![
            (Side::Client, "rpc echo.Echo/Watch ABORTED".into(), 0.003),
            (Side::Client, "rpc echo.Echo/Chat OK".into(), 0.009),
        ]
    );
}

#[test]
fn plain_requests_are_http_with_methods_routes_statuses_and_body_sizes() {
    let (mut client, mut server) = (Peer::new(), Peer::new());
    let mut follow = Follow::new();
    let mut read = PREFACE.to_vec();
    read.extend(client.headers(
        1,
        END_STREAM,
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/users/42?x=1"),
        ],
    ));
    read.extend(client.headers(
        3,
        0,
        &[
            (":method", "PUT"),
            (":scheme", "http"),
            (":path", "/users/7"),
        ],
    ));
    read.extend(frame(DATA, END_STREAM, 3, &[1; 30]));
    follow.receive(1, &read);
    let mut write = server.headers(1, 0, &[(":status", "200")]);
    write.extend(frame(DATA, 0, 1, &[2; 100]));
    write.extend(frame(DATA, END_STREAM, 1, &[2; 20]));
    write.extend(server.headers(3, END_STREAM, &[(":status", "503")]));
    follow.send(3, &write);
    assert_eq!(
        follow.calls(),
        vec![
            (Side::Server, "GET /users/42?x=1 200".into(), 0.002),
            (Side::Server, "PUT /users/7 503".into(), 0.002),
        ]
    );
    let bodies: Vec<_> = follow
        .out
        .iter()
        .map(|exchange| match exchange.measure {
            Measure::Request {
                request_body,
                response_body,
                ..
            } => (request_body, response_body),
            Measure::ResponseBody(_) => panic!("a request"),
        })
        .collect();
    assert_eq!(bodies, vec![(Some(0), Some(120)), (Some(30), Some(0))]);
}

#[test]
fn a_hundred_concurrent_streams_in_one_read_are_each_counted() {
    let (mut client, mut server) = (Peer::new(), Peer::new());
    let mut follow = Follow::new();
    let mut read = PREFACE.to_vec();
    let mut write = Vec::new();
    for stream in (1..200).step_by(2) {
        read.extend(client.headers(
            stream,
            END_STREAM,
            &[(":method", "GET"), (":scheme", "http"), (":path", "/hello")],
        ));
        write.extend(server.headers(stream, 0, &[(":status", "200")]));
        write.extend(frame(DATA, END_STREAM, stream, b"ok\n"));
    }
    follow.receive(1, &read);
    follow.send(2, &write);
    let calls = follow.calls();
    assert_eq!(calls.len(), 100);
    assert!(calls.iter().all(|call| call.1 == "GET /hello 200"));
}

#[test]
fn a_connection_adopted_mid_way_counts_later_calls_without_guessing_their_method() {
    let (mut client, mut server) = (Peer::new(), Peer::new());
    // Calls vigil never saw filled both HPACK tables.
    for _ in 0..3 {
        client.headers(1, 0, &grpc_request("/shop.Cart/Get"));
        server.headers(1, 0, &GRPC_RESPONSE);
        server.headers(1, END_STREAM, &[("grpc-status", "0")]);
    }
    let mut follow = Follow::new();
    let mut read = client.headers(41, 0, &grpc_request("/shop.Cart/Get"));
    read.extend(message(41, END_STREAM, 3));
    follow.receive(1, &read);
    let mut write = server.headers(41, 0, &GRPC_RESPONSE);
    write.extend(message(41, 0, 3));
    write.extend(server.headers(41, END_STREAM, &[("grpc-status", "0")]));
    follow.send(2, &write);
    assert_eq!(follow.desync("adopted"), 1.0);
    // Counted, as what vigil can read: path, content-type and grpc-status were table references, so
    // it is a gRPC call (its response ended with trailers) whose method and status are _OTHER, never a
    // guess.
    assert_eq!(
        follow.calls(),
        vec![(Side::Server, "rpc _OTHER _OTHER".into(), 0.001)]
    );
    // A new method the client has not indexed yet is read.
    let mut read = client.headers(43, 0, &grpc_request("/shop.Cart/Put"));
    read.extend(message(43, END_STREAM, 3));
    follow.receive(3, &read);
    follow.send(
        4,
        &server.headers(43, END_STREAM, &[(":status", "200"), ("grpc-status", "5")]),
    );
    assert_eq!(
        follow.calls()[1],
        (Side::Server, "rpc shop.Cart/Put NOT_FOUND".into(), 0.001)
    );
}

#[test]
fn frames_past_the_captured_bytes_count_a_desync_and_later_blocks_never_guess() {
    let (mut client, mut server) = (Peer::new(), Peer::new());
    let mut follow = Follow::new();
    let mut read = PREFACE.to_vec();
    read.extend(client.headers(
        1,
        END_STREAM,
        &[(":method", "GET"), (":scheme", "http"), (":path", "/a")],
    ));
    follow.receive(1, &read);
    // A write whose second frame head was not captured (a large DATA frame first).
    let mut write = server.headers(1, 0, &[(":status", "200")]);
    write.extend(frame(DATA, 0, 1, &[0; 2000]));
    write.extend(frame(DATA, END_STREAM, 1, &[0; 10]));
    let mut cut = record(IoEventKind::Send, 2, &write);
    cut.data.truncate(1024);
    follow.feed(cut);
    assert_eq!(follow.desync("frames"), 1.0);
    // The stream's end was lost; the next request, whose path the client indexed before, is counted
    // when its response's frames are found again.
    follow.receive(
        3,
        &client.headers(
            3,
            END_STREAM,
            &[(":method", "GET"), (":scheme", "http"), (":path", "/a")],
        ),
    );
    let mut write = server.headers(3, 0, &[(":status", "404")]);
    write.extend(frame(DATA, END_STREAM, 3, b"no"));
    follow.send(4, &write);
    assert_eq!(
        follow.calls(),
        vec![(Side::Server, "GET /a 404".into(), 0.001)]
    );
    assert_eq!(
        follow.parser.as_ref().unwrap().in_flight(Side::Server),
        1,
        "stream 1"
    );
}

#[test]
fn calls_in_flight_at_the_close_are_unavailable_and_resets_cancelled() {
    let mut client = Peer::new();
    let mut follow = Follow::new();
    let mut read = PREFACE.to_vec();
    read.extend(client.headers(1, 0, &grpc_request("/a.B/C")));
    read.extend(client.headers(3, 0, &grpc_request("/a.B/D")));
    follow.receive(1, &read);
    follow.receive(2, &frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]));
    let parser = follow.parser.as_mut().unwrap();
    parser.close(5_000_000, &mut follow.out);
    assert_eq!(
        follow.calls(),
        vec![
            (Side::Server, "rpc a.B/C CANCELLED".into(), 0.001),
            (Side::Server, "rpc a.B/D UNAVAILABLE".into(), 0.004),
        ]
    );
}

#[test]
fn a_server_that_writes_its_settings_before_reading_the_preface_is_followed_from_the_start() {
    let (mut client, mut server) = (Peer::new(), Peer::new());
    let mut follow = Follow::new();
    follow.send(0, &settings());
    let mut read = PREFACE.to_vec();
    read.extend(settings());
    read.extend(client.headers(1, END_STREAM, &grpc_request("/a.B/C")));
    follow.receive(1, &read);
    follow.send(
        2,
        &server.headers(1, END_STREAM, &[(":status", "200"), ("grpc-status", "0")]),
    );
    assert_eq!(
        follow.calls(),
        vec![(Side::Server, "rpc a.B/C OK".into(), 0.001)]
    );
    assert_eq!(follow.desync("adopted"), 0.0);
}

#[test]
fn only_prefaces_and_runs_of_whole_frames_start_http2() {
    let preface = record(IoEventKind::Receive, 0, PREFACE);
    assert_eq!(starts(&preface), Some(Start::Preface));
    assert_eq!(
        starts(&record(IoEventKind::Send, 0, b"PRI * HT")),
        Some(Start::Preface)
    );
    assert_eq!(
        starts(&record(IoEventKind::Send, 0, &settings())),
        Some(Start::ServerPreface)
    );
    let ack = frame(0x4, 0x1, 0, &[]);
    assert_eq!(
        starts(&record(IoEventKind::Receive, 0, &ack)),
        Some(Start::MidConnection)
    );
    assert_eq!(
        starts(&record(IoEventKind::Receive, 0, b"GET / HTTP/1.1\r\n\r\n")),
        None
    );
    assert_eq!(
        starts(&record(
            IoEventKind::Receive,
            0,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc"
        )),
        None
    );
}
