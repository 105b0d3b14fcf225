//! The config loader (`Config::load`) on an arbitrary YAML file over the defaults, as `--config.file`
//! gives it, then `Config::to_yaml` of what loads (`/debug/config`).
//!
//! Asserts: no panic; a bad file is an error (the daemon reports it, exit 64), never a crash.
#![no_main]

use std::{path::PathBuf, sync::OnceLock};

use libfuzzer_sys::fuzz_target;
use vigil::config::Config;

/// The file each input is written to (one per fuzzing process).
fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("vigil-fuzz-config-{}.yaml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(path(), data).expect("writing the fuzz input's config file");
    if let Ok(config) = Config::load(Some(path()), std::iter::empty(), &[]) {
        let _ = config.to_yaml();
    }
});
