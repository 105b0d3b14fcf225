//! The kernel/user contract of vigil.
//!
//! Every type that crosses the boundary between the eBPF programs (`vigil-ebpf`) and user space (`vigil`)
//! lives here, with the names of the maps and programs both sides look up. All types are `#[repr(C)]`
//! with explicit padding so that their layout is the same on both sides; the `user` feature implements
//! `aya::Pod` for them.
#![no_std]

pub mod io;
pub mod process;

pub use io::{IoEvent, IoEventHeader, IoEventKind, SyscallLayout};
pub use process::{ProcessEvent, ProcessEventKind, ProcessTracepointLayout};

/// Ring buffer that carries [`ProcessEvent`] records to user space.
pub const PROCESS_EVENTS_MAP: &str = "PROCESS_EVENTS";
/// Per-CPU array of `u64` counters of records the kernel side could not deliver, indexed by [`LostSource`].
pub const LOST_EVENTS_MAP: &str = "LOST_EVENTS";
/// Hash map of the tgids vigil captures (`u32` → `u32`): the in-kernel filter every capture program
/// checks first. Discovery writes [`TRACKED_BY_DISCOVERY`] the moment a process matches; with
/// [`CAPTURE_ON_LISTEN_GLOBAL`] set, the listen program writes [`TRACKED_BY_LISTEN`] for a process that
/// starts listening, so that it is captured before user space has evaluated it (discovery then keeps or
/// removes the entry).
pub const TRACKED_TGIDS_MAP: &str = "TRACKED_TGIDS";
/// [`TRACKED_TGIDS_MAP`] value: the process matches discovery's selectors.
pub const TRACKED_BY_DISCOVERY: u32 = 0;
/// [`TRACKED_TGIDS_MAP`] value: the kernel added the process when it listened; not evaluated yet.
pub const TRACKED_BY_LISTEN: u32 = 1;
/// Global (`.rodata`, `u32`): non-zero when a process that listens is to be captured at once (some
/// instrument selector matches by port).
pub const CAPTURE_ON_LISTEN_GLOBAL: &str = "CAPTURE_ON_LISTEN";
/// Ring buffer that carries [`IoEvent`] records to user space.
pub const IO_EVENTS_MAP: &str = "IO_EVENTS";
/// Global (`.rodata`) holding the [`SyscallLayout`] of the architecture.
pub const SYSCALL_LAYOUT_GLOBAL: &str = "SYSCALL_LAYOUT";
/// Global (`.rodata`) holding the [`ProcessTracepointLayout`] read from tracefs at start.
pub const PROCESS_LAYOUT_GLOBAL: &str = "PROCESS_LAYOUT";

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
