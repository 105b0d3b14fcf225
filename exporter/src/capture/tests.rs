//! Pairing and publication, with records as the kernel programs send them and a discovery decided by
//! each test (no real process).

use std::time::{Duration, Instant};

use vigil_common::io::IO_DATA_MAX;

use super::*;
use crate::{
    config::MetricsConfig,
    discovery::{ContainerRef, ServiceIdentity},
    metrics::{Exposition, PROCESS_GONE_GRACE, RedFamilies},
};

/// Discovery as capture sees it, decided by each test.
#[derive(Default)]
struct Processes {
    publication: std::collections::HashMap<u32, Publication>,
    /// Every process's placement: a host process.
    container: ContainerRef,
    /// Every process's service: a `sleep`.
    service: ServiceIdentity,
}

impl Processes {
    fn set(&mut self, tgid: u32, publication: Publication) {
        self.publication.insert(tgid, publication);
    }
}

impl ProcessView for Processes {
    fn publication(&self, tgid: u32) -> Publication {
        self.publication
            .get(&tgid)
            .cloned()
            .unwrap_or(Publication::NotCaptured)
    }

    fn service_of(&self, tgid: u32) -> Option<(&ServiceIdentity, &ContainerRef)> {
        self.publication
            .contains_key(&tgid)
            .then_some((&self.service, &self.container))
    }

    fn reads_tls(&self, _tgid: u32) -> bool {
        false
    }
}

/// The captured process of the tests (a `sleep`, by its `service_name`).
const PID: u32 = 4242;

/// A capture, and a discovery in which [`PID`] is captured with `publication`.
fn setup(publication: Publication) -> (u32, Processes, Capture, Exposition) {
    let mut processes = Processes {
        service: ServiceIdentity {
            executable: "sleep".into(),
            ..ServiceIdentity::default()
        },
        ..Processes::default()
    };
    processes.set(PID, publication);
    let (capture, exposition) = capture();
    (PID, processes, capture, exposition)
}

/// A record of a transfer of `data`, as the kernel would capture it (at most `IO_DATA_MAX` bytes).
fn record(kind: IoEventKind, tgid: u32, fd: u32, at_ms: u64, data: &[u8]) -> IoRecord {
    IoRecord {
        kind,
        tgid,
        fd,
        boot_time_ns: at_ms * 1_000_000,
        length: data.len() as u64,
        data: data[..data.len().min(IO_DATA_MAX)].to_vec(),
        session: 0,
    }
}

fn capture() -> (Capture, Exposition) {
    capture_with(CaptureConfig {
        max_connections: 1000,
        max_held_requests: 1000,
    })
}

/// A capture that follows at most `max_connections` connections.
fn capture_following(max_connections: usize) -> (Capture, Exposition) {
    capture_with(CaptureConfig {
        max_connections,
        max_held_requests: 1000,
    })
}

/// A capture with `limits`.
fn capture_with(limits: CaptureConfig) -> (Capture, Exposition) {
    let registry = Registry::new();
    let config = MetricsConfig {
        max_routes_per_service: 100,
        max_segment_values: 25,
        max_route_parents: 10_000,
        max_label_sets: 1000,
        ttl: Duration::from_secs(300),
        routes: vec!["/orders".to_owned()],
        duration_buckets: vec![0.0, 0.005, 0.01, 0.1, 1.0],
        body_sizes: true,
        body_size_buckets: vec![0.0, 32.0, 1024.0],
    };
    let series = RedSeries::new(&config, RedFamilies::register(&registry, &config));
    let series_exposition = series.exposition();
    let capture = Capture::new(None, CaptureMetrics::register(&registry), series, &limits);
    let exposition = Exposition::new(registry, series_exposition);
    (capture, exposition)
}

