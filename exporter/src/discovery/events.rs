//! Applying the kernel's process events (`exporter-ebpf/src/process.rs`): an exec or fork reads the
//! process (a fork undoes the kernel's capture of a captured parent's child unless it is kept), a
//! listen re-evaluates it (and undoes the kernel's capture-on-listen unless it matched), a
//! whole-process exit is confirmed against /proc before the process is dropped. Thread exits never
//! touch the table.

use std::time::Instant;

use vigil_common::{
    ProcessEvent, ProcessEventKind,
    process::{EXIT_GROUP_DEAD, EXIT_GROUP_DEAD_UNKNOWN},
};

use super::{Discovery, retry::Step};

impl Discovery {
    /// Applies kernel events.
    pub fn handle(&mut self, events: &[ProcessEvent], now: Instant) {
        // A new listening socket: the cached tables no longer tell the whole truth. Read again once
        // for the whole batch (every event of it happened before it was drained).
        if events
            .iter()
            .any(|event| event.kind == ProcessEventKind::Listen as u32)
        {
            self.listeners.clear();
        }
        for event in events {
            let trigger = Some(event.boot_time_ns);
            match ProcessEventKind::from_u32(event.kind) {
                Some(
                    ProcessEventKind::Exec
                    | ProcessEventKind::Fork
                    | ProcessEventKind::ForkUnclassified,
                ) => {
                    self.retries.remove(&event.tgid);
                    self.try_step(event.tgid, Step::Read, trigger, 0, now);
                    // The kernel captures what a captured process forks, before this evaluation:
                    // undo that unless it is a worker (or matches by itself).
                    if event.kind == ProcessEventKind::Fork as u32 {
                        self.release_unless_captured(event.tgid);
                    }
                }
                Some(ProcessEventKind::Listen) => {
                    let step = match self.table.get(event.tgid) {
                        Some(_) => Step::Evaluate,
                        None => Step::Read,
                    };
                    self.try_step(event.tgid, step, trigger, 0, now);
                    // The kernel captures a process from its listen on (CAPTURE_ON_LISTEN), before
                    // this evaluation: undo that unless it matched.
                    self.release_unless_captured(event.tgid);
                }
                Some(ProcessEventKind::Exit)
                    if event.flags & (EXIT_GROUP_DEAD | EXIT_GROUP_DEAD_UNKNOWN) != 0 =>
                {
                    if let Some(info) = self.table.get(event.tgid) {
                        let identity = info.identity;
                        let step = match event.flags & EXIT_GROUP_DEAD != 0 {
                            true => Step::ConfirmExit(identity),
                            false => Step::CheckExit(identity),
                        };
                        if let Some(decision) = self
                            .decisions
                            .get_mut(&event.tgid)
                            .filter(|decision| decision.identity == identity)
                        {
                            decision.exited_boot_ns.get_or_insert(event.boot_time_ns);
                        }
                        self.try_step(event.tgid, step, None, 0, now);
                    }
                }
                Some(ProcessEventKind::Exit | ProcessEventKind::ThreadSpawn) | None => {}
            }
        }
        self.update_gauges();
    }

    /// Clears the filter bit of `tgid` unless discovery captures it: the kernel set it at a `listen` or
    /// a fork, before discovery evaluated the process.
    fn release_unless_captured(&mut self, tgid: u32) {
        if !self
            .decisions
            .get(&tgid)
            .is_some_and(|decision| decision.state.is_captured())
        {
            self.release(tgid);
        }
    }
}
