//! The in-kernel filter: the tgids vigil instruments.
//!
//! No hook of its own. User space (discovery) inserts a tgid the moment the process matches the
//! selectors and removes it when the process is gone; the heartbeat repairs a missing entry, the
//! reconcile removes entries no captured process backs. `vigil_listen` may add a process that starts
//! listening before discovery has evaluated it. Capture programs look their current tgid up here first
//! and return at once for every other process.

use aya_ebpf::{macros::map, maps::HashMap};

/// Captured tgid → who added it: `TRACKED_BY_DISCOVERY` or `TRACKED_BY_LISTEN`.
#[map]
pub(crate) static TRACKED_TGIDS: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);
