//! vigil's own process metrics, read from /proc/self at each scrape, with the names and meaning of
//! the Prometheus client libraries' process collector (so the usual panels and alerts work).
//!
//! Not the prometheus crate's `process` feature: it pulls procfs 0.17 beside our 0.18, and counts CPU
//! in whole seconds.
//!
//! Metrics: `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_threads`,
//! `process_start_time_seconds`.

use prometheus::{
    Counter, IntGauge,
    core::{Collector, Desc},
    proto::MetricFamily,
};

/// Collects vigil's own process metrics when the registry is gathered.
pub struct ProcessCollector {
    cpu_seconds: Counter,
    resident_bytes: IntGauge,
    virtual_bytes: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    threads: IntGauge,
    start_time: IntGauge,
}

impl ProcessCollector {
    pub fn new() -> Self {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("static definition");
        let collector = ProcessCollector {
            cpu_seconds: Counter::new(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            )
            .expect("static definition"),
            resident_bytes: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            virtual_bytes: gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            open_fds: gauge("process_open_fds", "Number of open file descriptors."),
            max_fds: gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            ),
            threads: gauge("process_threads", "Number of OS threads in the process."),
            start_time: gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            ),
        };
        if let (Ok(boot), Ok(stat)) = (
            procfs::boot_time_secs(),
            procfs::process::Process::myself().and_then(|process| process.stat()),
        ) {
            let started = stat.starttime / procfs::ticks_per_second();
            collector.start_time.set((boot + started) as i64);
        }
        collector
    }

    fn gauges(&self) -> [&IntGauge; 6] {
        [
            &self.resident_bytes,
            &self.virtual_bytes,
            &self.open_fds,
            &self.max_fds,
            &self.threads,
            &self.start_time,
        ]
    }

    /// Reads /proc/self; a value that cannot be read keeps its last reading.
    fn update(&self) {
        let Ok(process) = procfs::process::Process::myself() else {
            return;
        };
        if let Ok(stat) = process.stat() {
            let seconds = (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64;
            // Two scrapes at once may both have read a newer total than the counter holds.
            self.cpu_seconds
                .inc_by((seconds - self.cpu_seconds.get()).max(0.0));
            self.resident_bytes
                .set((stat.rss * procfs::page_size()) as i64);
            self.virtual_bytes.set(stat.vsize as i64);
            self.threads.set(stat.num_threads);
        }
        if let Ok(count) = process.fd_count() {
            self.open_fds.set(count as i64);
        }
        if let Ok(limits) = process.limits()
            && let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit
        {
            self.max_fds.set(max as i64);
        }
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.cpu_seconds.desc();
        descs.extend(self.gauges().into_iter().flat_map(Collector::desc));
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.update();
        let mut families = self.cpu_seconds.collect();
        families.extend(self.gauges().into_iter().flat_map(Collector::collect));
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(ProcessCollector::new()))
            .unwrap();
        let families = registry.gather();
        let value = |name: &str| {
            let family = families
                .iter()
                .find(|family| family.name() == name)
                .unwrap_or_else(|| panic!("{name} exported"));
            let metric = &family.get_metric()[0];
            match name {
                "process_cpu_seconds_total" => metric.get_counter().get_value(),
                _ => metric.get_gauge().get_value(),
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_threads") >= 1.0);
        assert!(value("process_cpu_seconds_total") > 0.0);
        let started = value("process_start_time_seconds");
        assert!(
            started <= now && started > now - 3600.0,
            "{started} vs {now}"
        );
    }
}
