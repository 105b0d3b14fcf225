//! vigil: discovers the processes on its node, captures their requests with eBPF and serves RED metrics.
//!
//! The data flows one way, one module per stage: [`kernel`] (eBPF programs and what they produce) →
//! [`discovery`] (which processes; [`pods`] come in as an input) → [`capture`] (their requests, one
//! file per protocol) → [`metrics`] (series and their lifecycle) → [`coverage`] (which pods are truly
//! monitored, grounded in traffic) → [`admin`] (HTTP, serving snapshots). [`run`] wires them together;
//! [`config`], [`cli`] and [`privileges`] are read before it. No module imports one later in the flow;
//! every stage registers its metric families with [`metrics`], which imports no stage.

pub mod admin;
pub mod capture;
pub mod cli;
pub mod config;
pub mod coverage;
pub mod discovery;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod kernel;
pub mod metrics;
pub mod pods;
pub mod privileges;

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Instant,
};

use anyhow::Context as _;
use tokio::{net::TcpListener, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::{
    admin::{AdminState, DebugEndpoints, Readiness, WebSecurity},
    capture::{Capture, CaptureMetrics},
    config::Config,
    coverage::{MonitoringMetrics, TrafficWindow},
    discovery::{Discovery, DiscoveryMetrics},
    kernel::{Kernel, KernelEvents, KernelMetrics, KernelProbes},
    metrics::{RedFamilies, RedSeries},
    pods::{Freshness, KubeMetrics},
};

/// Runs vigil until SIGTERM or SIGINT, serving with the web configuration `security` (read by the
/// caller, so that a bad file stops vigil before anything else). Privileges are checked by the caller.
pub async fn run(config: Config, security: WebSecurity) -> anyhow::Result<()> {
    let registry = metrics::new_registry();
    let kernel_metrics = KernelMetrics::register(&registry);
    let discovery_metrics = DiscoveryMetrics::register(&registry);
    let capture_metrics = CaptureMetrics::register(&registry);
    let red_series = RedSeries::new(
        &config.metrics,
        RedFamilies::register(&registry, &config.metrics),
    );
    let kube_metrics = KubeMetrics::register(&registry);
    let monitoring_metrics = MonitoringMetrics::register(&registry);
    // The newest heartbeat's connections are judged at the next one: the window spans two at least.
    let mut traffic_window = TrafficWindow::new(
        config
            .k8s
            .traffic_window
            .max(2 * config.discovery.heartbeat_interval),
        &registry,
    );
    let address = config.web.listen_address;
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (web.listen_address)"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        tls = security.tls(),
        debug_endpoints = config.web.debug_endpoints,
        "admin server listening"
    );
    let readiness = Arc::new(Readiness::default());
    let discovery_slot = Arc::new(OnceLock::new());
    let capture_slot = Arc::new(OnceLock::new());
    let pod_reports = Arc::new(Mutex::new(serde_json::Value::Null));
    let shutdown = CancellationToken::new();
    let state = Arc::new(AdminState {
        exposition: metrics::Exposition::new(registry, red_series.exposition()),
        readiness: readiness.clone(),
        discovery: discovery_slot.clone(),
        capture: capture_slot.clone(),
        pods: pod_reports.clone(),
        debug: DebugEndpoints {
            enabled: config.web.debug_endpoints,
            command_lines: match config.web.debug_command_lines {
                true => discovery::CommandLines::Whole,
                false => discovery::CommandLines::Redacted,
            },
        },
    });
    let server = tokio::spawn(admin::serve(
        listener,
        state,
        Arc::new(security),
        shutdown.clone(),
    ));

    let Kernel {
        probes,
        process_events: mut kernel_events,
        mut io_events,
        filter: tracked,
        served_ports,
        mut http2_connections,
        tls,
    } = KernelProbes::load(
        &config.ebpf,
        &config.paths.tracefs,
        config.discovery.selects_by_port(),
        &kernel_metrics,
    )?;
    readiness.set_probes_attached();
    let pod_watch = match pods::connect(&config.k8s)
        .await
        .context("connecting to the Kubernetes API")?
    {
        Some(client) => {
            let node = pods::node_name(&config.k8s);
            tracing::info!(%node, "watching the pods of this node");
            Some(pods::watch_pods(client, node, kube_metrics))
        }
        None => {
            tracing::info!(
                "no kubeconfig and not in a pod: running node-only, without pod metadata or the unmonitored-pod gauge"
            );
            None
        }
    };

    let discovery = Discovery::new(
        &config.paths.procfs,
        &config.discovery,
        Box::new(tracked),
        discovery_metrics,
    )
    .with_tls(tls);
    let discovery = match &pod_watch {
        Some(watch) => discovery.with_pods(watch.store.clone(), &config.k8s.excluded_namespaces),
        None => discovery,
    };
    let discovery = Arc::new(Mutex::new(discovery));
    let _ = discovery_slot.set(discovery.clone());

    let lock = || discovery.lock().expect("discovery lock poisoned");
    // Process events drained but not applied yet (see `apply_releases`).
    let mut events = Vec::new();
    let seeded = {
        let mut discovery = lock();
        let seeded = discovery
            .reconcile(Instant::now())
            .context("first /proc scan")?;
        apply_releases(&mut discovery, &mut kernel_events, &mut events);
        seeded
    };
    tracing::info!(processes = seeded.missed_exec, "first /proc scan done");
    readiness.set_first_scan_done();

    let mut drain = tokio::time::interval(config.ebpf.drain_interval);
    drain.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let reconcile_every = config.discovery.reconcile_interval;
    let mut reconcile = tokio::time::interval_at(
        tokio::time::Instant::now() + reconcile_every,
        reconcile_every,
    );
    reconcile.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heartbeat = tokio::time::interval(config.discovery.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let capture = Arc::new(Mutex::new(Capture::new(
        pod_watch.as_ref().map(|watch| watch.store.clone()),
        capture_metrics,
        red_series,
        &config.capture,
    )));
    let _ = capture_slot.set(capture.clone());
    let lock_capture = || capture.lock().expect("capture lock poisoned");
    let mut io = Vec::new();
    let mut last_drain: Option<Instant> = None;
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            signal = &mut stop => {
                tracing::info!(signal = signal?, "shutting down");
                break;
            }
            _ = drain.tick() => {
                let started = Instant::now();
                if let Some(last) = last_drain.replace(started) {
                    kernel_metrics.observe_drain_interval(started - last);
                }
                io_events.drain(&mut io);
                kernel_events.drain(&mut events);
                let mut discovery = lock();
                let mut capture = lock_capture();
                // I/O first: it comes only from captured processes, which are still in the table
                // until this batch's exits are applied.
                capture.handle(&io, &*discovery);
                for (tgid, fd, session) in capture.take_whole_transfer_connections() {
                    http2_connections.add(tgid, fd, session);
                }
                discovery.handle(&events, Instant::now());
                discovery.advance(Instant::now());
                capture.settle(&*discovery);
                events.clear();
                apply_releases(&mut discovery, &mut kernel_events, &mut events);
                drop(discovery);
                capture.look_up_addresses();
                io_events.recycle(&mut io);
            }
            _ = heartbeat.tick() => {
                let mut discovery = lock();
                discovery.heartbeat(Instant::now());
                apply_releases(&mut discovery, &mut kernel_events, &mut events);
                let traffic = {
                    let mut capture = lock_capture();
                    capture.expire(&*discovery, Instant::now());
                    capture.take_traffic(&*discovery)
                };
                let groups = discovery.serving_groups();
                traffic_window.observe(Instant::now(), &served_ports.read(), &groups, &traffic);
                if let Some(watch) = &pod_watch {
                    watch.update_gauges();
                    let store = watch.store.lock().expect("pod store lock");
                    // While the API server is unreachable, the pod verdicts stay as they were: a
                    // pod deleted meanwhile would otherwise read as unmonitored because of vigil's
                    // own outage, and the pods created meanwhile are not known.
                    if store.freshness() != Freshness::Stale {
                        let reports = coverage::evaluate(
                            &store,
                            &discovery,
                            &config.k8s,
                            std::time::SystemTime::now(),
                            &traffic_window,
                            &groups,
                        );
                        monitoring_metrics.publish(&reports);
                        *pod_reports.lock().expect("pods lock") = coverage::to_json(&reports);
                    }
                }
            }
            _ = reconcile.tick() => {
                let mut discovery = lock();
                if let Err(error) = discovery.reconcile(Instant::now()) {
                    tracing::warn!(%error, "reconcile failed; trying again next interval");
                }
                apply_releases(&mut discovery, &mut kernel_events, &mut events);
            }
        }
    }

    shutdown.cancel();
    drop(probes);
    tracing::info!("eBPF programs detached");
    server.await.context("admin server task")?;
    Ok(())
}

/// Has discovery clear the filter bits it released, against the process events submitted since the
/// last drain, which are drained into `pending` and applied with the next batch (see
/// `discovery/release.rs`).
fn apply_releases(
    discovery: &mut Discovery,
    kernel_events: &mut KernelEvents,
    pending: &mut Vec<vigil_common::ProcessEvent>,
) {
    discovery.apply_releases(pending, |events| kernel_events.drain(events));
}

/// Resolves with the name of the first SIGTERM or SIGINT received.
async fn stop_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}
