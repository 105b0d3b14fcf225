//! Capture: the requests of captured processes, from their socket I/O records (the kernel's
//! [`IoRecord`]s) to finished exchanges handed to the metrics stage's series store.
//!
//! Per connection (tgid and fd, or for TLS plaintext tgid and session), the first transfer that starts a protocol vigil parses picks the
//! connection's parser ([`protocols`]: HTTP/1.x today); its later records go to that parser, which
//! yields finished exchanges. Connections need no accept or connect event: one open before vigil
//! started, or before the process was captured, is adopted at its next head. A close ends what the
//! connection was counting and forgets it; so does its process leaving capture.
//!
//! **Connections** ([`connection`]): the side of each one's first request, and its local and peer
//! address looked up once from the socket itself ([`sockets`]); `/debug/connections` lists them.
//!
//! **Publication.** Discovery is seen through [`ProcessView`] only. What a `provisional` process does is
//! held ([`hold`]), not published; it becomes series when discovery publishes the process, and is
//! dropped if the process dies first (see discovery's minimum process age). So is what a process the
//! kernel captured at its `listen` does before discovery has evaluated it: published if it matches,
//! dropped (`not_selected`) if not.
//!
//! **Labels** ([`labels`]): `service_name`, `service_namespace` and the `k8s_*` labels of the
//! process's pod; requests of a process whose pod the watcher does not know yet are held until it
//! does.
//!
//! **Traffic** ([`traffic`]): per process, the exchanges recognised and the TCP connections it serves
//! that no protocol claimed (with a hint: TLS, HTTP/2, unknown), taken by coverage on each heartbeat.
//!
//! **Bound.** At most `capture.max_connections` connections are followed: a new one past it first makes
//! capture forget the idlest eighth (by their last record), counted in
//! `vigil_capture_connections_evicted_total`.
//!
//! Metrics: those of [`protocols`] and [`hold`]; `vigil_capture_connections` (followed now),
//! `vigil_capture_connections_evicted_total`; the RED families are the metrics stage's.

mod connection;
mod hold;
pub mod labels;
pub mod protocols;
pub mod sockets;
pub mod traffic;
mod view;

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use foldhash::HashMap;
use prometheus::{IntCounter, IntGauge, Registry};
use vigil_common::IoEventKind;

use connection::Connection;
pub use connection::{ConnectionKey, ConnectionRow};
use hold::{DropReason, Hold};
use labels::LabelCache;
use protocols::Protocols;
use traffic::{ServedTraffic, TrafficTally};
pub use view::ProcessView;

use crate::{
    config::CaptureConfig,
    discovery::Publication,
    kernel::IoRecord,
    metrics::{Exchange, Measure, RedSeries, register},
    pods::PodStore,
};

/// The metric families of this stage.
pub struct CaptureMetrics {
    protocols: Protocols,
    hold: Hold,
    connections: IntGauge,
    evicted: IntCounter,
}

impl CaptureMetrics {
    pub fn register(registry: &Registry) -> Self {
        CaptureMetrics {
            protocols: Protocols::register(registry),
            hold: Hold::register(registry),
            connections: register(
                registry,
                IntGauge::new(
                    "vigil_capture_connections",
                    "Connections (and TLS sessions) of captured processes that capture follows now.",
                )
                .expect("static metric definition"),
            ),
            evicted: register(
                registry,
                IntCounter::new(
                    "vigil_capture_connections_evicted_total",
                    "Connections capture forgot because it followed capture.max_connections: the idlest eighth each time (a later record of one adopts it again).",
                )
                .expect("static metric definition"),
            ),
        }
    }
}

/// The capture state: connections followed, requests held for processes not published yet, and the
/// series they become.
pub struct Capture {
    connections: HashMap<ConnectionKey, Connection>,
    /// `capture.max_connections`.
    max_connections: usize,
    connections_gauge: IntGauge,
    evicted: IntCounter,
    protocols: Protocols,
    held: Hold,
    labels: LabelCache,
    series: RedSeries,
    traffic: TrafficTally,
    /// Connections recognised since the last call to [`Capture::take_whole_transfer_connections`]
    /// whose protocol needs whole transfers copied.
    whole_transfers: Vec<ConnectionKey>,
    /// What the record being handled finished (kept for its allocation).
    finished: Vec<Exchange>,
}

impl Capture {
    pub fn new(
        pods: Option<Arc<Mutex<PodStore>>>,
        metrics: CaptureMetrics,
        series: RedSeries,
        limits: &CaptureConfig,
    ) -> Self {
        Capture {
            connections: HashMap::default(),
            max_connections: limits.max_connections,
            connections_gauge: metrics.connections,
            evicted: metrics.evicted,
            protocols: metrics.protocols,
            held: metrics.hold.with_limit(limits.max_held_requests),
            labels: LabelCache::new(pods),
            series,
            traffic: TrafficTally::default(),
            whole_transfers: Vec::new(),
            finished: Vec::new(),
        }
    }

