//! The kernel/user contract of vigil.
//!
//! Every type that crosses the boundary between the eBPF programs (`vigil-ebpf`) and user space (`vigil`)
//! lives here, with the names of the maps and programs both sides look up. All types are `#[repr(C)]`
//! with explicit padding so that their layout is the same on both sides; the `user` feature implements
//! `aya::Pod` for them.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod io;
pub mod process;
pub mod sock;

pub use io::{IoEvent, IoEventHeader, IoEventKind, SyscallLayout};
pub use process::{ProcessEvent, ProcessEventKind, ProcessTracepointLayout};
pub use sock::{ServedPortCounts, ServedPortKey, SockLayout};

/// Ring buffer that carries [`ProcessEvent`] records to user space.
pub const PROCESS_EVENTS_MAP: &str = "PROCESS_EVENTS";
/// Per-CPU array of `u64` counters of records the kernel side could not deliver, indexed by [`LostSource`].
pub const LOST_EVENTS_MAP: &str = "LOST_EVENTS";
/// Bitmap of the tgids vigil captures: the in-kernel filter every capture program checks first (an
/// array lookup the verifier inlines, where a hash lookup was a helper call: ~40 ns less per hooked
/// syscall of every process). An array of [`TRACKED_TGIDS_WORDS`] `u64` words, the bit of a tgid at
/// [`tracked_bit`]. Created `BPF_F_MMAPABLE`: user space maps it and sets and clears bits with atomic
/// operations on the shared memory, and the listen program sets bits with an atomic or, so that no
/// writer loses another's bit in the same word. Discovery sets a bit the moment a process matches;
/// with [`CAPTURE_ON_LISTEN_GLOBAL`] set, the listen program sets the bit of a process that starts
/// listening, so that it is captured before user space has evaluated it (discovery then keeps or
/// clears it).
pub const TRACKED_TGIDS_MAP: &str = "TRACKED_TGIDS";
/// The kernel's `PID_MAX_LIMIT` on 64-bit architectures: no tgid reaches it, whatever
/// `kernel.pid_max` is set to, now or later.
pub const PID_MAX_LIMIT: u32 = 4 * 1024 * 1024;
/// Words in [`TRACKED_TGIDS_MAP`]: a bit for every possible tgid (512 KiB).
pub const TRACKED_TGIDS_WORDS: u32 = PID_MAX_LIMIT / 64;

/// Where the bit of `tgid` is in [`TRACKED_TGIDS_MAP`]: the word's index and the bit's mask in it.
/// The index is past the map for a tgid no kernel gives out (≥ [`PID_MAX_LIMIT`]).
pub const fn tracked_bit(tgid: u32) -> (u32, u64) {
    (tgid / 64, 1 << (tgid % 64))
}

/// The tgids whose bits are set in `word`, the word at `index` of [`TRACKED_TGIDS_MAP`].
pub fn tracked_tgids_in_word(index: u32, word: u64) -> impl Iterator<Item = u32> {
    (0..64)
        .filter(move |bit| word & (1 << bit) != 0)
        .map(move |bit| index * 64 + bit)
}

/// Global (`.rodata`, `u32`): non-zero when a process that listens is to be captured at once (some
/// instrument selector matches by port).
pub const CAPTURE_ON_LISTEN_GLOBAL: &str = "CAPTURE_ON_LISTEN";
/// Ring buffer that carries [`IoEvent`] records to user space.
pub const IO_EVENTS_MAP: &str = "IO_EVENTS";
/// LRU hash map of [`io::connection_key`] → `u8`: the connections of captured processes that carry
/// HTTP/2 (the kernel adds one whose transfer starts with the client preface and removes it at its
/// close), whose transfers are copied up to [`io::IO_DATA_MAX_HTTP2`] bytes.
pub const HTTP2_CONNECTIONS_MAP: &str = "HTTP2_CONNECTIONS";
/// Global (`.rodata`) holding the [`SyscallLayout`] of the architecture.
pub const SYSCALL_LAYOUT_GLOBAL: &str = "SYSCALL_LAYOUT";
/// Global (`.rodata`) holding the [`ProcessTracepointLayout`] read from tracefs at start.
pub const PROCESS_LAYOUT_GLOBAL: &str = "PROCESS_LAYOUT";
/// Global (`.rodata`) holding the [`SockLayout`] read from tracefs and the kernel's BTF at start.
pub const SOCK_LAYOUT_GLOBAL: &str = "SOCK_LAYOUT";
/// LRU hash map of [`ServedPortKey`] → [`ServedPortCounts`]: the connections accepted on each port of
/// each network namespace, which user space reads on the heartbeat.
pub const SERVED_PORTS_MAP: &str = "SERVED_PORTS";
/// LRU hash map of the TLS library calls in flight (thread → call), from entry to return uprobe.
pub const SSL_CALLS_MAP: &str = "SSL_CALLS";
/// LRU hash map of new task id → whether it is a thread, from `task_newtask` to `sched_process_fork`.
pub const CLONE_KINDS_MAP: &str = "CLONE_KINDS";

/// Where a lost record was headed; the index into [`LOST_EVENTS_MAP`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostSource {
    /// A [`ProcessEvent`] that found the process ring buffer full.
    ProcessEvents = 0,
    /// A fork whose clone flags could not be remembered for classification (map full).
    CloneFlags = 1,
    /// An [`IoEvent`] that found the I/O ring buffer full.
    IoEvents = 2,
}

impl LostSource {
    /// Every source, in index order.
    pub const ALL: [LostSource; 3] = [
        LostSource::ProcessEvents,
        LostSource::CloneFlags,
        LostSource::IoEvents,
    ];
    /// Number of entries [`LOST_EVENTS_MAP`] must have.
    pub const COUNT: u32 = Self::ALL.len() as u32;

    /// The label value user space exports for this source.
    pub const fn label(self) -> &'static str {
        match self {
            LostSource::ProcessEvents => "process_events",
            LostSource::CloneFlags => "clone_flags",
            LostSource::IoEvents => "io_events",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tgid_has_its_own_bit_and_reads_back() {
        let mut words = [0u64; 4];
        let tgids = [0, 1, 63, 64, 65, 127, 200, 255];
        for tgid in tgids {
            let (index, mask) = tracked_bit(tgid);
            assert_eq!(words[index as usize] & mask, 0, "tgid {tgid} shares a bit");
            words[index as usize] |= mask;
        }
        let read_back: std::vec::Vec<u32> = (0..words.len() as u32)
            .flat_map(|index| tracked_tgids_in_word(index, words[index as usize]))
            .collect();
        assert_eq!(read_back, tgids);
    }

    #[test]
    fn the_bitmap_covers_every_tgid_a_kernel_gives_out() {
        assert_eq!(tracked_bit(PID_MAX_LIMIT - 1).0, TRACKED_TGIDS_WORDS - 1);
    }
}
