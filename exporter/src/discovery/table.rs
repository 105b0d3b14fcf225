//! The process table: every live process on the node, keyed by host pid and always compared by
//! identity (pid, start time), so a reused pid never inherits another program's state.

use std::collections::{BTreeMap, BTreeSet};

use super::process::{ProcessIdentity, ProcessInfo};

/// What [`ProcessTable::upsert`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Upsert {
    /// A process the table did not have.
    Inserted,
    /// The same process, with refreshed details (an exec changes exe and cmdline).
    Updated,
    /// The pid now belongs to another process; the old one was dropped.
    Replaced(ProcessIdentity),
}

/// Corrections a reconcile against /proc made to the table; each is a kernel event the table missed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Corrections {
    /// Live processes the table did not have, or whose executable changed unseen (an exec).
    pub missed_exec: u64,
    /// Processes in the table that are gone.
    pub missed_exit: u64,
    /// Pids that now belong to another process.
    pub pid_reused: u64,
}

/// Every process discovery knows of.
#[derive(Debug, Default)]
pub struct ProcessTable {
    processes: BTreeMap<u32, ProcessInfo>,
}

impl ProcessTable {
    /// Records `info`, replacing whatever the table held for its pid.
    pub fn upsert(&mut self, info: ProcessInfo) -> Upsert {
        match self.processes.insert(info.identity.pid, info.clone()) {
            None => Upsert::Inserted,
            Some(old) if old.identity == info.identity => Upsert::Updated,
            Some(old) => Upsert::Replaced(old.identity),
        }
    }

    /// Drops `identity`; a different process now holding the pid is kept.
    pub fn remove(&mut self, identity: ProcessIdentity) -> bool {
        match self.processes.get(&identity.pid) {
            Some(info) if info.identity == identity => {
                self.processes.remove(&identity.pid);
                true
            }
            _ => false,
        }
    }

    /// The process the table holds for `pid`.
    pub fn get(&self, pid: u32) -> Option<&ProcessInfo> {
        self.processes.get(&pid)
    }

    /// Every process, by pid.
    pub fn iter(&self) -> impl Iterator<Item = &ProcessInfo> {
        self.processes.values()
    }

    pub fn len(&self) -> usize {
        self.processes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }

    /// Makes the table equal to `live` (a full /proc scan) and says what that corrected.
    pub fn reconcile(&mut self, live: Vec<ProcessInfo>) -> Corrections {
        let mut corrections = Corrections::default();
        let live: BTreeMap<u32, ProcessInfo> = live
            .into_iter()
            .map(|info| (info.identity.pid, info))
            .collect();
        let mut reused = BTreeSet::new();
        self.processes.retain(|pid, info| match live.get(pid) {
            Some(now) if now.identity == info.identity => true,
            Some(_) => {
                reused.insert(*pid);
                false
            }
            None => {
                corrections.missed_exit += 1;
                false
            }
        });
        for (pid, info) in live {
            let exe_changed = self
                .processes
                .get(&pid)
                .is_some_and(|known| known.identity == info.identity && known.exe != info.exe);
            let inserted = self.upsert(info) == Upsert::Inserted;
            if exe_changed || (inserted && !reused.contains(&pid)) {
                corrections.missed_exec += 1;
            }
        }
        corrections.pid_reused = reused.len() as u64;
        corrections
    }
}

#[cfg(test)]
mod tests;
