//! The hold: what a process does before discovery publishes it (provisional, pending its pod's metadata,
//! or captured by the kernel at its `listen` before discovery evaluated it) is kept here, not published;
//! it becomes series when discovery publishes the process, and is dropped and counted if the process
//! dies first or turns out not to match.
//!
//! At most `capture.max_held_requests` exchanges are held on the node; later ones are dropped and
//! counted (`hold_full`).
//!
//! Metrics: `vigil_http_dropped_requests_total{reason}`, `vigil_http_held_requests`.

use foldhash::HashMap;
use prometheus::{IntCounterVec, IntGauge, Registry};

use crate::metrics::{Exchange, Measure, counter_vec, register};

/// Why held requests were dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DropReason {
    /// The process died younger than the minimum age.
    ShortLived,
    /// Discovery found it matches no selector.
    NotSelected,
}

impl DropReason {
    fn label(self) -> &'static str {
        match self {
            DropReason::ShortLived => "short_lived",
            DropReason::NotSelected => "not_selected",
        }
    }
}

/// Exchanges held per process.
pub(super) struct Hold {
    held: HashMap<u32, Vec<Exchange>>,
    /// Exchanges in `held`, at most `limit` (`capture.max_held_requests`).
    count: usize,
    limit: usize,
    dropped: IntCounterVec,
    count_gauge: IntGauge,
}

impl Hold {
    pub(super) fn register(registry: &Registry) -> Self {
        let dropped = counter_vec(
            registry,
            "vigil_http_dropped_requests_total",
            "Captured requests never published: short_lived (the process died younger than the minimum age), not_selected (captured from its listen until discovery found it matches no selector), hold_full (capture.max_held_requests were held on the node).",
            &["reason"],
        );
        for reason in ["short_lived", "not_selected", "hold_full"] {
            dropped.with_label_values(&[reason]);
        }
        let count_gauge = register(
            registry,
            IntGauge::new(
                "vigil_http_held_requests",
                "Requests (and late response body sizes) held for processes not published yet; at most capture.max_held_requests.",
            )
            .expect("static metric definition"),
        );
        Hold {
            held: HashMap::default(),
            count: 0,
            limit: usize::MAX,
            dropped,
            count_gauge,
        }
    }

    /// This hold, keeping at most `limit` exchanges on the node.
    pub(super) fn with_limit(self, limit: usize) -> Self {
        Hold { limit, ..self }
    }

    /// Holds `exchange` of `tgid`, unless the hold is full (then a request is dropped and counted).
    pub(super) fn push(&mut self, tgid: u32, exchange: Exchange) {
        if self.count < self.limit {
            self.held.entry(tgid).or_default().push(exchange);
            self.count += 1;
            self.count_gauge.set(self.count as i64);
        } else if matches!(exchange.measure, Measure::Request { .. }) {
            self.dropped.with_label_values(&["hold_full"]).inc();
        }
    }

    /// The processes something is held for.
    pub(super) fn tgids(&self) -> Vec<u32> {
        self.held.keys().copied().collect()
    }

    /// Takes what is held for `tgid`, to publish it.
    pub(super) fn take(&mut self, tgid: u32) -> Vec<Exchange> {
        let taken = self.held.remove(&tgid).unwrap_or_default();
        self.count -= taken.len();
        self.count_gauge.set(self.count as i64);
        taken
    }

    /// Drops what is held for `tgid`, counting its requests (not the late response body sizes held
    /// with them) under `reason`.
    pub(super) fn drop_all(&mut self, tgid: u32, reason: DropReason) {
        let dropped = self
            .take(tgid)
            .iter()
            .filter(|held| matches!(held.measure, Measure::Request { .. }))
            .count();
        self.dropped
            .with_label_values(&[reason.label()])
            .inc_by(dropped as u64);
    }
}
