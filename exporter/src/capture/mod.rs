//! Capture: the HTTP/1.x requests of instrumented processes, recognised and paired from their socket
//! I/O records, turned into RED metrics.
//!
//! Per connection (tgid, fd), a request line read starts a server request and the next status line
//! written ends it; a request line written starts a client request and the next status line read ends
//! it. Requests are paired in order, so keep-alive connections work; interim `1xx` responses (except
//! `101 Switching Protocols`) do not end a request. A head line written in pieces (the peer sent
//! `GET ` and the rest separately) is put together across transfers. Requests pipelined in one read are
//! each counted as far as the captured bytes show them (`IO_DATA_MAX`); beyond that, their responses
//! are counted as unpaired. Connections need no accept or connect event: one that was open before
//! vigil started, or before the process was instrumented, is adopted at its next request.
//!
//! **Duration.** Server: from the return of the read that brought the request line to the return of the
//! write that sent the status line (the response head). Client: from the write of the request line to
//! the read of the status line.
//!
//! **Body sizes.** A body's size is its `Content-Length` when the head declares one; a request without
//! length or transfer coding has none (0); so has the response to `HEAD`, and a `1xx`, `204` or `304`
//! response. A chunked body, or a response delimited by the connection's close, is counted: the bytes
//! transferred after its head (chunk framing included), a request's until its response starts, a
//! response's until its last chunk, the next response on the connection, or the close; such a response
//! body is recorded when it ends. Where the body starts is known only when vigil captured the whole
//! head (the first `IO_DATA_MAX` bytes of a transfer): a body behind a longer head is not observed and
//! counted in `vigil_http_unmeasured_bodies_total`.
//!
//! **Connections.** A connection is known from its first head to its close: its role is the side of
//! its first request (the process read it: server; wrote it: client), its local and peer address are
//! looked up once from the socket itself ([`sockets`]; at most [`MAX_ADDRESS_LOOKUPS_PER_TICK`] per
//! drain tick, so a storm of short connections costs a bounded amount), and `/debug/connections`
//! lists them ([`Capture::connections_json`]).
//!
//! **Publication.** What a `provisional` process does is held, not published; it becomes series when
//! discovery publishes the process, and is dropped if the process dies first (see discovery's minimum
//! process age). So is what a process the kernel captured at its `listen` does before discovery has
//! evaluated it: published if it matches, dropped (`not_selected`) if not.
//!
//! **Labels.** `service_name`, `service_namespace` and the `k8s_*` labels of the process's pod
//! ([`labels`]); requests of a process whose pod the watcher does not know yet are held until it does.
//!
//! **Series lifecycle.** A series not updated for `metrics.ttl` is removed, and so is a series whose
//! last updating process has been gone for [`PROCESS_GONE_GRACE`] (another replica updating it keeps it).
//!
//! Metrics: `http_server_request_duration_seconds`, `http_client_request_duration_seconds`,
//! `http_{server,client}_{request,response}_body_size_bytes` (histograms; labels `http_request_method`,
//! `http_response_status_code`, `http_route` (server), and the identity labels of [`labels::NAMES`]),
//! `vigil_route_overflow_total{service_name}`, `vigil_http_unpaired_responses_total{side}`,
//! `vigil_http_dropped_requests_total{reason}`, `vigil_http_unmeasured_bodies_total{side}`.

pub mod http1;
pub mod labels;
pub mod route;
pub mod sockets;

