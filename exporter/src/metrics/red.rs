//! The RED families: HTTP request duration and body sizes per side, with the HTTP labels (method,
//! status, server route), and gRPC call duration per side, with the RPC labels (system, method, status
//! name); all with the identity labels of [`NAMES`], in OpenTelemetry semantic-convention names. Their
//! series are kept by [`super::series`] and written by [`super::exposition`], not by the registry; the
//! registry holds the counters and gauges of their limits.
//!
//! Metrics: `http_server_request_duration_seconds`, `http_client_request_duration_seconds`,
//! `http_{server,client}_{request,response}_body_size_bytes`, `rpc_server_call_duration_seconds`,
//! `rpc_client_call_duration_seconds` (histograms), `vigil_route_overflow_total{service_name}`,
//! `vigil_red_label_sets`, `vigil_red_label_sets_max`, `vigil_red_label_sets_limited_total{action}`.

use prometheus::{IntCounterVec, IntGauge, Registry};

use super::{counter_vec, labels::NAMES, register};
use crate::config::MetricsConfig;

/// Which families a series is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum SeriesKind {
    HttpServer,
    HttpClient,
    RpcServer,
    RpcClient,
}

impl SeriesKind {
    pub(super) const ALL: [SeriesKind; 4] = [
        SeriesKind::HttpServer,
        SeriesKind::HttpClient,
        SeriesKind::RpcServer,
        SeriesKind::RpcClient,
    ];

    /// Where its value under the per-service cap is in its label values: the server route (after
    /// method and status), the gRPC method (after the system).
    pub(super) fn capped_label(self) -> Option<usize> {
        match self {
            SeriesKind::HttpServer => Some(2),
            SeriesKind::HttpClient => None,
            SeriesKind::RpcServer | SeriesKind::RpcClient => Some(1),
        }
    }

    /// Its label names before the identity labels.
    fn call_labels(self) -> &'static [&'static str] {
        match self {
            SeriesKind::HttpServer => &[
                "http_request_method",
                "http_response_status_code",
                "http_route",
            ],
            SeriesKind::HttpClient => &["http_request_method", "http_response_status_code"],
            SeriesKind::RpcServer | SeriesKind::RpcClient => {
                &["rpc_system_name", "rpc_method", "rpc_response_status_code"]
            }
        }
    }

    /// Where the identity labels start in its label values.
    pub(super) fn first_identity_label(self) -> usize {
        self.call_labels().len()
    }

    /// Its label names, in the order of its label values.
    pub(super) fn label_names(self) -> impl Iterator<Item = &'static str> {
        self.call_labels().iter().chain(NAMES.iter()).copied()
    }
}

/// Indices of a kind's families in [`RedFamilies::families`] and of a series' histograms: HTTP has
/// all three, gRPC the duration only.
pub(super) const DURATION: usize = 0;
pub(super) const REQUEST_BODY: usize = 1;
pub(super) const RESPONSE_BODY: usize = 2;

/// A histogram family: what a scrape writes before its series, and its bucket bounds.
#[derive(Debug)]
pub(super) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub bounds: Vec<f64>,
}

/// Actions of `vigil_red_label_sets_limited_total`.
pub(super) const ROUTE_COLLAPSED: &str = "route_collapsed";
pub(super) const DROPPED: &str = "dropped";

/// The RED families of both sides and both protocols, and the metrics of their limits.
pub struct RedFamilies {
    /// Duration, then request body and response body unless `metrics.body_sizes` is off.
    http_server: Vec<Family>,
    http_client: Vec<Family>,
    /// Duration.
    rpc_server: Vec<Family>,
    rpc_client: Vec<Family>,
    pub(super) route_overflow: IntCounterVec,
    pub(super) label_sets: IntGauge,
    pub(super) limited: IntCounterVec,
}

