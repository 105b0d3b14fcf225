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
//! Metrics: `http_server_request_duration_seconds`, `http_client_request_duration_seconds` (histograms;
//! labels `http_request_method`, `http_response_status_code`, `http_route` (server), and the identity
//! labels of [`labels::NAMES`]), `vigil_route_overflow_total{service_name}`,
//! `vigil_http_unpaired_responses_total{side}`, `vigil_http_dropped_requests_total{reason}`.

pub mod http1;
pub mod labels;
pub mod route;

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use vigil_common::{IoEvent, IoEventKind};

use crate::{
    config::MetricsConfig,
    discovery::{Discovery, Publication},
    kubernetes::pods::PodStore,
    metrics::register,
};
use http1::{is_incomplete_head, parse_request, parse_status};
use labels::ServiceLabels;
use route::RouteLimiter;

/// Duration buckets (seconds), as Beyla and the OpenTelemetry HTTP conventions use.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Requests awaiting their response on one connection, per side; older ones are forgotten past this.
const MAX_PENDING_PER_CONNECTION: usize = 64;
/// Requests of one provisional process held for publication; later ones are dropped and counted.
const MAX_HELD_PER_PROCESS: usize = 100_000;
/// How long a series outlives the last process that updated it, unless another one does.
pub const PROCESS_GONE_GRACE: Duration = Duration::from_secs(30);

/// The metric families of this stage.
#[derive(Clone)]
pub struct CaptureMetrics {
    server_duration: HistogramVec,
    client_duration: HistogramVec,
    route_overflow: IntCounterVec,
    unpaired: IntCounterVec,
    dropped: IntCounterVec,
}

impl CaptureMetrics {
    pub fn register(registry: &Registry) -> Self {
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec()),
                    labels,
                )
                .expect("static"),
            )
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("static"),
            )
        };
        let metrics = CaptureMetrics {
            server_duration: histogram(
                "http_server_request_duration_seconds",
                "Duration of HTTP server requests: from reading the request line to writing the response head.",
                &[
                    &[
                        "http_request_method",
                        "http_response_status_code",
                        "http_route",
                    ][..],
                    &labels::NAMES[..],
                ]
                .concat(),
            ),
            client_duration: histogram(
                "http_client_request_duration_seconds",
                "Duration of HTTP client requests: from writing the request line to reading the response head.",
                &[
                    &["http_request_method", "http_response_status_code"][..],
                    &labels::NAMES[..],
                ]
                .concat(),
            ),
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
        };
        for side in ["server", "client"] {
            metrics.unpaired.with_label_values(&[side]);
        }
        for reason in ["short_lived", "not_selected", "hold_full"] {
            metrics.dropped.with_label_values(&[reason]);
        }
        metrics
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Side {
    Server,
    Client,
}

/// A request waiting for its response.
#[derive(Debug)]
struct Pending {
    method: &'static str,
    target: String,
    started_ns: u64,
}

/// One connection's requests in flight, per side, and the start of a head line still incomplete, per
/// direction.
#[derive(Debug, Default)]
struct Connection {
    server: VecDeque<Pending>,
    client: VecDeque<Pending>,
    received_piece: Option<HeadPiece>,
    sent_piece: Option<HeadPiece>,
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

/// A completed request.
#[derive(Debug)]
struct Observation {
    side: Side,
    method: &'static str,
    target: String,
    status: u16,
    seconds: f64,
}

/// One series of a histogram family, kept to remove it later: its family, label values, and the
/// process that last updated it.
#[derive(Debug)]
struct Series {
    side: Side,
    labels: Vec<String>,
    last_update: Instant,
    last_tgid: u32,
    /// Since when `last_tgid` has not been captured.
    gone_since: Option<Instant>,
}

/// The capture state: connections in flight, requests held for provisional processes, and when each
/// series was last updated.
pub struct Capture {
    connections: HashMap<(u32, u32), Connection>,
    held: HashMap<u32, Vec<Observation>>,
    routes: RouteLimiter,
    /// `metrics.routes`: patterns tried before the heuristic.
    route_patterns: Vec<String>,
    /// By a hash of side and label values, so that updating a known series allocates nothing.
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
            connections: HashMap::new(),
            held: HashMap::new(),
            routes: RouteLimiter::new(config.max_routes_per_service),
            route_patterns: config.routes.clone(),
            series: HashMap::new(),
            ttl: config.ttl,
            pods,
            labels: HashMap::new(),
            last_labels: HashMap::new(),
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
        let (server, client) = (&self.metrics.server_duration, &self.metrics.client_duration);
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
                let family = match series.side {
                    Side::Server => server,
                    Side::Client => client,
                };
                let _ = family.remove_label_values(&values);
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
    pub fn handle(&mut self, events: &[IoEvent], discovery: &Discovery) {
        for event in events {
            let key = (event.tgid, event.fd);
            let (received, at_ns) = match IoEventKind::from_u32(event.kind) {
                Some(IoEventKind::Receive) => (true, event.boot_time_ns),
                Some(IoEventKind::Send) => (false, event.boot_time_ns),
                Some(IoEventKind::Close) => {
                    self.connections.remove(&key);
                    continue;
                }
                None => continue,
            };
            let captured = (event.captured as usize).min(event.data.len());
            let truncated = event.length > captured as u64;
            let Some((head, started_ns)) =
                self.recognise(key, received, &event.data[..captured], truncated, at_ns)
            else {
                continue;
            };
            match (head, received) {
                (Head::Request(head), true) => {
                    self.start(key, Side::Server, head, started_ns);
                    for pipelined in http1::following_requests(&event.data[..captured], truncated) {
                        self.start(key, Side::Server, pipelined, started_ns);
                    }
                }
                (Head::Request(head), false) => self.start(key, Side::Client, head, started_ns),
                (Head::Status(status), true) => {
                    self.finish(key, Side::Client, status, at_ns, discovery)
                }
                (Head::Status(status), false) => {
                    self.finish(key, Side::Server, status, at_ns, discovery)
                }
            }
        }
    }

