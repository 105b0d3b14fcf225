//! vigil's kernel programs. Each module is one probe family and opens with the hooks it uses, what it
//! records and which maps it writes. Types and names shared with user space live in `vigil-common`.
#![no_std]
#![no_main]
// `core::intrinsics::atomic_or` and `atomic_xadd`: the atomic read-modify-writes the programs need
// (see `tracked` and `sock`).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod io;
mod process;
mod sock;
mod tls;
mod tracked;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach this; it exists only to satisfy `no_std`.
    loop {}
}

/// The kernel only allows GPL-only helpers to GPL-compatible programs.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