use std::{
    collections::VecDeque,
    hash::BuildHasher,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use foldhash::HashMap;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use vigil_common::IoEventKind;

use crate::{
    config::MetricsConfig,
    discovery::{Discovery, Publication},
    kernel::IoRecord,
    metrics::register,
    pods::PodStore,
};
use http1::{
    Framing, HeadEnd, ends_chunked_body, is_incomplete_head, parse_request, parse_status,
    response_head_end,
};
use labels::ServiceLabels;
use route::RouteLimiter;
use sockets::{Addresses, ProcessHandle};

/// Requests awaiting their response on one connection, per side; older ones are forgotten past this.
const MAX_PENDING_PER_CONNECTION: usize = 64;
/// Requests of one provisional process held for publication; later ones are dropped and counted.
const MAX_HELD_PER_PROCESS: usize = 100_000;
/// Connections whose addresses are looked up per drain tick, at most (the others wait for the next).
const MAX_ADDRESS_LOOKUPS_PER_TICK: usize = 64;
/// How long a series outlives the last process that updated it, unless another one does.
pub const PROCESS_GONE_GRACE: Duration = Duration::from_secs(30);

/// The histogram families of one side: duration and body sizes, all with the same labels.
#[derive(Clone)]
struct SideFamilies {
    duration: HistogramVec,
    request_body: HistogramVec,
    response_body: HistogramVec,
}

impl SideFamilies {
    /// Indexed by [`DURATION`], [`REQUEST_BODY`], [`RESPONSE_BODY`].
    fn all(&self) -> [&HistogramVec; 3] {
        [&self.duration, &self.request_body, &self.response_body]
    }
}

/// Indices of a side's families in [`SideFamilies::all`] and of a series' histograms.
const DURATION: usize = 0;
const REQUEST_BODY: usize = 1;
const RESPONSE_BODY: usize = 2;

/// The metric families of this stage.
#[derive(Clone)]
pub struct CaptureMetrics {
    server: SideFamilies,
    client: SideFamilies,
    route_overflow: IntCounterVec,
    unpaired: IntCounterVec,
    dropped: IntCounterVec,
    unmeasured: IntCounterVec,
}

impl CaptureMetrics {
    pub fn register(registry: &Registry, config: &MetricsConfig) -> Self {
        let histogram = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                    labels,
                )
                .expect("validated buckets"),
            )
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("static"),
            )
        };
        let server_labels = [
            &[
                "http_request_method",
                "http_response_status_code",
                "http_route",
            ][..],
            &labels::NAMES[..],
        ]
        .concat();
        let client_labels = [
            &["http_request_method", "http_response_status_code"][..],
            &labels::NAMES[..],
        ]
        .concat();
        let (durations, sizes) = (&config.duration_buckets, &config.body_size_buckets);
        let metrics = CaptureMetrics {
            server: SideFamilies {
                duration: histogram(
                    "http_server_request_duration_seconds",
                    "Duration of HTTP server requests: from reading the request line to writing the response head.",
                    durations,
                    &server_labels,
                ),
                request_body: histogram(
                    "http_server_request_body_size_bytes",
                    "Size of HTTP server request bodies: Content-Length, or for a chunked body the bytes read after the head until the response (framing included).",
                    sizes,
                    &server_labels,
                ),
                response_body: histogram(
                    "http_server_response_body_size_bytes",
                    "Size of HTTP server response bodies: Content-Length, or the bytes written after the head until the last chunk, the next response or the close; 0 for HEAD, 1xx, 204 and 304.",
                    sizes,
                    &server_labels,
                ),
            },
            client: SideFamilies {
                duration: histogram(
                    "http_client_request_duration_seconds",
                    "Duration of HTTP client requests: from writing the request line to reading the response head.",
                    durations,
                    &client_labels,
                ),
                request_body: histogram(
                    "http_client_request_body_size_bytes",
                    "Size of HTTP client request bodies: Content-Length, or for a chunked body the bytes written after the head until the response (framing included).",
                    sizes,
                    &client_labels,
                ),
                response_body: histogram(
                    "http_client_response_body_size_bytes",
                    "Size of HTTP client response bodies: Content-Length, or the bytes read after the head until the last chunk, the next response or the close; 0 for HEAD, 1xx, 204 and 304.",
                    sizes,
                    &client_labels,
                ),
            },
            route_overflow: counter(
                "vigil_route_overflow_total",
                "Server requests given the route _overflow because their service reached metrics.max_routes_per_service.",
                &["service_name"],
            ),
            unpaired: counter(
                "vigil_http_unpaired_responses_total",
                "HTTP responses seen without a request to pair them with (a connection adopted mid-request), by side.",
                &["side"],
            ),
            dropped: counter(
                "vigil_http_dropped_requests_total",
                "Captured requests never published: short_lived (the process died younger than the minimum age), not_selected (captured from its listen until discovery found it matches no selector), hold_full (too many held for one provisional process).",
                &["reason"],
            ),
            unmeasured: counter(
                "vigil_http_unmeasured_bodies_total",
                "Request and response bodies whose size was not observed: their head was longer than vigil captures of a transfer (1024 bytes), so where the body starts is unknown. By side.",
                &["side"],
            ),
        };
        for side in ["server", "client"] {
            metrics.unpaired.with_label_values(&[side]);
            metrics.unmeasured.with_label_values(&[side]);
        }
        for reason in ["short_lived", "not_selected", "hold_full"] {
            metrics.dropped.with_label_values(&[reason]);
        }
        metrics
    }

    fn families(&self, side: Side) -> &SideFamilies {
        match side {
            Side::Server => &self.server,
            Side::Client => &self.client,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Side {
    Server,
    Client,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }
}

/// A request waiting for its response.
#[derive(Debug)]
struct Pending {
    method: &'static str,
    target: String,
    started_ns: u64,
    body: BodySize,
}

/// What is known of a request body's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodySize {
    /// From the head: its `Content-Length`, or 0 without length or transfer coding.
    Known(u64),
    /// Chunked: the bytes transferred after the head so far.
    Counting(u64),
    /// The head was longer than what vigil captured of it.
    Unknown,
}

