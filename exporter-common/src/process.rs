//! Process lifecycle events: exec, fork (process or thread) and exit (thread or whole process).

/// Program names, as the eBPF object exports them and user space looks them up.
pub mod programs {
    /// `sched/sched_process_exec`: a task replaced its program image.
    pub const EXEC: &str = "vigil_exec";
    /// `sched/sched_process_fork`: a new task (process or thread) was created.
    pub const FORK: &str = "vigil_fork";
    /// `task/task_newtask`: remembers the clone flags of a new task so the fork can be classified.
    pub const NEWTASK: &str = "vigil_newtask";
    /// `sched/sched_process_exit`: a task exited.
    pub const EXIT: &str = "vigil_exit";
    /// `syscalls/sys_exit_listen`: a process started listening on a socket.
    pub const LISTEN: &str = "vigil_listen";
}

/// `CLONE_THREAD` from `<linux/sched.h>`: the new task shares the creator's thread group.
pub const CLONE_THREAD: u64 = 0x0001_0000;

/// Offset value meaning "this field is not in the tracepoint on this kernel".
pub const FIELD_ABSENT: u32 = u32::MAX;

/// Byte offsets of the tracepoint fields the process programs read.
///
/// User space fills this from `events/<category>/<name>/format` in tracefs before loading, so the
/// programs never assume one kernel's layout. A field a kernel does not have is [`FIELD_ABSENT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessTracepointLayout {
    /// `sched_process_exec.pid` (the thread-group id after exec).
    pub exec_pid: u32,
    /// `sched_process_exec.old_pid` (the thread id that called exec).
    pub exec_old_pid: u32,
    /// `sched_process_fork.parent_pid`.
    pub fork_parent_pid: u32,
    /// `sched_process_fork.child_pid` (a thread id: nothing here says thread or process).
    pub fork_child_pid: u32,
    /// `sched_process_exit.pid` (the exiting thread id).
    pub exit_pid: u32,
    /// `sched_process_exit.group_dead` (a `bool`: the whole thread group is gone), absent on old kernels.
    pub exit_group_dead: u32,
    /// `task_newtask.pid` (the new task's thread id).
    pub newtask_pid: u32,
    /// `task_newtask.clone_flags` (`u64`).
    pub newtask_clone_flags: u32,
    /// `sys_exit_listen.ret` (`long`).
    pub listen_ret: u32,
    /// Explicit padding; always 0.
    pub reserved: u32,
}

impl ProcessTracepointLayout {
    /// A layout where no field is known; programs that read it record nothing.
    pub const UNKNOWN: Self = Self {
        exec_pid: FIELD_ABSENT,
        exec_old_pid: FIELD_ABSENT,
        fork_parent_pid: FIELD_ABSENT,
        fork_child_pid: FIELD_ABSENT,
        exit_pid: FIELD_ABSENT,
        exit_group_dead: FIELD_ABSENT,
        newtask_pid: FIELD_ABSENT,
        newtask_clone_flags: FIELD_ABSENT,
        listen_ret: FIELD_ABSENT,
        reserved: 0,
    };
}

/// What a [`ProcessEvent`] reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProcessEventKind {
    /// `pid` (a thread-group leader after exec) runs a new program.
    Exec = 1,
    /// A new process `pid` was forked by `parent_tgid`.
    Fork = 2,
    /// A new thread `pid` was started in thread group `tgid`.
    ThreadSpawn = 3,
    /// A new task whose clone flags were not seen: user space decides from /proc whether it is a thread.
    ForkUnclassified = 4,
    /// Task `pid` of `tgid` exited; `flags` says whether its thread group is gone.
    Exit = 5,
    /// Process `tgid` started listening on a socket (`listen` returned 0).
    Listen = 6,
}

impl ProcessEventKind {
    /// Decodes the `kind` field of a record; `None` for a value this build does not know.
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Exec),
            2 => Some(Self::Fork),
            3 => Some(Self::ThreadSpawn),
            4 => Some(Self::ForkUnclassified),
            5 => Some(Self::Exit),
            6 => Some(Self::Listen),
            _ => None,
        }
    }
}

/// [`ProcessEvent::flags`] bit on an exit: the thread group died with this task (`group_dead`).
pub const EXIT_GROUP_DEAD: u32 = 1 << 0;
/// [`ProcessEvent::flags`] bit on an exit: the kernel has no `group_dead` field; user space must confirm.
pub const EXIT_GROUP_DEAD_UNKNOWN: u32 = 1 << 1;

/// [`ProcessEvent::flags`] bit on a fork or a listen: the kernel set the process's bit in the filter
/// (a fork by a captured process, a listen with capture-on-listen), right after submitting this event.
/// User space does not clear the bit of a process with such an event it has not applied yet
/// (see `Discovery::apply_releases`).
pub const TRACKED_BY_KERNEL: u32 = 1 << 2;

/// One process lifecycle event, as written to the [`crate::PROCESS_EVENTS_MAP`] ring buffer.
///
/// All ids are in the initial PID namespace (the host's view).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessEvent {
    /// A [`ProcessEventKind`] as `u32`.
    pub kind: u32,
    /// `EXIT_*` bits on an exit, [`TRACKED_BY_KERNEL`] on a fork or listen.
    pub flags: u32,
    /// The task the event is about: the new task on fork, the exiting task on exit, the process on exec.
    pub pid: u32,
    /// The thread group of `pid` (equal to `pid` for a new process).
    pub tgid: u32,
    /// Fork: the creator's thread-group id. Exec: the thread id that called exec. Exit: 0.
    pub related_pid: u32,
    /// Explicit padding; always 0.
    pub reserved: u32,
    /// `bpf_ktime_get_boot_ns()` when the event fired.
    pub boot_time_ns: u64,
    /// `bpf_get_current_cgroup_id()` of the current task (the creator on fork).
    pub cgroup_id: u64,
    /// `comm` of the current task, NUL-padded.
    pub comm: [u8; 16],
}

#[cfg(feature = "user")]
// SAFETY: plain-old-data: `#[repr(C)]`, integers only, no implicit padding (checked by size tests).
unsafe impl aya::Pod for ProcessTracepointLayout {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<ProcessEvent>(), 6 * 4 + 2 * 8 + 16);
        assert_eq!(core::mem::size_of::<ProcessTracepointLayout>(), 10 * 4);
    }

    #[test]
    fn event_kinds_round_trip() {
        for kind in [
            ProcessEventKind::Exec,
            ProcessEventKind::Fork,
            ProcessEventKind::ThreadSpawn,
            ProcessEventKind::ForkUnclassified,
            ProcessEventKind::Exit,
            ProcessEventKind::Listen,
        ] {
            assert_eq!(ProcessEventKind::from_u32(kind as u32), Some(kind));
        }
        assert_eq!(ProcessEventKind::from_u32(0), None);
        assert_eq!(ProcessEventKind::from_u32(99), None);
    }
}
