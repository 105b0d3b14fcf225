//! Process lifecycle probes.
//!
//! Hooks (all plain tracepoints, which this kernel allows where kprobes and fentry are refused):
//! - `sched/sched_process_exec` → [`vigil_exec`]: records an `Exec` of the current process.
//! - `task/task_newtask` → [`vigil_newtask`]: remembers the new task's `CLONE_THREAD` bit in `CLONE_KINDS`
//!   (the fork tracepoint does not say whether it created a thread or a process).
//! - `sched/sched_process_fork` → [`vigil_fork`]: records a `Fork` or `ThreadSpawn` (or
//!   `ForkUnclassified` when `vigil_newtask` did not see the task). A process forked by a captured
//!   process is captured from its fork (its bit set in `TRACKED_TGIDS`), so that a worker's first
//!   request is seen (node `cluster`, pm2, pre-fork servers); user space releases it when it does not
//!   serve with its parent. The event is submitted before the bit is set, flagged `TRACKED_BY_KERNEL`.
//! - `sched/sched_process_exit` → [`vigil_exit`]: records an `Exit` with `group_dead`, which is what says
//!   the process is gone (the exit of the thread-group leader alone does not).
//! - `syscalls/sys_exit_listen` → [`vigil_listen`]: records a `Listen` when `listen` succeeded, so that a
//!   process that opens its port late is matched by port at once, without polling; with
//!   `CAPTURE_ON_LISTEN` set, also sets the process's bit in `TRACKED_TGIDS` so that its first requests
//!   are captured before user space has evaluated it; user space clears the bit if the process does not
//!   match. The event is submitted before the bit is set, flagged `TRACKED_BY_KERNEL`: user space does
//!   not clear a bit for an older event while this one is waiting in the ring, and sets again a bit it
//!   cleared just as this one arrived.
//!
//! Records go to the `PROCESS_EVENTS` ring buffer, submitted without a wakeup: user space drains it on a
//! short timer, since a wakeup per record costs several microseconds in the traced process. A record that
//! finds the buffer full is counted in `LOST_EVENTS[ProcessEvents]`. Field offsets come from
//! `PROCESS_LAYOUT`, which user space fills from the tracepoint `format` files before loading.

use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_ktime_get_boot_ns,
    },
    macros::{map, tracepoint},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use vigil_common::{
    LostSource, ProcessEvent, ProcessEventKind, ProcessTracepointLayout,
    process::{
        CLONE_THREAD, EXIT_GROUP_DEAD, EXIT_GROUP_DEAD_UNKNOWN, FIELD_ABSENT, TRACKED_BY_KERNEL,
    },
};

use crate::tracked::{is_tracked, track};

/// Filled by user space (`EbpfLoader::set_global`) before load.
#[unsafe(no_mangle)]
static PROCESS_LAYOUT: ProcessTracepointLayout = ProcessTracepointLayout::UNKNOWN;

/// Non-zero: a process that listens is captured at once (set by user space before load).
#[unsafe(no_mangle)]
static CAPTURE_ON_LISTEN: u32 = 0;

/// Process events for user space; its size is set by user space at load time.
#[map]
static PROCESS_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Records that could not be delivered, per [`LostSource`].
#[map]
static LOST_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(LostSource::COUNT, 0);

/// New task id → 1 for a thread, 0 for a process; written at `task_newtask`, taken at `sched_process_fork`.
#[map]
static CLONE_KINDS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16384, 0);

fn layout() -> ProcessTracepointLayout {
    // SAFETY: a read of our own `.rodata` global; volatile so the compiler does not fold the default.
    unsafe { core::ptr::read_volatile(&PROCESS_LAYOUT) }
}

fn read_field<T>(ctx: &TracePointContext, offset: u32) -> Result<T, i32> {
    if offset == FIELD_ABSENT {
        return Err(0);
    }
    // SAFETY: the offset comes from this kernel's format file for this tracepoint.
    unsafe { ctx.read_at::<T>(offset as usize) }
}

pub(crate) fn count_lost(source: LostSource) {
    if let Some(counter) = LOST_EVENTS.get_ptr_mut(source as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *counter += 1 };
    }
}

