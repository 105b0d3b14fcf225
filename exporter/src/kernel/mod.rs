//! Kernel events: loads vigil's eBPF object, attaches the process lifecycle tracepoints and drains their
//! ring buffer for discovery.
//!
//! Hooks: `sched/sched_process_exec`, `task/task_newtask`, `sched/sched_process_fork`,
//! `sched/sched_process_exit`, `syscalls/sys_exit_listen` (see `exporter-ebpf/src/process.rs`). Also owns
//! the `TRACKED_TGIDS` filter bitmap, which discovery writes through [`TrackedTgids`].
//!
//! Metrics:
//! - `vigil_process_events_total{event}`: process events received from the kernel; `event` is one of
//!   `exec`, `fork`, `thread_spawn`, `fork_unclassified`, `thread_exit`, `process_exit`,
//!   `exit_unconfirmed` (kernel without `group_dead`), `listen`, `malformed`.
//! - `vigil_ebpf_events_lost_total{source}`: records the kernel side could not deliver (ring buffer or
//!   map full); `source` is `process_events` or `clone_flags`.
//! - `vigil_probes_attached{program}`: 1 when the eBPF program is loaded and attached, else 0.
//! - `vigil_probe_errors_total{program,stage}`: failures to prepare (`layout`), load (`load`, with the
//!   verifier log in vigil's log) or attach (`attach`) a program. vigil keeps running without it.

pub mod layout;

use std::{
    os::fd::{AsFd, AsRawFd},
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, IterableMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::{ProgramError, TracePoint},
};
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use vigil_common::{
    CAPTURE_ON_LISTEN_GLOBAL, IO_EVENTS_MAP, IoEventHeader, IoEventKind, LOST_EVENTS_MAP,
    LostSource, PROCESS_EVENTS_MAP, PROCESS_LAYOUT_GLOBAL, ProcessEvent, ProcessEventKind,
    SYSCALL_LAYOUT_GLOBAL, SyscallLayout, TRACKED_TGIDS_MAP, TRACKED_TGIDS_WORDS, io,
    process::{EXIT_GROUP_DEAD, EXIT_GROUP_DEAD_UNKNOWN, programs},
    tracked_bit, tracked_tgids_in_word,
};

use crate::{config::EbpfConfig, discovery::ProcessFilter, metrics::register};

/// vigil's eBPF object, built by `build.rs`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vigil-ebpf"));

