//! The RED series store: records each exchange into the histograms of its label set (the server route
//! derived from the target, and the gRPC method, bounded per service, see [`super::routes`]), and
//! removes a series not
//! updated for `metrics.ttl`, or whose last updating process has been gone for [`PROCESS_GONE_GRACE`]
//! (another replica updating it keeps it).

use std::{
    hash::BuildHasher,
    time::{Duration, Instant},
};

use foldhash::HashMap;
use prometheus::Histogram;

use super::{
    Call, Exchange, Measure, ServiceLabels, Side, UNKNOWN_ROUTE,
    red::{DURATION, REQUEST_BODY, RESPONSE_BODY, RedFamilies, SeriesKind},
    routes::{self, OVERFLOW_ROUTE, RouteLimiter},
};
use crate::config::MetricsConfig;

/// How long a series outlives the last process that updated it, unless another one does.
pub const PROCESS_GONE_GRACE: Duration = Duration::from_secs(30);

/// One label set of a kind, kept to remove its series later (from every family of the kind): its
/// label values, and the process that last updated it.
#[derive(Debug)]
struct Series {
    kind: SeriesKind,
    labels: Vec<String>,
    last_update: Instant,
    last_tgid: u32,
    /// Since when `last_tgid` has not been captured.
    gone_since: Option<Instant>,
    /// Its histogram in each family of the side, got at its first observation there (looking a label
    /// set up in a family hashes every value, once per series instead of once per request).
    histograms: [Option<Histogram>; 3],
}

impl Series {
    /// Its value under the per-service cap: the `http_route` of a server series, the `rpc_method` of a
    /// gRPC series (the overflow value holds no place under the cap).
    fn route(&self) -> Option<&str> {
        self.kind
            .capped_label()
            .map(|index| self.labels[index].as_str())
            .filter(|route| *route != OVERFLOW_ROUTE)
    }

    /// Its `service_name`.
    fn service_name(&self) -> &str {
        &self.labels[self.kind.first_identity_label()]
    }
}

/// Every RED series vigil exports, with when and by which process each was last updated.
pub struct RedSeries {
    /// By a 64-bit hash of side and label values (foldhash's quality variant, which passes SMHasher, at
    /// a fraction of SipHash's cost), so that updating a known series allocates nothing.
    series: HashMap<u64, Series>,
    routes: RouteLimiter,
    /// `metrics.routes`: patterns tried before the heuristic.
    route_patterns: Vec<String>,
    ttl: Duration,
    families: RedFamilies,
}

impl RedSeries {
    pub fn new(config: &MetricsConfig, families: RedFamilies) -> Self {
        RedSeries {
            series: HashMap::default(),
            routes: RouteLimiter::new(config.max_routes_per_service, config.max_segment_values),
            route_patterns: config.routes.clone(),
            ttl: config.ttl,
            families,
        }
    }

    /// Removes the series idle for longer than the TTL, and those whose last updating process has been
    /// gone (not `is_captured`) for [`PROCESS_GONE_GRACE`].
    pub fn expire(&mut self, is_captured: impl Fn(u32) -> bool, now: Instant) {
        let ttl = self.ttl;
        let families = &self.families;
        let routes = &mut self.routes;
        self.series.retain(|_, series| {
            let captured = is_captured(series.last_tgid);
            let gone_since = match captured {
                true => None,
                false => Some(*series.gone_since.get_or_insert(now)),
            };
            series.gone_since = gone_since;
            let keep = now.saturating_duration_since(series.last_update) < ttl
                && gone_since
                    .is_none_or(|since| now.saturating_duration_since(since) < PROCESS_GONE_GRACE);
            if !keep {
                if let Some(route) = series.route() {
                    routes.release(series.service_name(), route);
                }
                let values: Vec<&str> = series.labels.iter().map(String::as_str).collect();
                for family in families.families(series.kind) {
                    // A family this label set never updated (no body size observed) has nothing.
                    let _ = family.remove_label_values(&values);
                }
            }
            keep
        });
    }