impl BodySize {
    /// A request's, from the end of its head and the bytes after it in the same transfer.
    fn of_request(end: Option<HeadEnd>, bytes_after_head: u64) -> BodySize {
        match end.map(|end| end.framing) {
            Some(Framing::Length(length)) => BodySize::Known(length),
            Some(Framing::Chunked | Framing::UntilClose) => BodySize::Counting(bytes_after_head),
            None => BodySize::Unknown,
        }
    }
}

/// A response whose body ends with its last chunk or the connection's close, counted until then.
#[derive(Debug)]
struct OpenBody {
    side: Side,
    method: &'static str,
    target: String,
    status: u16,
    chunked: bool,
    bytes: u64,
}

/// One connection's requests in flight, per side; per direction, the start of a head line still
/// incomplete and the response body being counted (sent: server side; received: client side); its
/// role and addresses.
#[derive(Debug, Default)]
struct Connection {
    /// The side of its first request: `Server` when the process read it, `Client` when it wrote it.
    role: Option<Side>,
    addresses: AddressLookup,
    server: VecDeque<Pending>,
    client: VecDeque<Pending>,
    received_piece: Option<HeadPiece>,
    sent_piece: Option<HeadPiece>,
    received_body: Option<OpenBody>,
    sent_body: Option<OpenBody>,
}

impl Connection {
    fn piece(&mut self, received: bool) -> &mut Option<HeadPiece> {
        match received {
            true => &mut self.received_piece,
            false => &mut self.sent_piece,
        }
    }

    fn open_body(&mut self, received: bool) -> &mut Option<OpenBody> {
        match received {
            true => &mut self.received_body,
            false => &mut self.sent_body,
        }
    }

    fn queue(&mut self, side: Side) -> &mut VecDeque<Pending> {
        match side {
            Side::Server => &mut self.server,
            Side::Client => &mut self.client,
        }
    }
}

/// A connection's addresses, looked up once (see [`sockets`]).
#[derive(Debug, Default)]
enum AddressLookup {
    #[default]
    Pending,
    Found(Addresses),
    Failed(String),
}

/// The start of a request or status line whose rest has not been transferred yet.
#[derive(Debug)]
struct HeadPiece {
    bytes: Vec<u8>,
    at_ns: u64,
}

/// What the start of a transfer is.
enum Head {
    Request(http1::RequestHead),
    Status(u16),
}

/// What a transfer is to its connection.
enum Transfer {
    /// It starts a head (possibly completing pieces transferred before).
    Head {
        head: Head,
        started_ns: u64,
        /// Where the head ends, when captured whole.
        end: Option<HeadEnd>,
        /// Bytes of the head carried by earlier transfers (pieces).
        earlier: u64,
    },
    /// The start of a head line, kept until the rest comes.
    Piece,
    /// Anything else: body bytes, or bytes vigil does not follow.
    Other,
}

