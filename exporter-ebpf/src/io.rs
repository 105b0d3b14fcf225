//! Socket I/O of instrumented processes: the first bytes of every read and write, for user space to
//! recognise and pair HTTP/1.x requests and responses.
//!
//! Hooks (syscall exit tracepoints; this kernel refuses kprobes and fentry), each submitting, when the
//! call moved bytes, an `IoEvent` with the first bytes moved (up to `IO_DATA_MAX`, or
//! `IO_DATA_MAX_HTTP2` for an HTTP/2 connection, in the smallest record of `IO_DATA_CLASSES` they fit
//! in):
//! - `syscalls/sys_exit_{read,recvfrom}` → [`vigil_receive_exit`], `sys_exit_readv` →
//!   [`vigil_receivev_exit`] (first iovec), `sys_exit_recvmsg` → [`vigil_receivemsg_exit`] (first
//!   iovec of the message);
//! - `syscalls/sys_exit_{write,sendto}` → [`vigil_send_exit`], `sys_exit_writev` → [`vigil_sendv_exit`],
//!   `sys_exit_sendmsg` → [`vigil_sendmsg_exit`], `sys_exit_sendfile64` → [`vigil_sendfile_exit`] (the
//!   length only: the bytes come from a file, they are body bytes);
//! - `syscalls/sys_enter_close` → [`vigil_close`]: an instrumented process closed an fd, so user space
//!   forgets the connection (and ends a body delimited by the close) before the fd number is reused;
//!   the fd leaves `HTTP2_CONNECTIONS`.
//!
//! **HTTP/2 connections** (`HTTP2_CONNECTIONS`, an LRU hash of (tgid, fd)): a transfer whose first
//! bytes are the client preface adds its connection; a transfer of more than `IO_DATA_MAX` bytes on a
//! connection there is copied up to `IO_DATA_MAX_HTTP2` bytes (frames are packed back to back, and
//! user space must see every frame head), and a vectored one that fills more than its first buffer is
//! copied from all its buffers, one after the other (up to `IO_DATA_MAX_HTTP2_VECTOR` bytes, assembled
//! in a per-CPU record): HTTP/2 stacks write each frame head and payload from its own buffer. The lookup happens only for such long or spread
//! transfers; the preface test is a load from the record already copied (or, for those, an 8-byte read
//! of the buffer).
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
            bpf_get_current_task_btf, bpf_loop, bpf_probe_read_user as probe_read_user_raw,
            bpf_task_pt_regs,
        },
    },
    macros::{map, tracepoint},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use vigil_common::{
    IoEvent, IoEventHeader, IoEventKind, LostSource, SyscallLayout,
    io::{
        HTTP2_PREFACE_START, IO_DATA_CLASSES, IO_DATA_MAX, IO_DATA_MAX_HTTP2_VECTOR, TLS_FD,
        connection_key,
    },
    process::FIELD_ABSENT,
};

use crate::{process::count_lost, tracked::is_tracked};

/// Filled by user space (`EbpfLoader::override_global`) before load.
#[unsafe(no_mangle)]
static SYSCALL_LAYOUT: SyscallLayout = SyscallLayout::UNKNOWN;

/// I/O records for user space; its size is set by user space at load time.
#[map]
static IO_EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// The HTTP/2 connections of captured processes, by `connection_key` (the value is unused).
#[map]
static HTTP2_CONNECTIONS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(16 * 1024, 0);

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
    let fd = registers.fd as u32;
    // Absent for most connections: the error is the common case, not a failure.
    let _ = HTTP2_CONNECTIONS.remove(&connection_key(tgid, fd, 0));
    submit(IoEventKind::Close, tgid, fd, 0, 0, 0, 0);
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
    // For a vector: the array of `struct iovec`.
    let mut vector = None;
    let source = match data {
        Data::Buffer => Some((buffer, moved_bytes)),
        Data::Iovec => {
            vector = Some(buffer);
            first_iovec(buffer, moved_bytes)
        }
        Data::Message => {
            // SAFETY: a read of user memory through the fault-tolerant helper.
            let iovec = unsafe { bpf_probe_read_user((buffer + MSGHDR_IOV_OFFSET) as *const u64) };
            vector = iovec.ok();
            vector.and_then(|iovec| first_iovec(iovec, moved_bytes))
        }
        Data::Nothing => Some((0, 0)),
    };
    // A vector vigil could not read: the length still counts (body sizes), without data.
    let (source, mut available) = source.unwrap_or((0, 0));
    let fd = fd as u32;
    let long = available > IO_DATA_MAX as u64;
    let spread = vector.is_some() && available < moved_bytes;
    let http2 = (long || spread) && is_http2(connection_key(tgid, fd, 0), source);
    if let (Some(vector), true, true) = (vector, spread, http2) {
        submit_vector(kind, tgid, fd, vector, moved_bytes);
        return;
    }
    if long && !http2 {
        available = IO_DATA_MAX as u64;
    }
    submit(kind, tgid, fd, moved_bytes, source, available, 0);
}

