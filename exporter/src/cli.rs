//! Command-line flags. Flags override the configuration file and `VIGIL_*` variables.

use std::path::PathBuf;

use clap::Parser;

/// vigil: eBPF process discovery and RED metrics for Prometheus.
#[derive(Debug, Parser)]
#[command(name = "vigil", version)]
pub struct Cli {
    /// YAML configuration file, layered over the embedded defaults (see docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address of the admin server: HOST:PORT, [V6]:PORT or :PORT [config: web.listen_address, default :10420]
    #[arg(long = "web.listen-address", value_name = "ADDRESS")]
    pub web_listen_address: Option<String>,

    /// Web configuration file in the Prometheus exporter-toolkit format: TLS, client certificates, basic
    /// auth [config: web.config_file, default none: plain HTTP without authentication]
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<String>,

    /// Log filter: error, warn, info, debug, trace or tracing directives [config: log.level, default info]
    #[arg(long = "log.level", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// kubeconfig file for the pod watcher; without it, the in-cluster service account when running in a
    /// pod, else node-only [config: k8s.kubeconfig]
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<String>,

    /// Validate the configuration, print the effective configuration as YAML and exit.
    #[arg(long = "check-config")]
    pub check_config: bool,
}

impl Cli {
    /// The configuration keys the flags set, for [`crate::config::Config::load`].
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut overrides = Vec::new();
        if let Some(address) = &self.web_listen_address {
            overrides.push(("web.listen_address", address.clone()));
        }
        if let Some(file) = &self.web_config_file {
            overrides.push(("web.config_file", file.clone()));
        }
        if let Some(level) = &self.log_level {
            overrides.push(("log.level", level.clone()));
        }
        if let Some(kubeconfig) = &self.kubeconfig {
            overrides.push(("k8s.kubeconfig", kubeconfig.clone()));
        }
        overrides
    }
}
