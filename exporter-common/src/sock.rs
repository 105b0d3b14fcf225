//! The TCP connections the node's sockets accept, counted per network namespace and local port: the
//! traffic signal coverage compares with what capture counted. It comes from the TCP stack itself
//! (`sock/inet_sock_set_state`), so it sees connections however they are accepted (a syscall,
//! io_uring, a hand-off) and costs nothing per request.

/// Program names, as the eBPF object exports them and user space looks them up.
pub mod programs {
    /// `sock/inet_sock_set_state`: counts accepted connections, and those closed with no byte received.
    pub const SOCK_STATE: &str = "vigil_sock_state";
}

/// `TCP_ESTABLISHED` from `<net/tcp_states.h>`.
pub const TCP_ESTABLISHED: i32 = 1;
/// `TCP_SYN_RECV`: a passive open's socket before the handshake completes (an accepted connection
/// goes from it to [`TCP_ESTABLISHED`]).
pub const TCP_SYN_RECV: i32 = 3;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;
/// Entries of [`crate::SERVED_PORTS_MAP`] (an LRU map: the least recently used port goes first) as
/// compiled; user space sets the size it loads with (`ebpf.served_ports_entries`).
pub const SERVED_PORTS_MAX: u32 = 16_384;

/// Byte offsets the sock program reads: fields of the `sock/inet_sock_set_state` record (from its
/// tracefs `format` file) and members of kernel structures (from the kernel's BTF), filled by user
/// space before loading. [`crate::process::FIELD_ABSENT`] where unknown (the program is then not
/// loaded).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockLayout {
    /// `skaddr` (`const void *`, the `struct sock`).
    pub skaddr: u32,
    /// `oldstate` (`int`).
    pub oldstate: u32,
    /// `newstate` (`int`).
    pub newstate: u32,
    /// `sport` (`__u16`, host order: the local port).
    pub sport: u32,
    /// `protocol` (`__u16`).
    pub protocol: u32,
    /// `struct sock` → `__sk_common.skc_net.net` (`struct net *`).
    pub sock_net: u32,
    /// `struct net` → `ns.inum` (`unsigned int`: the inode `/proc/PID/ns/net` names).
    pub net_inum: u32,
    /// `struct tcp_sock` → `bytes_received` (`u64`).
    pub tcp_bytes_received: u32,
}

impl SockLayout {
    /// A layout where nothing is known.
    pub const UNKNOWN: Self = Self {
        skaddr: crate::process::FIELD_ABSENT,
        oldstate: crate::process::FIELD_ABSENT,
        newstate: crate::process::FIELD_ABSENT,
        sport: crate::process::FIELD_ABSENT,
        protocol: crate::process::FIELD_ABSENT,
        sock_net: crate::process::FIELD_ABSENT,
        net_inum: crate::process::FIELD_ABSENT,
        tcp_bytes_received: crate::process::FIELD_ABSENT,
    };
}

/// A served port: the network namespace (its inode) and the local port connections were accepted on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServedPortKey {
    pub netns: u32,
    pub port: u16,
    /// Explicit padding; always 0.
    pub reserved: u16,
}

/// Connections of a served port since the entry was created.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServedPortCounts {
    /// Connections accepted (the handshake completed: `TCP_SYN_RECV` → `TCP_ESTABLISHED`).
    pub accepted: u64,
    /// Accepted connections that left `TCP_ESTABLISHED` without having received a byte (a TCP
    /// health probe, a port scan): not traffic.
    pub closed_idle: u64,
}

#[cfg(feature = "user")]
// SAFETY: plain-old-data: `#[repr(C)]`, integers only, no implicit padding (checked by size tests).
unsafe impl aya::Pod for SockLayout {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for ServedPortKey {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for ServedPortCounts {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<SockLayout>(), 8 * 4);
        assert_eq!(core::mem::size_of::<ServedPortKey>(), 4 + 2 + 2);
        assert_eq!(core::mem::size_of::<ServedPortCounts>(), 2 * 8);
    }
}
