//! The TCP ports a process serves, for the port selectors: its socket fds matched against the served
//! sockets of its network namespace, which are the listening sockets and the connections accepted on
//! their ports. So a process serves a port when it listens on it, or holds a connection accepted on it:
//! inherited (a pre-fork worker) or handed over (node `cluster` round-robin, fds passed over a Unix
//! socket). Each namespace's table is read once and kept until a batch of kernel events with a `listen`
//! in it is applied (one read then serves every process of the batch: the events were all drained
//! before it) or a reconcile starts. Reads are counted in `vigil_socket_table_reads_total`.

use std::collections::{BTreeMap, BTreeSet, btree_map::Entry};

use prometheus::IntCounter;

use super::process::{ProcReader, ReadError};

/// Served sockets (inode → local port) by network namespace inode.
#[derive(Debug)]
pub(super) struct ListenerCache {
    by_namespace: BTreeMap<u64, BTreeMap<u64, u16>>,
    /// `vigil_socket_table_reads_total`.
    reads: IntCounter,
}

impl ListenerCache {
    pub(super) fn new(reads: IntCounter) -> Self {
        ListenerCache {
            by_namespace: BTreeMap::new(),
            reads,
        }
    }

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
            Entry::Vacant(entry) => {
                self.reads.inc();
                entry.insert(reader.served_sockets(pid)?)
            }
        };
        Ok(sockets
            .iter()
            .filter_map(|inode| served.get(inode).copied())
            .collect())
    }
}
