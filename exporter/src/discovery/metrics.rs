//! The metric families of discovery (see the module header of [`super`] for what each one says).

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

use crate::metrics::{counter_vec, gauge_vec, register};

/// The metric families of this stage.
#[derive(Clone)]
pub struct DiscoveryMetrics {
    pub(super) discovered: IntGaugeVec,
    pub(super) instrumented: IntGauge,
    pub(super) latency: Histogram,
    pub(super) corrections: IntCounterVec,
    pub(super) heartbeat_failures: IntCounterVec,
    pub(super) errors: IntCounterVec,
    pub(super) table_entries: IntGauge,
    pub(super) min_process_age: Gauge,
    pub(super) short_lived: IntCounter,
    pub(super) published: IntCounter,
    pub(super) socket_table_reads: IntCounter,
}

impl DiscoveryMetrics {
    pub fn register(registry: &Registry) -> Self {
        let counter =
            |name: &str, help: &str, labels: &[&str]| counter_vec(registry, name, help, labels);
        let metrics = DiscoveryMetrics {
            discovered: gauge_vec(
                registry,
                "vigil_discovered_processes",
                "Processes in the process table, by state.",
                &["state"],
            ),
            instrumented: register(
                registry,
                IntGauge::new(
                    "vigil_instrumented_processes",
                    "Processes captured and published (state instrumented); provisional ones are captured but not yet published.",
                )
                .expect("static"),
            ),
            latency: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "vigil_instrumentation_latency_seconds",
                        "Time from the exec, fork or listen event that made a process match to its filter entry being in place.",
                    )
                    .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                )
                .expect("static"),
            ),
            corrections: counter(
                "vigil_reconcile_corrections_total",
                "Corrections the /proc reconcile made to the process table, by kind; non-zero means the kernel event path lost something.",
                &["kind"],
            ),
            heartbeat_failures: counter(
                "vigil_heartbeat_failures_total",
                "Heartbeat checks of instrumented processes that found something wrong, by reason (each is repaired).",
                &["reason"],
            ),
            errors: counter(
                "vigil_instrumentation_errors_total",
                "Failed discovery or instrumentation steps, by stage and reason; every one is retried.",
                &["stage", "reason"],
            ),
            table_entries: register(
                registry,
                IntGauge::new("vigil_process_table_entries", "Processes in vigil's process table.")
                    .expect("static"),
            ),
            min_process_age: register(
                registry,
                Gauge::new(
                    "vigil_min_process_age_seconds",
                    "Age a matching process must reach before what was captured from it is published.",
                )
                .expect("static"),
            ),
            short_lived: register(
                registry,
                IntCounter::new(
                    "vigil_short_lived_processes_total",
                    "Matching processes that died younger than the minimum age; their captured data was dropped.",
                )
                .expect("static"),
            ),
            published: register(
                registry,
                IntCounter::new(
                    "vigil_published_processes_total",
                    "Matching processes that reached the minimum age, from when their data is published.",
                )
                .expect("static"),
            ),
            socket_table_reads: register(
                registry,
                IntCounter::new(
                    "vigil_socket_table_reads_total",
                    "Reads of a network namespace's TCP socket tables (/proc/PID/net/tcp and tcp6), for the port selectors and coverage; each costs time in proportion to the sockets of the namespace.",
                )
                .expect("static"),
            ),
        };
        for kind in [
            "missed_exec",
            "missed_exit",
            "pid_reused",
            "stale_filter_entry",
        ] {
            metrics.corrections.with_label_values(&[kind]);
        }
        for reason in ["process_gone", "filter_entry_missing"] {
            metrics.heartbeat_failures.with_label_values(&[reason]);
        }
        metrics
    }
}
