//! What `/metrics` serves: the registry's families (vigil's own metrics, the coverage gauges), then the
//! RED series, in the Prometheus text format (0.0.4), written to any `io::Write` so that the admin
//! server streams it (and compresses it) in chunks instead of building the whole text in memory.
//!
//! The RED series are written here, not by the prometheus crate (see [`super::histogram`] for why). A
//! scrape holds the index's lock only to copy its handles (one `Arc` per label set); it reads the
//! counts without any lock capture takes, so it never delays the drain tick.
//!
//! The prometheus crate has no OpenMetrics encoder, so the text format is all vigil serves; Prometheus
//! asks for OpenMetrics first and takes the text format without loss for these families.

use std::{
    fmt::Write as _,
    io::{self, Write},
    sync::{Arc, Mutex},
};

use foldhash::HashMap;
use prometheus::Registry;

use super::{
    histogram::AtomicHistogram,
    red::{RedFamilies, SeriesKind},
};

/// The histograms of one RED label set, shared by the series store (which writes them) and scrapes.
#[derive(Debug)]
pub(super) struct SeriesCells {
    pub kind: SeriesKind,
    /// `name="value"` pairs joined by commas, escaped, empty values left out (an empty label is no
    /// label to Prometheus); rendered once, when the label set is created.
    pub labels: Box<str>,
    /// One per family of the kind, in [`RedFamilies::families`] order.
    pub histograms: Box<[AtomicHistogram]>,
}

impl SeriesCells {
    pub fn new(kind: SeriesKind, values: &[&str], families: &RedFamilies) -> Self {
        let mut labels = String::new();
        for (name, value) in kind.label_names().zip(values) {
            if value.is_empty() {
                continue;
            }
            if !labels.is_empty() {
                labels.push(',');
            }
            let _ = write!(labels, "{name}=\"");
            escape_label_value(value, &mut labels);
            labels.push('"');
        }
        SeriesCells {
            kind,
            labels: labels.into_boxed_str(),
            histograms: families
                .families(kind)
                .iter()
                .map(|family| AtomicHistogram::new(family.bounds.len()))
                .collect(),
        }
    }
}

/// The live RED label sets by key, shared by the series store and the exposition.
pub(super) type SeriesIndex = Arc<Mutex<HashMap<u64, Arc<SeriesCells>>>>;

/// Writes the RED series; cloned into the admin server.
#[derive(Clone)]
pub struct RedExposition {
    pub(super) families: Arc<RedFamilies>,
    pub(super) index: SeriesIndex,
}

impl RedExposition {
    /// Writes every family that has a series, each series with its buckets, sum and count.
    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let series: Vec<Arc<SeriesCells>> = self
            .index
            .lock()
            .expect("series index lock poisoned")
            .values()
            .cloned()
            .collect();
        // Lines are assembled by appending bytes: formatting macros cost more than the copying itself at
        // hundreds of thousands of lines per scrape.
        let mut lines = Vec::new();
        let mut integer = itoa::Buffer::new();
        for kind in SeriesKind::ALL {
            for (index, family) in self.families.families(kind).iter().enumerate() {
                // `le="0.005"} ` for each bucket, then `+Inf`.
                let bucket_ends: Vec<String> = family
                    .bounds
                    .iter()
                    .map(|bound| format!("le=\"{}\"}} ", Value(*bound)))
                    .chain(["le=\"+Inf\"} ".to_owned()])
                    .collect();
                let mut header_written = false;
                for cells in series.iter().filter(|cells| cells.kind == kind) {
                    let histogram = &cells.histograms[index];
                    if histogram.is_empty() {
                        // A label set this family never observed (no body size read yet).
                        continue;
                    }
                    if !header_written {
                        writeln!(out, "# HELP {} {}", family.name, family.help)?;
                        writeln!(out, "# TYPE {} histogram", family.name)?;
                        header_written = true;
                    }
                    let snapshot = histogram.snapshot();
                    let (name, labels) = (family.name.as_bytes(), cells.labels.as_bytes());
                    lines.clear();
                    for (end, count) in bucket_ends.iter().zip(&snapshot.cumulative) {
                        lines.extend_from_slice(name);
                        lines.extend_from_slice(b"_bucket{");
                        if !labels.is_empty() {
                            lines.extend_from_slice(labels);
                            lines.push(b',');
                        }
                        lines.extend_from_slice(end.as_bytes());
                        lines.extend_from_slice(integer.format(*count).as_bytes());
                        lines.push(b'\n');
                    }
                    let total = snapshot.cumulative.last().copied().unwrap_or_default();
                    let (open, close) = match labels.is_empty() {
                        true => ("", ""),
                        false => ("{", "}"),
                    };
                    let labels = &cells.labels;
                    let _ = writeln!(
                        lines,
                        "{}_sum{open}{labels}{close} {}",
                        family.name,
                        Value(snapshot.sum)
                    );
                    let _ = writeln!(lines, "{}_count{open}{labels}{close} {total}", family.name);
                    out.write_all(&lines)?;
                }
            }
        }
        Ok(())
    }
}

/// A sample value as the text format writes it (`+Inf`, `-Inf`, `NaN`, else the shortest decimal).
struct Value(f64);

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            value if value.is_nan() => f.write_str("NaN"),
            f64::INFINITY => f.write_str("+Inf"),
            f64::NEG_INFINITY => f.write_str("-Inf"),
            value => write!(f, "{value}"),
        }
    }
}

/// Appends `value` escaped as the text format requires (backslash, double quote, line feed).
fn escape_label_value(value: &str, out: &mut String) {
    for character in value.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

/// Everything `/metrics` serves.
#[derive(Clone)]
pub struct Exposition {
    registry: Registry,
    red: RedExposition,
}

impl Exposition {
    pub fn new(registry: Registry, red: RedExposition) -> Self {
        Exposition { registry, red }
    }

    /// Writes the registry's families, then the RED series.
    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(super::encode(&self.registry).as_bytes())?;
        self.red.write(out)
    }

    /// The whole exposition as one string (tests, and callers that need it at once).
    pub fn text(&self) -> String {
        let mut text = Vec::new();
        self.write(&mut text)
            .expect("writing to memory does not fail");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_special_values_spelled_as_prometheus_reads_them() {
        let mut out = String::new();
        escape_label_value("a\\b\"c\nd", &mut out);
        assert_eq!(out, "a\\\\b\\\"c\\nd");
        let spelled: Vec<String> = [0.005, 1.0, 10.0, f64::INFINITY, f64::NAN]
            .into_iter()
            .map(|value| Value(value).to_string())
            .collect();
        assert_eq!(spelled, ["0.005", "1", "10", "+Inf", "NaN"]);
    }
}
