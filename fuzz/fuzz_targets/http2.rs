//! HTTP/2 and gRPC, in two modes chosen by the first byte's low bit:
//! - a connection: the rest decoded as records (`vigil_fuzz::entries`, at most `IO_DATA_MAX_HTTP2`
//!   bytes each, as the kernel copies for HTTP/2 connections), received and sent; the first must start
//!   HTTP/2 (`http2::starts`: a client or server preface, or a run of whole frames), as capture
//!   recognises it, and all are then fed to the connection's parser (frames across transfers, HEADERS
//!   and CONTINUATION, HPACK per direction, gRPC status), closed at the end;
//! - HPACK alone: each record's bytes are a header block (a cut one, `op & 0x80`, is a block not
//!   captured whole), decoded in order by one direction's decoder, from the start or adopted mid-way
//!   (the first byte's second bit).
//!
//! Asserts: no panic; streams in flight stay within the connection's bound; a `:path` read is a
//! plausible one (never a label made of bytes from a wrong table).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::{
    capture::protocols::{
        ConnectionParser,
        http2::{self, Http2Connection, Http2Metrics},
    },
    metrics::{Side, new_registry},
};
use vigil_common::{IoEventKind, io::IO_DATA_MAX_HTTP2};
use vigil_fuzz::{Entry, entries};

/// Streams one connection follows at most (`MAX_STREAMS_PER_CONNECTION`).
const MAX_STREAMS: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let records = entries(bytes, IO_DATA_MAX_HTTP2)
        .into_iter()
        .filter_map(|entry| match entry {
            Entry::Record(record) => Some(record),
            Entry::Control { .. } => None,
        });
    if flags & 1 != 0 {
        let blocks: Vec<_> = records
            .map(|record| (!record.is_truncated()).then_some(record.data))
            .collect();
        vigil::fuzzing::hpack_blocks(&blocks, flags & 2 == 0);
        return;
    }

    let registry = new_registry();
    let metrics = Http2Metrics::register(&registry);
    let mut parser = None;
    let mut out = Vec::new();
    let mut last_ns = 0;
    for record in records {
        last_ns = record.boot_time_ns;
        // Capture hands a close to `close`, and forgets the connection.
        if record.kind == IoEventKind::Close {
            break;
        }
        let parser = match &mut parser {
            Some(parser) => parser,
            None => {
                let Some(start) = http2::starts(&record) else {
                    return;
                };
                parser.insert(Http2Connection::new(metrics.clone(), &record, start))
            }
        };
        parser.transfer(&record, &mut out);
        for side in [Side::Server, Side::Client] {
            assert!(parser.in_flight(side) <= MAX_STREAMS);
        }
    }
    if let Some(parser) = &mut parser {
        parser.close(last_ns, &mut out);
    }
});
