//! Kernel: loads vigil's eBPF object with this kernel's tracepoint layouts ([`layout`]), attaches its
//! programs, and hands the stages after it what the kernel side produces: process events for discovery
//! ([`KernelEvents`]), socket I/O records for capture ([`IoEvents`]), and the in-kernel process filter
//! discovery writes ([`TrackedTgids`], seen through [`ProcessFilter`]).
//!
//! Hooks: `sched/sched_process_exec`, `task/task_newtask`, `sched/sched_process_fork`,
//! `sched/sched_process_exit`, `syscalls/sys_exit_listen` (see `exporter-ebpf/src/process.rs`), and the
//! `syscalls/sys_exit_*` read/write family and `sys_enter_close` (see `exporter-ebpf/src/io.rs`), and
//! `sock/inet_sock_set_state` (see `exporter-ebpf/src/sock.rs`), whose accepted-connection counts
//! coverage reads ([`ServedPorts`]). Capture adds the HTTP/2 connections it recognised mid-way to the
//! kernel's wider copy ([`Http2Connections`]).
//!
//! Metrics:
//! - `vigil_process_events_total{event}`: process events received from the kernel; `event` is one of
//!   `exec`, `fork`, `thread_spawn`, `fork_unclassified`, `thread_exit`, `process_exit`,
//!   `exit_unconfirmed` (kernel without `group_dead`), `listen`, `malformed`.
//! - `vigil_ebpf_events_lost_total{source}`: records the kernel side could not deliver (ring buffer or
//!   map full); `source` is `process_events` or `clone_flags`.
//! - `vigil_probes_attached{program}`: 1 when the eBPF program is loaded and attached, else 0; for the
//!   TLS uprobes ([`TlsProbes`]), the number of binaries they are attached to.
//! - `vigil_probe_errors_total{program,stage}`: failures to prepare (`layout`), load (`load`, with the
//!   verifier log in vigil's log) or attach (`attach`) a program. vigil keeps running without it.
//! - `vigil_drain_interval_seconds`: time between the starts of successive drains of the ring buffers
//!   (`ebpf.drain_interval` when nothing delays them: a longer one is jitter, e.g. from a scrape).

mod btf;
mod filter;
mod http2_connections;
mod io_events;
pub mod layout;
mod process_events;
mod served_ports;
pub(crate) mod tls_probes;

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::MapError,
    programs::{ProgramError, TracePoint, UProbe},
};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Registry};
use vigil_common::{
    CAPTURE_ON_LISTEN_GLOBAL, CLONE_KINDS_MAP, HTTP2_CONNECTIONS_MAP, IO_EVENTS_MAP,
    LOST_EVENTS_MAP, LostSource, PROCESS_EVENTS_MAP, PROCESS_LAYOUT_GLOBAL, SERVED_PORTS_MAP,
    SOCK_LAYOUT_GLOBAL, SSL_CALLS_MAP, SYSCALL_LAYOUT_GLOBAL, SockLayout, SyscallLayout,
    TRACKED_TGIDS_MAP, io, process::programs, sock,
};

pub use filter::{FilterError, ProcessFilter, TrackedTgids};
pub use http2_connections::Http2Connections;
pub use io_events::{IoEvents, IoRecord};
pub use process_events::{KernelEvents, event_label};
pub use served_ports::ServedPorts;
pub use tls_probes::{ProcessTls, TlsProbes};

use crate::{
    config::EbpfConfig,
    metrics::{counter_vec, gauge_vec, register},
};

/// vigil's eBPF object, built by `build.rs`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vigil-ebpf"));

/// Why the eBPF object could not be used at all (a single program failing is not an error: it is
/// reported and vigil goes on without it).
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "tracefs is not mounted at {0} (paths.tracefs): vigil reads its tracepoints' layouts there; mount it (`mount -t tracefs nodev {0}`, or in Kubernetes the DaemonSet's tracefs hostPath volume) or set paths.tracefs to where it is"
    )]
    TracefsMissing(std::path::PathBuf),
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
    drain_interval: Histogram,
}

impl KernelMetrics {
    /// Creates and registers the families.
    pub fn register(registry: &Registry) -> Self {
        let counter =
            |name: &str, help: &str, labels: &[&str]| counter_vec(registry, name, help, labels);
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
            probes_attached: gauge_vec(
                registry,
                "vigil_probes_attached",
                "1 when the eBPF program is loaded and attached; for the TLS uprobes (vigil_ssl_*), the number of binaries (libssl, or executables linking OpenSSL statically) they are attached to.",
                &["program"],
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
            drain_interval: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "vigil_drain_interval_seconds",
                        "Time between the starts of successive drains of the ring buffers: ebpf.drain_interval unless something delayed them.",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.02, 0.025, 0.03, 0.04, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ]),
                )
                .expect("static metric definition"),
            ),
        };
        for source in LostSource::ALL {
            metrics.events_lost.with_label_values(&[source.label()]);
        }
        let programs = PROCESS_PROGRAMS
            .iter()
            .map(|(program, _, _)| *program)
            .chain(IO_PROGRAMS.iter().map(|(program, _)| *program))
            .chain([sock::programs::SOCK_STATE])
            .chain(tls_probes::PROGRAMS);
        for program in programs {
            metrics.probes_attached.with_label_values(&[program]).set(0);
        }
        metrics
    }

    /// A drain started `interval` after the previous one.
    pub fn observe_drain_interval(&self, interval: std::time::Duration) {
        self.drain_interval.observe(interval.as_secs_f64());
    }
}

