//! What capture saw of each process's server traffic since coverage last took it: the exchanges its
//! protocols recognised, and the TCP connections it serves whose bytes start no protocol vigil parses,
//! with a hint of what those bytes are. Coverage compares this with the connections the TCP stack
//! accepted.

use foldhash::HashMap;
use serde::Serialize;

/// What the first bytes of a connection vigil cannot parse look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolHint {
    /// A TLS record (`0x16 0x03`: a handshake): encrypted, unreadable from syscalls.
    Tls,
    /// The HTTP/2 client preface (`PRI * HTTP/2.0`).
    Http2,
    /// Anything else (a database protocol, a custom one).
    Unknown,
}

impl ProtocolHint {
    /// What `data`, the first bytes a connection received, looks like.
    pub fn of(data: &[u8]) -> ProtocolHint {
        if data.starts_with(b"PRI * HTTP/2.0") {
            ProtocolHint::Http2
        } else if data.len() >= 2 && data[0] == 0x16 && data[1] == 0x03 {
            ProtocolHint::Tls
        } else {
            ProtocolHint::Unknown
        }
    }

    /// The `protocol` label value.
    pub fn label(self) -> &'static str {
        match self {
            ProtocolHint::Tls => "tls",
            ProtocolHint::Http2 => "http2",
            ProtocolHint::Unknown => "unknown",
        }
    }
}

/// One process's server traffic as capture saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServedTraffic {
    /// Requests answered (recognised and paired by a protocol), published or held.
    pub exchanges: u64,
    /// Connections whose first transfer was received and started no protocol vigil parses.
    pub unrecognized_connections: u64,
    /// What the last of those looked like.
    pub hint: Option<ProtocolHint>,
}

/// The tallies since the last [`TrafficTally::take`].
#[derive(Default)]
pub(super) struct TrafficTally {
    by_tgid: HashMap<u32, Tally>,
}

/// One process's tally: exchanges, and unrecognized connections by hint (in [`ProtocolHint`] order).
#[derive(Default)]
struct Tally {
    exchanges: u64,
    unrecognized: [u64; 3],
    last_hint: Option<ProtocolHint>,
}

impl TrafficTally {
    pub(super) fn exchange(&mut self, tgid: u32) {
        self.by_tgid.entry(tgid).or_default().exchanges += 1;
    }

    pub(super) fn unrecognized(&mut self, tgid: u32, hint: ProtocolHint) {
        let tally = self.by_tgid.entry(tgid).or_default();
        tally.unrecognized[hint as usize] += 1;
        tally.last_hint = Some(hint);
    }

    /// The tallies by tgid, emptied. The TLS connections of a process whose TLS vigil reads
    /// (`reads_tls`) are not unrecognized: their plaintext is parsed from the TLS library's calls.
    pub(super) fn take(&mut self, reads_tls: impl Fn(u32) -> bool) -> HashMap<u32, ServedTraffic> {
        std::mem::take(&mut self.by_tgid)
            .into_iter()
            .map(|(tgid, mut tally)| {
                if reads_tls(tgid) {
                    tally.unrecognized[ProtocolHint::Tls as usize] = 0;
                    if tally.last_hint == Some(ProtocolHint::Tls) {
                        tally.last_hint = [ProtocolHint::Http2, ProtocolHint::Unknown]
                            .into_iter()
                            .find(|hint| tally.unrecognized[*hint as usize] > 0);
                    }
                }
                let traffic = ServedTraffic {
                    exchanges: tally.exchanges,
                    unrecognized_connections: tally.unrecognized.iter().sum(),
                    hint: tally.last_hint,
                };
                (tgid, traffic)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_tls_and_http2_and_nothing_else() {
        assert_eq!(ProtocolHint::of(b"\x16\x03\x01\x02\x00"), ProtocolHint::Tls);
        assert_eq!(
            ProtocolHint::of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            ProtocolHint::Http2
        );
        assert_eq!(
            ProtocolHint::of(b"*1\r\n$4\r\nPING\r\n"),
            ProtocolHint::Unknown
        );
        assert_eq!(ProtocolHint::of(b"\x16"), ProtocolHint::Unknown);
    }

    #[test]
    fn tallies_are_taken_once() {
        let mut tally = TrafficTally::default();
        tally.unrecognized(7, ProtocolHint::Tls);
        tally.exchange(7);
        assert_eq!(
            tally.take(|_| false)[&7],
            ServedTraffic {
                exchanges: 1,
                unrecognized_connections: 1,
                hint: Some(ProtocolHint::Tls),
            }
        );
        assert!(tally.take(|_| false).is_empty(), "taken once");
    }

    #[test]
    fn tls_connections_of_a_process_whose_tls_vigil_reads_are_not_unrecognized() {
        let mut tally = TrafficTally::default();
        tally.unrecognized(7, ProtocolHint::Unknown);
        tally.unrecognized(7, ProtocolHint::Tls);
        tally.unrecognized(8, ProtocolHint::Tls);
        let taken = tally.take(|tgid| tgid == 7);
        assert_eq!(
            (taken[&7].unrecognized_connections, taken[&7].hint),
            (1, Some(ProtocolHint::Unknown))
        );
        assert_eq!(
            (taken[&8].unrecognized_connections, taken[&8].hint),
            (1, Some(ProtocolHint::Tls))
        );
    }
}