/// Why the eBPF object could not be used at all (a single program failing is not an error: it is
/// reported and vigil goes on without it).
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot load vigil's eBPF object: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("the eBPF object has no map `{0}`")]
    MissingMap(&'static str),
    #[error("cannot open map `{name}`: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("cannot map `{name}` into memory: {source}")]
    MapMemory {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The process programs: (program name, tracepoint category, tracepoint name), in attach order
/// (`task_newtask` before `sched_process_fork`, so that forks can be classified from the start).
const PROCESS_PROGRAMS: [(&str, &str, &str); 5] = [
    (programs::EXEC, "sched", "sched_process_exec"),
    (programs::NEWTASK, "task", "task_newtask"),
    (programs::FORK, "sched", "sched_process_fork"),
    (programs::EXIT, "sched", "sched_process_exit"),
    (programs::LISTEN, "syscalls", "sys_exit_listen"),
];

/// The I/O capture programs and the `syscalls/*` tracepoints each one is attached to.
const IO_PROGRAMS: [(&str, &[&str]); 8] = [
    (
        io::programs::RECEIVE_EXIT,
        &["sys_exit_read", "sys_exit_recvfrom"],
    ),
    (io::programs::RECEIVEV_EXIT, &["sys_exit_readv"]),
    (io::programs::RECEIVEMSG_EXIT, &["sys_exit_recvmsg"]),
    (
        io::programs::SEND_EXIT,
        &["sys_exit_write", "sys_exit_sendto"],
    ),
    (io::programs::SENDV_EXIT, &["sys_exit_writev"]),
    (io::programs::SENDMSG_EXIT, &["sys_exit_sendmsg"]),
    (io::programs::SENDFILE_EXIT, &["sys_exit_sendfile64"]),
    (io::programs::CLOSE, &["sys_enter_close"]),
];

/// The metric families of this stage.
#[derive(Clone)]
pub struct KernelMetrics {
    process_events: IntCounterVec,
    events_lost: IntCounterVec,
    probes_attached: IntGaugeVec,
    probe_errors: IntCounterVec,
    io_events: IntCounterVec,
}

impl KernelMetrics {
    /// Creates and registers the families.
    pub fn register(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("static"),
            )
        };
        let metrics = KernelMetrics {
            process_events: counter(
                "vigil_process_events_total",
                "Process lifecycle events received from the kernel, by event.",
                &["event"],
            ),
            events_lost: counter(
                "vigil_ebpf_events_lost_total",
                "Records the eBPF programs could not deliver (ring buffer or map full), by source.",
                &["source"],
            ),
            probes_attached: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "vigil_probes_attached",
                        "1 when the eBPF program is loaded and attached.",
                    ),
                    &["program"],
                )
                .expect("static"),
            ),
            probe_errors: counter(
                "vigil_probe_errors_total",
                "Failures to prepare, load or attach an eBPF program, by program and stage.",
                &["program", "stage"],
            ),
            io_events: counter(
                "vigil_io_events_total",
                "Socket I/O records of instrumented processes received from the kernel, by kind.",
                &["kind"],
            ),
        };
        for source in LostSource::ALL {
            metrics.events_lost.with_label_values(&[source.label()]);
        }
        let programs = PROCESS_PROGRAMS
            .iter()
            .map(|(program, _, _)| *program)
            .chain(IO_PROGRAMS.iter().map(|(program, _)| *program));
        for program in programs {
            metrics.probes_attached.with_label_values(&[program]).set(0);
        }
        metrics
    }
}

/// The loaded eBPF programs. Dropping it detaches and unloads them all (nothing is pinned).
pub struct KernelProbes {
    _ebpf: Ebpf,
}

/// The kernel side's output: the process event ring buffer and the lost-record counters.
pub struct KernelEvents {
    ring: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    lost_seen: [u64; LostSource::COUNT as usize],
    metrics: KernelMetrics,
}

impl KernelProbes {
    /// Loads the object with this kernel's tracepoint layout and attaches every program it can.
    /// Loads and attaches every program. With `capture_on_listen`, a process that starts listening is
    /// captured by the kernel at once, before discovery has evaluated it.
    pub fn load(
        config: &EbpfConfig,
        tracefs: &Path,
        capture_on_listen: bool,
        metrics: &KernelMetrics,
    ) -> Result<(KernelProbes, KernelEvents, IoEvents, TrackedTgids), KernelError> {
        let (layout, layout_errors) = layout::read_process_layout(tracefs);
        let syscall_layout = layout::syscall_layout();
        let mut ebpf = EbpfLoader::new()
            .override_global(PROCESS_LAYOUT_GLOBAL, &layout, true)
            .override_global(
                CAPTURE_ON_LISTEN_GLOBAL,
                &u32::from(capture_on_listen),
                true,
            )
            .override_global(
                SYSCALL_LAYOUT_GLOBAL,
                syscall_layout.as_ref().unwrap_or(&SyscallLayout::UNKNOWN),
                true,
            )
            .map_max_entries(PROCESS_EVENTS_MAP, config.process_events_ring_bytes)
            .map_max_entries(IO_EVENTS_MAP, config.io_events_ring_bytes)
            .load(EBPF_OBJECT)?;

        for (program, category, tracepoint) in PROCESS_PROGRAMS {
            if let Some(error) = layout_errors.get(tracepoint) {
                tracing::error!(program, %error, "tracepoint layout unusable; program not loaded");
                metrics
                    .probe_errors
                    .with_label_values(&[program, "layout"])
                    .inc();
                continue;
            }
            attach(&mut ebpf, metrics, program, category, &[tracepoint]);
        }
        for (program, tracepoints) in IO_PROGRAMS {
            if let Err(error) = &syscall_layout {
                tracing::error!(program, %error, "syscall register layout unknown; program not loaded");
                metrics
                    .probe_errors
                    .with_label_values(&[program, "layout"])
                    .inc();
                continue;
            }
            attach(&mut ebpf, metrics, program, "syscalls", tracepoints);
        }

        let ring = take_map(&mut ebpf, PROCESS_EVENTS_MAP)?;
        let lost = take_map(&mut ebpf, LOST_EVENTS_MAP)?;
        let io_ring = take_map(&mut ebpf, IO_EVENTS_MAP)?;
        let tracked = TrackedTgids::map_into_memory(take_map(&mut ebpf, TRACKED_TGIDS_MAP)?)?;
        let events = KernelEvents {
            ring,
            lost,
            lost_seen: [0; LostSource::COUNT as usize],
            metrics: metrics.clone(),
        };
        let io_events = IoEvents {
            ring: io_ring,
            counted: IoEventCounters::new(&metrics.io_events),
            spare: Vec::new(),
        };
        Ok((KernelProbes { _ebpf: ebpf }, events, io_events, tracked))
    }
}

