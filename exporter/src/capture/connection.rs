//! The connections capture follows, by (tgid, fd): each one's protocol parser and its addresses,
//! looked up once from the socket itself ([`super::sockets`]; at most [`MAX_ADDRESS_LOOKUPS_PER_TICK`]
//! per drain tick, so that a storm of short connections costs a bounded amount), and the rows
//! `/debug/connections` shows.

use foldhash::HashMap;
use serde::Serialize;

use super::{
    protocols::ConnectionParser,
    sockets::{Addresses, ProcessHandle},
};
use crate::metrics::Side;

/// Connections whose addresses are looked up per drain tick, at most (the others wait for the next).
const MAX_ADDRESS_LOOKUPS_PER_TICK: usize = 64;

/// One connection: its parser and addresses.
pub(super) struct Connection {
    pub(super) parser: Box<dyn ConnectionParser>,
    addresses: AddressLookup,
}

impl Connection {
    pub(super) fn new(parser: Box<dyn ConnectionParser>) -> Self {
        Connection {
            parser,
            addresses: AddressLookup::NotYet,
        }
    }

    /// Its row in `/debug/connections`.
    fn row(&self, (pid, fd): (u32, u32)) -> ConnectionRow {
        let mut row = ConnectionRow {
            pid,
            fd,
            role: self.parser.role().map(Side::label),
            server_requests_in_flight: self.parser.in_flight(Side::Server),
            client_requests_in_flight: self.parser.in_flight(Side::Client),
            transport: "pending",
            local: None,
            peer: None,
            error: None,
        };
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
    pub fd: u32,
    /// `server` or `client`: the side of its first request.
    pub role: Option<&'static str>,
    pub server_requests_in_flight: usize,
    pub client_requests_in_flight: usize,
    /// `inet`, `unix`, `unknown` (the lookup failed: see `error`) or `pending` (not looked up yet).
    pub transport: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The rows of `connections`, sorted by pid and fd.
pub(super) fn rows(connections: &HashMap<(u32, u32), Connection>) -> Vec<ConnectionRow> {
    let mut keys: Vec<&(u32, u32)> = connections.keys().collect();
    keys.sort_unstable();
    keys.into_iter()
        .map(|key| connections[key].row(*key))
        .collect()
}

/// Looks up the addresses of connections seen since the last call (at most
/// [`MAX_ADDRESS_LOOKUPS_PER_TICK`]), once per connection.
pub(super) fn look_up_addresses(connections: &mut HashMap<(u32, u32), Connection>) {
    let mut pending: Vec<(u32, u32)> = connections
        .iter()
        .filter(|(_, connection)| matches!(connection.addresses, AddressLookup::NotYet))
        .map(|(key, _)| *key)
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
            if let Some(connection) = connections.get_mut(&(tgid, fd)) {
                connection.addresses = lookup;
            }
        }
    }
}