/// A completed request, or the end of a response body counted after it.
#[derive(Debug)]
struct Observation {
    side: Side,
    method: &'static str,
    target: String,
    status: u16,
    measure: Measure,
}

#[derive(Debug)]
enum Measure {
    /// A request answered: its duration, and its bodies' sizes known by then.
    Request {
        seconds: f64,
        request_body: Option<u64>,
        response_body: Option<u64>,
    },
    /// A response body that ended after its head was recorded.
    ResponseBody(u64),
}

/// One label set of a side, kept to remove its series later (from every family of the side): its
/// label values, and the process that last updated it.
#[derive(Debug)]
struct Series {
    side: Side,
    labels: Vec<String>,
    last_update: Instant,
    last_tgid: u32,
    /// Since when `last_tgid` has not been captured.
    gone_since: Option<Instant>,
    /// Its histogram in each family of the side, got at its first observation there (looking a label
    /// set up in a family hashes every value, once per series instead of once per request).
    histograms: [Option<Histogram>; 3],
}

/// The capture state: connections in flight, requests held for provisional processes, and when each
/// series was last updated.
pub struct Capture {
    connections: HashMap<(u32, u32), Connection>,
    held: HashMap<u32, Vec<Observation>>,
    routes: RouteLimiter,
    /// `metrics.routes`: patterns tried before the heuristic.
    route_patterns: Vec<String>,
    /// By a 64-bit hash of side and label values (foldhash's quality variant, which passes SMHasher, at
    /// a fraction of SipHash's cost), so that updating a known series allocates nothing.
    series: HashMap<u64, Series>,
    ttl: Duration,
    /// The pod watcher's store, when vigil watches Kubernetes.
    pods: Option<Arc<Mutex<PodStore>>>,
    /// Identity labels by tgid, resolved once and dropped on every `expire` (pods change).
    labels: HashMap<u32, Arc<ServiceLabels>>,
    /// The last labels each captured process had: a process whose pod was deleted while it lingers
    /// keeps its pod's labels rather than waiting for a pod that will not come back.
    last_labels: HashMap<u32, Arc<ServiceLabels>>,
    metrics: CaptureMetrics,
}

impl Capture {
    pub fn new(
        config: &MetricsConfig,
        pods: Option<Arc<Mutex<PodStore>>>,
        metrics: CaptureMetrics,
    ) -> Self {
        Capture {
            connections: HashMap::default(),
            held: HashMap::default(),
            routes: RouteLimiter::new(config.max_routes_per_service),
            route_patterns: config.routes.clone(),
            series: HashMap::default(),
            ttl: config.ttl,
            pods,
            labels: HashMap::default(),
            last_labels: HashMap::default(),
            metrics,
        }
    }

    /// Removes the series idle for longer than the TTL, and those whose last updating process has been
    /// gone for [`PROCESS_GONE_GRACE`]; forgets the resolved labels (pods change).
    pub fn expire(&mut self, discovery: &Discovery, now: Instant) {
        self.labels.clear();
        self.last_labels
            .retain(|tgid, _| discovery.publication(*tgid).is_captured());
        let ttl = self.ttl;
        let metrics = &self.metrics;
        self.series.retain(|_, series| {
            let captured = discovery.publication(series.last_tgid).is_captured();
            let gone_since = match captured {
                true => None,
                false => Some(*series.gone_since.get_or_insert(now)),
            };
            series.gone_since = gone_since;
            let keep = now.saturating_duration_since(series.last_update) < ttl
                && gone_since
                    .is_none_or(|since| now.saturating_duration_since(since) < PROCESS_GONE_GRACE);
            if !keep {
                let values: Vec<&str> = series.labels.iter().map(String::as_str).collect();
                for family in metrics.families(series.side).all() {
                    // A family this label set never updated (no body size observed) has nothing.
                    let _ = family.remove_label_values(&values);
                }
            }
            keep
        });
    }

