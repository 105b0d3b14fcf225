//! Traffic over a window: for each serving group (the captured processes of a pod, see
//! [`ServingGroup`]), the connections the TCP stack accepted on the ports it serves (less those closed
//! without a byte received: health probes), against the requests capture recognised and the
//! connections it could not parse. Fed on every heartbeat; a sample is the heartbeat interval before
//! it, and the window keeps `k8s.traffic_window` of them.
//!
//! A group **served traffic vigil did not count** when, over the window, connections accepted before
//! the newest sample (so that their first request has had a heartbeat to arrive) outnumber those closed
//! idle while no request was recognised: `unrecognized_protocol` when capture saw at least half as many
//! server connections it could not parse (with their hint), else `traffic_not_captured` (accepted
//! through io_uring, handed to a process vigil does not capture, or a shape vigil does not know).
//!
//! Metrics: `vigil_uncaptured_connections_total{reason}`: connections accepted by captured processes'
//! ports in a heartbeat interval in which, and in the one after, none of the group's requests was
//! recognised (node-only mode has no pod gauge; this is its signal).

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use prometheus::{IntCounterVec, Registry};
use vigil_common::{ServedPortCounts, ServedPortKey};

use crate::{
    capture::traffic::{ProtocolHint, ServedTraffic},
    discovery::ServingGroup,
    metrics::counter_vec,
};

/// Why a group's traffic was not counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uncounted {
    /// Connections accepted, no request recognised, nothing unparseable seen.
    TrafficNotCaptured,
    /// Connections accepted whose bytes are not a protocol vigil parses.
    UnrecognizedProtocol(ProtocolHint),
}

impl Uncounted {
    /// The `reason` label value.
    pub fn reason(self) -> &'static str {
        match self {
            Uncounted::TrafficNotCaptured => "traffic_not_captured",
            Uncounted::UnrecognizedProtocol(_) => "unrecognized_protocol",
        }
    }

    /// The `protocol` hint, for unrecognized traffic.
    pub fn protocol(self) -> Option<ProtocolHint> {
        match self {
            Uncounted::TrafficNotCaptured => None,
            Uncounted::UnrecognizedProtocol(hint) => Some(hint),
        }
    }
}

/// One group's traffic in one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct GroupTraffic {
    accepted: u64,
    closed_idle: u64,
    exchanges: u64,
    unrecognized: u64,
    hint: Option<ProtocolHint>,
}

impl GroupTraffic {
    fn add(&mut self, other: &GroupTraffic) {
        self.accepted += other.accepted;
        self.closed_idle += other.closed_idle;
        self.exchanges += other.exchanges;
        self.unrecognized += other.unrecognized;
        self.hint = other.hint.or(self.hint);
    }

    /// Connections that carried (or may still carry) traffic.
    fn served(&self) -> u64 {
        self.accepted.saturating_sub(self.closed_idle)
    }

    /// Whether connections were served and no request recognised; why. Unparseable bytes are the
    /// reason when capture saw them on at least half as many connections as were served (a process's
    /// own file reads at start-up look the same to capture, and must not name the reason of an
    /// io_uring server).
    fn uncounted(&self) -> Option<Uncounted> {
        let served = self.served();
        (served > 0 && self.exchanges == 0).then(|| {
            if self.unrecognized * 2 >= served {
                Uncounted::UnrecognizedProtocol(self.hint.unwrap_or(ProtocolHint::Unknown))
            } else {
                Uncounted::TrafficNotCaptured
            }
        })
    }
}

/// A serving group's identity: its network namespace and pod.
type GroupKey = (u64, Option<String>);

fn key_of(group: &ServingGroup) -> GroupKey {
    (group.netns, group.pod_uid.clone())
}

/// The traffic of every serving group over the window.
pub struct TrafficWindow {
    window: Duration,
    /// The kernel's counters at the last sample.
    last: HashMap<ServedPortKey, ServedPortCounts>,
    samples: VecDeque<(Instant, HashMap<GroupKey, GroupTraffic>)>,
    uncaptured: IntCounterVec,
}