    /// Records `exchange` of process `tgid`, whose identity labels are `labels`.
    pub fn record(&mut self, labels: &ServiceLabels, tgid: u32, exchange: Exchange) {
        let service_name = labels.service_name();
        let is_request = matches!(exchange.measure, Measure::Request { .. });
        let (kind, status, capped);
        let values: Vec<&str> = match (&exchange.call, exchange.side) {
            (
                Call::Http {
                    method,
                    target,
                    status: code,
                },
                Side::Server,
            ) => {
                kind = SeriesKind::HttpServer;
                status = code.to_string();
                let (derived, from_pattern) = match target.is_empty() {
                    true => (UNKNOWN_ROUTE.to_owned(), true),
                    false => routes::route(&self.route_patterns, target),
                };
                capped = self.admit(service_name, &derived, from_pattern, is_request);
                [*method, &status, capped.as_str()]
                    .into_iter()
                    .chain(labels.values())
                    .collect()
            }
            (
                Call::Http {
                    method,
                    status: code,
                    ..
                },
                Side::Client,
            ) => {
                kind = SeriesKind::HttpClient;
                status = code.to_string();
                [*method, &status]
                    .into_iter()
                    .chain(labels.values())
                    .collect()
            }
            (Call::Rpc { method, status }, side) => {
                kind = match side {
                    Side::Server => SeriesKind::RpcServer,
                    Side::Client => SeriesKind::RpcClient,
                };
                capped = self.admit(service_name, method, true, is_request);
                ["grpc", capped.as_str(), *status]
                    .into_iter()
                    .chain(labels.values())
                    .collect()
            }
        };
        let key = foldhash::quality::FixedState::default().hash_one((kind, &values));
        let now = Instant::now();
        let routes = &mut self.routes;
        let series = self.series.entry(key).or_insert_with(|| {
            let series = Series {
                kind,
                labels: values.iter().map(|value| value.to_string()).collect(),
                last_update: now,
                last_tgid: tgid,
                gone_since: None,
                histograms: [None, None, None],
            };
            if let Some(route) = series.route() {
                routes.hold(series.service_name(), route);
            }
            series
        });
        series.last_update = now;
        series.last_tgid = tgid;
        series.gone_since = None;
        let families = self.families.families(kind);
        let mut observe = |family: usize, value: f64| {
            // A family not exported (body sizes off, or gRPC's) observes nothing.
            let Some(vec) = families.get(family) else {
                return;
            };
            series.histograms[family]
                .get_or_insert_with(|| vec.with_label_values(&values))
                .observe(value);
        };
        match exchange.measure {
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

    /// `route` (an HTTP server route or a gRPC method) of `service`, or the overflow value when the
    /// service has reached the cap (counted once per request, not again for its late response body).
    fn admit(
        &mut self,
        service_name: &str,
        route: &str,
        from_pattern: bool,
        is_request: bool,
    ) -> String {
        let (route, admitted) = self.routes.admit(service_name, route, from_pattern);
        if !admitted && is_request {
            self.families
                .route_overflow
                .with_label_values(&[service_name])
                .inc();
        }
        route
    }
}

#[cfg(test)]
mod tests {
    use prometheus::Registry;

    use super::*;
    use crate::metrics::{encode, registry::counter_value};

    fn store(max_routes: usize, max_segment_values: usize) -> (RedSeries, Registry) {
        store_with(max_routes, max_segment_values, true)
    }

    fn store_with(
        max_routes: usize,
        max_segment_values: usize,
        body_sizes: bool,
    ) -> (RedSeries, Registry) {
        let registry = Registry::new();
        let config = MetricsConfig {
            max_routes_per_service: max_routes,
            max_segment_values,
            ttl: Duration::from_secs(300),
            routes: Vec::new(),
            duration_buckets: vec![0.1, 1.0],
            body_sizes,
            body_size_buckets: vec![100.0],
        };
        let families = RedFamilies::register(&registry, &config);
        (RedSeries::new(&config, families), registry)
    }

    fn request(target: String) -> Exchange {
        Exchange {
            side: Side::Server,
            call: Call::Http {
                method: "GET",
                target,
                status: 200,
            },
            measure: Measure::Request {
                seconds: 0.01,
                request_body: Some(0),
                response_body: Some(10),
            },
        }
    }

    /// The distinct `http_route` values exported.
    fn exported_routes(registry: &Registry) -> std::collections::BTreeSet<String> {
        encode(registry)
            .lines()
            .filter(|line| line.starts_with("http_server_request_duration_seconds_count"))
            .filter_map(|line| {
                let start = line.find("http_route=\"")? + "http_route=\"".len();
                let end = line[start..].find('"')? + start;
                Some(line[start..end].to_owned())
            })
            .collect()
    }

    /// A word of letters only (the id heuristic keeps it), distinct for each `n`.
    fn word(n: usize) -> String {
        let mut word = String::new();
        let mut rest = n;
        loop {
            word.push(char::from(b'a' + (rest % 26) as u8));
            rest /= 26;
            if rest == 0 {
                return word;
            }
        }
    }

    #[test]
    fn a_hundred_thousand_requests_of_mixed_shapes_converge_and_an_expired_route_frees_its_slot() {
        let (mut series, registry) = store(100, 10);
        let labels = ServiceLabels::host("shop", "");
        let overflow = || counter_value(&registry, "vigil_route_overflow_total");
        for n in 0..100_000 {
            let target = match n % 5 {
                0 => format!("/users/{n}/orders"),
                1 => format!("/users/{}/profile", word(n)),
                2 => format!("/static/{}.css?v={n}", word(n)),
                3 => format!("/{}", word(n)),
                _ => "/api/health".to_owned(),
            };
            series.record(&labels, 1, request(target));
        }
        let routes = exported_routes(&registry);
        // Each position keeps its first ten values and collapses the rest: far below the cap.
        assert!(routes.len() <= 40, "{} routes: {routes:?}", routes.len());
        for route in [
            "/users/{id}/orders",
            "/users/{param}/profile",
            "/static/{param}",
            "/{param}",
            "/api/health",
        ] {
            assert!(routes.contains(route), "{route} in {routes:?}");
        }
        assert_eq!(overflow(), 0.0, "the cap was never reached");

        // A small cap: the overflow counter moves only past it.
        let (mut capped, registry) = store(3, 100);
        let overflow = || counter_value(&registry, "vigil_route_overflow_total");
        for path in ["/a", "/b", "/c", "/a", "/b", "/c"] {
            capped.record(&labels, 1, request(path.to_owned()));
        }
        assert_eq!(overflow(), 0.0);
        capped.record(&labels, 1, request("/d".to_owned()));
        assert_eq!(overflow(), 1.0);
        assert!(exported_routes(&registry).contains(OVERFLOW_ROUTE));
        // Every series expires: the routes leave the cap, and a new route takes a slot.
        capped.expire(|_| true, Instant::now() + Duration::from_secs(301));
        capped.record(&labels, 1, request("/e".to_owned()));
        assert_eq!(overflow(), 1.0, "/e took a freed slot");
        assert_eq!(
            exported_routes(&registry),
            std::collections::BTreeSet::from(["/e".to_owned()])
        );
    }

    #[test]
    fn body_size_histograms_are_exported_only_when_on() {
        let labels = ServiceLabels::host("shop", "");
        for body_sizes in [true, false] {
            let (mut series, registry) = store_with(100, 10, body_sizes);
            series.record(&labels, 1, request("/a".to_owned()));
            let text = encode(&registry);
            assert!(text.contains("http_server_request_duration_seconds_count{"));
            assert_eq!(
                text.contains("http_server_response_body_size_bytes_count{"),
                body_sizes,
                "{text}"
            );
            assert_eq!(
                text.contains("http_server_request_body_size_bytes"),
                body_sizes,
                "{text}"
            );
        }
    }
}
