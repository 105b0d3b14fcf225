//! The TCP ports a process listens on, for the port selectors: its socket fds matched against the
//! listening sockets of its network namespace. Each namespace's table is read once and kept until a
//! process listens (a kernel event) or a reconcile starts.

use std::collections::{BTreeMap, BTreeSet, btree_map::Entry};

use super::process::{ProcReader, ReadError};

/// Listening sockets (inode → port) by network namespace inode.
#[derive(Debug, Default)]
pub(super) struct ListenerCache {
    by_namespace: BTreeMap<u64, BTreeMap<u64, u16>>,
}

impl ListenerCache {
    /// Forgets every table (they may no longer tell the whole truth).
    pub(super) fn clear(&mut self) {
        self.by_namespace.clear();
    }

    /// The TCP ports `pid` listens on.
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
        let listening = match self.by_namespace.entry(namespace) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(reader.listening_sockets(pid)?),
        };
        Ok(sockets
            .iter()
            .filter_map(|inode| listening.get(inode).copied())
            .collect())
    }
}
