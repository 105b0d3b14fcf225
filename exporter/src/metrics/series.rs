//! The RED series store: records each exchange into the histograms of its label set (the server route
//! derived from the target and bounded per service, see [`super::routes`]), and removes a series not
//! updated for `metrics.ttl`, or whose last updating process has been gone for [`PROCESS_GONE_GRACE`]
//! (another replica updating it keeps it).

use std::{
    hash::BuildHasher,
    time::{Duration, Instant},
};

use foldhash::HashMap;
use prometheus::Histogram;

use super::{
    Exchange, Measure, ServiceLabels, Side,
    red::{DURATION, REQUEST_BODY, RESPONSE_BODY, RedFamilies},
    routes::{self, RouteLimiter},
};
use crate::config::MetricsConfig;

/// How long a series outlives the last process that updated it, unless another one does.
pub const PROCESS_GONE_GRACE: Duration = Duration::from_secs(30);

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
            routes: RouteLimiter::new(config.max_routes_per_service),
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
                let values: Vec<&str> = series.labels.iter().map(String::as_str).collect();
                for family in families.families(series.side).all() {
                    // A family this label set never updated (no body size observed) has nothing.
                    let _ = family.remove_label_values(&values);
                }
            }
            keep
        });
    }

    /// Records `exchange` of process `tgid`, whose identity labels are `labels`.
    pub fn record(&mut self, labels: &ServiceLabels, tgid: u32, exchange: Exchange) {
        let status = exchange.status.to_string();
        let service_name = labels.service_name();
        let route;
        let values: Vec<&str> = match exchange.side {
            Side::Server => {
                let admitted;
                (route, admitted) = self.routes.admit(
                    service_name,
                    routes::route(&self.route_patterns, &exchange.target),
                );
                // Counted once per request, not again for its late response body.
                if !admitted && matches!(exchange.measure, Measure::Request { .. }) {
                    self.families
                        .route_overflow
                        .with_label_values(&[service_name])
                        .inc();
                }
                [exchange.method, &status, route.as_str()]
                    .into_iter()
                    .chain(labels.values())
                    .collect()
            }
            Side::Client => [exchange.method, &status]
                .into_iter()
                .chain(labels.values())
                .collect(),
        };
        let key = foldhash::quality::FixedState::default().hash_one((exchange.side, &values));
        let now = Instant::now();
        let series = self.series.entry(key).or_insert_with(|| Series {
            side: exchange.side,
            labels: values.iter().map(|value| value.to_string()).collect(),
            last_update: now,
            last_tgid: tgid,
            gone_since: None,
            histograms: [None, None, None],
        });
        series.last_update = now;
        series.last_tgid = tgid;
        series.gone_since = None;
        let families = self.families.families(exchange.side).all();
        let mut observe = |family: usize, value: f64| {
            series.histograms[family]
                .get_or_insert_with(|| families[family].with_label_values(&values))
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
}