    /// The identity labels of `tgid`; `None` while its pod is not known yet (or it is gone).
    fn labels_of(&mut self, tgid: u32, discovery: &Discovery) -> Option<Arc<ServiceLabels>> {
        if let Some(labels) = self.labels.get(&tgid) {
            return Some(labels.clone());
        }
        let (service_name, container) = discovery.service_of(tgid)?;
        let Some(labels) = labels::resolve(service_name, container, self.pods.as_ref()) else {
            return self.last_labels.get(&tgid).cloned();
        };
        let labels = Arc::new(labels);
        self.labels.insert(tgid, labels.clone());
        self.last_labels.insert(tgid, labels.clone());
        Some(labels)
    }

    /// Applies I/O records, in order.
    pub fn handle(&mut self, records: &[IoRecord], discovery: &Discovery) {
        for record in records {
            let key = (record.tgid, record.fd);
            let received = match record.kind {
                IoEventKind::Receive => true,
                IoEventKind::Send => false,
                IoEventKind::Close => {
                    self.close(key, discovery);
                    continue;
                }
            };
            let (head, started_ns, end, earlier) = match self.recognise(key, received, record) {
                Transfer::Head {
                    head,
                    started_ns,
                    end,
                    earlier,
                } => (head, started_ns, end, earlier),
                Transfer::Piece => continue,
                Transfer::Other => {
                    self.count_body(key, received, record, discovery);
                    continue;
                }
            };
            // The message's bytes after its head, in this transfer.
            let after_head = end.map_or(0, |end| {
                (earlier + record.length).saturating_sub(end.length as u64)
            });
            match (head, received) {
                (Head::Request(head), true) => {
                    // Only a head that starts this transfer can have others after it here.
                    let following = match earlier {
                        0 => http1::following_requests(&record.data, &head, record.is_truncated()),
                        _ => Vec::new(),
                    };
                    let body = BodySize::of_request(end, after_head);
                    self.start(key, Side::Server, head, started_ns, body);
                    for pipelined in following {
                        let end = pipelined.head.end;
                        let after_head = end.map_or(0, |end| {
                            record
                                .length
                                .saturating_sub((pipelined.offset + end.length) as u64)
                        });
                        let body = BodySize::of_request(end, after_head);
                        self.start(key, Side::Server, pipelined.head, started_ns, body);
                    }
                }
                (Head::Request(head), false) => {
                    let body = BodySize::of_request(end, after_head);
                    self.start(key, Side::Client, head, started_ns, body);
                }
                (Head::Status(status), received) => {
                    let side = match received {
                        true => Side::Client,
                        false => Side::Server,
                    };
                    let response = Response {
                        status,
                        end,
                        after_head,
                        ends_body: !record.is_truncated() && ends_chunked_body(&record.data),
                        at_ns: record.boot_time_ns,
                    };
                    self.finish(key, side, response, discovery);
                }
            }
        }
    }

    /// What `record` is to its connection: a head (joined to the piece of a head line the previous
    /// transfer in this direction left, if any), such a piece, or other bytes.
    fn recognise(&mut self, key: (u32, u32), received: bool, record: &IoRecord) -> Transfer {
        let (data, truncated, at_ns) =
            (&record.data[..], record.is_truncated(), record.boot_time_ns);
        let classify = |bytes: &[u8]| {
            if let Some(head) = parse_request(bytes, truncated) {
                let end = head.end;
                return Some((Head::Request(head), end));
            }
            parse_status(bytes).map(|status| (Head::Status(status), response_head_end(bytes)))
        };
        // A transfer that is a head by itself wins over joining it to an earlier piece (which was then
        // something else, a body that happened to look like a head).
        let piece = self
            .connections
            .get_mut(&key)
            .and_then(|connection| connection.piece(received).take());
        if let Some((head, end)) = classify(data) {
            return Transfer::Head {
                head,
                started_ns: at_ns,
                end,
                earlier: 0,
            };
        }
        if let Some(piece) = piece {
            let earlier = piece.bytes.len() as u64;
            let mut joined = piece.bytes;
            joined.extend_from_slice(data);
            if let Some((head, end)) = classify(&joined) {
                return Transfer::Head {
                    head,
                    started_ns: piece.at_ns,
                    end,
                    earlier,
                };
            }
            if !truncated && is_incomplete_head(&joined) {
                let connection = self.connections.entry(key).or_default();
                *connection.piece(received) = Some(HeadPiece {
                    bytes: joined,
                    at_ns: piece.at_ns,
                });
                return Transfer::Piece;
            }
        }
        if !truncated && is_incomplete_head(data) {
            let connection = self.connections.entry(key).or_default();
            *connection.piece(received) = Some(HeadPiece {
                bytes: data.to_vec(),
                at_ns,
            });
            return Transfer::Piece;
        }
        Transfer::Other
    }

