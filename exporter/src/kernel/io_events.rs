//! The I/O ring: the socket transfers and closes of captured processes, as the capture programs
//! (`exporter-ebpf/src/io.rs`) record them, read into [`IoRecord`]s for capture.
//!
//! Metrics: `vigil_io_events_total{kind}` (registered by [`super::KernelMetrics`]).

use aya::maps::{MapData, RingBuf};
use prometheus::{IntCounter, IntCounterVec};
use vigil_common::{IoEventHeader, IoEventKind};

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
    /// The TLS session of plaintext read or written through the TLS library (`fd` is then `TLS_FD`);
    /// 0 for socket I/O.
    pub session: u64,
}

impl IoRecord {
    /// Whether the transfer moved more bytes than `data` holds.
    pub fn is_truncated(&self) -> bool {
        self.length > self.data.len() as u64
    }

    /// Reads a record as the kernel wrote it (an `IoEventHeader`, then data) into `data`, a buffer to
    /// reuse; `None` if it is malformed.
    pub(super) fn parse(record: &[u8], mut data: Vec<u8>) -> Option<IoRecord> {
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
            session: header.session,
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

impl IoEvents {
    pub(super) fn new(ring: RingBuf<MapData>, io_events: &IntCounterVec) -> Self {
        IoEvents {
            ring,
            counted: IoEventCounters::new(io_events),
            spare: Vec::new(),
        }
    }
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
