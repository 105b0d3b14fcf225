//! The process event ring: the records of the process lifecycle programs (`exporter-ebpf/src/process.rs`:
//! exec, fork, newtask, exit, listen), decoded and counted for discovery, and the kernel side's
//! lost-record counters.
//!
//! Metrics: `vigil_process_events_total{event}`, `vigil_ebpf_events_lost_total{source}` (registered by
//! [`super::KernelMetrics`]).

use aya::maps::{MapData, PerCpuArray, RingBuf};
use vigil_common::{
    LostSource, ProcessEvent, ProcessEventKind,
    process::{EXIT_GROUP_DEAD, EXIT_GROUP_DEAD_UNKNOWN},
};

use super::KernelMetrics;

/// The kernel side's output: the process event ring buffer and the lost-record counters.
pub struct KernelEvents {
    ring: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    lost_seen: [u64; LostSource::COUNT as usize],
    metrics: KernelMetrics,
}

/// How one exit record is counted.
fn exit_label(event: &ProcessEvent) -> &'static str {
    if event.flags & EXIT_GROUP_DEAD != 0 {
        "process_exit"
    } else if event.flags & EXIT_GROUP_DEAD_UNKNOWN != 0 {
        "exit_unconfirmed"
    } else {
        "thread_exit"
    }
}

/// Decodes one ring buffer record; `None` for a record of the wrong size.
pub(super) fn decode(bytes: &[u8]) -> Option<ProcessEvent> {
    if bytes.len() < size_of::<ProcessEvent>() {
        return None;
    }
    // SAFETY: the kernel wrote a `ProcessEvent` (plain `#[repr(C)]` integers, any bit pattern valid);
    // the length was checked above and the read tolerates any alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<ProcessEvent>()) })
}

/// The label `vigil_process_events_total` counts an event under.
pub fn event_label(event: &ProcessEvent) -> &'static str {
    match ProcessEventKind::from_u32(event.kind) {
        Some(ProcessEventKind::Exec) => "exec",
        Some(ProcessEventKind::Fork) => "fork",
        Some(ProcessEventKind::ThreadSpawn) => "thread_spawn",
        Some(ProcessEventKind::ForkUnclassified) => "fork_unclassified",
        Some(ProcessEventKind::Exit) => exit_label(event),
        Some(ProcessEventKind::Listen) => "listen",
        None => "malformed",
    }
}

impl KernelEvents {
    pub(super) fn new(
        ring: RingBuf<MapData>,
        lost: PerCpuArray<MapData, u64>,
        metrics: KernelMetrics,
    ) -> Self {
        KernelEvents {
            ring,
            lost,
            lost_seen: [0; LostSource::COUNT as usize],
            metrics,
        }
    }

    /// Takes every record waiting in the ring buffer, counts it and appends it to `into`; also
    /// updates the lost-record counters.
    pub fn drain(&mut self, into: &mut Vec<ProcessEvent>) {
        while let Some(record) = self.ring.next() {
            match decode(&record) {
                Some(event) => {
                    self.metrics
                        .process_events
                        .with_label_values(&[event_label(&event)])
                        .inc();
                    into.push(event);
                }
                None => self
                    .metrics
                    .process_events
                    .with_label_values(&["malformed"])
                    .inc(),
            }
        }
        for source in LostSource::ALL {
            let Ok(per_cpu) = self.lost.get(&(source as u32), 0) else {
                continue;
            };
            let total: u64 = per_cpu.iter().sum();
            let seen = &mut self.lost_seen[source as usize];
            if total > *seen {
                self.metrics
                    .events_lost
                    .with_label_values(&[source.label()])
                    .inc_by(total - *seen);
                *seen = total;
            }
        }
    }
}
