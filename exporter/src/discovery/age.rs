//! The minimum process age: how old a matching process must be before what vigil captured from it is
//! published. Capture starts at once (no blind window); a process that dies younger than the threshold
//! was noise (a health-check shell, a `node -e` one-off), and its data is dropped instead of becoming
//! series.
//!
//! With `discovery.min_process_age: auto` the threshold is learned: vigil keeps the lifetimes of matching
//! processes that died younger than `discovery.min_process_age_max` during the last
//! [`SAMPLE_WINDOW`] (at most [`MAX_SAMPLES`] of them), and the threshold is [`MARGIN`] times their
//! [`QUANTILE`] quantile, clamped to `[min_process_age_min, min_process_age_max]`. With no such deaths it
//! is `min_process_age_min`; when the noise stops, its samples age out and the threshold comes back down.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use super::{
    clock::{boot_time_ns, start_boot_ns},
    metrics::DiscoveryMetrics,
    state::{Decision, ProcessState},
};
use crate::config::{MinProcessAge, MinProcessAgeBounds};

/// How long a lifetime counts towards the threshold.
pub const SAMPLE_WINDOW: Duration = Duration::from_secs(600);
/// The most recent lifetimes kept.
pub const MAX_SAMPLES: usize = 512;
/// The quantile of young lifetimes the threshold must exceed.
pub const QUANTILE: f64 = 0.95;
/// Headroom over that quantile.
pub const MARGIN: f64 = 2.0;

/// The current threshold and the lifetimes it was learned from.
#[derive(Debug)]
pub struct AgeThreshold {
    setting: MinProcessAge,
    bounds: MinProcessAgeBounds,
    /// When each lifetime was recorded, oldest first.
    samples: VecDeque<(Instant, Duration)>,
    current: Duration,
}

impl AgeThreshold {
    pub fn new(setting: MinProcessAge, bounds: MinProcessAgeBounds) -> Self {
        let mut threshold = AgeThreshold {
            setting,
            bounds,
            samples: VecDeque::new(),
            current: Duration::ZERO,
        };
        threshold.recompute();
        threshold
    }

    /// The threshold now.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// Records the lifetime of a matching process that died; only young deaths (up to the upper bound)
    /// are kept.
    pub fn record(&mut self, lifetime: Duration, now: Instant) {
        if lifetime > self.bounds.max {
            return;
        }
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now, lifetime));
        self.recompute();
    }

    /// Forgets lifetimes older than [`SAMPLE_WINDOW`].
    pub fn expire(&mut self, now: Instant) {
        let before = self.samples.len();
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > SAMPLE_WINDOW)
        {
            self.samples.pop_front();
        }
        if self.samples.len() != before {
            self.recompute();
        }
    }

    fn recompute(&mut self) {
        self.current = match self.setting {
            MinProcessAge::Fixed(age) => age,
            MinProcessAge::Auto => {
                let mut lifetimes: Vec<Duration> =
                    self.samples.iter().map(|(_, lifetime)| *lifetime).collect();
                lifetimes.sort_unstable();
                // Nearest rank: the smallest lifetime with at least QUANTILE of the samples at or below it.
                let quantile = match lifetimes.len() {
                    0 => Duration::ZERO,
                    n => lifetimes[((QUANTILE * n as f64).ceil() as usize).clamp(1, n) - 1],
                };
                quantile
                    .mul_f64(MARGIN)
                    .clamp(self.bounds.min, self.bounds.max)
            }
        };
    }
}

/// Moves a provisional process at least `min_age` old to instrumented.
pub(super) fn publish_if_old_enough(
    decision: &mut Decision,
    min_age: Duration,
    ticks_per_second: u64,
    metrics: &DiscoveryMetrics,
) {
    let age_ns = boot_time_ns().saturating_sub(start_boot_ns(decision.identity, ticks_per_second));
    if decision.state == ProcessState::Provisional && age_ns >= min_age.as_nanos() as u64 {
        decision.state = ProcessState::Instrumented;
        metrics.published.inc();
        tracing::debug!(pid = decision.identity.pid, "old enough; publishing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto() -> AgeThreshold {
        AgeThreshold::new(
            MinProcessAge::Auto,
            MinProcessAgeBounds {
                min: Duration::from_millis(500),
                max: Duration::from_secs(10),
            },
        )
    }

    #[test]
    fn without_young_deaths_the_threshold_is_the_lower_bound() {
        assert_eq!(auto().current(), Duration::from_millis(500));
    }

    #[test]
    fn the_threshold_covers_the_noise_with_a_margin() {
        let mut threshold = auto();
        let now = Instant::now();
        for millis in 1..=100 {
            threshold.record(Duration::from_millis(millis * 10), now);
        }
        // 95th of 10..1000 ms is 950 ms; twice that.
        assert_eq!(threshold.current(), Duration::from_millis(1900));
    }

    #[test]
    fn the_threshold_stays_within_its_bounds() {
        let mut threshold = auto();
        let now = Instant::now();
        threshold.record(Duration::from_millis(2), now);
        assert_eq!(threshold.current(), Duration::from_millis(500));
        threshold.record(Duration::from_secs(9), now);
        assert_eq!(threshold.current(), Duration::from_secs(10));
        // Older deaths than the upper bound say nothing about noise.
        let mut threshold = auto();
        threshold.record(Duration::from_secs(60), now);
        assert_eq!(threshold.current(), Duration::from_millis(500));
    }

    #[test]
    fn the_threshold_comes_back_down_when_the_noise_stops() {
        let mut threshold = auto();
        let start = Instant::now();
        threshold.record(Duration::from_secs(2), start);
        assert_eq!(threshold.current(), Duration::from_secs(4));
        threshold.expire(start + SAMPLE_WINDOW);
        assert_eq!(threshold.current(), Duration::from_secs(4));
        threshold.expire(start + SAMPLE_WINDOW + Duration::from_secs(1));
        assert_eq!(threshold.current(), Duration::from_millis(500));
    }

    #[test]
    fn only_the_most_recent_lifetimes_are_kept() {
        let mut threshold = auto();
        let now = Instant::now();
        threshold.record(Duration::from_secs(4), now);
        for _ in 0..MAX_SAMPLES {
            threshold.record(Duration::from_millis(300), now);
        }
        assert_eq!(threshold.current(), Duration::from_millis(600));
    }

    #[test]
    fn a_fixed_age_ignores_lifetimes() {
        let mut threshold = AgeThreshold::new(
            MinProcessAge::Fixed(Duration::from_secs(5)),
            MinProcessAgeBounds {
                min: Duration::from_millis(500),
                max: Duration::from_secs(10),
            },
        );
        threshold.record(Duration::from_secs(8), Instant::now());
        assert_eq!(threshold.current(), Duration::from_secs(5));
    }
}
