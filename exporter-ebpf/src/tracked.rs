//! The in-kernel filter: a bitmap of the tgids vigil instruments (`vigil_common::TRACKED_TGIDS_MAP`).
//!
//! No hook of its own. User space (discovery) sets a tgid's bit the moment the process matches the
//! selectors and clears it when the process is gone; the heartbeat repairs a missing bit, the
//! reconcile clears bits no captured process backs. `vigil_listen` may set the bit of a process that
//! starts listening, and `vigil_fork` that of a process forked by a captured one, before discovery has
//! evaluated it. Capture programs test their current tgid here
//! first and return at once for every other process: an array lookup the verifier inlines.

use core::intrinsics::{AtomicOrdering, atomic_or};

use aya_ebpf::{bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use vigil_common::{TRACKED_TGIDS_WORDS, tracked_bit};

/// One bit per possible tgid; user space maps it (hence `BPF_F_MMAPABLE`) and writes it atomically.
#[map]
static TRACKED_TGIDS: Array<u64> = Array::with_max_entries(TRACKED_TGIDS_WORDS, BPF_F_MMAPABLE);

/// Whether vigil captures `tgid`.
pub(crate) fn is_tracked(tgid: u32) -> bool {
    let (index, mask) = tracked_bit(tgid);
    TRACKED_TGIDS
        .get(index)
        .is_some_and(|word| *word & mask != 0)
}

/// Sets the bit of `tgid`, leaving every other bit of its word as it is (an atomic or: user space
/// writes the same words concurrently).
pub(crate) fn track(tgid: u32) {
    let (index, mask) = tracked_bit(tgid);
    if let Some(word) = TRACKED_TGIDS.get_ptr_mut(index) {
        // SAFETY: `word` points at an 8-byte aligned `u64` in the map's value area, valid for the
        // program's run; every writer of it uses atomic operations. (`AtomicU64::fetch_or` does not
        // exist on this target, which Rust declares without compare-and-swap; the or itself is a
        // BPF instruction.)
        unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(word, mask) };
    }
}