/// Submits `moved` bytes from `buffer` that a TLS library call of `session` read or wrote (plaintext),
/// with the same copy rules as socket I/O.
#[inline(always)]
pub(crate) fn submit_plaintext(
    kind: IoEventKind,
    tgid: u32,
    session: u64,
    buffer: u64,
    moved: u64,
) {
    let mut available = moved;
    if available > IO_DATA_MAX as u64 && !is_http2(connection_key(tgid, TLS_FD, session), buffer) {
        available = IO_DATA_MAX as u64;
    }
    submit(kind, tgid, TLS_FD, moved, buffer, available, session);
}

/// Submits the end of a TLS session (the library freed it): its connection ends.
pub(crate) fn submit_session_end(tgid: u32, session: u64) {
    let _ = HTTP2_CONNECTIONS.remove(&connection_key(tgid, TLS_FD, session));
    submit(IoEventKind::Close, tgid, TLS_FD, 0, 0, 0, session);
}

/// Buffers of one vectored transfer of an HTTP/2 connection copied, at most (the kernel's `IOV_MAX`).
const MAX_VECTOR_BUFFERS: u32 = 1024;

/// A record of a vectored HTTP/2 transfer being put together: its header and the bytes of its buffers
/// one after the other, up to `IO_DATA_MAX_HTTP2_VECTOR`, with as much again of slack so that every
/// copy's bound is provable to the verifier (an offset below the capacity, a length at most the
/// capacity). Submitted with its real size.
#[repr(C)]
struct VectorRecord {
    /// Kept in the map value, not on the stack: the verifier does not track map memory, so the
    /// `bpf_loop` callback's states converge at once (on the stack it simulates every iteration).
    copy: VectorCopy,
    header: IoEventHeader,
    data: [u8; 2 * IO_DATA_MAX_HTTP2_VECTOR],
}

/// One [`VectorRecord`] per CPU (a per-CPU value is at most 32 KiB, hence the smaller capacity).
#[map]
static VECTOR_RECORD: PerCpuArray<VectorRecord> = PerCpuArray::with_max_entries(1, 0);

/// Where copying a vector's buffers into this CPU's [`VectorRecord`] stands, between two
/// [`copy_next_buffer`] calls.
#[repr(C)]
struct VectorCopy {
    /// The array of `struct iovec`.
    vector: u64,
    /// Bytes of the transfer in the buffers not copied yet.
    remaining: u64,
    /// Bytes copied so far.
    captured: u64,
}

