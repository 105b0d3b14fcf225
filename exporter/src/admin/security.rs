//! The web configuration in force, and its reload when a file changes.
//!
//! The file given with `--web.config.file` is read at start; a bad file stops vigil there. After that,
//! at every new connection, the modification times and sizes of the web configuration file and of the
//! files it names (certificate, key, client CA) are compared with those read; on a change everything is
//! read again (a rotated certificate, a new user) and applies to the connections accepted from then on.
//! A changed file that does not load is logged once as a warning and the configuration in force stays.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use super::web_config::{WebConfigError, WebSettings};

/// What identifies a version of a file without reading it: modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(sources: &[PathBuf]) -> Vec<Stamp> {
    sources
        .iter()
        .map(|path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        })
        .collect()
}

/// The web configuration in force (TLS, users, headers).
pub struct WebSecurity {
    /// `None`: no web configuration file; nothing to reload.
    path: Option<PathBuf>,
    loaded: Mutex<Loaded>,
}

struct Loaded {
    settings: Arc<WebSettings>,
    /// The files read for `settings` (or for the last attempt that failed).
    sources: Vec<PathBuf>,
    stamps: Vec<Stamp>,
}

impl WebSecurity {
    /// Reads the web configuration file at `path`, if any.
    pub fn load(path: Option<&Path>) -> Result<WebSecurity, WebConfigError> {
        let settings = match path {
            Some(path) => WebSettings::load(path)?,
            None => WebSettings::open(),
        };
        let sources = settings.sources.clone();
        Ok(WebSecurity {
            path: path.map(Path::to_owned),
            loaded: Mutex::new(Loaded {
                stamps: stamps(&sources),
                sources,
                settings: Arc::new(settings),
            }),
        })
    }

    /// Whether connections are served over TLS now.
    pub fn tls(&self) -> bool {
        self.current().tls.is_some()
    }

    /// The configuration for a new connection: read again first if a file changed.
    pub fn current(&self) -> Arc<WebSettings> {
        let mut loaded = self.loaded.lock().expect("web security lock");
        let Some(path) = &self.path else {
            return loaded.settings.clone();
        };
        let now = stamps(&loaded.sources);
        if now == loaded.stamps {
            return loaded.settings.clone();
        }
        match WebSettings::load(path) {
            Ok(settings) => {
                tracing::info!(
                    file = %path.display(),
                    tls = settings.tls.is_some(),
                    basic_auth = settings.users.is_some(),
                    "web configuration reloaded"
                );
                loaded.sources = settings.sources.clone();
                loaded.stamps = stamps(&loaded.sources);
                loaded.settings = Arc::new(settings);
            }
            Err(error) => {
                // Not retried until a file changes again (one warning per change).
                tracing::warn!(%error, "web configuration changed but does not load; keeping the previous one");
                loaded.stamps = now;
            }
        }
        loaded.settings.clone()
    }
}
