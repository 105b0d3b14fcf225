//! Configuration: the embedded defaults, a YAML file, `VIGIL_*` environment variables and command-line
//! flags, layered in that order, then validated in full before anything touches the kernel.
//!
//! Every key is documented in `docs/configuration.md`. A problem is reported as one line that names the
//! key and where its value came from; `main` turns it into exit code 64 (`EX_USAGE`).

mod load;
mod ports;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

pub use ports::{PortRange, PortRanges};

/// The embedded default configuration.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("default.yaml");

/// Prefix of environment variables that override configuration keys (`VIGIL_WEB__LISTEN_ADDRESS`).
pub const ENV_PREFIX: &str = "VIGIL";

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file given with `--config` cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A value is missing, unknown, of the wrong type or out of range; `origin` says where it came from.
    #[error("invalid configuration in {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// The whole configuration of a vigil process.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub web: WebConfig,
    pub log: LogConfig,
    pub paths: PathsConfig,
    pub ebpf: EbpfConfig,
    pub discovery: DiscoveryConfig,
    pub capture: CaptureConfig,
    pub metrics: MetricsConfig,
    pub k8s: KubernetesConfig,
}

/// `k8s.*`: the pod watcher and the unmonitored-pod gauge.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// A kubeconfig file; empty: the in-cluster service account when vigil runs in a pod, else none
    /// (node-only).
    pub kubeconfig: String,
    /// The node whose pods are watched; empty: `$NODE_NAME`, else the host name.
    pub node_name: String,
    /// How long a pod's containers must have been ready before the pod is expected to be monitored.
    #[serde(with = "humantime_serde")]
    pub unmonitored_grace: Duration,
    /// How far back coverage compares the connections pods accepted with the requests capture
    /// recognised.
    #[serde(with = "humantime_serde")]
    pub traffic_window: Duration,
    /// Namespaces whose pods are never expected to be monitored.
    pub excluded_namespaces: Vec<String>,
}

/// `capture.*`: what capture keeps of captured processes' connections.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Connections (and TLS sessions) followed at once; past it, the idlest eighth are forgotten.
    pub max_connections: usize,
    /// Requests held on the node for processes not published yet; past it, new ones are dropped and
    /// counted (`hold_full`).
    pub max_held_requests: usize,
}

/// `metrics.*`: the series vigil serves.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Distinct `http_route` values with live series per service; past it, requests get the route
    /// `_overflow`.
    pub max_routes_per_service: usize,
    /// Distinct values a path position may show under one parent path before it collapses to
    /// `{param}`.
    pub max_segment_values: usize,
    /// Parent paths per service whose child values are learned; a path under a parent past it keeps
    /// its segments (the route cap still bounds the series).
    pub max_route_parents: usize,
    /// RED label sets on this node (each a histogram in every family of its kind); from 90 % of it new
    /// routes collapse to `_overflow`, at it new label sets are not created.
    pub max_label_sets: usize,
    /// A series not updated for this long is removed.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Route patterns tried before the id heuristic, e.g. `/users/{id}/orders/{order}`.
    pub routes: Vec<String>,
    /// Upper bounds (seconds) of the `http_*_request_duration_seconds` buckets.
    pub duration_buckets: Vec<f64>,
    /// Whether the four `http_*_body_size_bytes` histograms are exported (each HTTP label set costs
    /// 2 × (buckets + 3) series more than its duration histogram alone).
    pub body_sizes: bool,
    /// Upper bounds (bytes) of the `http_*_body_size_bytes` buckets.
    pub body_size_buckets: Vec<f64>,
}

/// `web.*`: the admin HTTP server.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// `HOST:PORT`, `[V6]:PORT` or `:PORT` (all addresses).
    #[serde(
        deserialize_with = "listen_address::deserialize",
        serialize_with = "listen_address::serialize"
    )]
    pub listen_address: SocketAddr,
    /// A web configuration file in the Prometheus exporter-toolkit format (TLS, client certificates,
    /// basic auth; see [`crate::admin::security`]); empty: plain HTTP, no authentication.
    pub config_file: String,
    /// Whether `/debug/discovery` and `/debug/connections` are served (else 404 saying how to enable).
    pub debug_endpoints: bool,
    /// Whether `/debug/discovery` shows whole command lines; else each is redacted to its executable
    /// and argument count (command lines carry passwords and tokens).
    pub debug_command_lines: bool,
}

/// `log.*`: diagnostics on standard error.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter directive.
    #[serde(deserialize_with = "log_level::deserialize")]
    pub level: String,
}

/// `paths.*`: kernel filesystem roots.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    pub procfs: PathBuf,
    pub tracefs: PathBuf,
}

/// `ebpf.*`: kernel-side buffers and how user space reads them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EbpfConfig {
    #[serde(deserialize_with = "ring_bytes::deserialize")]
    pub process_events_ring_bytes: u32,
    #[serde(deserialize_with = "ring_bytes::deserialize")]
    pub io_events_ring_bytes: u32,
    #[serde(with = "humantime_serde")]
    pub drain_interval: Duration,
    /// Entries of the kernel's LRU maps (their least recently used entry goes first when full).
    #[serde(deserialize_with = "map_entries::deserialize")]
    pub served_ports_entries: u32,
    #[serde(deserialize_with = "map_entries::deserialize")]
    pub http2_connections_entries: u32,
    #[serde(deserialize_with = "map_entries::deserialize")]
    pub tls_calls_entries: u32,
    #[serde(deserialize_with = "map_entries::deserialize")]
    pub clone_kinds_entries: u32,
}

