//! The TCP ports a process serves, for the port selectors: its socket fds matched against the served
//! sockets of its network namespace, which are the listening sockets and the connections accepted on
//! their ports. So a process serves a port when it listens on it, or holds a connection accepted on it:
//! inherited (a pre-fork worker) or handed over (node `cluster` round-robin, fds passed over a Unix
//! socket). Each namespace's table is read once and kept until a process listens (a kernel event) or a
//! reconcile starts.

use std::collections::{BTreeMap, BTreeSet, btree_map::Entry};

use super::process::{ProcReader, ReadError};

/// Served sockets (inode → local port) by network namespace inode.
#[derive(Debug, Default)]
pub(super) struct ListenerCache {
    by_namespace: BTreeMap<u64, BTreeMap<u64, u16>>,
}

impl ListenerCache {
    /// Forgets every table (they may no longer tell the whole truth).
    pub(super) fn clear(&mut self) {
        self.by_namespace.clear();
    }

    /// The TCP ports `pid` serves.
    pub(super) fn ports_of(
        &mut self,
        reader: &ProcReader,
        pid: u32,
    ) -> Result<BTreeSet<u16>, ReadError> {
        let sockets = reader.socket_inodes(pid)?;
        if sockets.is_empty() {
            return Ok(BTreeSet::new());
        }
        let namespace = reader.net_namespace(pid)?;
        let served = match self.by_namespace.entry(namespace) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(reader.served_sockets(pid)?),
        };
        Ok(sockets
            .iter()
            .filter_map(|inode| served.get(inode).copied())
            .collect())
    }
}