/// The `TRACKED_TGIDS` filter bitmap, mapped into vigil's memory: the processes whose syscalls capture
/// programs record. Bits are set and cleared with atomic operations on the shared words, as the listen
/// program sets them: no writer loses another's bit in the same word, and no syscall is needed.
pub struct TrackedTgids {
    /// `TRACKED_TGIDS_WORDS` words; the mapping keeps the map alive after its fd is closed.
    memory: memmap2::MmapRaw,
}

impl TrackedTgids {
    fn map_into_memory(array: Array<MapData, u64>) -> Result<TrackedTgids, KernelError> {
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
    fn set(&self, tgid: u32) -> Result<(), String> {
        let (word, mask) = self
            .bit(tgid)
            .ok_or_else(|| format!("tgid {tgid} is past the filter bitmap"))?;
        word.fetch_or(mask, Ordering::Relaxed);
        Ok(())
    }

    /// Clears the bit of `tgid` (an atomic and).
    fn clear(&self, tgid: u32) {
        if let Some((word, mask)) = self.bit(tgid) {
            word.fetch_and(!mask, Ordering::Relaxed);
        }
    }
}

impl ProcessFilter for TrackedTgids {
    fn insert(&mut self, tgid: u32) -> Result<(), String> {
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

/// Loads and attaches one tracepoint program; on failure, the stage that failed and why (for a load
/// failure the error carries the verifier log).
/// Takes the map `name` out of the loaded object as the typed map `M`.
fn take_map<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, KernelError>
where
    M: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(KernelError::MissingMap(name))?;
    M::try_from(map).map_err(|source| KernelError::Map { name, source })
}

/// Loads `program` and attaches it to every one of `tracepoints`, logging and counting what fails; the
/// program counts as attached only when all its tracepoints are.
fn attach(
    ebpf: &mut Ebpf,
    metrics: &KernelMetrics,
    program: &str,
    category: &str,
    tracepoints: &[&str],
) {
    let result = (|| -> Result<(), (&'static str, ProgramError)> {
        let tracepoint_program: &mut TracePoint = ebpf
            .program_mut(program)
            .expect("the embedded object defines every program vigil attaches")
            .try_into()
            .map_err(|error| ("load", error))?;
        tracepoint_program.load().map_err(|error| ("load", error))?;
        for tracepoint in tracepoints {
            tracepoint_program
                .attach(category, tracepoint)
                .map_err(|error| ("attach", error))?;
            tracing::info!(program, tracepoint = %format!("{category}/{tracepoint}"), "attached");
        }
        Ok(())
    })();
    match result {
        Ok(()) => metrics.probes_attached.with_label_values(&[program]).set(1),
        Err((stage, error)) => {
            tracing::error!(program, stage, error = %error, "eBPF program not attached; continuing without it");
            metrics
                .probe_errors
                .with_label_values(&[program, stage])
                .inc();
        }
    }
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
fn decode(bytes: &[u8]) -> Option<ProcessEvent> {
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

#[cfg(test)]
mod tests;

/// One transfer (or close) of an instrumented process, read from an I/O record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoRecord {
    pub kind: IoEventKind,
    /// Thread-group id (host pid) of the process.
    pub tgid: u32,
    pub fd: u32,
    /// `bpf_ktime_get_boot_ns` when the syscall returned (entered, for a close).
    pub boot_time_ns: u64,
    /// Bytes transferred.
    pub length: u64,
    /// The first bytes transferred: all of them, or the first `IO_DATA_MAX`.
    pub data: Vec<u8>,
}

impl IoRecord {
    /// Whether the transfer moved more bytes than `data` holds.
    pub fn is_truncated(&self) -> bool {
        self.length > self.data.len() as u64
    }

    /// Reads a record as the kernel wrote it (an `IoEventHeader`, then data) into `data`, a buffer to
    /// reuse; `None` if it is malformed.
    fn parse(record: &[u8], mut data: Vec<u8>) -> Option<IoRecord> {
        let header_size = size_of::<IoEventHeader>();
        if record.len() < header_size {
            return None;
        }
        // SAFETY: the record is at least as long as an IoEventHeader, a plain-old-data type.
        let header = unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<IoEventHeader>()) };
        let captured = record.get(header_size..header_size + header.captured as usize)?;
        data.clear();
        data.extend_from_slice(captured);
        Some(IoRecord {
            kind: IoEventKind::from_u32(header.kind)?,
            tgid: header.tgid,
            fd: header.fd,
            boot_time_ns: header.boot_time_ns,
            length: header.length,
            data,
        })
    }
}

/// The receiving end of the `IO_EVENTS` ring buffer (lost records are counted by [`KernelEvents`]).
pub struct IoEvents {
    ring: RingBuf<MapData>,
    counted: IoEventCounters,
    /// Data buffers of handled records, for the next ones (two allocations fewer per request).
    spare: Vec<Vec<u8>>,
}

/// `vigil_io_events_total` by `kind`, each looked up once rather than per record.
struct IoEventCounters {
    receive: IntCounter,
    send: IntCounter,
    close: IntCounter,
    malformed: IntCounter,
}

impl IoEventCounters {
    fn new(io_events: &IntCounterVec) -> Self {
        let kind = |label: &str| io_events.with_label_values(&[label]);
        IoEventCounters {
            receive: kind("receive"),
            send: kind("send"),
            close: kind("close"),
            malformed: kind("malformed"),
        }
    }
}

impl IoEvents {
    /// Data buffers kept for reuse, at most (a burst's extra ones are freed).
    const MAX_SPARE: usize = 16_384;

    /// Appends every record the kernel submitted since the last call to `into`.
    pub fn drain(&mut self, into: &mut Vec<IoRecord>) {
        while let Some(record) = self.ring.next() {
            let record = IoRecord::parse(&record, self.spare.pop().unwrap_or_default());
            let counter = match record.as_ref().map(|record| record.kind) {
                Some(IoEventKind::Receive) => &self.counted.receive,
                Some(IoEventKind::Send) => &self.counted.send,
                Some(IoEventKind::Close) => &self.counted.close,
                None => &self.counted.malformed,
            };
            counter.inc();
            into.extend(record);
        }
    }

    /// Empties `records`, keeping their data buffers for the next [`IoEvents::drain`].
    pub fn recycle(&mut self, records: &mut Vec<IoRecord>) {
        let room = Self::MAX_SPARE.saturating_sub(self.spare.len());
        self.spare
            .extend(records.drain(..).take(room).map(|record| record.data));
    }
}