/// `discovery.*`: which processes are instrumented.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// A process is a candidate when it matches any of these selectors.
    pub instrument: Vec<Selector>,
    /// ... and none of these.
    pub exclude_instrument: Vec<Selector>,
    /// How often the process table is reconciled against a full /proc scan.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// How often every instrumented process is checked: alive, and still in the in-kernel filter.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How old a matching process must be before its data is published: `auto` or a duration.
    pub min_process_age: MinProcessAge,
    /// Lower bound of the learned minimum age (and its value before any young process died).
    #[serde(with = "humantime_serde")]
    pub min_process_age_min: Duration,
    /// Upper bound of the learned minimum age; processes that live longer say nothing about noise.
    #[serde(with = "humantime_serde")]
    pub min_process_age_max: Duration,
}

impl DiscoveryConfig {
    /// Whether some `instrument` selector matches by listening port (then a process that listens is
    /// captured by the kernel at once, before it is evaluated).
    pub fn selects_by_port(&self) -> bool {
        self.instrument
            .iter()
            .any(|selector| selector.open_ports.is_some())
    }

    /// The bounds of the learned minimum process age.
    pub fn min_process_age_bounds(&self) -> MinProcessAgeBounds {
        MinProcessAgeBounds {
            min: self.min_process_age_min,
            max: self.min_process_age_max,
        }
    }
}

/// `discovery.min_process_age`: learned from the lifetimes of young matching processes, or fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinProcessAge {
    Auto,
    Fixed(Duration),
}

/// The range a learned minimum process age stays in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinProcessAgeBounds {
    pub min: Duration,
    pub max: Duration,
}

impl<'de> Deserialize<'de> for MinProcessAge {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == "auto" {
            return Ok(MinProcessAge::Auto);
        }
        humantime::parse_duration(&text)
            .map(MinProcessAge::Fixed)
            .map_err(|error| {
                serde::de::Error::custom(format!(
                    "expected `auto` or a duration such as `5s`, got {text:?}: {error}"
                ))
            })
    }
}

impl Serialize for MinProcessAge {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MinProcessAge::Auto => serializer.serialize_str("auto"),
            MinProcessAge::Fixed(age) => serializer.collect_str(&humantime::format_duration(*age)),
        }
    }
}

/// One selector: a process matches when every criterion given matches (criteria left out match all).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// TCP ports the process listens on, e.g. `"80,443,8000-8999"` or `[80, 443]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_ports: Option<PortRanges>,
    /// Glob on the executable's path (`/proc/PID/exe`), e.g. `"*/node"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_path: Option<globset::Glob>,
    /// Glob on the command line, arguments joined by spaces, e.g. `"*server.js*"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd_args: Option<globset::Glob>,
    /// `true`: only processes in a container (a container id in their cgroup); `false`: only host ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<bool>,
    /// Kubernetes criteria: globs on the pod's namespace, name, deployment, owner and container, and maps
    /// of globs on its labels and annotations (every key given must be present and match). A process
    /// outside any pod never matches them; one whose pod the watcher has not delivered yet waits in
    /// state `pending_metadata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_namespace: Option<globset::Glob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_pod_name: Option<globset::Glob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_deployment_name: Option<globset::Glob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_owner_name: Option<globset::Glob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_container_name: Option<globset::Glob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_pod_labels: Option<BTreeMap<String, globset::Glob>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_pod_annotations: Option<BTreeMap<String, globset::Glob>>,
}

mod listen_address {
    use std::net::{Ipv6Addr, SocketAddr};

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Parses `HOST:PORT`, `[V6]:PORT` or `:PORT` (all addresses, IPv6 and IPv4).
    pub fn parse(text: &str) -> Result<SocketAddr, String> {
        let invalid = |why: &str| format!("invalid listen address {text:?}: {why}");
        if let Some(port) = text.strip_prefix(':') {
            let port: u16 = port
                .parse()
                .map_err(|_| invalid("the port is not a number 0-65535"))?;
            return Ok(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)));
        }
        text.parse()
            .map_err(|_| invalid("expected HOST:PORT with a numeric IP, [IPV6]:PORT or :PORT"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(D::Error::custom)
    }

    pub fn serialize<S: Serializer>(
        address: &SocketAddr,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(address)
    }
}

mod log_level {
    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        let level = String::deserialize(deserializer)?;
        tracing_subscriber::EnvFilter::builder()
            .parse(&level)
            .map_err(|error| D::Error::custom(format!("invalid log level {level:?}: {error}")))?;
        Ok(level)
    }
}

mod ring_bytes {
    use serde::{Deserialize, Deserializer, de::Error};

    const PAGE_SIZE: u32 = 4096;
    const MAX: u32 = 1 << 30;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
        let bytes = u32::deserialize(deserializer)?;
        if !bytes.is_power_of_two() || !(PAGE_SIZE..=MAX).contains(&bytes) {
            return Err(D::Error::custom(format!(
                "{bytes} is not a power of two between {PAGE_SIZE} and {MAX}"
            )));
        }
        Ok(bytes)
    }
}

mod map_entries {
    use serde::{Deserialize, Deserializer, de::Error};

    const MAX: u32 = 1 << 24;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
        let entries = u32::deserialize(deserializer)?;
        if !(1..=MAX).contains(&entries) {
            return Err(D::Error::custom(format!(
                "{entries} entries: must be between 1 and {MAX}"
            )));
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests;
