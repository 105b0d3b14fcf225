//! The RED series store: records each exchange into the histograms of its label set (the server route
//! derived from the target, and the gRPC method, bounded per service, see [`super::routes`]), within
//! the node's budget of label sets, and removes a series not updated for `metrics.ttl`, or whose last
//! updating process has been gone for [`PROCESS_GONE_GRACE`] (another replica updating it keeps it).
//!
//! **The node budget** (`metrics.max_label_sets`): routes give way first. From 90 % of the budget, a
//! new server route or gRPC method is recorded under `_overflow` (its service, method and status stay
//! apart), so pods keep their series; at the budget, an exchange that would create a label set is not
//! recorded. Both are counted in `vigil_red_label_sets_limited_total`. The registry's metrics (coverage
//! gauges, vigil's own) are outside the budget and never dropped.

use std::{
    hash::BuildHasher,
    sync::Arc,
    time::{Duration, Instant},
};

use foldhash::HashMap;

use super::{
    Call, Exchange, Measure, ServiceLabels, Side, UNKNOWN_ROUTE,
    exposition::{RedExposition, SeriesCells, SeriesIndex},
    red::{
        DROPPED, DURATION, REQUEST_BODY, RESPONSE_BODY, ROUTE_COLLAPSED, RedFamilies, SeriesKind,
    },
    routes::{self, OVERFLOW_ROUTE, RouteLimiter},
};
use crate::config::MetricsConfig;

/// How long a series outlives the last process that updated it, unless another one does.
pub const PROCESS_GONE_GRACE: Duration = Duration::from_secs(30);

/// One label set: its histograms, and what removing it needs (its place under the per-service cap,
/// when and by which process it was last updated).
#[derive(Debug)]
struct Series {
    /// Its `service_name` and value under the per-service cap (the `http_route` of a server series,
    /// the `rpc_method` of a gRPC series), unless it has none or it is the overflow value.
    capped: Option<(Box<str>, Box<str>)>,
    last_update: Instant,
    last_tgid: u32,
    /// Since when `last_tgid` has not been captured.
    gone_since: Option<Instant>,
    cells: Arc<SeriesCells>,
}

/// Every RED series vigil exports, with when and by which process each was last updated.
pub struct RedSeries {
    /// By a 64-bit hash of kind and label values (foldhash's quality variant, which passes SMHasher, at
    /// a fraction of SipHash's cost), so that updating a known series allocates nothing.
    series: HashMap<u64, Series>,
    /// The same label sets' histograms, for scrapes.
    index: SeriesIndex,
    routes: RouteLimiter,
    /// `metrics.routes`: patterns tried before the heuristic.
    route_patterns: Vec<String>,
    ttl: Duration,
    /// `metrics.max_label_sets`, and the count from which new routes collapse (90 % of it).
    max_label_sets: usize,
    collapse_routes_at: usize,
    families: Arc<RedFamilies>,
}

impl RedSeries {
    pub fn new(config: &MetricsConfig, families: RedFamilies) -> Self {
        RedSeries {
            series: HashMap::default(),
            index: SeriesIndex::default(),
            routes: RouteLimiter::new(
                config.max_routes_per_service,
                config.max_segment_values,
                config.max_route_parents,
            ),
            route_patterns: config.routes.clone(),
            ttl: config.ttl,
            max_label_sets: config.max_label_sets,
            collapse_routes_at: config.max_label_sets - config.max_label_sets / 10,
            families: Arc::new(families),
        }
    }

    /// What scrapes read: the families and the live label sets.
    pub fn exposition(&self) -> RedExposition {
        RedExposition {
            families: self.families.clone(),
            index: self.index.clone(),
        }
    }

