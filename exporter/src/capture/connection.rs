//! The connections capture follows, by [`ConnectionKey`]: each one's protocol parser (none while no protocol
//! vigil parses has claimed its bytes) and its addresses, looked up once from the socket itself
//! ([`super::sockets`]; at most [`MAX_ADDRESS_LOOKUPS_PER_TICK`] per drain tick, so that a storm of
//! short connections costs a bounded amount), and the rows `/debug/connections` shows.
//!
//! A connection no protocol claimed whose first transfer was received (the process serves it) is
//! reported to the traffic tally once its address shows it is a TCP connection (not a pipe, a file or
//! a Unix socket: a node `cluster` worker's IPC channel), or when it closes before its address was
//! looked up (most such short connections are TCP).

use foldhash::HashMap;
use serde::Serialize;

use super::{
    protocols::ConnectionParser,
    sockets::{Addresses, ProcessHandle},
    traffic::ProtocolHint,
};
use crate::metrics::Side;

/// A connection: its process's tgid and its fd, or, for TLS plaintext read or written through the TLS
/// library, the tgid, `TLS_FD` and the library's session (0 for socket I/O).
pub type ConnectionKey = (u32, u32, u64);

/// Connections whose addresses are looked up per drain tick, at most (the others wait for the next).
const MAX_ADDRESS_LOOKUPS_PER_TICK: usize = 64;

/// One connection: its parser and addresses.
pub(super) struct Connection {
    /// `None` while no protocol vigil parses has claimed its bytes.
    parser: Option<Box<dyn ConnectionParser>>,
    /// What its first bytes looked like, when no protocol claimed them and the process received them.
    unrecognized: Option<ProtocolHint>,
    addresses: AddressLookup,
    /// When its last record was read or written (kernel boot time), to evict the idlest first.
    last_active_ns: u64,
}

impl Connection {
    /// A connection seen for the first time, its parser not chosen yet; `received_first` holds its
    /// first bytes when the process received them.
    pub(super) fn unparsed(received_first: Option<&[u8]>) -> Self {
        Connection {
            parser: None,
            unrecognized: received_first.map(ProtocolHint::of),
            addresses: AddressLookup::NotYet,
            last_active_ns: 0,
        }
    }

    /// Its parser, chosen by `recognise` from this transfer if none has claimed it yet.
    pub(super) fn parser(
        &mut self,
        recognise: impl FnOnce() -> Option<Box<dyn ConnectionParser>>,
    ) -> Option<&mut Box<dyn ConnectionParser>> {
        if self.parser.is_none() {
            self.parser = recognise();
            if self.parser.is_some() {
                self.unrecognized = None;
            }
        }
        self.parser.as_mut()
    }

    /// A record of it was read or written at `boot_time_ns`.
    pub(super) fn touch(&mut self, boot_time_ns: u64) {
        self.last_active_ns = self.last_active_ns.max(boot_time_ns);
    }

    /// The connection closed: its parser, to end what it was counting, and the hint of its bytes when
    /// it served unrecognized bytes and closed before its address was looked up.
    pub(super) fn close(self) -> (Option<Box<dyn ConnectionParser>>, Option<ProtocolHint>) {
        let unrecognized = self
            .unrecognized
            .filter(|_| matches!(self.addresses, AddressLookup::NotYet));
        (self.parser, unrecognized)
    }

    /// Its row in `/debug/connections`.
    fn row(&self, (pid, fd, session): ConnectionKey) -> ConnectionRow {
        let mut row = ConnectionRow {
            pid,
            fd,
            tls: session != 0,
            role: self
                .parser
                .as_ref()
                .and_then(|parser| parser.role())
                .map(Side::label),
            server_requests_in_flight: self
                .parser
                .as_ref()
                .map_or(0, |parser| parser.in_flight(Side::Server)),
            client_requests_in_flight: self
                .parser
                .as_ref()
                .map_or(0, |parser| parser.in_flight(Side::Client)),
            unrecognized: self.unrecognized.map(ProtocolHint::label),
            transport: "pending",
            local: None,
            peer: None,
            error: None,
        };
        if session != 0 {
            row.transport = "tls";
        }
        match &self.addresses {
            AddressLookup::NotYet => {}
            AddressLookup::Found(Addresses::Inet { local, peer }) => {
                row.transport = "inet";
                row.local = Some(local.to_string());
                row.peer = Some(peer.to_string());
            }
            AddressLookup::Found(Addresses::Unix) => row.transport = "unix",
            AddressLookup::Failed(error) => {
                row.transport = "unknown";
                row.error = Some(error.clone());
            }
        }
        row
    }
}