    /// Applies I/O records, in order.
    pub fn handle(&mut self, records: &[IoRecord], processes: &dyn ProcessView) {
        let mut finished = std::mem::take(&mut self.finished);
        for record in records {
            let key = (record.tgid, record.fd, record.session);
            if record.kind == IoEventKind::Close {
                if let Some(connection) = self.connections.remove(&key) {
                    let (parser, unrecognized) = connection.close();
                    if let Some(mut parser) = parser {
                        parser.close(record.boot_time_ns, &mut finished);
                    }
                    if let Some(hint) = unrecognized {
                        self.traffic.unrecognized(record.tgid, hint);
                    }
                }
            } else {
                if self.connections.len() >= self.max_connections
                    && !self.connections.contains_key(&key)
                {
                    let evicted = connection::evict_idlest(&mut self.connections);
                    self.evicted.inc_by(evicted as u64);
                }
                let connection = self.connections.entry(key).or_insert_with(|| {
                    let received = record.kind == IoEventKind::Receive;
                    Connection::unparsed(received.then_some(&record.data[..]))
                });
                connection.touch(record.boot_time_ns);
                // Until a protocol claims it, each transfer may be the first head (a connection
                // adopted mid-body).
                let mut recognised = false;
                let Some(parser) = connection.parser(|| {
                    recognised = true;
                    self.protocols.recognise(record)
                }) else {
                    continue;
                };
                if recognised && parser.needs_whole_transfers() {
                    self.whole_transfers.push(key);
                }
                parser.transfer(record, &mut finished);
            }
            for exchange in finished.drain(..) {
                self.observe(record.tgid, exchange, processes);
            }
        }
        self.finished = finished;
        self.connections_gauge.set(self.connections.len() as i64);
    }

    /// Publishes the requests held for processes discovery has published since, drops those of processes
    /// that are gone or not selected, and forgets the connections of processes no longer captured.
    pub fn settle(&mut self, processes: &dyn ProcessView) {
        for tgid in self.held.tgids() {
            match processes.publication(tgid) {
                Publication::Provisional => {}
                Publication::Published => {
                    // Still pending its pod's metadata: keep holding.
                    let Some(labels) = self.labels.labels_of(tgid, processes) else {
                        continue;
                    };
                    for exchange in self.held.take(tgid) {
                        self.series.record(&labels, tgid, exchange);
                    }
                }
                Publication::NotSelected => self.held.drop_all(tgid, DropReason::NotSelected),
                Publication::NotCaptured => self.held.drop_all(tgid, DropReason::ShortLived),
            }
        }
        self.connections
            .retain(|(tgid, _, _), _| processes.publication(*tgid).is_captured());
        self.connections_gauge.set(self.connections.len() as i64);
    }

    /// The connections (tgid, fd, session) recognised since the last call whose protocol needs whole
    /// transfers copied (HTTP/2): the kernel copies those of a connection it saw start itself, not of
    /// one adopted mid-way.
    pub fn take_whole_transfer_connections(&mut self) -> Vec<ConnectionKey> {
        std::mem::take(&mut self.whole_transfers)
    }

    /// What capture saw of each process's server traffic since the last call, by tgid.
    pub fn take_traffic(&mut self, processes: &dyn ProcessView) -> HashMap<u32, ServedTraffic> {
        self.traffic.take(|tgid| processes.reads_tls(tgid))
    }

    /// Removes idle series and those of processes gone (see [`RedSeries::expire`]); forgets the
    /// resolved labels (pods change).
    pub fn expire(&mut self, processes: &dyn ProcessView, now: Instant) {
        self.labels.refresh(processes);
        self.series
            .expire(|tgid| processes.publication(tgid).is_captured(), now);
    }

    /// Looks up the addresses of connections seen since the last call (a bounded number per call).
    pub fn look_up_addresses(&mut self) {
        for (tgid, hint) in connection::look_up_addresses(&mut self.connections) {
            self.traffic.unrecognized(tgid, hint);
        }
    }

    /// The connections followed, for `/debug/connections`.
    pub fn connections(&self) -> Vec<ConnectionRow> {
        connection::rows(&self.connections)
    }

    /// Records an exchange of `tgid` if discovery has published it and its labels are known; holds it
    /// otherwise.
    fn observe(&mut self, tgid: u32, exchange: Exchange, processes: &dyn ProcessView) {
        if matches!(exchange.measure, Measure::Request { .. }) {
            self.traffic.exchange(tgid);
        }
        if processes.publication(tgid) == Publication::Published
            && let Some(labels) = self.labels.labels_of(tgid, processes)
        {
            self.series.record(&labels, tgid, exchange);
            return;
        }
        // Provisional, pending its pod's metadata, or not decided yet: the kernel captured it at its
        // `listen`, and the events that tell discovery about that come later in this batch (it may be
        // a known candidate until then). Held; `settle` decides after discovery has seen the batch.
        self.held.push(tgid, exchange);
    }
}

#[cfg(test)]
mod tests;
