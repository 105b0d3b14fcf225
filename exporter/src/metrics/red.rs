//! The RED families: HTTP request duration and body sizes per side, with the HTTP labels (method,
//! status, server route), and gRPC call duration per side, with the RPC labels (system, method, status
//! name); all with the identity labels of [`NAMES`], in OpenTelemetry semantic-convention names.
//!
//! Metrics: `http_server_request_duration_seconds`, `http_client_request_duration_seconds`,
//! `http_{server,client}_{request,response}_body_size_bytes`, `rpc_server_call_duration_seconds`,
//! `rpc_client_call_duration_seconds` (histograms), `vigil_route_overflow_total{service_name}`.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Registry};

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
    /// Where its value under the per-service cap is in its label values: the server route (after
    /// method and status), the gRPC method (after the system).
    pub(super) fn capped_label(self) -> Option<usize> {
        match self {
            SeriesKind::HttpServer => Some(2),
            SeriesKind::HttpClient => None,
            SeriesKind::RpcServer | SeriesKind::RpcClient => Some(1),
        }
    }

    /// Where the identity labels start in its label values.
    pub(super) fn first_identity_label(self) -> usize {
        match self {
            SeriesKind::HttpServer => 3,
            SeriesKind::HttpClient => 2,
            SeriesKind::RpcServer | SeriesKind::RpcClient => 3,
        }
    }
}

/// Indices of a kind's families in [`RedFamilies::families`] and of a series' histograms: HTTP has
/// all three, gRPC the duration only.
pub(super) const DURATION: usize = 0;
pub(super) const REQUEST_BODY: usize = 1;
pub(super) const RESPONSE_BODY: usize = 2;

/// The RED families of both sides and both protocols.
#[derive(Clone)]
pub struct RedFamilies {
    /// Duration, then request body and response body unless `metrics.body_sizes` is off.
    http_server: Vec<HistogramVec>,
    http_client: Vec<HistogramVec>,
    /// Duration.
    rpc_server: [HistogramVec; 1],
    rpc_client: [HistogramVec; 1],
    pub(super) route_overflow: IntCounterVec,
}

impl RedFamilies {
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
        let server_labels = [
            &[
                "http_request_method",
                "http_response_status_code",
                "http_route",
            ][..],
            &NAMES[..],
        ]
        .concat();
        let client_labels = [
            &["http_request_method", "http_response_status_code"][..],
            &NAMES[..],
        ]
        .concat();
        let rpc_labels = [
            &["rpc_system_name", "rpc_method", "rpc_response_status_code"][..],
            &NAMES[..],
        ]
        .concat();
        let (durations, sizes) = (&config.duration_buckets, &config.body_size_buckets);
        // A body size family, registered only when `metrics.body_sizes` is on.
        let body = |name: &str, help: &str, labels: &[&str]| {
            config
                .body_sizes
                .then(|| histogram(name, help, sizes, labels))
        };
        RedFamilies {
            http_server: [Some(
                histogram(
                    "http_server_request_duration_seconds",
                    "Duration of HTTP server requests: from reading the request line to writing the response head.",
                    durations,
                    &server_labels,
                )),
                body(
                    "http_server_request_body_size_bytes",
                    "Size of HTTP server request bodies: Content-Length, or for a chunked body the bytes read after the head until the response (framing included).",
                    &server_labels,
                ),
                body(
                    "http_server_response_body_size_bytes",
                    "Size of HTTP server response bodies: Content-Length, or the bytes written after the head until the last chunk, the next response or the close; 0 for HEAD, 1xx, 204 and 304.",
                    &server_labels,
                ),
            ]
            .into_iter()
            .flatten()
            .collect(),
            http_client: [
                Some(histogram(
                    "http_client_request_duration_seconds",
                    "Duration of HTTP client requests: from writing the request line to reading the response head.",
                    durations,
                    &client_labels,
                )),
                body(
                    "http_client_request_body_size_bytes",
                    "Size of HTTP client request bodies: Content-Length, or for a chunked body the bytes written after the head until the response (framing included).",
                    &client_labels,
                ),
                body(
                    "http_client_response_body_size_bytes",
                    "Size of HTTP client response bodies: Content-Length, or the bytes read after the head until the last chunk, the next response or the close; 0 for HEAD, 1xx, 204 and 304.",
                    &client_labels,
                ),
            ]
            .into_iter()
            .flatten()
            .collect(),
            rpc_server: [histogram(
                "rpc_server_call_duration_seconds",
                "Duration of gRPC calls served: from reading the request headers to writing the end of the response (trailers, or the stream's end).",
                durations,
                &rpc_labels,
            )],
            rpc_client: [histogram(
                "rpc_client_call_duration_seconds",
                "Duration of gRPC calls made: from writing the request headers to reading the end of the response (trailers, or the stream's end).",
                durations,
                &rpc_labels,
            )],
            route_overflow: counter_vec(
                registry,
                "vigil_route_overflow_total",
                "Server requests given the route _overflow, and gRPC calls the method _overflow, because their service reached metrics.max_routes_per_service.",
                &["service_name"],
            ),
        }
    }

    /// The families of `kind`, indexed by [`DURATION`], [`REQUEST_BODY`], [`RESPONSE_BODY`] (those
    /// exported: gRPC and, with `metrics.body_sizes` off, HTTP have the duration only).
    pub(super) fn families(&self, kind: SeriesKind) -> &[HistogramVec] {
        match kind {
            SeriesKind::HttpServer => &self.http_server,
            SeriesKind::HttpClient => &self.http_client,
            SeriesKind::RpcServer => &self.rpc_server,
            SeriesKind::RpcClient => &self.rpc_client,
        }
    }
}
