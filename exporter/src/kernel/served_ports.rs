//! The `SERVED_PORTS` map of the sock program (`exporter-ebpf/src/sock.rs`): connections accepted per
//! network namespace and local port, and those closed without a byte received, since each entry was
//! created. Read whole on the heartbeat; coverage works on the differences between reads.

use aya::maps::{HashMap, MapData};
use vigil_common::{ServedPortCounts, ServedPortKey};

/// The served-port counters the kernel keeps.
pub struct ServedPorts {
    map: HashMap<MapData, ServedPortKey, ServedPortCounts>,
}

impl ServedPorts {
    pub(super) fn new(map: HashMap<MapData, ServedPortKey, ServedPortCounts>) -> Self {
        ServedPorts { map }
    }

    /// Every entry now. An entry the kernel evicts (the map is an LRU of 16 384 ports) or replaces
    /// while this reads is skipped.
    pub fn read(&self) -> Vec<(ServedPortKey, ServedPortCounts)> {
        self.map.iter().filter_map(Result::ok).collect()
    }
}