impl RedFamilies {
    pub fn register(registry: &Registry, config: &MetricsConfig) -> Self {
        let durations = |name, help| Family {
            name,
            help,
            bounds: config.duration_buckets.clone(),
        };
        // A body size family, exported only when `metrics.body_sizes` is on.
        let body = |name, help| {
            config.body_sizes.then(|| Family {
                name,
                help,
                bounds: config.body_size_buckets.clone(),
            })
        };
        let label_sets_max = register(
            registry,
            IntGauge::new(
                "vigil_red_label_sets_max",
                "metrics.max_label_sets: the RED label sets this node may have (routes collapse to _overflow from 90% of it).",
            )
            .expect("static metric definition"),
        );
        label_sets_max.set(i64::try_from(config.max_label_sets).unwrap_or(i64::MAX));
        let limited = counter_vec(
            registry,
            "vigil_red_label_sets_limited_total",
            "Requests and calls whose new RED label set the node budget (metrics.max_label_sets) refused: action route_collapsed (recorded under the route or method _overflow), dropped (not recorded).",
            &["action"],
        );
        for action in [ROUTE_COLLAPSED, DROPPED] {
            limited.with_label_values(&[action]);
        }
        RedFamilies {
            http_server: [
                Some(durations(
                    "http_server_request_duration_seconds",
                    "Duration of HTTP server requests: from reading the request line to writing the response head.",
                )),
                body(
                    "http_server_request_body_size_bytes",
                    "Size of HTTP server request bodies: Content-Length, or for a chunked body the bytes read after the head until the response (framing included).",
                ),
                body(
                    "http_server_response_body_size_bytes",
                    "Size of HTTP server response bodies: Content-Length, or the bytes written after the head until the last chunk, the next response or the close; 0 for HEAD, 1xx, 204 and 304.",
                ),
            ]
            .into_iter()
            .flatten()
            .collect(),
            http_client: [
                Some(durations(
                    "http_client_request_duration_seconds",
                    "Duration of HTTP client requests: from writing the request line to reading the response head.",
                )),
                body(
                    "http_client_request_body_size_bytes",
                    "Size of HTTP client request bodies: Content-Length, or for a chunked body the bytes written after the head until the response (framing included).",
                ),
                body(
                    "http_client_response_body_size_bytes",
                    "Size of HTTP client response bodies: Content-Length, or the bytes read after the head until the last chunk, the next response or the close; 0 for HEAD, 1xx, 204 and 304.",
                ),
            ]
            .into_iter()
            .flatten()
            .collect(),
            rpc_server: vec![durations(
                "rpc_server_call_duration_seconds",
                "Duration of gRPC calls served: from reading the request headers to writing the end of the response (trailers, or the stream's end).",
            )],
            rpc_client: vec![durations(
                "rpc_client_call_duration_seconds",
                "Duration of gRPC calls made: from writing the request headers to reading the end of the response (trailers, or the stream's end).",
            )],
            route_overflow: counter_vec(
                registry,
                "vigil_route_overflow_total",
                "Server requests given the route _overflow, and gRPC calls the method _overflow, because their service reached metrics.max_routes_per_service.",
                &["service_name"],
            ),
            label_sets: register(
                registry,
                IntGauge::new(
                    "vigil_red_label_sets",
                    "RED label sets vigil exports now (each is a histogram in every family of its kind).",
                )
                .expect("static metric definition"),
            ),
            limited,
        }
    }

    /// The families of `kind`, indexed by [`DURATION`], [`REQUEST_BODY`], [`RESPONSE_BODY`] (those
    /// exported: gRPC and, with `metrics.body_sizes` off, HTTP have the duration only).
    pub(super) fn families(&self, kind: SeriesKind) -> &[Family] {
        match kind {
            SeriesKind::HttpServer => &self.http_server,
            SeriesKind::HttpClient => &self.http_client,
            SeriesKind::RpcServer => &self.rpc_server,
            SeriesKind::RpcClient => &self.rpc_client,
        }
    }
}