    /// Bytes that are not a head: part of the response body being counted in their direction, or of the
    /// chunked body of the last request.
    fn count_body(
        &mut self,
        key: (u32, u32),
        received: bool,
        record: &IoRecord,
        discovery: &Discovery,
    ) {
        let Some(connection) = self.connections.get_mut(&key) else {
            return;
        };
        if let Some(open) = connection.open_body(received) {
            open.bytes += record.length;
            if open.chunked && !record.is_truncated() && ends_chunked_body(&record.data) {
                self.end_body(key, received, discovery);
            }
            return;
        }
        let side = match received {
            true => Side::Server,
            false => Side::Client,
        };
        if let Some(Pending {
            body: BodySize::Counting(bytes),
            ..
        }) = connection.queue(side).back_mut()
        {
            *bytes += record.length;
        }
    }

    /// Records the size of the response body counted in a direction of a connection, if one is.
    fn end_body(&mut self, key: (u32, u32), received: bool, discovery: &Discovery) {
        let Some(open) = self
            .connections
            .get_mut(&key)
            .and_then(|connection| connection.open_body(received).take())
        else {
            return;
        };
        let observation = Observation {
            side: open.side,
            method: open.method,
            target: open.target,
            status: open.status,
            measure: Measure::ResponseBody(open.bytes),
        };
        self.observe(key.0, observation, discovery);
    }

    /// A connection closed: the bodies it was counting end, and it is forgotten.
    fn close(&mut self, key: (u32, u32), discovery: &Discovery) {
        self.end_body(key, true, discovery);
        self.end_body(key, false, discovery);
        self.connections.remove(&key);
    }

    /// Publishes the requests held for processes discovery has published since, drops those of processes
    /// that are gone, and forgets the connections of processes no longer captured.
    pub fn settle(&mut self, discovery: &Discovery) {
        let tgids: Vec<u32> = self.held.keys().copied().collect();
        for tgid in tgids {
            match discovery.publication(tgid) {
                Publication::Provisional => {}
                Publication::Published => {
                    // Still pending its pod's metadata: keep holding.
                    let Some(labels) = self.labels_of(tgid, discovery) else {
                        continue;
                    };
                    for observation in self.held.remove(&tgid).unwrap_or_default() {
                        self.record(&labels, tgid, observation);
                    }
                }
                gone_or_unselected => {
                    // Requests, not the late response body sizes held with them.
                    let dropped = self.held.remove(&tgid).map_or(0, |held| {
                        held.iter()
                            .filter(|held| matches!(held.measure, Measure::Request { .. }))
                            .count()
                    });
                    self.metrics
                        .dropped
                        .with_label_values(&[drop_reason(&gone_or_unselected)])
                        .inc_by(dropped as u64);
                }
            }
        }
        self.connections
            .retain(|(tgid, _), _| discovery.publication(*tgid).is_captured());
    }

