//! The /proc text vigil parses itself (not through the `procfs` crate), each on the same arbitrary
//! text: `/proc/PID/maps` (which `libssl.so*` a process maps, for the TLS probes), `/proc/PID/cgroup`
//! (its `0::` line, then the container in it), the `/proc/PID/ns/net` link target, the served sockets
//! of `/proc/PID/net/tcp`, and `OTEL_RESOURCE_ATTRIBUTES` from `/proc/PID/environ` (with
//! percent-decoding).
//!
//! Asserts: no panic; what each finds is part of the text (the library path, the cgroup path, the
//! socket inodes, the attribute keys); a container id is 64 hex digits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vigil::fuzzing::proc_text(&String::from_utf8_lossy(data));
});