/// The value of `sample` (a host process's series, written without its empty `k8s_*` labels).
fn sample(exposition: &Exposition, sample: &str) -> f64 {
    exposition
        .text()
        .lines()
        .map(without_empty_k8s_labels)
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn without_empty_k8s_labels(line: &str) -> String {
    let mut kept = String::new();
    let mut rest = line;
    while let Some(start) = rest.find(",k8s_") {
        let label = &rest[start..];
        match label.find('"') {
            Some(quote) if label[quote..].starts_with("\"\"") => {
                kept.push_str(&rest[..start]);
                rest = &label[quote + 2..];
            }
            _ => {
                kept.push_str(&rest[..start + 1]);
                rest = &rest[start + 1..];
            }
        }
    }
    kept.push_str(rest);
    kept
}

fn server_count(exposition: &Exposition, method: &str, status: u16, route: &str) -> f64 {
    sample(
        exposition,
        &format!(
            "http_server_request_duration_seconds_count{{http_request_method=\"{method}\",http_response_status_code=\"{status}\",http_route=\"{route}\",service_name=\"sleep\"}}"
        ),
    )
}

use IoEventKind::{Close, Receive, Send};

#[test]
fn keep_alive_requests_pair_in_order_with_their_durations() {
    let (pid, discovery, mut capture, exposition) = setup(Publication::Published);
    capture.handle(
        &[
            record(
                Receive,
                pid,
                7,
                1_000,
                b"GET /users/1 HTTP/1.1\r\nHost: a\r\n\r\n",
            ),
            record(
                Send,
                pid,
                7,
                1_003,
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ),
            record(
                Receive,
                pid,
                7,
                1_010,
                b"GET /missing/page HTTP/1.1\r\n\r\n",
            ),
            record(Send, pid, 7, 1_110, b"HTTP/1.1 404 Not Found\r\n\r\n"),
            // A body written separately is not a response.
            record(Receive, pid, 7, 1_200, b"DELETE /users/2 HTTP/1.1\r\n\r\n"),
            record(
                Send,
                pid,
                7,
                1_201,
                b"HTTP/1.1 500 Internal\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            record(Send, pid, 7, 1_202, b"5\r\nerror\r\n0\r\n\r\n"),
        ],
        &discovery,
    );
    assert_eq!(server_count(&exposition, "GET", 200, "/users/{id}"), 1.0);
    assert_eq!(server_count(&exposition, "GET", 404, "/missing/page"), 1.0);
    assert_eq!(server_count(&exposition, "DELETE", 500, "/users/{id}"), 1.0);
    let sum = sample(
        &exposition,
        "http_server_request_duration_seconds_sum{http_request_method=\"GET\",http_response_status_code=\"404\",http_route=\"/missing/page\",service_name=\"sleep\"}",
    );
    assert!(
        (sum - 0.1).abs() < 1e-9,
        "read of the request to write of the head: {sum}"
    );
}

#[test]
fn an_interim_continue_does_not_end_the_request() {
    let (pid, discovery, mut capture, exposition) = setup(Publication::Published);
    capture.handle(
        &[
            record(
                Receive,
                pid,
                3,
                0,
                b"POST /upload HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            ),
            record(Send, pid, 3, 1, b"HTTP/1.1 100 Continue\r\n\r\n"),
            record(Receive, pid, 3, 2, b"the body"),
            record(Send, pid, 3, 5, b"HTTP/1.1 201 Created\r\n\r\n"),
        ],
        &discovery,
    );
    assert_eq!(server_count(&exposition, "POST", 201, "/upload"), 1.0);
    assert_eq!(server_count(&exposition, "POST", 100, "/upload"), 0.0);
}

#[test]
fn client_requests_are_timed_from_request_write_to_response_read() {
    let (pid, discovery, mut capture, exposition) = setup(Publication::Published);
    capture.handle(
        &[
            record(Send, pid, 9, 100, b"PUT /items/3 HTTP/1.1\r\n\r\n"),
            record(Receive, pid, 9, 350, b"HTTP/1.1 204 No Content\r\n\r\n"),
        ],
        &discovery,
    );
    let labels =
        "{http_request_method=\"PUT\",http_response_status_code=\"204\",service_name=\"sleep\"}";
    assert_eq!(
        sample(
            &exposition,
            &format!("http_client_request_duration_seconds_count{labels}")
        ),
        1.0
    );
    let sum = sample(
        &exposition,
        &format!("http_client_request_duration_seconds_sum{labels}"),
    );
    assert!((sum - 0.25).abs() < 1e-9, "{sum}");
}

#[test]
fn a_closed_connection_is_forgotten_and_strays_are_counted() {
    let (pid, discovery, mut capture, exposition) = setup(Publication::Published);
    capture.handle(
        &[
            record(Receive, pid, 4, 0, b"GET / HTTP/1.1\r\n\r\n"),
            record(Close, pid, 4, 1, b""),
            // The fd number is reused by a connection adopted mid-request.
            record(Send, pid, 4, 2, b"HTTP/1.1 200 OK\r\n\r\n"),
        ],
        &discovery,
    );
    assert_eq!(server_count(&exposition, "GET", 200, "/"), 0.0);
    assert_eq!(
        sample(
            &exposition,
            "vigil_http_unpaired_responses_total{side=\"server\"}"
        ),
        1.0
    );
}

#[test]
fn requests_of_a_provisional_process_are_held_then_dropped_when_it_dies_young() {
    let (pid, mut discovery, mut capture, exposition) = setup(Publication::Provisional);
    assert_eq!(discovery.publication(pid), Publication::Provisional);
    capture.handle(
        &[
            record(Receive, pid, 5, 0, b"GET /a HTTP/1.1\r\n\r\n"),
            record(Send, pid, 5, 1, b"HTTP/1.1 200 OK\r\n\r\n"),
        ],
        &discovery,
    );
    capture.settle(&discovery);
    assert_eq!(
        server_count(&exposition, "GET", 200, "/a"),
        0.0,
        "held, not published"
    );
    discovery.set(pid, Publication::NotCaptured);
    capture.settle(&discovery);
    assert_eq!(
        server_count(&exposition, "GET", 200, "/a"),
        0.0,
        "never published"
    );
    assert_eq!(
        sample(
            &exposition,
            "vigil_http_dropped_requests_total{reason=\"short_lived\"}"
        ),
        1.0
    );
}

#[test]
fn the_hold_keeps_at_most_its_limit_and_counts_what_it_drops() {
    let (pid, mut discovery, _, _) = setup(Publication::Provisional);
    let (mut capture, exposition) = capture_with(CaptureConfig {
        max_connections: 1000,
        max_held_requests: 3,
    });
    let exchanges: Vec<IoRecord> = (0..5)
        .flat_map(|n| {
            [
                record(Receive, pid, 5, 2 * n, b"GET /a HTTP/1.1\r\n\r\n"),
                record(
                    Send,
                    pid,
                    5,
                    2 * n + 1,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                ),
            ]
        })
        .collect();
    capture.handle(&exchanges, &discovery);
    capture.settle(&discovery);
    assert_eq!(sample(&exposition, "vigil_http_held_requests"), 3.0);
    assert_eq!(
        sample(
            &exposition,
            "vigil_http_dropped_requests_total{reason=\"hold_full\"}"
        ),
        2.0
    );
    discovery.set(pid, Publication::Published);
    capture.settle(&discovery);
    assert_eq!(server_count(&exposition, "GET", 200, "/a"), 3.0);
    assert_eq!(sample(&exposition, "vigil_http_held_requests"), 0.0);
}

#[test]
fn held_requests_are_published_when_the_process_is() {
    let (pid, mut discovery, mut capture, exposition) = setup(Publication::Provisional);
    assert_eq!(discovery.publication(pid), Publication::Provisional);
    capture.handle(
        &[
            record(Receive, pid, 5, 0, b"GET /early HTTP/1.1\r\n\r\n"),
            record(Send, pid, 5, 1, b"HTTP/1.1 200 OK\r\n\r\n"),
        ],
        &discovery,
    );
    discovery.set(pid, Publication::Published);
    capture.settle(&discovery);
    assert_eq!(server_count(&exposition, "GET", 200, "/early"), 1.0);
}

#[test]
fn a_request_line_written_in_pieces_is_put_together() {
    let (pid, discovery, mut capture, exposition) = setup(Publication::Published);
    capture.handle(
        &[
            record(Receive, pid, 6, 10, b"GET "),
            record(Receive, pid, 6, 11, b"/users/5"),
            record(Receive, pid, 6, 12, b" HTTP/1.1\r\nHost: a\r\n\r\n"),
            record(Send, pid, 6, 20, b"HTTP/1.1 "),
            record(Send, pid, 6, 21, b"200 OK\r\n\r\n"),
            // A body that looks like the start of a head does not swallow the next request.
            record(
                Receive,
                pid,
                6,
                30,
                b"POST /orders HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            ),
            record(Receive, pid, 6, 31, b"ABC"),
            record(Send, pid, 6, 32, b"HTTP/1.1 201 Created\r\n\r\n"),
            record(Receive, pid, 6, 40, b"GET /next HTTP/1.1\r\n\r\n"),
            record(Send, pid, 6, 41, b"HTTP/1.1 200 OK\r\n\r\n"),
        ],
        &discovery,
    );
    assert_eq!(server_count(&exposition, "GET", 200, "/users/{id}"), 1.0);
    let sum = sample(
        &exposition,
        "http_server_request_duration_seconds_sum{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/users/{id}\",service_name=\"sleep\"}",
    );
    assert!(
        (sum - 0.011).abs() < 1e-9,
        "from the first piece to the status line: {sum}"
    );
    assert_eq!(server_count(&exposition, "POST", 201, "/orders"), 1.0);
    assert_eq!(server_count(&exposition, "GET", 200, "/next"), 1.0);
}

#[test]
fn idle_series_expire_after_the_ttl() {
    let (pid, discovery, mut capture, exposition) = setup(Publication::Published);
    capture.handle(
        &[
            record(Receive, pid, 8, 0, b"GET /old HTTP/1.1\r\n\r\n"),
            record(Send, pid, 8, 1, b"HTTP/1.1 200 OK\r\n\r\n"),
        ],
        &discovery,
    );
    let now = Instant::now();
    capture.expire(&discovery, now + Duration::from_secs(299));
    assert_eq!(
        server_count(&exposition, "GET", 200, "/old"),
        1.0,
        "still within the TTL"
    );
    capture.expire(&discovery, now + Duration::from_secs(301));
    assert_eq!(
        server_count(&exposition, "GET", 200, "/old"),
        0.0,
        "expired"
    );
    assert!(!exposition.text().contains("/old"));
}

#[test]
fn a_series_whose_last_process_is_gone_is_removed_after_the_grace() {
    let (pid, mut discovery, mut capture, exposition) = setup(Publication::Published);
    capture.handle(
        &[
            record(Receive, pid, 8, 0, b"GET /gone HTTP/1.1\r\n\r\n"),
            record(Send, pid, 8, 1, b"HTTP/1.1 200 OK\r\n\r\n"),
        ],
        &discovery,
    );
    discovery.set(pid, Publication::NotCaptured);
    let now = Instant::now();
    capture.expire(&discovery, now);
    assert_eq!(
        server_count(&exposition, "GET", 200, "/gone"),
        1.0,
        "kept through the grace"
    );
    capture.expire(&discovery, now + PROCESS_GONE_GRACE);
    assert_eq!(server_count(&exposition, "GET", 200, "/gone"), 0.0);
}

/// The `_count` and `_sum` of a body size histogram of the `sleep` service, for a server label set
/// (`route` given) or a client one.
fn body_size(
    exposition: &Exposition,
    family: &str,
    method: &str,
    status: u16,
    route: Option<&str>,
) -> (f64, f64) {
    let route = route.map_or(String::new(), |route| format!(",http_route=\"{route}\""));
    let labels = format!(
        "{{http_request_method=\"{method}\",http_response_status_code=\"{status}\"{route},service_name=\"sleep\"}}"
    );
    (
        sample(exposition, &format!("{family}_count{labels}")),
        sample(exposition, &format!("{family}_sum{labels}")),
    )
}

const SERVER_REQUEST_BODY: &str = "http_server_request_body_size_bytes";
const SERVER_RESPONSE_BODY: &str = "http_server_response_body_size_bytes";

#[test]
fn server_body_sizes_come_from_content_length_or_are_counted_until_the_body_ends() {
    let (pid, discovery, mut capture, exposition) = setup(Publication::Published);
    let body = |method, status, route| {
        (
            body_size(
                &exposition,
                SERVER_REQUEST_BODY,
                method,
                status,
                Some(route),
            ),
            body_size(
                &exposition,
                SERVER_RESPONSE_BODY,
                method,
                status,
                Some(route),
            ),
        )
    };
    capture.handle(
        &[
            // Content-Length both ways, the bodies in the same transfers as the heads.
            record(
                Receive,
                pid,
                5,
                0,
                b"POST /a HTTP/1.1\r\nContent-Length: 8\r\n\r\n{\"a\": 1}",
            ),
            record(
                Send,
                pid,
                5,
                1,
                b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
            ),
            // Chunked both ways: 10 bytes after the head, then 5 more (framing included).
            record(
                Receive,
                pid,
                5,
                2,
                b"PUT /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            ),
            record(Receive, pid, 5, 3, b"0\r\n\r\n"),
            record(
                Send,
                pid,
                5,
                4,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            record(Send, pid, 5, 5, b"3\r\nabc\r\n"),
        ],
        &discovery,
    );
    assert_eq!(body("POST", 201, "/a"), ((1.0, 8.0), (1.0, 2.0)));
    // The chunked response is recorded when its last chunk is written, not before.
    assert_eq!(body("PUT", 200, "/b"), ((1.0, 15.0), (0.0, 0.0)));
    assert_eq!(server_count(&exposition, "PUT", 200, "/b"), 1.0);
    capture.handle(&[record(Send, pid, 5, 6, b"0\r\n\r\n")], &discovery);
    assert_eq!(body("PUT", 200, "/b"), ((1.0, 15.0), (1.0, 13.0)));

    capture.handle(
        &[
            // HEAD: no body whatever the head declares; a request without length has none either.
            record(Receive, pid, 5, 10, b"HEAD /c HTTP/1.1\r\n\r\n"),
            record(
                Send,
                pid,
                5,
                11,
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            ),
            // Delimited by the close: 5 bytes with the head, 6 after, counted at the close.
            record(Receive, pid, 5, 12, b"GET /d HTTP/1.0\r\n\r\n"),
            record(Send, pid, 5, 13, b"HTTP/1.0 200 OK\r\n\r\nhello"),
            record(Send, pid, 5, 14, b"world!"),
        ],
        &discovery,
    );
    assert_eq!(body("HEAD", 200, "/c"), ((1.0, 0.0), (1.0, 0.0)));
    assert_eq!(body("GET", 200, "/d"), ((1.0, 0.0), (0.0, 0.0)));
    capture.handle(&[record(Close, pid, 5, 15, b"")], &discovery);
    assert_eq!(body("GET", 200, "/d"), ((1.0, 0.0), (1.0, 11.0)));

    // A head longer than vigil captures: the request is counted, its body size is not observed.
    let long_head = format!(
        "POST /e HTTP/1.1\r\nCookie: {}\r\nContent-Length: 3\r\n\r\nabc",
        "x".repeat(IO_DATA_MAX)
    );
    capture.handle(
        &[
            record(Receive, pid, 6, 20, long_head.as_bytes()),
            record(Send, pid, 6, 21, b"HTTP/1.1 204 No Content\r\n\r\n"),
        ],
        &discovery,
    );
    assert_eq!(server_count(&exposition, "POST", 204, "/e"), 1.0);
    assert_eq!(body("POST", 204, "/e"), ((0.0, 0.0), (1.0, 0.0)));
    assert_eq!(
        sample(
            &exposition,
            "vigil_http_unmeasured_bodies_total{side=\"server\"}"
        ),
        1.0
    );
}

#[test]
fn client_body_sizes_and_a_response_body_ended_by_the_next_response() {
    let (pid, discovery, mut capture, exposition) = setup(Publication::Published);
    let body = |method, status| {
        (
            body_size(
                &exposition,
                "http_client_request_body_size_bytes",
                method,
                status,
                None,
            ),
            body_size(
                &exposition,
                "http_client_response_body_size_bytes",
                method,
                status,
                None,
            ),
        )
    };
    capture.handle(
        &[
            record(
                Send,
                pid,
                8,
                0,
                b"POST /items HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            ),
            // A response without length on a kept-alive connection (a peer that never sends the
            // terminating chunk): its body ends where the next response starts.
            record(
                Receive,
                pid,
                8,
                1,
                b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            ),
            record(Receive, pid, 8, 2, b"4\r\nabcd\r\n"),
            record(Send, pid, 8, 3, b"GET /items/1 HTTP/1.1\r\n\r\n"),
            record(
                Receive,
                pid,
                8,
                4,
                b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
            ),
        ],
        &discovery,
    );
    assert_eq!(body("POST", 202), ((1.0, 5.0), (1.0, 17.0)));
    assert_eq!(body("GET", 200), ((1.0, 0.0), (1.0, 7.0)));
}

#[test]
fn connections_are_shown_with_their_role_and_socket_addresses() {
    use std::{
        net::{TcpListener, TcpStream},
        os::{fd::AsRawFd, unix::net::UnixStream},
    };
    let (_pid, discovery, mut capture, _exposition) = setup(Publication::Published);
    // Real sockets of this test process: a TCP connection's two ends and a Unix socket.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let (unix, _other_end) = UnixStream::pair().unwrap();
    let me = std::process::id();
    let fd = |socket: &dyn AsRawFd| socket.as_raw_fd() as u32;
    let head = b"GET /orders HTTP/1.1\r\nHost: x\r\n\r\n";
    let closed_fd = 999_999;
    capture.handle(
        &[
            record(IoEventKind::Receive, me, fd(&server), 1, head),
            record(IoEventKind::Send, me, fd(&client), 1, head),
            record(IoEventKind::Receive, me, fd(&unix), 1, head),
            record(IoEventKind::Receive, me, closed_fd, 1, head),
        ],
        &discovery,
    );
    let shown = |capture: &Capture, fd: u32| {
        serde_json::to_value(capture.connections())
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .find(|connection| connection["pid"] == me && connection["fd"] == fd)
            .cloned()
            .unwrap_or_else(|| panic!("fd {fd} shown"))
    };
    assert_eq!(shown(&capture, fd(&server))["transport"], "pending");

    capture.look_up_addresses();
    let listening = listener.local_addr().unwrap().to_string();
    let client_end = client.local_addr().unwrap().to_string();
    for (socket, role, local, peer) in [
        (fd(&server), "server", &listening, &client_end),
        (fd(&client), "client", &client_end, &listening),
    ] {
        let connection = shown(&capture, socket);
        let field = |name: &str| connection[name].as_str().map(str::to_owned);
        assert_eq!(
            [
                field("role"),
                field("transport"),
                field("local"),
                field("peer")
            ],
            [role, "inet", local, peer].map(|value| Some(value.to_owned())),
            "{connection}"
        );
        assert_eq!(connection[format!("{role}_requests_in_flight")], 1);
    }
    assert_eq!(shown(&capture, fd(&unix))["transport"], "unix");
    let closed = shown(&capture, closed_fd);
    assert_eq!(closed["transport"], "unknown");
    assert!(
        closed["error"].as_str().unwrap().contains("cannot get fd"),
        "{closed}"
    );

    // A close forgets the connection.
    capture.handle(
        &[record(IoEventKind::Close, me, fd(&server), 2, b"")],
        &discovery,
    );
    assert!(
        serde_json::to_value(capture.connections())
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .all(|connection| connection["fd"] != fd(&server))
    );
}

#[test]
fn past_its_bound_capture_forgets_the_idlest_connections_and_counts_them() {
    let (pid, discovery, _, _) = setup(Publication::Published);
    let (mut capture, exposition) = capture_following(16);
    // 40 connections, each with a request still waiting for its response; fd n last active at n ms.
    let requests: Vec<IoRecord> = (0..40)
        .map(|fd| {
            record(
                Receive,
                pid,
                fd,
                1_000 + u64::from(fd),
                b"GET /a HTTP/1.1\r\n\r\n",
            )
        })
        .collect();
    capture.handle(&requests, &discovery);
    let followed: Vec<u32> = capture.connections().iter().map(|row| row.fd).collect();
    assert!(followed.len() <= 16, "{followed:?}");
    assert!(followed.contains(&39), "the newest is kept: {followed:?}");
    assert!(
        !followed.contains(&0),
        "the idlest went first: {followed:?}"
    );
    let evicted = sample(&exposition, "vigil_capture_connections_evicted_total");
    assert_eq!(evicted as usize + followed.len(), 40);
    assert_eq!(
        sample(&exposition, "vigil_capture_connections"),
        followed.len() as f64
    );
    // A kept connection's response is paired; a forgotten one's invents nothing, and its next request
    // is counted again (adopted).
    capture.handle(
        &[
            record(
                Send,
                pid,
                39,
                2_000,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            ),
            record(
                Send,
                pid,
                0,
                2_001,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            ),
            record(Receive, pid, 0, 2_002, b"GET /a HTTP/1.1\r\n\r\n"),
            record(
                Send,
                pid,
                0,
                2_003,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            ),
        ],
        &discovery,
    );
    assert_eq!(server_count(&exposition, "GET", 200, "/a"), 2.0);
}
