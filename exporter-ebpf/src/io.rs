//! Socket I/O of instrumented processes: the first bytes of every read and write, for user space to
//! recognise and pair HTTP/1.x requests and responses.
//!
//! Hooks (syscall tracepoints; this kernel refuses kprobes and fentry):
//! - `syscalls/sys_enter_{read,recvfrom,write,sendto,writev}` → [`vigil_io_enter`]: for an instrumented
//!   thread only, remembers the fd and the buffer (or iovec array) in `IO_CALLS` until the call returns.
//! - `syscalls/sys_exit_{read,recvfrom}` → [`vigil_receive_exit`], `syscalls/sys_exit_{write,sendto}` →
//!   [`vigil_send_exit`], `syscalls/sys_exit_writev` → [`vigil_sendv_exit`]: when the call moved bytes,
//!   submit an `IoEvent` with the first `IO_DATA_MAX` of them (from the first iovec for `writev`).
//! - `syscalls/sys_enter_close` → [`vigil_close`]: an instrumented process closed an fd, so user space
//!   forgets the connection before the fd number is reused.
//!
//! Every program looks the current tgid up in `TRACKED_TGIDS` (enter and close) or its thread in
//! `IO_CALLS` (exit) first and returns at once for every other process: the cost the rest of the node
//! pays is one hash lookup per hooked syscall. Records go to `IO_EVENTS`, submitted without a wakeup and
//! drained by user space on a timer; a full ring is counted in `LOST_EVENTS[IoEvents]`, a full
//! `IO_CALLS` in `LOST_EVENTS[IoArguments]`. Offsets come from `SYSCALL_LAYOUT`, filled by user space
//! from the tracefs format files.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns, bpf_probe_read_user,
        generated::bpf_probe_read_user as probe_read_user_raw,
    },
    macros::{map, tracepoint},
    maps::{LruHashMap, RingBuf},
    programs::TracePointContext,
};
use vigil_common::{
    IoEvent, IoEventKind, LostSource, SyscallLayout, io::IO_DATA_MAX, process::FIELD_ABSENT,
};

use crate::{process::count_lost, tracked::TRACKED_TGIDS};

/// Filled by user space (`EbpfLoader::override_global`) before load.
#[unsafe(no_mangle)]
static SYSCALL_LAYOUT: SyscallLayout = SyscallLayout::UNKNOWN;

/// I/O records for user space; its size is set by user space at load time.
#[map]
static IO_EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// A syscall of an instrumented thread between enter and exit.
#[repr(C)]
#[derive(Clone, Copy)]
struct PendingCall {
    fd: u64,
    /// The buffer, or for `writev` the iovec array.
    buffer: u64,
}

/// `pid_tgid` of a thread inside a hooked syscall → its arguments. LRU, so that calls whose exit never
/// fires (the thread was killed) cannot fill it.
#[map]
static IO_CALLS: LruHashMap<u64, PendingCall> = LruHashMap::with_max_entries(16384, 0);

fn layout() -> SyscallLayout {
    // SAFETY: a read of our own `.rodata` global; volatile so the compiler does not fold the default.
    unsafe { core::ptr::read_volatile(&SYSCALL_LAYOUT) }
}

fn argument(ctx: &TracePointContext, index: u32) -> Option<u64> {
    let first = layout().first_argument;
    if first == FIELD_ABSENT {
        return None;
    }
    // SAFETY: syscall tracepoint arguments are 8 bytes each from the first one, per the format file.
    unsafe { ctx.read_at::<u64>((first + 8 * index) as usize) }.ok()
}

fn is_tracked(tgid: u32) -> bool {
    // SAFETY: only the presence of the key is used.
    unsafe { TRACKED_TGIDS.get(&tgid) }.is_some()
}

#[tracepoint]
pub fn vigil_io_enter(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_tracked((pid_tgid >> 32) as u32) {
        return 0;
    }
    let (Some(fd), Some(buffer)) = (argument(&ctx, 0), argument(&ctx, 1)) else {
        return 0;
    };
    if IO_CALLS
        .insert(&pid_tgid, &PendingCall { fd, buffer }, 0)
        .is_err()
    {
        count_lost(LostSource::IoArguments);
    }
    0
}

#[tracepoint]
pub fn vigil_receive_exit(ctx: TracePointContext) -> u32 {
    finish(&ctx, IoEventKind::Receive, false);
    0
}

#[tracepoint]
pub fn vigil_send_exit(ctx: TracePointContext) -> u32 {
    finish(&ctx, IoEventKind::Send, false);
    0
}

#[tracepoint]
pub fn vigil_sendv_exit(ctx: TracePointContext) -> u32 {
    finish(&ctx, IoEventKind::Send, true);
    0
}

#[tracepoint]
pub fn vigil_close(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_tracked(tgid) {
        return 0;
    }
    let Some(fd) = argument(&ctx, 0) else {
        return 0;
    };
    submit(IoEventKind::Close, tgid, fd as u32, 0, 0, 0);
    0
}

/// At a syscall's exit: submits what the call moved, if the thread was remembered at its enter.
fn finish(ctx: &TracePointContext, kind: IoEventKind, vectored: bool) {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(call) = (unsafe { IO_CALLS.get(&pid_tgid) }).copied() else {
        return;
    };
    let _ = IO_CALLS.remove(&pid_tgid);
    let ret_offset = layout().ret;
    if ret_offset == FIELD_ABSENT {
        return;
    }
    // SAFETY: `ret` of a syscall exit tracepoint, at the offset its format file gives.
    let Ok(moved) = (unsafe { ctx.read_at::<i64>(ret_offset as usize) }) else {
        return;
    };
    if moved <= 0 {
        return;
    }
    let (source, available) = if vectored {
        // `struct iovec { void *iov_base; size_t iov_len; }`: the first buffer of the vector.
        // SAFETY: reads of user memory through the fault-tolerant helper.
        let base = unsafe { bpf_probe_read_user(call.buffer as *const u64) };
        let len = unsafe { bpf_probe_read_user((call.buffer + 8) as *const u64) };
        match (base, len) {
            (Ok(base), Ok(len)) => (base, len.min(moved as u64)),
            _ => return,
        }
    } else {
        (call.buffer, moved as u64)
    };
    submit(
        kind,
        (pid_tgid >> 32) as u32,
        call.fd as u32,
        moved as u64,
        source,
        available,
    );
}

fn submit(kind: IoEventKind, tgid: u32, fd: u32, length: u64, source: u64, available: u64) {
    let Some(mut entry) = IO_EVENTS.reserve::<IoEvent>(0) else {
        count_lost(LostSource::IoEvents);
        return;
    };
    let event = entry.as_mut_ptr();
    let mut captured = available as u32;
    if available > IO_DATA_MAX as u64 {
        captured = IO_DATA_MAX as u32;
    }
    // SAFETY: `event` points at a reserved, exclusively owned record of the right size; the copy is
    // bounded by IO_DATA_MAX and uses the fault-tolerant user-memory helper.
    unsafe {
        (*event).kind = kind as u32;
        (*event).tgid = tgid;
        (*event).fd = fd;
        (*event).boot_time_ns = bpf_ktime_get_boot_ns();
        (*event).length = length;
        let copied = if captured == 0 {
            0
        } else {
            probe_read_user_raw(
                (*event).data.as_mut_ptr() as *mut c_void,
                captured,
                source as *const c_void,
            )
        };
        (*event).captured = if copied < 0 { 0 } else { captured };
    }
    entry.submit(BPF_RB_NO_WAKEUP as u64);
}
