//! The in-kernel process filter: the `TRACKED_TGIDS` bitmap the capture programs check before recording
//! a syscall, as discovery sees it ([`ProcessFilter`]), and its implementation over the map mapped into
//! vigil's memory ([`TrackedTgids`]). The listen program (`exporter-ebpf/src/process.rs`) sets bits too.

use std::{
    os::fd::{AsFd, AsRawFd},
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{Array, IterableMap as _, MapData};
use vigil_common::{TRACKED_TGIDS_MAP, TRACKED_TGIDS_WORDS, tracked_bit, tracked_tgids_in_word};

use super::KernelError;

/// A tgid the filter cannot hold.
#[derive(Debug, thiserror::Error)]
#[error("tgid {0} is past the filter bitmap")]
pub struct FilterError(pub u32);

/// The in-kernel set of captured tgids (the `TRACKED_TGIDS` map; a plain set in tests).
pub trait ProcessFilter: Send {
    fn insert(&mut self, tgid: u32) -> Result<(), FilterError>;
    fn remove(&mut self, tgid: u32);
    fn contains(&self, tgid: u32) -> bool;
    /// Every tgid in the filter, whoever added it.
    fn tgids(&self) -> Vec<u32>;
}

/// The `TRACKED_TGIDS` filter bitmap, mapped into vigil's memory: the processes whose syscalls capture
/// programs record. Bits are set and cleared with atomic operations on the shared words, as the listen
/// program sets them: no writer loses another's bit in the same word, and no syscall is needed.
pub struct TrackedTgids {
    /// `TRACKED_TGIDS_WORDS` words; the mapping keeps the map alive after its fd is closed.
    pub(super) memory: memmap2::MmapRaw,
}

impl TrackedTgids {
    pub(super) fn map_into_memory(array: Array<MapData, u64>) -> Result<TrackedTgids, KernelError> {
        let memory = memmap2::MmapOptions::new()
            .len(TRACKED_TGIDS_WORDS as usize * size_of::<u64>())
            .map_raw(array.map().fd().as_fd().as_raw_fd())
            .map_err(|source| KernelError::MapMemory {
                name: TRACKED_TGIDS_MAP,
                source,
            })?;
        Ok(TrackedTgids { memory })
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is `TRACKED_TGIDS_WORDS` `u64`s, page aligned, shared with the kernel and
        // alive as long as `self`; every access to it, here and in the kernel, is atomic.
        unsafe {
            std::slice::from_raw_parts(
                self.memory.as_ptr() as *const AtomicU64,
                TRACKED_TGIDS_WORDS as usize,
            )
        }
    }

    /// The word holding `tgid`'s bit, and the bit's mask; `None` for a tgid past the bitmap (which no
    /// kernel gives out).
    fn bit(&self, tgid: u32) -> Option<(&AtomicU64, u64)> {
        let (index, mask) = tracked_bit(tgid);
        self.words().get(index as usize).map(|word| (word, mask))
    }

    /// Sets the bit of `tgid` (an atomic or: the kernel writes the same words).
    pub(super) fn set(&self, tgid: u32) -> Result<(), FilterError> {
        let (word, mask) = self.bit(tgid).ok_or(FilterError(tgid))?;
        word.fetch_or(mask, Ordering::SeqCst);
        Ok(())
    }

    /// Clears the bit of `tgid` (an atomic and; sequentially consistent, so that a drain of the process
    /// ring after it sees every event the kernel submitted before a set this clear undid).
    pub(super) fn clear(&self, tgid: u32) {
        if let Some((word, mask)) = self.bit(tgid) {
            word.fetch_and(!mask, Ordering::SeqCst);
        }
    }
}

impl ProcessFilter for TrackedTgids {
    fn insert(&mut self, tgid: u32) -> Result<(), FilterError> {
        self.set(tgid)
    }

    fn remove(&mut self, tgid: u32) {
        self.clear(tgid);
    }

    fn contains(&self, tgid: u32) -> bool {
        self.bit(tgid)
            .is_some_and(|(word, mask)| word.load(Ordering::Relaxed) & mask != 0)
    }

    fn tgids(&self) -> Vec<u32> {
        (0..)
            .zip(self.words())
            .flat_map(|(index, word)| tracked_tgids_in_word(index, word.load(Ordering::Relaxed)))
            .collect()
    }
}
