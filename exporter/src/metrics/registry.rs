//! The Prometheus registry vigil serves, its text encoding, vigil's build information, and the helpers
//! every stage registers its families with (`Families::register(&Registry) -> Self`, next to the code
//! that updates them).
//!
//! Metrics: `vigil_build_info{version,revision}` (always 1), and vigil's own `process_*` metrics
//! ([`super::process`]).

use prometheus::{Encoder as _, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// Registers `vigil_build_info` and the process metrics, and returns a registry for the stages to
/// register into.
pub fn new_registry() -> Registry {
    let registry = Registry::new();
    let build_info = IntGaugeVec::new(
        Opts::new(
            "vigil_build_info",
            "A metric with a constant '1' value labeled by the version and git revision vigil was built from.",
        ),
        &["version", "revision"],
    )
    .expect("static metric definition");
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("VIGIL_GIT_REVISION")])
        .set(1);
    registry
        .register(Box::new(build_info))
        .expect("registered once on a fresh registry");
    registry
        .register(Box::new(super::process::ProcessCollector::new()))
        .expect("registered once on a fresh registry");
    registry
}

/// The registry's metrics in the Prometheus text exposition format.
pub fn encode(registry: &Registry) -> String {
    let mut families = registry.gather();
    // An empty label is no label to Prometheus: leaving them out (`k8s_daemonset_name=""` on every series
    // of a process outside a DaemonSet) shortens each line without changing a series' identity.
    for family in &mut families {
        for metric in family.mut_metric() {
            let labels = metric.take_label();
            metric.set_label(
                labels
                    .into_iter()
                    .filter(|label| !label.value().is_empty())
                    .collect(),
            );
        }
    }
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut text)
        .expect("the text encoder writes to memory");
    String::from_utf8(text).expect("the text format is UTF-8")
}

/// Registers a metric built from static definitions; a failure is a programming error.
pub fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique within vigil");
    metric
}

/// Registers a counter family with `labels`.
pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition"),
    )
}

/// Registers a gauge family with `labels`.
pub fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition"),
    )
}

/// The sum of every sample of the counter family `name` (0 when it has none), for tests.
#[cfg(test)]
pub fn counter_value(registry: &Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric())
        .map(|metric| metric.get_counter().get_value())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_leaves_out_empty_labels_and_keeps_series_apart() {
        let registry = Registry::new();
        let family = gauge_vec(&registry, "test_gauge", "A test gauge.", &["a", "b"]);
        family.with_label_values(&["x", ""]).set(1);
        family.with_label_values(&["x", "y"]).set(2);
        family.with_label_values(&["", ""]).set(3);
        let text = encode(&registry);
        assert!(!text.contains("=\"\""), "{text}");
        for line in [
            "test_gauge{a=\"x\"} 1",
            "test_gauge{a=\"x\",b=\"y\"} 2",
            "test_gauge 3",
        ] {
            assert!(text.lines().any(|got| got == line), "{line} in {text}");
        }
    }
}
