//! The RED families: request duration and body sizes per side, with the HTTP labels (method, status,
//! server route) and the identity labels of [`NAMES`], in OpenTelemetry semantic-convention names.
//!
//! Metrics: `http_server_request_duration_seconds`, `http_client_request_duration_seconds`,
//! `http_{server,client}_{request,response}_body_size_bytes` (histograms),
//! `vigil_route_overflow_total{service_name}`.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Registry};

use super::{Side, counter_vec, labels::NAMES, register};
use crate::config::MetricsConfig;

/// The histogram families of one side: duration and body sizes, all with the same labels.
#[derive(Clone)]
pub(super) struct SideFamilies {
    duration: HistogramVec,
    request_body: HistogramVec,
    response_body: HistogramVec,
}

impl SideFamilies {
    /// Indexed by [`DURATION`], [`REQUEST_BODY`], [`RESPONSE_BODY`].
    pub(super) fn all(&self) -> [&HistogramVec; 3] {
        [&self.duration, &self.request_body, &self.response_body]
    }
}

/// Indices of a side's families in [`SideFamilies::all`] and of a series' histograms.
pub(super) const DURATION: usize = 0;
pub(super) const REQUEST_BODY: usize = 1;
pub(super) const RESPONSE_BODY: usize = 2;

/// The RED families of both sides.
#[derive(Clone)]
pub struct RedFamilies {
    server: SideFamilies,
    client: SideFamilies,
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
        let (durations, sizes) = (&config.duration_buckets, &config.body_size_buckets);
        RedFamilies {
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
            route_overflow: counter_vec(
                registry,
                "vigil_route_overflow_total",
                "Server requests given the route _overflow because their service reached metrics.max_routes_per_service.",
                &["service_name"],
            ),
        }
    }

    pub(super) fn families(&self, side: Side) -> &SideFamilies {
        match side {
            Side::Server => &self.server,
            Side::Client => &self.client,
        }
    }
}
