//! TLS plaintext of instrumented processes, from the TLS library's own API: what `SSL_read` returned
//! and what `SSL_write` accepted, before encryption and after decryption, for capture to parse like
//! socket I/O. The socket I/O of the same connections (ciphertext) parses as nothing, so nothing is
//! counted twice.
//!
//! Hooks (uprobes; user space attaches them per distinct binary that instrumented processes map: a
//! `libssl.so.*`, or an executable that links OpenSSL statically, such as node):
//! - `SSL_read`, `SSL_write` → [`vigil_ssl_call`]; `SSL_read_ex`, `SSL_write_ex` →
//!   [`vigil_ssl_call_ex`]: the session, the buffer and (`_ex`) where the byte count will be written,
//!   saved in `SSL_CALLS` by thread;
//! - their returns → [`vigil_ssl_read_return`] / [`vigil_ssl_write_return`]: when the call moved bytes
//!   (a positive return; for `_ex`, a return of 1 and the count written), submits an `IoEvent` with the
//!   first bytes and the session (`IoEventHeader::session`, `fd` = `TLS_FD`), as the socket programs
//!   do (the same size classes and HTTP/2 rules). A call that failed or wants to be retried (during the
//!   handshake, `SSL_ERROR_WANT_READ`) moved nothing and submits nothing: a retried write counts once;
//! - `SSL_free` → [`vigil_ssl_free`]: the session's connection ends (a close record).
//!
//! Every program returns at once for a process vigil does not capture (`TRACKED_TGIDS`), so one uprobe
//! set serves every process mapping the binary.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, uprobe, uretprobe},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
};
use vigil_common::IoEventKind;

use crate::{
    io::{submit_plaintext, submit_session_end},
    tracked::is_tracked,
};

/// A TLS call in flight on a thread.
#[repr(C)]
#[derive(Clone, Copy)]
struct SslCall {
    session: u64,
    buffer: u64,
    /// `_ex` variants: where the library writes how many bytes moved; 0 otherwise.
    count_at: u64,
}

/// TLS calls in flight, by `pid_tgid` (a thread is in at most one). An LRU: the entry of a thread that
/// never returned (killed inside the call) gives way to new calls instead of filling the map.
#[map]
static SSL_CALLS: LruHashMap<u64, SslCall> = LruHashMap::with_max_entries(16 * 1024, 0);

/// The current tgid when vigil captures it.
fn tracked_tgid() -> Option<u32> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    is_tracked(tgid).then_some(tgid)
}

#[uprobe]
pub fn vigil_ssl_call(ctx: ProbeContext) -> u32 {
    enter(&ctx, false);
    0
}

#[uprobe]
pub fn vigil_ssl_call_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, true);
    0
}

#[uretprobe]
pub fn vigil_ssl_read_return(ctx: RetProbeContext) -> u32 {
    leave(&ctx, IoEventKind::Receive);
    0
}

#[uretprobe]
pub fn vigil_ssl_write_return(ctx: RetProbeContext) -> u32 {
    leave(&ctx, IoEventKind::Send);
    0
}

#[uprobe]
pub fn vigil_ssl_free(ctx: ProbeContext) -> u32 {
    if let (Some(tgid), Some(session)) = (tracked_tgid(), ctx.arg::<u64>(0))
        && session != 0
    {
        submit_session_end(tgid, session);
    }
    0
}

/// At a call's entry: saves its session, buffer and (`ex`) count pointer for its return.
#[inline(always)]
fn enter(ctx: &ProbeContext, ex: bool) {
    if tracked_tgid().is_none() {
        return;
    }
    let (Some(session), Some(buffer)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return;
    };
    let count_at = match ex {
        true => ctx.arg::<u64>(3).unwrap_or(0),
        false => 0,
    };
    let call = SslCall {
        session,
        buffer,
        count_at,
    };
    // A full map loses this call's record only; counted as the ring's losses are.
    if SSL_CALLS
        .insert(&bpf_get_current_pid_tgid(), &call, 0)
        .is_err()
    {
        crate::process::count_lost(vigil_common::LostSource::IoEvents);
    }
}

/// At a call's return: submits what it moved.
#[inline(always)]
fn leave(ctx: &RetProbeContext, kind: IoEventKind) {
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(call) = (unsafe { SSL_CALLS.get(&thread) }).copied() else {
        return;
    };
    let _ = SSL_CALLS.remove(&thread);
    let Some(tgid) = tracked_tgid() else {
        return;
    };
    // An `int`: the low 32 bits of the return register.
    let returned = i64::from(ctx.ret::<u64>() as i32);
    let moved = match call.count_at {
        0 => returned,
        count_at if returned == 1 => {
            // SAFETY: a read of user memory through the fault-tolerant helper.
            unsafe { bpf_probe_read_user(count_at as *const u64) }.map_or(0, |count| count as i64)
        }
        _ => 0,
    };
    if moved > 0 {
        submit_plaintext(kind, tgid, call.session, call.buffer, moved as u64);
    }
}
