//! Socket I/O of instrumented processes: the first bytes of every read and write, for user space to
//! recognise and pair HTTP/1.x requests and responses.
//!
//! Hooks (syscall exit tracepoints; this kernel refuses kprobes and fentry), each submitting, when the
//! call moved bytes, an `IoEvent` with the first bytes moved (up to `IO_DATA_MAX`, in the smallest
//! record of `IO_DATA_CLASSES` they fit in):
//! - `syscalls/sys_exit_{read,recvfrom}` → [`vigil_receive_exit`], `sys_exit_readv` →
//!   [`vigil_receivev_exit`] (first iovec), `sys_exit_recvmsg` → [`vigil_receivemsg_exit`] (first
//!   iovec of the message);
//! - `syscalls/sys_exit_{write,sendto}` → [`vigil_send_exit`], `sys_exit_writev` → [`vigil_sendv_exit`],
//!   `sys_exit_sendmsg` → [`vigil_sendmsg_exit`], `sys_exit_sendfile64` → [`vigil_sendfile_exit`] (the
//!   length only: the bytes come from a file, they are body bytes);
//! - `syscalls/sys_enter_close` → [`vigil_close`]: an instrumented process closed an fd, so user space
//!   forgets the connection (and ends a body delimited by the close) before the fd number is reused.
//!
//! The fd, the buffer and the return value are loaded from the task's saved user registers
//! (`bpf_task_pt_regs`), so there is no enter hook, no map of calls in flight and no helper call to
//! read the tracepoint record: one program run per syscall. No `accept`/`connect` hook
//! either: a connection is known by its first request or response, which also adopts connections
//! opened before vigil started.
//!
//! Every program tests the current tgid's bit in `TRACKED_TGIDS` first and returns at once for every
//! other process: the cost the rest of the node pays is one inlined array lookup per hooked syscall
//! (on top of the tracepoint's own cost). Records go to `IO_EVENTS`, submitted without a wakeup and
//! drained by user space on a timer; a full ring is counted in `LOST_EVENTS[IoEvents]`. Register
//! offsets come from `SYSCALL_LAYOUT`, filled by user space.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns, bpf_probe_read_user,
        generated::{
            bpf_get_current_task_btf, bpf_probe_read_user as probe_read_user_raw, bpf_task_pt_regs,
        },
    },
    macros::{map, tracepoint},
    maps::RingBuf,
    programs::TracePointContext,
};
use vigil_common::{
    IoEvent, IoEventHeader, IoEventKind, LostSource, SyscallLayout, io::IO_DATA_CLASSES,
    process::FIELD_ABSENT,
};

use crate::{process::count_lost, tracked::is_tracked};

/// Filled by user space (`EbpfLoader::override_global`) before load.
#[unsafe(no_mangle)]
static SYSCALL_LAYOUT: SyscallLayout = SyscallLayout::UNKNOWN;

/// I/O records for user space; its size is set by user space at load time.
#[map]
static IO_EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

fn layout() -> SyscallLayout {
    // SAFETY: a read of our own `.rodata` global; volatile so the compiler does not fold the default.
    unsafe { core::ptr::read_volatile(&SYSCALL_LAYOUT) }
}

/// The current tgid when vigil captures it (its bit is set in `TRACKED_TGIDS`); `None` for every other
/// process.
fn tracked_tgid() -> Option<u32> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    is_tracked(tgid).then_some(tgid)
}

/// Where the bytes a syscall moved are, from its second argument.
#[derive(Clone, Copy)]
enum Data {
    /// A buffer (`read`, `write`, `recvfrom`, `sendto`).
    Buffer,
    /// An array of `struct iovec` (`readv`, `writev`): its first buffer.
    Iovec,
    /// A `struct user_msghdr` (`recvmsg`, `sendmsg`): the first buffer of its `msg_iov`.
    Message,
    /// None to copy (`sendfile`: from a file): the length only.
    Nothing,
}

/// Offset of `msg_iov` in `struct user_msghdr` (after `void *msg_name; int msg_namelen;` and padding).
const MSGHDR_IOV_OFFSET: u64 = 16;

#[tracepoint]
pub fn vigil_receive_exit(_ctx: TracePointContext) -> u32 {
    finish(IoEventKind::Receive, Data::Buffer);
    0
}

#[tracepoint]
pub fn vigil_receivev_exit(_ctx: TracePointContext) -> u32 {
    finish(IoEventKind::Receive, Data::Iovec);
    0
}

#[tracepoint]
pub fn vigil_receivemsg_exit(_ctx: TracePointContext) -> u32 {
    finish(IoEventKind::Receive, Data::Message);
    0
}

#[tracepoint]
pub fn vigil_send_exit(_ctx: TracePointContext) -> u32 {
    finish(IoEventKind::Send, Data::Buffer);
    0
}

#[tracepoint]
pub fn vigil_sendv_exit(_ctx: TracePointContext) -> u32 {
    finish(IoEventKind::Send, Data::Iovec);
    0
}

#[tracepoint]
pub fn vigil_sendmsg_exit(_ctx: TracePointContext) -> u32 {
    finish(IoEventKind::Send, Data::Message);
    0
}

#[tracepoint]
pub fn vigil_sendfile_exit(_ctx: TracePointContext) -> u32 {
    finish(IoEventKind::Send, Data::Nothing);
    0
}

