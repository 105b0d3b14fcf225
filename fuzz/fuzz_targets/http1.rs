//! HTTP/1: the head parsers on arbitrary bytes (the first byte says whether the capture cut the
//! transfer), then the same input decoded as records (`vigil_fuzz::entries`, at most `IO_DATA_MAX`
//! bytes each, as the kernel copies) and fed to one HTTP/1 connection's parser, closed at the end.
//!
//! Asserts: no panic; no head, pipelined message or body reported past its input; a connection never
//! holds more requests in flight than its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::{
    capture::protocols::{ConnectionParser, http1::Http1Connection, http1::Http1Metrics},
    metrics::{Side, new_registry},
};
use vigil_common::{IoEventKind, io::IO_DATA_MAX};
use vigil_fuzz::{Entry, entries};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    vigil::fuzzing::http1_heads(bytes, flags & 1 != 0);

    let registry = new_registry();
    let mut parser = Http1Connection::new(Http1Metrics::register(&registry));
    let mut out = Vec::new();
    let mut last_ns = 0;
    for entry in entries(bytes, IO_DATA_MAX) {
        let Entry::Record(record) = entry else {
            continue;
        };
        last_ns = record.boot_time_ns;
        // Capture hands a close to `close`, and forgets the connection.
        if record.kind == IoEventKind::Close {
            break;
        }
        parser.transfer(&record, &mut out);
        for side in [Side::Server, Side::Client] {
            assert!(
                parser.in_flight(side) <= 64,
                "{} in flight",
                parser.in_flight(side)
            );
        }
    }
    parser.close(last_ns, &mut out);
});