    /// Removes the series idle for longer than the TTL, and those whose last updating process has been
    /// gone (not `is_captured`) for [`PROCESS_GONE_GRACE`].
    pub fn expire(&mut self, is_captured: impl Fn(u32) -> bool, now: Instant) {
        let ttl = self.ttl;
        let routes = &mut self.routes;
        let mut removed = Vec::new();
        self.series.retain(|key, series| {
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
                if let Some((service_name, route)) = &series.capped {
                    routes.release(service_name, route);
                }
                removed.push(*key);
            }
            keep
        });
        if !removed.is_empty() {
            let mut index = self.index.lock().expect("series index lock poisoned");
            for key in removed {
                index.remove(&key);
            }
            self.families.label_sets.set(index.len() as i64);
        }
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
        let Some(key) = self.series_of(kind, &values, is_request) else {
            return;
        };
        let series = self.series.get_mut(&key).expect("series_of created it");
        series.last_update = Instant::now();
        series.last_tgid = tgid;
        series.gone_since = None;
        let (cells, families) = (&series.cells, self.families.families(kind));
        let observe = |family: usize, value: f64| {
            // A family not exported (body sizes off, or gRPC's) observes nothing.
            if let Some(exported) = families.get(family) {
                cells.histograms[family].observe(&exported.bounds, value);
            }
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

    /// The key of the series of label set `values` of `kind`, created within the node budget (see the
    /// module documentation), or `None` when the budget refuses it. Refusals are counted once per
    /// request, not again for its late response body.
    fn series_of(&mut self, kind: SeriesKind, values: &[&str], is_request: bool) -> Option<u64> {
        let key = foldhash::quality::FixedState::default().hash_one((kind, values));
        if !self.series.contains_key(&key) {
            let count = self.series.len();
            let capped_index = kind
                .capped_label()
                .filter(|index| values[*index] != OVERFLOW_ROUTE);
            if let Some(index) = capped_index.filter(|_| count >= self.collapse_routes_at) {
                if is_request {
                    self.families
                        .limited
                        .with_label_values(&[ROUTE_COLLAPSED])
                        .inc();
                }
                let mut collapsed = values.to_vec();
                collapsed[index] = OVERFLOW_ROUTE;
                // The collapsed label set exists, or is created, or is dropped (and counted so).
                return self.series_of(kind, &collapsed, is_request);
            }
            if count >= self.max_label_sets {
                if is_request {
                    self.families.limited.with_label_values(&[DROPPED]).inc();
                }
                return None;
            }
            self.create(key, kind, values);
        }
        Some(key)
    }

    /// Creates the label set `values` of `kind` under `key`: in the store, under its service's cap,
    /// and for scrapes.
    fn create(&mut self, key: u64, kind: SeriesKind, values: &[&str]) {
        let capped = kind
            .capped_label()
            .map(|index| values[index])
            .filter(|route| *route != OVERFLOW_ROUTE)
            .map(|route| {
                let service_name = values[kind.first_identity_label()];
                self.routes.hold(service_name, route);
                (service_name.into(), route.into())
            });
        let cells = Arc::new(SeriesCells::new(kind, values, &self.families));
        let mut index = self.index.lock().expect("series index lock poisoned");
        index.insert(key, cells.clone());
        self.families.label_sets.set(index.len() as i64);
        drop(index);
        self.series.insert(
            key,
            Series {
                capped,
                last_update: Instant::now(),
                last_tgid: 0,
                gone_since: None,
                cells,
            },
        );
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
    use crate::metrics::{Exposition, registry::counter_value};

    fn store(max_routes: usize, max_segment_values: usize) -> (RedSeries, Registry) {
        store_with(max_routes, max_segment_values, true, 100_000)
    }

    fn store_with(
        max_routes: usize,
        max_segment_values: usize,
        body_sizes: bool,
        max_label_sets: usize,
    ) -> (RedSeries, Registry) {
        let registry = Registry::new();
        let config = MetricsConfig {
            max_routes_per_service: max_routes,
            max_segment_values,
            max_route_parents: 10_000,
            max_label_sets,
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

    /// What `/metrics` would serve.
    fn text(series: &RedSeries, registry: &Registry) -> String {
        Exposition::new(registry.clone(), series.exposition()).text()
    }

    /// The distinct `http_route` values exported.
    fn exported_routes(
        series: &RedSeries,
        registry: &Registry,
    ) -> std::collections::BTreeSet<String> {
        text(series, registry)
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
        let routes = exported_routes(&series, &registry);
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
        assert!(exported_routes(&capped, &registry).contains(OVERFLOW_ROUTE));
        // Every series expires: the routes leave the cap, and a new route takes a slot.
        capped.expire(|_| true, Instant::now() + Duration::from_secs(301));
        capped.record(&labels, 1, request("/e".to_owned()));
        assert_eq!(overflow(), 1.0, "/e took a freed slot");
        assert_eq!(
            exported_routes(&capped, &registry),
            std::collections::BTreeSet::from(["/e".to_owned()])
        );
    }

    #[test]
    fn body_size_histograms_are_exported_only_when_on() {
        let labels = ServiceLabels::host("shop", "");
        for body_sizes in [true, false] {
            let (mut series, registry) = store_with(100, 10, body_sizes, 100);
            series.record(&labels, 1, request("/a".to_owned()));
            let text = text(&series, &registry);
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

    #[test]
    fn the_node_budget_collapses_routes_first_then_drops_and_counts_both() {
        // 20 label sets: routes collapse from 18.
        let (mut series, registry) = store_with(1000, 1000, false, 20);
        let shop = ServiceLabels::host("shop", "");
        let limited = |action: &str| {
            registry
                .gather()
                .iter()
                .filter(|family| family.name() == "vigil_red_label_sets_limited_total")
                .flat_map(|family| family.get_metric())
                .find(|metric| metric.get_label()[0].value() == action)
                .map(|metric| metric.get_counter().get_value())
        };
        assert_eq!(
            limited(ROUTE_COLLAPSED),
            Some(0.0),
            "exported before any limit"
        );
        assert_eq!(limited(DROPPED), Some(0.0));
        for n in 0..30 {
            series.record(&shop, 1, request(format!("/{}", word(n))));
        }
        let routes = exported_routes(&series, &registry);
        assert_eq!(routes.len(), 19, "18 routes and _overflow: {routes:?}");
        assert!(routes.contains(OVERFLOW_ROUTE));
        assert_eq!(limited(ROUTE_COLLAPSED), Some(12.0));
        let overflow_count = format!(
            "http_server_request_duration_seconds_count{{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"{OVERFLOW_ROUTE}\",service_name=\"shop\"}} 12"
        );
        assert!(
            text(&series, &registry)
                .lines()
                .any(|line| line == overflow_count)
        );
        // A known route still counts; a client label set (no route) takes the last place.
        series.record(&shop, 1, request("/a".to_owned()));
        let client = |method: &'static str| Exchange {
            side: Side::Client,
            call: Call::Http {
                method,
                target: "/".to_owned(),
                status: 200,
            },
            measure: Measure::Request {
                seconds: 0.01,
                request_body: None,
                response_body: None,
            },
        };
        series.record(&shop, 1, client("GET"));
        assert_eq!(limited(DROPPED), Some(0.0));
        // The budget is spent: a new label set is dropped; a new route still counts under _overflow.
        series.record(&shop, 1, client("POST"));
        series.record(&shop, 1, request(format!("/{}", word(99))));
        assert_eq!(limited(DROPPED), Some(1.0));
        assert_eq!(limited(ROUTE_COLLAPSED), Some(13.0));
        // A new route whose _overflow label set is not there (another status) is collapsed, then
        // dropped: counted as both.
        let mut failed = request(format!("/{}", word(100)));
        failed.call = Call::Http {
            method: "GET",
            target: format!("/{}", word(100)),
            status: 500,
        };
        series.record(&shop, 1, failed);
        assert_eq!(limited(DROPPED), Some(2.0));
        assert_eq!(limited(ROUTE_COLLAPSED), Some(14.0));
        let exported = text(&series, &registry);
        assert!(!exported.contains("POST"), "{exported}");
        assert!(
            exported
                .lines()
                .any(|line| line == "vigil_red_label_sets 20"),
            "{exported}"
        );
        assert!(
            exported.lines().any(|line| line.starts_with(
                "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/a\",service_name=\"shop\"} 2"
            )),
            "{exported}"
        );
        // Expiry frees the budget.
        series.expire(|_| true, Instant::now() + Duration::from_secs(301));
        series.record(&shop, 1, client("POST"));
        assert!(text(&series, &registry).contains("POST"));
    }
}
