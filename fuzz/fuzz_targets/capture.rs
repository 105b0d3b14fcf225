//! The capture state machine (`Capture`) fed arbitrary sequences of I/O records of several processes
//! and connections (receives, sends, closes, TLS plaintext; `vigil_fuzz::entries`), in batches as the
//! daemon drains them, with discovery's answers changing between batches: after each batch, what the
//! drain tick does (`handle`, `take_whole_transfer_connections`, `settle`); control steps for the
//! heartbeat (`expire` at a later time, `take_traffic`), `/debug/connections`, and a process's
//! publication changing. At the end a heartbeat, and `/metrics` is written (the RED series
//! included). Capture follows at most 8 connections, so that eviction is fuzzed too.
//!
//! Records are cut at `IO_DATA_MAX` bytes, or `IO_DATA_MAX_HTTP2` on the connections capture handed to
//! the kernel for whole transfers, as the kernel copies them. Address look-ups are left out: they open
//! the real processes' sockets by pid (`pidfd_getfd`), which is no parsing and would reach this
//! machine's processes.
//!
//! Asserts: no panic; the connections listed are at most those the records named.
#![no_main]

use std::{
    collections::{HashMap, HashSet},
    sync::OnceLock,
    time::{Duration, Instant},
};

use libfuzzer_sys::fuzz_target;
use vigil::{
    capture::{Capture, CaptureMetrics, ConnectionKey, ProcessView},
    config::{CaptureConfig, Config},
    discovery::{ContainerRef, Publication, ServiceIdentity},
    metrics::{Exposition, RedFamilies, RedSeries, new_registry},
};
use vigil_common::io::{IO_DATA_MAX, IO_DATA_MAX_HTTP2};
use vigil_fuzz::{Entry, TGIDS, entries};

/// Discovery as capture sees it, changed by the input.
struct Processes {
    publication: HashMap<u32, Publication>,
    service: ServiceIdentity,
    container: ContainerRef,
}

impl ProcessView for Processes {
    fn publication(&self, tgid: u32) -> Publication {
        self.publication
            .get(&tgid)
            .cloned()
            .unwrap_or(Publication::NotCaptured)
    }

    fn service_of(&self, tgid: u32) -> Option<(&ServiceIdentity, &ContainerRef)> {
        self.publication(tgid)
            .is_captured()
            .then_some((&self.service, &self.container))
    }

    fn reads_tls(&self, tgid: u32) -> bool {
        tgid % 2 == 0
    }
}

const PUBLICATIONS: [Publication; 4] = [
    Publication::Published,
    Publication::Provisional,
    Publication::NotSelected,
    Publication::NotCaptured,
];

fuzz_target!(|data: &[u8]| {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        Config::load(None, std::iter::empty(), &[]).expect("the default config loads")
    });
    let registry = new_registry();
    let series = RedSeries::new(
        &config.metrics,
        RedFamilies::register(&registry, &config.metrics),
    );
    let exposition = Exposition::new(registry.clone(), series.exposition());
    // Small bounds, so that eviction and a full hold are fuzzed too.
    let limits = CaptureConfig {
        max_connections: 8,
        max_held_requests: 64,
    };
    let mut capture = Capture::new(None, CaptureMetrics::register(&registry), series, &limits);
    let mut processes = Processes {
        // The first process is published, the second provisional, the others not captured yet.
        publication: TGIDS
            .iter()
            .zip(PUBLICATIONS)
            .map(|(&tgid, publication)| (tgid, publication))
            .collect(),
        service: ServiceIdentity {
            executable: "server".into(),
            ..ServiceIdentity::default()
        },
        container: ContainerRef::default(),
    };
    let mut whole_transfers: HashSet<ConnectionKey> = HashSet::new();
    let mut named: HashSet<ConnectionKey> = HashSet::new();
    let mut batch = Vec::new();
    let mut now = Instant::now();

    let drain = |capture: &mut Capture,
                 processes: &Processes,
                 batch: &mut Vec<_>,
                 whole_transfers: &mut HashSet<ConnectionKey>| {
        capture.handle(batch, processes);
        batch.clear();
        whole_transfers.extend(capture.take_whole_transfer_connections());
        capture.settle(processes);
    };

    for entry in entries(data, IO_DATA_MAX_HTTP2) {
        match entry {
            Entry::Record(mut record) => {
                let key = (record.tgid, record.fd, record.session);
                named.insert(key);
                if !whole_transfers.contains(&key) {
                    record.data.truncate(IO_DATA_MAX);
                }
                batch.push(record);
            }
            Entry::Control { selector, argument } => {
                drain(&mut capture, &processes, &mut batch, &mut whole_transfers);
                match selector % 4 {
                    0 => {}
                    1 => {
                        now += Duration::from_secs(u64::from(argument) * 10);
                        capture.expire(&processes, now);
                        capture.take_traffic(&processes);
                    }
                    2 => {
                        let rows = capture.connections();
                        assert!(rows.len() <= named.len());
                    }
                    _ => {
                        let tgid = TGIDS[usize::from(selector >> 2 & 3)];
                        let publication = PUBLICATIONS[usize::from(argument % 4)].clone();
                        processes.publication.insert(tgid, publication);
                    }
                }
            }
        }
    }
    drain(&mut capture, &processes, &mut batch, &mut whole_transfers);
    capture.expire(&processes, now + Duration::from_secs(1));
    capture.take_traffic(&processes);
    assert!(capture.connections().len() <= named.len());
    exposition.text();
});