impl TrafficWindow {
    pub fn new(window: Duration, registry: &Registry) -> Self {
        let uncaptured = counter_vec(
            registry,
            "vigil_uncaptured_connections_total",
            "Connections accepted on ports captured processes serve, in a heartbeat interval in which (and in the one after) none of their requests was recognised, by reason: traffic_not_captured or unrecognized_protocol.",
            &["reason"],
        );
        for reason in ["traffic_not_captured", "unrecognized_protocol"] {
            uncaptured.with_label_values(&[reason]);
        }
        TrafficWindow {
            window,
            last: HashMap::new(),
            samples: VecDeque::new(),
            uncaptured,
        }
    }

    /// Takes a sample at `now`: the kernel's served-port counters, the serving groups and what capture
    /// saw of each process since the last sample.
    pub fn observe(
        &mut self,
        now: Instant,
        served_ports: &[(ServedPortKey, ServedPortCounts)],
        groups: &[ServingGroup],
        traffic: &foldhash::HashMap<u32, ServedTraffic>,
    ) {
        let mut sample: HashMap<GroupKey, GroupTraffic> = HashMap::new();
        let mut by_netns: HashMap<u64, Vec<&ServingGroup>> = HashMap::new();
        for group in groups {
            by_netns.entry(group.netns).or_default().push(group);
        }
        let mut current = HashMap::with_capacity(served_ports.len());
        for (key, counts) in served_ports {
            let before = self.last.get(key).copied().unwrap_or_default();
            current.insert(*key, *counts);
            let serving = by_netns
                .get(&u64::from(key.netns))
                .into_iter()
                .flatten()
                .filter(|group| group.serves(key.port));
            for group in serving {
                let entry = sample.entry(key_of(group)).or_default();
                // A counter below its last value is an entry evicted and created again: all of it
                // is new.
                let delta = |now: u64, then: u64| now.checked_sub(then).unwrap_or(now);
                entry.accepted += delta(counts.accepted, before.accepted);
                entry.closed_idle += delta(counts.closed_idle, before.closed_idle);
            }
        }
        self.last = current;
        for group in groups {
            let entry = sample.entry(key_of(group)).or_default();
            for tgid in &group.tgids {
                if let Some(seen) = traffic.get(tgid) {
                    entry.exchanges += seen.exchanges;
                    entry.unrecognized += seen.unrecognized_connections;
                    entry.hint = seen.hint.or(entry.hint);
                }
            }
        }
        for ((netns, pod), traffic) in &sample {
            tracing::debug!(
                netns,
                pod = pod.as_deref().unwrap_or(""),
                ?traffic,
                "traffic sample"
            );
        }
        self.samples.push_back((now, sample));
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > self.window)
        {
            self.samples.pop_front();
        }
        self.count_uncaptured();
    }

    /// Counts the connections of the sample before the newest whose group recognised no request in it
    /// or in the newest.
    fn count_uncaptured(&self) {
        let Some(settled_index) = self.samples.len().checked_sub(2) else {
            return;
        };
        let ((_, settled), (_, newest)) = (
            &self.samples[settled_index],
            &self.samples[settled_index + 1],
        );
        for (group, traffic) in settled {
            let mut both = *traffic;
            if let Some(next) = newest.get(group) {
                both.exchanges += next.exchanges;
            }
            if let Some(uncounted) = both.uncounted() {
                self.uncaptured
                    .with_label_values(&[uncounted.reason()])
                    .inc_by(traffic.served());
            }
        }
    }

    /// Whether `group` served traffic vigil did not count over the window (connections accepted before
    /// the newest sample; requests and closes of all of it).
    pub fn uncounted(&self, group: &ServingGroup) -> Option<Uncounted> {
        let key = key_of(group);
        let mut total = GroupTraffic::default();
        let last = self.samples.len().checked_sub(1)?;
        for (index, (_, sample)) in self.samples.iter().enumerate() {
            let Some(traffic) = sample.get(&key) else {
                continue;
            };
            let mut counted = *traffic;
            if index == last {
                counted.accepted = 0;
            }
            total.add(&counted);
        }
        total.uncounted()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn group(netns: u64, pod: &str, tgid: u32, port: u16) -> ServingGroup {
        ServingGroup {
            netns,
            pod_uid: Some(pod.to_owned()),
            tgids: vec![tgid],
            ports: BTreeSet::from([port]),
            shared_namespace: false,
        }
    }

    fn port(
        netns: u32,
        port: u16,
        accepted: u64,
        closed_idle: u64,
    ) -> (ServedPortKey, ServedPortCounts) {
        (
            ServedPortKey {
                netns,
                port,
                reserved: 0,
            },
            ServedPortCounts {
                accepted,
                closed_idle,
            },
        )
    }

    fn traffic(
        tgid: u32,
        exchanges: u64,
        unrecognized: u64,
    ) -> foldhash::HashMap<u32, ServedTraffic> {
        let mut traffic = foldhash::HashMap::default();
        traffic.insert(
            tgid,
            ServedTraffic {
                exchanges,
                unrecognized_connections: unrecognized,
                hint: (unrecognized > 0).then_some(ProtocolHint::Tls),
            },
        );
        traffic
    }

    #[test]
    fn connections_without_requests_are_uncounted_from_the_next_heartbeat_until_the_window_passes()
    {
        let registry = Registry::new();
        let mut window = TrafficWindow::new(Duration::from_secs(10), &registry);
        let pod = group(1, "a", 10, 8080);
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let none = foldhash::HashMap::default();
        // Three connections accepted on the pod's port in the first interval, no request recognised.
        window.observe(
            at(0),
            &[port(1, 8080, 3, 0)],
            std::slice::from_ref(&pod),
            &none,
        );
        assert_eq!(
            window.uncounted(&pod),
            None,
            "not judged in the interval they came in"
        );
        window.observe(
            at(2),
            &[port(1, 8080, 3, 0)],
            std::slice::from_ref(&pod),
            &none,
        );
        assert_eq!(window.uncounted(&pod), Some(Uncounted::TrafficNotCaptured));
        assert_eq!(
            window
                .uncaptured
                .with_label_values(&["traffic_not_captured"])
                .get(),
            3
        );
        // The traffic stops: once the window has passed, nothing is held against the pod.
        window.observe(
            at(13),
            &[port(1, 8080, 3, 0)],
            std::slice::from_ref(&pod),
            &none,
        );
        assert_eq!(window.uncounted(&pod), None);
    }

    #[test]
    fn recognised_requests_idle_probes_and_other_ports_are_not_uncounted_traffic() {
        let registry = Registry::new();
        let mut window = TrafficWindow::new(Duration::from_secs(10), &registry);
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let served = group(1, "a", 10, 8080);
        let probed = group(1, "b", 20, 9090);
        let none = foldhash::HashMap::default();
        let groups = [served.clone(), probed.clone()];
        // Pod a: connections and requests. Pod b: TCP probes only (closed without a byte). Port 22:
        // nobody's.
        window.observe(
            at(0),
            &[port(1, 8080, 5, 0), port(1, 9090, 2, 2), port(1, 22, 7, 0)],
            &groups,
            &traffic(10, 9, 0),
        );
        window.observe(
            at(2),
            &[port(1, 8080, 5, 0), port(1, 9090, 2, 2), port(1, 22, 7, 0)],
            &groups,
            &none,
        );
        assert_eq!(window.uncounted(&served), None);
        assert_eq!(window.uncounted(&probed), None);
        // Pod b now gets connections whose bytes capture cannot parse.
        window.observe(at(4), &[port(1, 9090, 4, 2)], &groups, &traffic(20, 0, 2));
        window.observe(at(6), &[port(1, 9090, 4, 2)], &groups, &none);
        assert_eq!(
            window.uncounted(&probed),
            Some(Uncounted::UnrecognizedProtocol(ProtocolHint::Tls))
        );
        assert_eq!(
            window
                .uncaptured
                .with_label_values(&["unrecognized_protocol"])
                .get(),
            2
        );
    }
}