/// What loading the eBPF object gives the stages after it.
pub struct Kernel {
    /// The programs; dropping it detaches them.
    pub probes: KernelProbes,
    /// Process events, for discovery.
    pub process_events: KernelEvents,
    /// Socket I/O records of captured processes, for capture.
    pub io_events: IoEvents,
    /// The in-kernel process filter, which discovery writes.
    pub filter: TrackedTgids,
    /// Connections accepted per network namespace and port, for coverage.
    pub served_ports: ServedPorts,
    pub http2_connections: Http2Connections,
    /// The TLS uprobes, for discovery to attach per captured process.
    pub tls: TlsProbes,
}

/// The loaded eBPF programs. Dropping it (and the [`TlsProbes`], which shares the object) detaches and
/// unloads them all (nothing is pinned).
pub struct KernelProbes {
    _ebpf: Arc<Mutex<Ebpf>>,
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
    ) -> Result<Kernel, KernelError> {
        // Not mounted at all is one clear error, not every program failing on its own (a single
        // tracepoint missing from a mounted tracefs turns only its program off).
        if !tracefs.join("events").is_dir() {
            return Err(KernelError::TracefsMissing(tracefs.to_owned()));
        }
        let (layout, layout_errors) = layout::read_process_layout(tracefs);
        let syscall_layout = layout::syscall_layout();
        let sock_layout = layout::read_sock_layout(tracefs, Path::new(layout::KERNEL_BTF));
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
            .override_global(
                SOCK_LAYOUT_GLOBAL,
                sock_layout.as_ref().unwrap_or(&SockLayout::UNKNOWN),
                true,
            )
            .map_max_entries(PROCESS_EVENTS_MAP, config.process_events_ring_bytes)
            .map_max_entries(IO_EVENTS_MAP, config.io_events_ring_bytes)
            .map_max_entries(SERVED_PORTS_MAP, config.served_ports_entries)
            .map_max_entries(HTTP2_CONNECTIONS_MAP, config.http2_connections_entries)
            .map_max_entries(SSL_CALLS_MAP, config.tls_calls_entries)
            .map_max_entries(CLONE_KINDS_MAP, config.clone_kinds_entries)
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

        match &sock_layout {
            Ok(_) => attach(
                &mut ebpf,
                metrics,
                sock::programs::SOCK_STATE,
                "sock",
                &["inet_sock_set_state"],
            ),
            Err(error) => {
                tracing::error!(program = sock::programs::SOCK_STATE, %error, "socket layout unknown; program not loaded (coverage falls back to process state)");
                metrics
                    .probe_errors
                    .with_label_values(&[sock::programs::SOCK_STATE, "layout"])
                    .inc();
            }
        }

        // Loaded now, attached per binary later; before the maps are taken out of the object (the
        // filter's is unmapped from it, closing its fd).
        let tls_loaded = tls_probes::PROGRAMS
            .iter()
            .all(|program| load_uprobe(&mut ebpf, metrics, program));

        let ring = take_map(&mut ebpf, PROCESS_EVENTS_MAP)?;
        let lost = take_map(&mut ebpf, LOST_EVENTS_MAP)?;
        let io_ring = take_map(&mut ebpf, IO_EVENTS_MAP)?;
        let tracked = TrackedTgids::map_into_memory(take_map(&mut ebpf, TRACKED_TGIDS_MAP)?)?;
        let events = KernelEvents::new(ring, lost, metrics.clone());
        let io_events = IoEvents::new(io_ring, &metrics.io_events);
        let served_ports = ServedPorts::new(take_map(&mut ebpf, SERVED_PORTS_MAP)?);
        let http2_connections = Http2Connections::new(take_map(&mut ebpf, HTTP2_CONNECTIONS_MAP)?);
        let ebpf = Arc::new(Mutex::new(ebpf));
        Ok(Kernel {
            probes: KernelProbes {
                _ebpf: ebpf.clone(),
            },
            tls: TlsProbes::new(ebpf, tls_loaded, metrics.clone()),
            process_events: events,
            io_events,
            filter: tracked,
            served_ports,
            http2_connections,
        })
    }
}

/// Takes the map `name` out of the loaded object as the typed map `M`.
fn take_map<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, KernelError>
where
    M: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(KernelError::MissingMap(name))?;
    M::try_from(map).map_err(|source| KernelError::Map { name, source })
}

/// Loads the uprobe `program` (attached later, per binary, by [`TlsProbes`]); whether it loaded.
fn load_uprobe(ebpf: &mut Ebpf, metrics: &KernelMetrics, program: &str) -> bool {
    let result = ebpf
        .program_mut(program)
        .expect("the embedded object defines every program vigil attaches")
        .try_into()
        .and_then(|probe: &mut UProbe| probe.load());
    match result {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(program, %error, "eBPF program not loaded; TLS plaintext is not captured");
            metrics
                .probe_errors
                .with_label_values(&[program, "load"])
                .inc();
            false
        }
    }
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

#[cfg(test)]
mod tests;