fn submit(kind: ProcessEventKind, flags: u32, pid: u32, tgid: u32, related_pid: u32) {
    let Some(mut entry) = PROCESS_EVENTS.reserve::<ProcessEvent>(0) else {
        count_lost(LostSource::ProcessEvents);
        return;
    };
    entry.write(ProcessEvent {
        kind: kind as u32,
        flags,
        pid,
        tgid,
        related_pid,
        reserved: 0,
        // SAFETY: helpers without preconditions.
        boot_time_ns: unsafe { bpf_ktime_get_boot_ns() },
        // SAFETY: as above.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    });
    entry.submit(BPF_RB_NO_WAKEUP as u64);
}

fn current_ids() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    (pid_tgid as u32, (pid_tgid >> 32) as u32)
}

#[tracepoint]
pub fn vigil_exec(ctx: TracePointContext) -> u32 {
    let (_, tgid) = current_ids();
    let old_pid = read_field::<i32>(&ctx, layout().exec_old_pid).unwrap_or(0) as u32;
    submit(ProcessEventKind::Exec, 0, tgid, tgid, old_pid);
    0
}

#[tracepoint]
pub fn vigil_newtask(ctx: TracePointContext) -> u32 {
    let layout = layout();
    let (Ok(pid), Ok(flags)) = (
        read_field::<i32>(&ctx, layout.newtask_pid),
        read_field::<u64>(&ctx, layout.newtask_clone_flags),
    ) else {
        return 0;
    };
    let is_thread = u8::from(flags & CLONE_THREAD != 0);
    if CLONE_KINDS.insert(&(pid as u32), &is_thread, 0).is_err() {
        count_lost(LostSource::CloneFlags);
    }
    0
}

#[tracepoint]
pub fn vigil_fork(ctx: TracePointContext) -> u32 {
    let Ok(child) = read_field::<i32>(&ctx, layout().fork_child_pid) else {
        return 0;
    };
    let child = child as u32;
    let (_, parent_tgid) = current_ids();
    // SAFETY: the value is copied out before the entry is removed.
    let kind = match unsafe { CLONE_KINDS.get(&child) }.copied() {
        Some(1) => ProcessEventKind::ThreadSpawn,
        Some(_) => ProcessEventKind::Fork,
        None => ProcessEventKind::ForkUnclassified,
    };
    let _ = CLONE_KINDS.remove(&child);
    let tgid = if kind == ProcessEventKind::ThreadSpawn {
        parent_tgid
    } else {
        child
    };
    // Submitted before the bit is set: user space, which may be clearing the bit for an older event,
    // finds this one in the ring right after its clear and sets the bit again (`TRACKED_BY_KERNEL`).
    let tracks = kind == ProcessEventKind::Fork && is_tracked(parent_tgid);
    let flags = if tracks { TRACKED_BY_KERNEL } else { 0 };
    submit(kind, flags, child, tgid, parent_tgid);
    if tracks {
        track(child);
    }
    0
}

#[tracepoint]
pub fn vigil_exit(ctx: TracePointContext) -> u32 {
    let (pid, tgid) = current_ids();
    let group_dead_offset = layout().exit_group_dead;
    let flags = if group_dead_offset == FIELD_ABSENT {
        EXIT_GROUP_DEAD_UNKNOWN
    } else {
        match read_field::<u8>(&ctx, group_dead_offset) {
            Ok(0) => 0,
            Ok(_) => EXIT_GROUP_DEAD,
            Err(_) => EXIT_GROUP_DEAD_UNKNOWN,
        }
    };
    submit(ProcessEventKind::Exit, flags, pid, tgid, 0);
    0
}

#[tracepoint]
pub fn vigil_listen(ctx: TracePointContext) -> u32 {
    if read_field::<i64>(&ctx, layout().listen_ret) != Ok(0) {
        return 0;
    }
    let (pid, tgid) = current_ids();
    // SAFETY: a read of our own `.rodata` global; volatile so the compiler does not fold the default.
    let tracks = unsafe { core::ptr::read_volatile(&CAPTURE_ON_LISTEN) } != 0;
    let flags = if tracks { TRACKED_BY_KERNEL } else { 0 };
    // Submitted before the bit is set, as in `vigil_fork`.
    submit(ProcessEventKind::Listen, flags, pid, tgid, 0);
    if tracks {
        track(tgid);
    }
    0
}
