//! The `HTTP2_CONNECTIONS` map of the I/O programs (`exporter-ebpf/src/io.rs`): connections whose
//! transfers are copied up to `IO_DATA_MAX_HTTP2` bytes and one record per buffer. The kernel adds a
//! connection whose transfer starts with the client preface; user space adds one that capture took for
//! HTTP/2 mid-way (open before vigil started), which the kernel cannot tell.

use aya::maps::{HashMap, MapData};
use vigil_common::io::connection_key;

/// The HTTP/2 connections the kernel copies whole.
pub struct Http2Connections {
    map: HashMap<MapData, u64, u8>,
}

impl Http2Connections {
    pub(super) fn new(map: HashMap<MapData, u64, u8>) -> Self {
        Http2Connections { map }
    }

    /// Adds the connection `fd` of `tgid` (or its TLS `session`, when not 0). The map is an LRU: adding never fails for want of room; an
    /// error (the map gone) only costs the wider copy, and is logged.
    pub fn add(&mut self, tgid: u32, fd: u32, session: u64) {
        if let Err(error) = self.map.insert(connection_key(tgid, fd, session), 0, 0) {
            tracing::debug!(%error, tgid, fd, "marking an HTTP/2 connection");
        }
    }
}