/// Submits a vectored transfer of an HTTP/2 connection with the bytes of all its buffers (up to
/// `IO_DATA_MAX_HTTP2_VECTOR`), not only the first: HTTP/2 stacks write each frame head and payload from
/// its own buffer (node's `writev` of 300 buffers for 100 responses), and user space must see every
/// head. The buffers are copied by `bpf_loop` (the verifier checks [`copy_next_buffer`] once, where an
/// unrolled loop of a thousand buffers takes it minutes).
#[inline(always)]
fn submit_vector(kind: IoEventKind, tgid: u32, fd: u32, vector: u64, moved: u64) {
    let Some(record) = VECTOR_RECORD.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: `record` is this CPU's value, valid for the program's run; `copy_next_buffer` uses no
    // context but it.
    let mut captured = unsafe {
        (*record).copy = VectorCopy {
            vector,
            remaining: moved,
            captured: 0,
        };
        bpf_loop(
            MAX_VECTOR_BUFFERS,
            copy_next_buffer as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
        (*record).copy.captured
    };
    if captured > IO_DATA_MAX_HTTP2_VECTOR as u64 {
        captured = IO_DATA_MAX_HTTP2_VECTOR as u64;
    }
    // SAFETY: `record` is this CPU's value, valid for the program's run; `size` is within it.
    unsafe {
        (*record).header = IoEventHeader {
            kind: kind as u32,
            tgid,
            fd,
            captured: captured as u32,
            boot_time_ns: bpf_ktime_get_boot_ns(),
            length: moved,
            session: 0,
        };
        let size = size_of::<IoEventHeader>() + captured as usize;
        let bytes = core::slice::from_raw_parts(&raw const (*record).header as *const u8, size);
        if IO_EVENTS
            .output::<[u8]>(bytes, BPF_RB_NO_WAKEUP as u64)
            .is_err()
        {
            count_lost(LostSource::IoEvents);
        }
    }
}

/// `bpf_loop` callback: copies buffer `index` of the vector after those copied; 1 (stop) once the
/// transfer's bytes or the record's capacity are used up, or a buffer cannot be read.
extern "C" fn copy_next_buffer(index: u64, _context: *mut c_void) -> i64 {
    const CAPACITY: u64 = IO_DATA_MAX_HTTP2_VECTOR as u64;
    let Some(record) = VECTOR_RECORD.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's value, valid for the program's run.
    let copy = unsafe { &mut (*record).copy };
    // SAFETY: a read of user memory through the fault-tolerant helper.
    let entry = unsafe { bpf_probe_read_user((copy.vector + 16 * index) as *const [u64; 2]) };
    let Ok([base, len]) = entry else {
        return 1;
    };
    let taken = len.min(copy.remaining);
    let offset = copy.captured & (CAPACITY - 1);
    let mut copied = taken.min(CAPACITY - offset);
    if copied > CAPACITY {
        copied = CAPACITY;
    }
    // SAFETY: `offset < CAPACITY` and `copied <= CAPACITY`, inside the record's data of twice the
    // capacity; a read of user memory through the fault-tolerant helper.
    let status = unsafe {
        probe_read_user_raw(
            (*record).data.as_mut_ptr().add(offset as usize) as *mut c_void,
            copied as u32,
            base as *const c_void,
        )
    };
    if status < 0 {
        return 1;
    }
    copy.captured = offset + copied;
    copy.remaining -= taken;
    i64::from(copy.remaining == 0 || copy.captured >= CAPACITY)
}

/// Whether the connection of a long or vectored transfer is HTTP/2: known to be, or starting with the
/// preface now (then it becomes known).
#[inline(always)]
fn is_http2(key: u64, source: u64) -> bool {
    // SAFETY: a lookup whose value is not read.
    if unsafe { HTTP2_CONNECTIONS.get(&key) }.is_some() {
        return true;
    }
    // SAFETY: a read of user memory through the fault-tolerant helper.
    let first = unsafe { bpf_probe_read_user(source as *const u64) };
    if first != Ok(HTTP2_PREFACE_START) {
        return false;
    }
    mark_http2(key);
    true
}

fn mark_http2(key: u64) {
    if HTTP2_CONNECTIONS.insert(&key, &0, 0).is_err() {
        count_lost(LostSource::IoEvents);
    }
}

/// Submits a record of the smallest size class `available` bytes fit in (the largest, cut, if none).
/// Inlined: seven arguments are more than a BPF-to-BPF call passes.
#[inline(always)]
fn submit(
    kind: IoEventKind,
    tgid: u32,
    fd: u32,
    length: u64,
    source: u64,
    available: u64,
    session: u64,
) {
    let header = IoEventHeader {
        kind: kind as u32,
        tgid,
        fd,
        captured: 0,
        // SAFETY: a helper without preconditions.
        boot_time_ns: unsafe { bpf_ktime_get_boot_ns() },
        length,
        session,
    };
    if available <= IO_DATA_CLASSES[0] as u64 {
        submit_sized::<{ IO_DATA_CLASSES[0] }>(header, source, available);
    } else if available <= IO_DATA_CLASSES[1] as u64 {
        submit_sized::<{ IO_DATA_CLASSES[1] }>(header, source, available);
    } else if available <= IO_DATA_CLASSES[2] as u64 {
        submit_sized::<{ IO_DATA_CLASSES[2] }>(header, source, available);
    } else if available <= IO_DATA_CLASSES[3] as u64 {
        submit_sized::<{ IO_DATA_CLASSES[3] }>(header, source, available);
    } else if available <= IO_DATA_CLASSES[4] as u64 {
        submit_sized::<{ IO_DATA_CLASSES[4] }>(header, source, available);
    } else if available <= IO_DATA_CLASSES[5] as u64 {
        submit_sized::<{ IO_DATA_CLASSES[5] }>(header, source, available);
    } else if available <= IO_DATA_CLASSES[6] as u64 {
        submit_sized::<{ IO_DATA_CLASSES[6] }>(header, source, available);
    } else {
        submit_sized::<{ IO_DATA_CLASSES[7] }>(header, source, available);
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
        // A short transfer that starts with the HTTP/2 preface: its connection's later long transfers
        // are copied whole (a long one was tested before the copy).
        if header.captured >= 8
            && (header.length as usize) <= IO_DATA_MAX
            && core::ptr::read((*event).data.as_ptr() as *const u64) == HTTP2_PREFACE_START
        {
            mark_http2(connection_key(header.tgid, header.fd, header.session));
        }
        (*event).header = header;
    }
    entry.submit(BPF_RB_NO_WAKEUP as u64);
}