    /// Looks up the addresses of connections seen since the last call (at most
    /// [`MAX_ADDRESS_LOOKUPS_PER_TICK`]), once per connection.
    pub fn look_up_addresses(&mut self) {
        let mut pending: Vec<(u32, u32)> = self
            .connections
            .iter()
            .filter(|(_, connection)| matches!(connection.addresses, AddressLookup::Pending))
            .map(|(key, _)| *key)
            .take(MAX_ADDRESS_LOOKUPS_PER_TICK)
            .collect();
        // Sorted, so that each process is opened once for all its connections.
        pending.sort_unstable();
        for connections in pending.chunk_by(|one, other| one.0 == other.0) {
            let tgid = connections[0].0;
            let process = ProcessHandle::open(tgid);
            for &(_, fd) in connections {
                let lookup = match &process {
                    Ok(process) => match process.addresses(fd) {
                        Ok(addresses) => AddressLookup::Found(addresses),
                        Err(error) => AddressLookup::Failed(error.to_string()),
                    },
                    Err(error) => AddressLookup::Failed(error.to_string()),
                };
                if let Some(connection) = self.connections.get_mut(&(tgid, fd)) {
                    connection.addresses = lookup;
                }
            }
        }
    }

    /// The connections with requests in flight or bytes being followed, for `/debug/connections`.
    pub fn connections_json(&self) -> serde_json::Value {
        let mut keys: Vec<&(u32, u32)> = self.connections.keys().collect();
        keys.sort_unstable();
        let connections: Vec<serde_json::Value> = keys
            .into_iter()
            .map(|key| {
                let connection = &self.connections[key];
                let mut json = serde_json::json!({
                    "pid": key.0,
                    "fd": key.1,
                    "role": connection.role.map(Side::label),
                    "server_requests_in_flight": connection.server.len(),
                    "client_requests_in_flight": connection.client.len(),
                });
                match &connection.addresses {
                    AddressLookup::Pending => json["transport"] = "pending".into(),
                    AddressLookup::Found(Addresses::Inet { local, peer }) => {
                        json["transport"] = "inet".into();
                        json["local"] = local.to_string().into();
                        json["peer"] = peer.to_string().into();
                    }
                    AddressLookup::Found(Addresses::Unix) => json["transport"] = "unix".into(),
                    AddressLookup::Failed(error) => {
                        json["transport"] = "unknown".into();
                        json["error"] = error.clone().into();
                    }
                }
                json
            })
            .collect();
        serde_json::json!({ "connections": connections })
    }

    fn start(
        &mut self,
        key: (u32, u32),
        side: Side,
        head: http1::RequestHead,
        now_ns: u64,
        body: BodySize,
    ) {
        let connection = self.connections.entry(key).or_default();
        connection.role.get_or_insert(side);
        let queue = connection.queue(side);
        if queue.len() == MAX_PENDING_PER_CONNECTION {
            queue.pop_front();
        }
        queue.push_back(Pending {
            method: head.method,
            target: head.target,
            started_ns: now_ns,
            body,
        });
    }

    /// A response head on `side`: ends the request it answers (and the body counted of the response
    /// before it).
    fn finish(&mut self, key: (u32, u32), side: Side, response: Response, discovery: &Discovery) {
        let status = response.status;
        // An interim response: the request goes on (101 ends HTTP/1 on the connection, so it counts).
        if (100..200).contains(&status) && status != 101 {
            return;
        }
        let sent = side == Side::Server;
        self.end_body(key, !sent, discovery);
        let pending = self
            .connections
            .get_mut(&key)
            .and_then(|connection| connection.queue(side).pop_front());
        let Some(pending) = pending else {
            self.metrics
                .unpaired
                .with_label_values(&[side.label()])
                .inc();
            return;
        };
        let request_body = match pending.body {
            BodySize::Known(bytes) | BodySize::Counting(bytes) => Some(bytes),
            BodySize::Unknown => None,
        };
        let bodiless = pending.method == "HEAD" || matches!(status, 101 | 204 | 304);
        let framing = response.end.map(|end| end.framing);
        let response_body = match framing {
            _ if bodiless => Some(0),
            Some(Framing::Length(length)) => Some(length),
            Some(Framing::Chunked) if response.ends_body => Some(response.after_head),
            Some(framing) => {
                // Counted from here until the body ends; recorded then.
                let connection = self.connections.entry(key).or_default();
                *connection.open_body(!sent) = Some(OpenBody {
                    side,
                    method: pending.method,
                    target: pending.target.clone(),
                    status,
                    chunked: framing == Framing::Chunked,
                    bytes: response.after_head,
                });
                None
            }
            None => None,
        };
        let unmeasured =
            u64::from(request_body.is_none()) + u64::from(framing.is_none() && !bodiless);
        if unmeasured > 0 {
            self.metrics
                .unmeasured
                .with_label_values(&[side.label()])
                .inc_by(unmeasured);
        }
        let observation = Observation {
            side,
            method: pending.method,
            target: pending.target,
            status,
            measure: Measure::Request {
                seconds: response.at_ns.saturating_sub(pending.started_ns) as f64 / 1e9,
                request_body,
                response_body,
            },
        };
        self.observe(key.0, observation, discovery);
    }