    /// What `data` starts, with when it started: joined to the piece of a head line the previous
    /// transfer in this direction left, if any; kept as such a piece if it looks like one.
    fn recognise(
        &mut self,
        key: (u32, u32),
        received: bool,
        data: &[u8],
        truncated: bool,
        at_ns: u64,
    ) -> Option<(Head, u64)> {
        let classify = |bytes: &[u8]| {
            parse_request(bytes, truncated)
                .map(Head::Request)
                .or_else(|| parse_status(bytes).map(Head::Status))
        };
        fn piece_slot(connection: &mut Connection, received: bool) -> &mut Option<HeadPiece> {
            match received {
                true => &mut connection.received_piece,
                false => &mut connection.sent_piece,
            }
        }
        // A transfer that is a head by itself wins over joining it to an earlier piece (which was then
        // something else, a body that happened to look like a head).
        let piece = self
            .connections
            .get_mut(&key)
            .and_then(|connection| piece_slot(connection, received).take());
        if let Some(head) = classify(data) {
            return Some((head, at_ns));
        }
        if let Some(piece) = piece {
            let mut joined = piece.bytes;
            joined.extend_from_slice(data);
            if let Some(head) = classify(&joined) {
                return Some((head, piece.at_ns));
            }
            if !truncated && is_incomplete_head(&joined) {
                let connection = self.connections.entry(key).or_default();
                *piece_slot(connection, received) = Some(HeadPiece {
                    bytes: joined,
                    at_ns: piece.at_ns,
                });
                return None;
            }
        }
        if !truncated && is_incomplete_head(data) {
            let connection = self.connections.entry(key).or_default();
            *piece_slot(connection, received) = Some(HeadPiece {
                bytes: data.to_vec(),
                at_ns,
            });
        }
        None
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
                    let dropped = self.held.remove(&tgid).map_or(0, |held| held.len());
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

    fn start(&mut self, key: (u32, u32), side: Side, head: http1::RequestHead, now_ns: u64) {
        let connection = self.connections.entry(key).or_default();
        let queue = match side {
            Side::Server => &mut connection.server,
            Side::Client => &mut connection.client,
        };
        if queue.len() == MAX_PENDING_PER_CONNECTION {
            queue.pop_front();
        }
        queue.push_back(Pending {
            method: head.method,
            target: head.target,
            started_ns: now_ns,
        });
    }

    fn finish(
        &mut self,
        key: (u32, u32),
        side: Side,
        status: u16,
        now_ns: u64,
        discovery: &Discovery,
    ) {
        // An interim response: the request goes on (101 ends HTTP/1 on the connection, so it counts).
        if (100..200).contains(&status) && status != 101 {
            return;
        }
        let pending = self
            .connections
            .get_mut(&key)
            .and_then(|connection| match side {
                Side::Server => connection.server.pop_front(),
                Side::Client => connection.client.pop_front(),
            });
        let Some(pending) = pending else {
            let label = match side {
                Side::Server => "server",
                Side::Client => "client",
            };
            self.metrics.unpaired.with_label_values(&[label]).inc();
            return;
        };
        let observation = Observation {
            side,
            method: pending.method,
            target: pending.target,
            status,
            seconds: now_ns.saturating_sub(pending.started_ns) as f64 / 1e9,
        };
        if discovery.publication(key.0) == Publication::Published
            && let Some(labels) = self.labels_of(key.0, discovery)
        {
            self.record(&labels, key.0, observation);
            return;
        }
        // Provisional, pending its pod's metadata, or not decided yet: the kernel captured it at its
        // `listen`, and the events that tell discovery about that come later in this batch (it may be
        // a known candidate until then). Held; `settle` decides after discovery has seen the batch.
        let held = self.held.entry(key.0).or_default();
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
        let (family, values): (_, Vec<&str>) = match observation.side {
            Side::Server => {
                let admitted;
                (route, admitted) = self.routes.admit(
                    service_name,
                    route::route(&self.route_patterns, &observation.target),
                );
                if !admitted {
                    self.metrics
                        .route_overflow
                        .with_label_values(&[service_name])
                        .inc();
                }
                (
                    &self.metrics.server_duration,
                    [observation.method, &status, route.as_str()]
                        .into_iter()
                        .chain(labels.values())
                        .collect(),
                )
            }
            Side::Client => (
                &self.metrics.client_duration,
                [observation.method, &status]
                    .into_iter()
                    .chain(labels.values())
                    .collect(),
            ),
        };
        family
            .with_label_values(&values)
            .observe(observation.seconds);

        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&(observation.side, &values), &mut hasher);
        let now = Instant::now();
        self.series
            .entry(std::hash::Hasher::finish(&hasher))
            .and_modify(|series| {
                series.last_update = now;
                series.last_tgid = tgid;
                series.gone_since = None;
            })
            .or_insert_with(|| Series {
                side: observation.side,
                labels: values.iter().map(|value| value.to_string()).collect(),
                last_update: now,
                last_tgid: tgid,
                gone_since: None,
            });
    }
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
