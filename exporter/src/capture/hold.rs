//! The hold: what a process does before discovery publishes it (provisional, pending its pod's metadata,
//! or captured by the kernel at its `listen` before discovery evaluated it) is kept here, not published;
//! it becomes series when discovery publishes the process, and is dropped and counted if the process
//! dies first or turns out not to match.
//!
//! Metrics: `vigil_http_dropped_requests_total{reason}`.

use foldhash::HashMap;
use prometheus::{IntCounterVec, Registry};

use crate::metrics::{Exchange, Measure, counter_vec};

/// Requests of one process held for publication; later ones are dropped and counted.
const MAX_HELD_PER_PROCESS: usize = 100_000;

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
    dropped: IntCounterVec,
}

impl Hold {
    pub(super) fn register(registry: &Registry) -> Self {
        let dropped = counter_vec(
            registry,
            "vigil_http_dropped_requests_total",
            "Captured requests never published: short_lived (the process died younger than the minimum age), not_selected (captured from its listen until discovery found it matches no selector), hold_full (too many held for one provisional process).",
            &["reason"],
        );
        for reason in ["short_lived", "not_selected", "hold_full"] {
            dropped.with_label_values(&[reason]);
        }
        Hold {
            held: HashMap::default(),
            dropped,
        }
    }

    /// Holds `exchange` of `tgid`, unless its hold is full (then it is dropped and counted).
    pub(super) fn push(&mut self, tgid: u32, exchange: Exchange) {
        let held = self.held.entry(tgid).or_default();
        if held.len() < MAX_HELD_PER_PROCESS {
            held.push(exchange);
        } else {
            self.dropped.with_label_values(&["hold_full"]).inc();
        }
    }

    /// The processes something is held for.
    pub(super) fn tgids(&self) -> Vec<u32> {
        self.held.keys().copied().collect()
    }

    /// Takes what is held for `tgid`, to publish it.
    pub(super) fn take(&mut self, tgid: u32) -> Vec<Exchange> {
        self.held.remove(&tgid).unwrap_or_default()
    }

    /// Drops what is held for `tgid`, counting its requests (not the late response body sizes held
    /// with them) under `reason`.
    pub(super) fn drop_all(&mut self, tgid: u32, reason: DropReason) {
        let dropped = self.held.remove(&tgid).map_or(0, |held| {
            held.iter()
                .filter(|held| matches!(held.measure, Measure::Request { .. }))
                .count()
        });
        self.dropped
            .with_label_values(&[reason.label()])
            .inc_by(dropped as u64);
    }
}
