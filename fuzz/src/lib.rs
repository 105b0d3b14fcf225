//! The byte encoding the fuzz targets read I/O records from (also what `corpus/` seeds are written in,
//! by `seeds.py`): a sequence of entries, each
//!
//! ```text
//! [op: u8] [time step: i8, ms] [captured bytes: u16 LE] [the bytes…] [if op & 0x80: missing bytes: u16 LE]
//! ```
//!
//! `op & 3`: 0 a receive, 1 a send, 2 a close, 3 a control step (a target's own, e.g. a heartbeat);
//! `op >> 2 & 7`: the connection (fd; 7 is TLS plaintext, `TLS_FD` with a session); `op >> 5 & 3`: the
//! process. A record's `length` is its captured bytes, plus 1 + the missing bytes when the kernel's copy
//! was cut (`op & 0x80`). Time steps are signed: records of different CPUs reach the ring slightly out
//! of order. Input that ends mid-entry ends the sequence.

use vigil::kernel::IoRecord;
use vigil_common::{IoEventKind, io::TLS_FD};

/// The processes (tgids) records come from.
pub const TGIDS: [u32; 4] = [4242, 4243, 77, 1];

/// One entry of the input.
#[derive(Debug)]
pub enum Entry {
    Record(IoRecord),
    /// A control step: its selector (`op >> 2 & 0x1f`), and the time step's byte as an argument.
    Control {
        selector: u8,
        argument: u8,
    },
}

/// Decodes `data` into entries, each record's captured bytes cut at `max_captured` (the kernel copies
/// at most that many).
pub fn entries(mut data: &[u8], max_captured: usize) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut at_ns: u64 = 1_000_000_000_000;
    while let [op, step, low, high, rest @ ..] = data {
        let captured = usize::from(u16::from_le_bytes([*low, *high])).min(rest.len());
        let (bytes, rest) = rest.split_at(captured);
        data = rest;
        at_ns = at_ns.saturating_add_signed(i64::from(*step as i8) * 1_000_000);
        let kind = match op & 3 {
            0 => IoEventKind::Receive,
            1 => IoEventKind::Send,
            2 => IoEventKind::Close,
            _ => {
                entries.push(Entry::Control {
                    selector: op >> 2 & 0x1f,
                    argument: *step,
                });
                continue;
            }
        };
        let mut length = bytes.len() as u64;
        if op & 0x80 != 0 {
            let [low, high, rest @ ..] = data else { break };
            data = rest;
            length += 1 + u64::from(u16::from_le_bytes([*low, *high]));
        }
        let connection = u32::from(op >> 2 & 7);
        let tgid = TGIDS[usize::from(op >> 5 & 3)];
        let (fd, session) = match connection {
            7 => (TLS_FD, 0x7f00_0000_1000 + u64::from(tgid)),
            fd => (fd + 3, 0),
        };
        let kept = bytes.len().min(max_captured);
        entries.push(Entry::Record(IoRecord {
            kind,
            tgid,
            fd,
            boot_time_ns: at_ns,
            length: match kind {
                IoEventKind::Close => 0,
                _ => length,
            },
            data: match kind {
                IoEventKind::Close => Vec::new(),
                _ => bytes[..kept].to_vec(),
            },
            session,
        }));
    }
    entries
}
