//! The in-kernel filter: the tgids vigil instruments.
//!
//! No hook of its own. User space (discovery) inserts a tgid the moment the process matches the
//! selectors and removes it when the process is gone; the heartbeat repairs a missing entry. Capture
//! programs look their current tgid up here first and return at once for every other process.

use aya_ebpf::{macros::map, maps::HashMap};

/// Instrumented tgid → 0 (reserved).
#[map]
pub(crate) static TRACKED_TGIDS: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);