#[tracepoint]
pub fn vigil_close(_ctx: TracePointContext) -> u32 {
    let Some(tgid) = tracked_tgid() else {
        return 0;
    };
    let Some(registers) = saved_registers(&layout()) else {
        return 0;
    };
    submit(IoEventKind::Close, tgid, registers.fd as u32, 0, 0, 0);
    0
}

/// A syscall's fd and buffer (its first two arguments) and, at its exit, its return value.
struct SavedRegisters {
    fd: u64,
    buffer: u64,
    ret: i64,
}

/// The current syscall's arguments and return value from the task's saved user registers: direct loads,
/// no helper call (reading the tracepoint record's `ret` took one).
fn saved_registers(layout: &SyscallLayout) -> Option<SavedRegisters> {
    if layout.regs_fd == FIELD_ABSENT
        || layout.regs_buffer == FIELD_ABSENT
        || layout.regs_ret == FIELD_ABSENT
    {
        return None;
    }
    // SAFETY: `bpf_task_pt_regs` returns a BTF-typed pointer to the task's `struct pt_regs`, which the
    // verifier lets the program load from directly at the (constant, read-only) field offsets.
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8;
        if regs.is_null() {
            return None;
        }
        let load = |offset: u32| core::ptr::read_volatile(regs.add(offset as usize) as *const u64);
        Some(SavedRegisters {
            fd: load(layout.regs_fd),
            buffer: load(layout.regs_buffer),
            ret: load(layout.regs_ret) as i64,
        })
    }
}

/// The first buffer of an array of `struct iovec { void *iov_base; size_t iov_len; }`, and how many of
/// the `moved` bytes it holds.
fn first_iovec(iovec: u64, moved: u64) -> Option<(u64, u64)> {
    // SAFETY: a read of user memory through the fault-tolerant helper.
    let [base, len] = unsafe { bpf_probe_read_user(iovec as *const [u64; 2]) }.ok()?;
    Some((base, len.min(moved)))
}

/// At a syscall's exit: submits what the call moved, for an instrumented process. Inlined into each
/// program, so that the filter test is the first thing it runs, without a BPF-to-BPF call.
#[inline(always)]
fn finish(kind: IoEventKind, data: Data) {
    let Some(tgid) = tracked_tgid() else {
        return;
    };
    let Some(SavedRegisters { fd, buffer, ret }) = saved_registers(&layout()) else {
        return;
    };
    if ret <= 0 {
        return;
    }
    let moved_bytes = ret as u64;
    let source = match data {
        Data::Buffer => Some((buffer, moved_bytes)),
        Data::Iovec => first_iovec(buffer, moved_bytes),
        Data::Message => {
            // SAFETY: a read of user memory through the fault-tolerant helper.
            let iovec = unsafe { bpf_probe_read_user((buffer + MSGHDR_IOV_OFFSET) as *const u64) };
            iovec.ok().and_then(|iovec| first_iovec(iovec, moved_bytes))
        }
        Data::Nothing => Some((0, 0)),
    };
    // A vector vigil could not read: the length still counts (body sizes), without data.
    let (source, available) = source.unwrap_or((0, 0));
    submit(kind, tgid, fd as u32, moved_bytes, source, available);
}

/// Submits a record of the smallest size class `available` bytes fit in (the largest, cut, if none).
/// Inlined: six arguments are more than a BPF-to-BPF call passes.
#[inline(always)]
fn submit(kind: IoEventKind, tgid: u32, fd: u32, length: u64, source: u64, available: u64) {
    let header = IoEventHeader {
        kind: kind as u32,
        tgid,
        fd,
        captured: 0,
        // SAFETY: a helper without preconditions.
        boot_time_ns: unsafe { bpf_ktime_get_boot_ns() },
        length,
    };
    if available <= IO_DATA_CLASSES[0] as u64 {
        submit_sized::<{ IO_DATA_CLASSES[0] }>(header, source, available);
    } else if available <= IO_DATA_CLASSES[1] as u64 {
        submit_sized::<{ IO_DATA_CLASSES[1] }>(header, source, available);
    } else if available <= IO_DATA_CLASSES[2] as u64 {
        submit_sized::<{ IO_DATA_CLASSES[2] }>(header, source, available);
    } else {
        submit_sized::<{ IO_DATA_CLASSES[3] }>(header, source, available);
    }
}

fn submit_sized<const CAPACITY: usize>(mut header: IoEventHeader, source: u64, available: u64) {
    let Some(mut entry) = IO_EVENTS.reserve::<IoEvent<CAPACITY>>(0) else {
        count_lost(LostSource::IoEvents);
        return;
    };
    let event = entry.as_mut_ptr();
    let mut captured = available as u32;
    if available > CAPACITY as u64 {
        captured = CAPACITY as u32;
    }
    // SAFETY: `event` points at a reserved, exclusively owned record of the right size; the copy is
    // bounded by its capacity and uses the fault-tolerant user-memory helper.
    unsafe {
        let copied = if captured == 0 {
            0
        } else {
            probe_read_user_raw(
                (*event).data.as_mut_ptr() as *mut c_void,
                captured,
                source as *const c_void,
            )
        };
        header.captured = if copied < 0 { 0 } else { captured };
        (*event).header = header;
    }
    entry.submit(BPF_RB_NO_WAKEUP as u64);
}
