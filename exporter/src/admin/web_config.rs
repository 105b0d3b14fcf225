//! `--web.config.file`: the Prometheus exporter-toolkit web configuration format
//! (<https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md>), read into
//! what the admin server applies: a TLS server configuration, basic-auth users and response headers.
//!
//! Supported: `tls_server_config` (`cert_file`/`cert`, `key_file`/`key`, `client_auth_type`
//! `NoClientCert`, `RequireAndVerifyClientCert` or `VerifyClientCertIfGiven`, `client_ca_file`/
//! `client_ca`, `min_version`/`max_version` `TLS12` or `TLS13`, `prefer_server_cipher_suites`),
//! `http_server_config` (`headers`; `http2` is accepted, vigil serves HTTP/1.1) and
//! `basic_auth_users`. Refused with a message naming the key: unknown keys, and the toolkit keys vigil
//! does not implement (`client_allowed_sans`, `cipher_suites`, `curve_preferences`, `rate_limit`, and
//! the client auth types that accept certificates nobody verified: `RequestClientCert`,
//! `RequireAnyClientCert`). Relative file names are relative to the web configuration file's
//! directory, as in the toolkit.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::{basic_auth::BasicAuth, tls};

/// Why a web configuration file cannot be used; each names the file, and the key when one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file itself cannot be read.
    #[error("cannot read web config file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML of this format: an unknown key, a wrong type or an unknown value (serde names it).
    #[error("invalid web config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    /// A key's value cannot be used.
    #[error("invalid web config file {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    http_server_config: Option<HttpServerConfig>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    /// Not implemented; refused when set.
    #[serde(default)]
    rate_limit: Option<serde_yaml_ng::Value>,
}

/// `tls_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsServerConfig {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub client_auth_type: ClientAuthType,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
    pub prefer_server_cipher_suites: Option<bool>,
    /// Not implemented; refused when not empty.
    #[serde(default)]
    client_allowed_sans: Vec<String>,
    #[serde(default)]
    cipher_suites: Vec<String>,
    #[serde(default)]
    curve_preferences: Vec<String>,
}

/// `tls_server_config.client_auth_type`, named as in Go's `crypto/tls`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub(super) enum ClientAuthType {
    #[default]
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

/// `tls_server_config.min_version` and `max_version`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TlsVersion {
    TLS10,
    TLS11,
    TLS12,
    TLS13,
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerConfig {
    /// Accepted for compatibility; vigil's admin server speaks HTTP/1.1 only.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// The response headers the toolkit lets a file set, and the values it accepts (empty: any).
const HEADERS: [(&str, &[&str]); 5] = [
    ("Content-Security-Policy", &[]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-XSS-Protection", &[]),
    ("Strict-Transport-Security", &[]),
];

/// What the admin server applies: the file read, checked and turned into server parts.
pub struct WebSettings {
    /// `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `None`: no authentication.
    pub users: Option<BasicAuth>,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The files this was read from (the web configuration file and those it names), watched for
    /// changes.
    pub sources: Vec<PathBuf>,
}

impl WebSettings {
    /// No web configuration file: plain HTTP, no authentication, no extra headers.
    pub fn open() -> WebSettings {
        WebSettings {
            tls: None,
            users: None,
            headers: Vec::new(),
            sources: Vec::new(),
        }
    }

    /// Reads and checks the web configuration file at `path`, and the files it names.
    pub fn load(path: &Path) -> Result<WebSettings, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        let file: WebConfigFile = if text.trim().is_empty() {
            WebConfigFile::default()
        } else {
            serde_yaml_ng::from_str::<Option<WebConfigFile>>(&text)
                .map_err(|error| WebConfigError::Syntax {
                    path: path.to_owned(),
                    message: error.to_string(),
                })?
                .unwrap_or_default()
        };
        let invalid = |key: &str, message: String| WebConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        if file.rate_limit.is_some() {
            return Err(invalid(
                "rate_limit",
                "not supported by vigil; remove it".to_owned(),
            ));
        }
        let directory = path.parent().unwrap_or(Path::new("."));
        let mut sources = vec![path.to_owned()];
        let tls = match &file.tls_server_config {
            Some(config) => tls::server_config(config, directory, &mut sources)
                .map_err(|(key, message)| invalid(&key, message))?
                .map(Arc::new),
            None => None,
        };
        let users = match file.basic_auth_users {
            Some(users) if !users.is_empty() => {
                for (user, hash) in &users {
                    hash.parse::<bcrypt::HashParts>().map_err(|error| {
                        invalid(
                            &format!("basic_auth_users.{user}"),
                            format!("not a bcrypt hash ({error}); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"),
                        )
                    })?;
                }
                Some(BasicAuth::new(users))
            }
            _ => None,
        };
        let mut headers = Vec::new();
        for (name, value) in file
            .http_server_config
            .map(|config| config.headers)
            .unwrap_or_default()
        {
            let key = format!("http_server_config.headers.{name}");
            let Some((known, accepted)) = HEADERS
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(&name))
            else {
                let names: Vec<&str> = HEADERS.iter().map(|(name, _)| *name).collect();
                return Err(invalid(
                    &key,
                    format!(
                        "not a header the format allows; one of {}",
                        names.join(", ")
                    ),
                ));
            };
            if value.is_empty() {
                continue;
            }
            if !accepted.is_empty() && !accepted.iter().any(|ok| ok.eq_ignore_ascii_case(&value)) {
                return Err(invalid(
                    &key,
                    format!("{value:?} is not one of {}", accepted.join(", ")),
                ));
            }
            let value = HeaderValue::from_str(&value)
                .map_err(|_| invalid(&key, format!("{value:?} is not a valid header value")))?;
            let name = HeaderName::from_bytes(known.as_bytes()).expect("the names are valid");
            headers.push((name, value));
        }
        Ok(WebSettings {
            tls,
            users,
            headers,
            sources,
        })
    }
}

impl TlsServerConfig {
    /// The toolkit keys vigil does not implement that are set: (key, why).
    pub(super) fn unsupported(&self) -> Option<(&'static str, &'static str)> {
        if !self.client_allowed_sans.is_empty() {
            return Some((
                "tls_server_config.client_allowed_sans",
                "not supported by vigil; sign client certificates with a CA used only for this",
            ));
        }
        if !self.cipher_suites.is_empty() {
            return Some((
                "tls_server_config.cipher_suites",
                "not supported by vigil; rustls offers only modern cipher suites",
            ));
        }
        if !self.curve_preferences.is_empty() {
            return Some((
                "tls_server_config.curve_preferences",
                "not supported by vigil; rustls chooses among modern curves",
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests;
