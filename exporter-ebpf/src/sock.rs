//! Served connections, from the TCP stack.
//!
//! Hook: `sock/inet_sock_set_state` → [`vigil_sock_state`] (a plain tracepoint; it fires on every TCP
//! state change of every socket of the node, in whatever context the change happens: a syscall,
//! io_uring, softirq). It records, in `SERVED_PORTS` keyed by the socket's network namespace and local
//! port:
//! - an accepted connection: `TCP_SYN_RECV` → `TCP_ESTABLISHED` (a passive open, however the process
//!   then accepts it);
//! - an accepted connection that leaves `TCP_ESTABLISHED` without having received a byte (a TCP health
//!   probe): only for a port already in the map, so client sockets (ephemeral ports) add nothing.
//!
//! Nothing per request, nothing for processes: per connection, two map updates at most. The network
//! namespace is read from the socket (`sk->__sk_common.skc_net.net->ns.inum`) at offsets user space
//! takes from the kernel's BTF and fills into `SOCK_LAYOUT` before loading.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    helpers::bpf_probe_read_kernel, macros::map, macros::tracepoint, maps::LruHashMap,
    programs::TracePointContext,
};
use vigil_common::{
    ServedPortCounts, ServedPortKey, SockLayout,
    process::FIELD_ABSENT,
    sock::{IPPROTO_TCP, SERVED_PORTS_MAX, TCP_ESTABLISHED, TCP_SYN_RECV},
};

/// Filled by user space (`EbpfLoader::override_global`) before load.
#[unsafe(no_mangle)]
static SOCK_LAYOUT: SockLayout = SockLayout::UNKNOWN;

/// Connections accepted per (network namespace, local port).
#[map]
static SERVED_PORTS: LruHashMap<ServedPortKey, ServedPortCounts> =
    LruHashMap::with_max_entries(SERVED_PORTS_MAX, 0);

fn layout() -> SockLayout {
    // SAFETY: a read of our own `.rodata` global; volatile so the compiler does not fold the default.
    unsafe { core::ptr::read_volatile(&SOCK_LAYOUT) }
}

fn field<T>(ctx: &TracePointContext, offset: u32) -> Result<T, i64> {
    if offset == FIELD_ABSENT {
        return Err(0);
    }
    // SAFETY: the offset comes from this kernel's format file for this tracepoint.
    unsafe { ctx.read_at::<T>(offset as usize) }.map_err(i64::from)
}

/// Reads a `T` at `base + offset` of kernel memory.
fn kernel<T>(base: u64, offset: u32) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one is an error, not a fault.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.map_err(i64::from)
}

#[tracepoint]
pub fn vigil_sock_state(ctx: TracePointContext) -> u32 {
    let _ = try_sock_state(&ctx);
    0
}

fn try_sock_state(ctx: &TracePointContext) -> Result<(), i64> {
    let layout = layout();
    if field::<u16>(ctx, layout.protocol)? != IPPROTO_TCP {
        return Ok(());
    }
    let old = field::<i32>(ctx, layout.oldstate)?;
    let new = field::<i32>(ctx, layout.newstate)?;
    let accepted = old == TCP_SYN_RECV && new == TCP_ESTABLISHED;
    if !accepted && old != TCP_ESTABLISHED {
        return Ok(());
    }
    let sock = field::<u64>(ctx, layout.skaddr)?;
    let net = kernel::<u64>(sock, layout.sock_net)?;
    let key = ServedPortKey {
        netns: kernel::<u32>(net, layout.net_inum)?,
        port: field::<u16>(ctx, layout.sport)?,
        reserved: 0,
    };
    if accepted {
        if let Some(counts) = SERVED_PORTS.get_ptr_mut(&key) {
            // SAFETY: a map value, valid while the program runs; every writer adds atomically.
            unsafe {
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*counts).accepted, 1)
            };
        } else {
            let first = ServedPortCounts {
                accepted: 1,
                closed_idle: 0,
            };
            // Two CPUs creating the same entry at the same moment keep one count of the two: the signal
            // asks whether a port serves traffic, which one connection less does not change.
            SERVED_PORTS.insert(&key, &first, 0)?;
        }
        return Ok(());
    }
    // Leaving ESTABLISHED: an accepted connection of a known port that never received a byte.
    let Some(counts) = SERVED_PORTS.get_ptr_mut(&key) else {
        return Ok(());
    };
    if kernel::<u64>(sock, layout.tcp_bytes_received)? == 0 {
        // SAFETY: as above.
        unsafe {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*counts).closed_idle, 1)
        };
    }
    Ok(())
}
