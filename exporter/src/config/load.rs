//! Loading the configuration: the layers merged with the `config` crate, deserialised, validated, and
//! each problem reported with the origin of the value that caused it.

use std::time::Duration;

use config::{Environment, File, FileFormat};

use super::{Config, ConfigError, DEFAULT_CONFIG_YAML, ENV_PREFIX};

impl Config {
    /// Loads the configuration: defaults, then `file`, then `VIGIL_*` variables from `env`, then
    /// `overrides` (flag values, by key). `env` is passed in so tests never mutate the process environment.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(&str, String)],
    ) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(File::from_str(DEFAULT_CONFIG_YAML, FileFormat::Yaml));
        if let Some(path) = file {
            // Read once here for a clear error; the `config` source reads it again and names it as the
            // origin of its values in any later error.
            std::fs::read(path).map_err(|source| ConfigError::Unreadable {
                path: path.to_owned(),
                source,
            })?;
            builder = builder.add_source(File::from(path).format(FileFormat::Yaml).required(true));
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(key, _)| key.starts_with(&format!("{ENV_PREFIX}_")))
            .collect();
        let origins = Origins {
            file,
            env_keys: env.keys().map(|name| env_name_to_key(name)).collect(),
            flag_keys: overrides.iter().map(|(key, _)| key.to_string()).collect(),
        };
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        for (key, value) in overrides {
            builder = builder
                .set_override(*key, value.as_str())
                .map_err(|error| origins.invalid(key, error.to_string()))?;
        }
        let config: Config = builder
            .build()
            .and_then(|built| built.try_deserialize())
            .map_err(|error| {
                let key = match &error {
                    config::ConfigError::At { key, .. } | config::ConfigError::Type { key, .. } => {
                        key.clone().unwrap_or_default()
                    }
                    _ => String::new(),
                };
                origins.invalid(&key, error.to_string())
            })?;
        config.validate(&origins)?;
        Ok(config)
    }

    /// Checks relations serde cannot express.
    fn validate(&self, origins: &Origins) -> Result<(), ConfigError> {
        if self.ebpf.drain_interval.is_zero() || self.ebpf.drain_interval > Duration::from_secs(1) {
            let key = "ebpf.drain_interval";
            let got = humantime::format_duration(self.ebpf.drain_interval);
            return Err(
                origins.invalid(key, format!("{key} must be between 1ms and 1s, got {got}"))
            );
        }
        if self.discovery.reconcile_interval < Duration::from_millis(100) {
            let key = "discovery.reconcile_interval";
            let got = humantime::format_duration(self.discovery.reconcile_interval);
            return Err(origins.invalid(key, format!("{key} must be at least 100ms, got {got}")));
        }
        if self.discovery.heartbeat_interval < Duration::from_millis(100) {
            let key = "discovery.heartbeat_interval";
            let got = humantime::format_duration(self.discovery.heartbeat_interval);
            return Err(origins.invalid(key, format!("{key} must be at least 100ms, got {got}")));
        }
        if self.k8s.traffic_window.is_zero() {
            let key = "k8s.traffic_window";
            return Err(origins.invalid(key, format!("{key} must be positive")));
        }
        let bounds = self.discovery.min_process_age_bounds();
        if bounds.min > bounds.max {
            let key = "discovery.min_process_age_min";
            return Err(origins.invalid(
                key,
                format!(
                    "{key} ({}) is above discovery.min_process_age_max ({})",
                    humantime::format_duration(bounds.min),
                    humantime::format_duration(bounds.max)
                ),
            ));
        }
        if self.metrics.ttl < Duration::from_secs(1) {
            let key = "metrics.ttl";
            let got = humantime::format_duration(self.metrics.ttl);
            return Err(origins.invalid(key, format!("{key} must be at least 1s, got {got}")));
        }
        if let Some(pattern) = self.metrics.routes.iter().find(|p| !p.starts_with('/')) {
            let key = "metrics.routes";
            return Err(origins.invalid(key, format!("{key}: {pattern:?} does not start with /")));
        }
        for (key, buckets) in [
            ("metrics.duration_buckets", &self.metrics.duration_buckets),
            ("metrics.body_size_buckets", &self.metrics.body_size_buckets),
        ] {
            let increasing = buckets.windows(2).all(|pair| pair[0] < pair[1]);
            if buckets.is_empty()
                || !increasing
                || buckets.iter().any(|b| !b.is_finite() || *b < 0.0)
            {
                return Err(origins.invalid(
                    key,
                    format!("{key} must be non-negative, finite and strictly increasing, got {buckets:?}"),
                ));
            }
        }
        if self.metrics.max_routes_per_service == 0 {
            let key = "metrics.max_routes_per_service";
            return Err(origins.invalid(key, format!("{key} must be at least 1")));
        }
        if self.capture.max_connections == 0 {
            let key = "capture.max_connections";
            return Err(origins.invalid(key, format!("{key} must be at least 1")));
        }
        if self.metrics.max_label_sets == 0 {
            let key = "metrics.max_label_sets";
            return Err(origins.invalid(key, format!("{key} must be at least 1")));
        }
        if self.metrics.max_segment_values == 0 {
            let key = "metrics.max_segment_values";
            return Err(origins.invalid(key, format!("{key} must be at least 1")));
        }
        if self.discovery.instrument.is_empty() {
            let key = "discovery.instrument";
            return Err(origins.invalid(
                key,
                format!("{key} is empty: vigil would instrument nothing"),
            ));
        }
        Ok(())
    }

    /// The effective configuration as YAML (what `--check-config` prints).
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("the configuration is plain data")
    }
}

/// Where each layer's keys came from, to name the origin of a bad value.
struct Origins<'a> {
    file: Option<&'a std::path::Path>,
    env_keys: Vec<String>,
    flag_keys: Vec<String>,
}

impl Origins<'_> {
    /// An [`ConfigError::Invalid`] for `key`, naming the highest layer that set it (or one of its children).
    fn invalid(&self, key: &str, message: String) -> ConfigError {
        let sets = |layer_key: &String| {
            key.is_empty() || layer_key == key || layer_key.starts_with(&format!("{key}."))
        };
        let origin = if self.flag_keys.iter().any(sets) {
            "command-line flags".to_owned()
        } else if let Some(env_key) = self.env_keys.iter().find(|env_key| sets(env_key)) {
            format!("environment variable {}", key_to_env_name(env_key))
        } else if let Some(file) = self.file {
            file.display().to_string()
        } else {
            "the embedded defaults".to_owned()
        };
        ConfigError::Invalid { origin, message }
    }
}

/// `VIGIL_WEB__LISTEN_ADDRESS` → `web.listen_address`.
fn env_name_to_key(name: &str) -> String {
    name[ENV_PREFIX.len() + 1..]
        .to_lowercase()
        .replace("__", ".")
}

/// `web.listen_address` → `VIGIL_WEB__LISTEN_ADDRESS`.
fn key_to_env_name(key: &str) -> String {
    format!("{ENV_PREFIX}_{}", key.to_uppercase().replace('.', "__"))
}