/// Forgets the idlest eighth of `connections` (at least one), those whose last record is oldest, without
/// ending what they were counting (an evicted connection invents no outcome; a later record of it starts
/// it again as a connection adopted mid-way). Returns how many were forgotten.
pub(super) fn evict_idlest(connections: &mut HashMap<ConnectionKey, Connection>) -> usize {
    let count = (connections.len() / 8).max(1).min(connections.len());
    if count == 0 {
        return 0;
    }
    let mut activity: Vec<u64> = connections
        .values()
        .map(|connection| connection.last_active_ns)
        .collect();
    let (_, threshold, _) = activity.select_nth_unstable(count - 1);
    let threshold = *threshold;
    let mut evicted = 0;
    connections.retain(|_, connection| {
        let evict = evicted < count && connection.last_active_ns <= threshold;
        evicted += usize::from(evict);
        !evict
    });
    evicted
}

/// A connection's addresses, looked up once.
#[derive(Debug)]
enum AddressLookup {
    NotYet,
    Found(Addresses),
    Failed(String),
}

/// A connection as `/debug/connections` shows it.
#[derive(Debug, Serialize)]
pub struct ConnectionRow {
    pub pid: u32,
    /// The socket's fd; for TLS plaintext (`tls`), `TLS_FD` (the library call does not say).
    pub fd: u32,
    /// Plaintext read and written through the process's TLS library.
    pub tls: bool,
    /// `server` or `client`: the side of its first request.
    pub role: Option<&'static str>,
    pub server_requests_in_flight: usize,
    pub client_requests_in_flight: usize,
    /// What its bytes look like when no protocol vigil parses claimed them (`tls`, `http2`,
    /// `unknown`) and it serves them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrecognized: Option<&'static str>,
    /// `inet`, `unix`, `unknown` (the lookup failed: see `error`), `pending` (not looked up yet) or
    /// `tls` (plaintext from the TLS library, whose socket is not known).
    pub transport: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The rows of `connections`, sorted by pid and fd.
pub(super) fn rows(connections: &HashMap<ConnectionKey, Connection>) -> Vec<ConnectionRow> {
    let mut keys: Vec<&ConnectionKey> = connections.keys().collect();
    keys.sort_unstable();
    keys.into_iter()
        .map(|key| connections[key].row(*key))
        .collect()
}

/// Looks up the addresses of connections seen since the last call (at most
/// [`MAX_ADDRESS_LOOKUPS_PER_TICK`]), once per connection; returns the unrecognized TCP connections
/// found served (tgid and hint).
pub(super) fn look_up_addresses(
    connections: &mut HashMap<ConnectionKey, Connection>,
) -> Vec<(u32, ProtocolHint)> {
    let mut unrecognized = Vec::new();
    let mut pending: Vec<(u32, u32)> = connections
        .iter()
        .filter(|((_, _, session), connection)| {
            *session == 0 && matches!(connection.addresses, AddressLookup::NotYet)
        })
        .map(|((tgid, fd, _), _)| (*tgid, *fd))
        .take(MAX_ADDRESS_LOOKUPS_PER_TICK)
        .collect();
    // Sorted, so that each process is opened once for all its connections.
    pending.sort_unstable();
    for group in pending.chunk_by(|one, other| one.0 == other.0) {
        let tgid = group[0].0;
        let process = ProcessHandle::open(tgid);
        for &(_, fd) in group {
            let lookup = match &process {
                Ok(process) => match process.addresses(fd) {
                    Ok(addresses) => AddressLookup::Found(addresses),
                    Err(error) => AddressLookup::Failed(error.to_string()),
                },
                Err(error) => AddressLookup::Failed(error.to_string()),
            };
            if let Some(connection) = connections.get_mut(&(tgid, fd, 0)) {
                if let (AddressLookup::Found(Addresses::Inet { .. }), Some(hint)) =
                    (&lookup, connection.unrecognized)
                {
                    unrecognized.push((tgid, hint));
                }
                connection.addresses = lookup;
            }
        }
    }
    unrecognized
}