    /// Records an observation of `tgid` if discovery has published it and its labels are known; holds
    /// it otherwise.
    fn observe(&mut self, tgid: u32, observation: Observation, discovery: &Discovery) {
        if discovery.publication(tgid) == Publication::Published
            && let Some(labels) = self.labels_of(tgid, discovery)
        {
            self.record(&labels, tgid, observation);
            return;
        }
        // Provisional, pending its pod's metadata, or not decided yet: the kernel captured it at its
        // `listen`, and the events that tell discovery about that come later in this batch (it may be
        // a known candidate until then). Held; `settle` decides after discovery has seen the batch.
        let held = self.held.entry(tgid).or_default();
        if held.len() < MAX_HELD_PER_PROCESS {
            held.push(observation);
        } else {
            self.metrics.dropped.with_label_values(&["hold_full"]).inc();
        }
    }

    fn record(&mut self, labels: &ServiceLabels, tgid: u32, observation: Observation) {
        let status = observation.status.to_string();
        let service_name = labels.service_name();
        let route;
        let values: Vec<&str> = match observation.side {
            Side::Server => {
                let admitted;
                (route, admitted) = self.routes.admit(
                    service_name,
                    route::route(&self.route_patterns, &observation.target),
                );
                // Counted once per request, not again for its late response body.
                if !admitted && matches!(observation.measure, Measure::Request { .. }) {
                    self.metrics
                        .route_overflow
                        .with_label_values(&[service_name])
                        .inc();
                }
                [observation.method, &status, route.as_str()]
                    .into_iter()
                    .chain(labels.values())
                    .collect()
            }
            Side::Client => [observation.method, &status]
                .into_iter()
                .chain(labels.values())
                .collect(),
        };
        let key = foldhash::quality::FixedState::default().hash_one((observation.side, &values));
        let now = Instant::now();
        let series = self.series.entry(key).or_insert_with(|| Series {
            side: observation.side,
            labels: values.iter().map(|value| value.to_string()).collect(),
            last_update: now,
            last_tgid: tgid,
            gone_since: None,
            histograms: [None, None, None],
        });
        series.last_update = now;
        series.last_tgid = tgid;
        series.gone_since = None;
        let families = self.metrics.families(observation.side).all();
        let mut observe = |family: usize, value: f64| {
            series.histograms[family]
                .get_or_insert_with(|| families[family].with_label_values(&values))
                .observe(value);
        };
        match observation.measure {
            Measure::Request {
                seconds,
                request_body,
                response_body,
            } => {
                observe(DURATION, seconds);
                if let Some(bytes) = request_body {
                    observe(REQUEST_BODY, bytes as f64);
                }
                if let Some(bytes) = response_body {
                    observe(RESPONSE_BODY, bytes as f64);
                }
            }
            Measure::ResponseBody(bytes) => observe(RESPONSE_BODY, bytes as f64),
        }
    }
}

/// A response head as captured.
struct Response {
    status: u16,
    /// Where the head ends, when captured whole.
    end: Option<HeadEnd>,
    /// The response's bytes after its head, in the transfer that carried the head.
    after_head: u64,
    /// Whether that transfer ends a chunked body (its last chunk is there).
    ends_body: bool,
    at_ns: u64,
}

/// The `reason` label of requests dropped because of what discovery says of their process.
fn drop_reason(publication: &Publication) -> &'static str {
    match publication {
        Publication::NotSelected => "not_selected",
        _ => "short_lived",
    }
}

#[cfg(test)]
mod tests;
