//! Clearing filter bits without undoing one the kernel has just set again.
//!
//! The kernel sets a process's bit on its own at a `listen` (capture-on-listen) and at a fork by a
//! captured process, then user space decides whether to keep it. But user space decides on the events
//! it has drained while the kernel keeps going: a process forked by one that had just listened
//! inherits the bit, listens itself (the kernel sets the bit again) and serves, all while discovery
//! applies the older fork event. Clearing the bit then would leave its requests uncaptured until the
//! `listen` event is applied in a later batch, with nothing counting them.
//!
//! So a decision to clear a bit is recorded ([`Discovery::release`]) and carried out after the batch
//! by [`Discovery::apply_releases`], which drains the process ring first: a process with a newer event
//! saying the kernel set its bit (`TRACKED_BY_KERNEL`) keeps it, and that event decides again when it
//! is applied with the next batch. The ring is drained once more right after the clears, and a bit
//! the kernel set in between is set again: the kernel submits such an event before it sets the bit,
//! so a set that a clear undid always has its event in the ring by then.

use vigil_common::{ProcessEvent, process::TRACKED_BY_KERNEL};

use super::Discovery;
use crate::kernel::FilterError;

impl Discovery {
    /// Sets the filter bit of `tgid` (capture starts), cancelling a release not carried out yet.
    pub(super) fn track(&mut self, tgid: u32) -> Result<(), FilterError> {
        self.released.remove(&tgid);
        self.filter.insert(tgid)
    }

    /// Decides to clear the filter bit of `tgid`; [`Discovery::apply_releases`] clears it.
    pub(super) fn release(&mut self, tgid: u32) {
        self.released.insert(tgid);
    }

    /// Clears the bits released since the last call, except those of processes with a newer kernel
    /// event that set their bit. `drain` appends the process events submitted since the last drain to
    /// `pending`: the events not applied yet, which the caller applies with the next batch.
    pub fn apply_releases(
        &mut self,
        pending: &mut Vec<ProcessEvent>,
        mut drain: impl FnMut(&mut Vec<ProcessEvent>),
    ) {
        if self.released.is_empty() {
            return;
        }
        let set_by_kernel = |events: &[ProcessEvent], tgid: u32| {
            events
                .iter()
                .any(|event| event.tgid == tgid && event.flags & TRACKED_BY_KERNEL != 0)
        };
        drain(pending);
        let cleared: Vec<u32> = std::mem::take(&mut self.released)
            .into_iter()
            .filter(|&tgid| !set_by_kernel(pending, tgid))
            .collect();
        for &tgid in &cleared {
            self.filter.remove(tgid);
        }
        let seen = pending.len();
        drain(pending);
        for tgid in cleared {
            if set_by_kernel(&pending[seen..], tgid)
                && let Err(error) = self.filter.insert(tgid)
            {
                // Past the bitmap: the kernel could not have set it either.
                tracing::debug!(tgid, %error, "released filter bit not set again");
            }
        }
    }
}
