//! Socket I/O of instrumented processes: the bytes at the start of each read and write, from which user
//! space recognises and pairs HTTP/1.x requests and responses.

/// Program names, as the eBPF object exports them and user space looks them up.
pub mod programs {
    /// `syscalls/sys_exit_{read,recvfrom}`: records the bytes received.
    pub const RECEIVE_EXIT: &str = "vigil_receive_exit";
    /// `syscalls/sys_exit_readv`: records the bytes received, from the first buffer of the vector.
    pub const RECEIVEV_EXIT: &str = "vigil_receivev_exit";
    /// `syscalls/sys_exit_recvmsg`: records the bytes received, from the first buffer of the message.
    pub const RECEIVEMSG_EXIT: &str = "vigil_receivemsg_exit";
    /// `syscalls/sys_exit_{write,sendto}`: records the bytes sent from one buffer.
    pub const SEND_EXIT: &str = "vigil_send_exit";
    /// `syscalls/sys_exit_writev`: records the bytes sent, from the first buffer of the vector.
    pub const SENDV_EXIT: &str = "vigil_sendv_exit";
    /// `syscalls/sys_exit_sendmsg`: records the bytes sent, from the first buffer of the message.
    pub const SENDMSG_EXIT: &str = "vigil_sendmsg_exit";
    /// `syscalls/sys_exit_sendfile64`: records how many bytes were sent from a file (no data).
    pub const SENDFILE_EXIT: &str = "vigil_sendfile_exit";
    /// `syscalls/sys_enter_close`: records that an fd of an instrumented process was closed.
    pub const CLOSE: &str = "vigil_close";
    /// uprobe on `SSL_read` and `SSL_write`: saves the call's session and buffer.
    pub const SSL_CALL: &str = "vigil_ssl_call";
    /// uprobe on `SSL_read_ex` and `SSL_write_ex`: saves the call's session, buffer and count pointer.
    pub const SSL_CALL_EX: &str = "vigil_ssl_call_ex";
    /// uretprobe on `SSL_read` and `SSL_read_ex`: records the plaintext read.
    pub const SSL_READ_RETURN: &str = "vigil_ssl_read_return";
    /// uretprobe on `SSL_write` and `SSL_write_ex`: records the plaintext written.
    pub const SSL_WRITE_RETURN: &str = "vigil_ssl_write_return";
    /// uprobe on `SSL_free`: records the end of a session.
    pub const SSL_FREE: &str = "vigil_ssl_free";
}

/// Most bytes of one transfer copied to user space, for a connection not known to be HTTP/2: the whole
/// head of a typical request or response (request line or status line, and the headers that give the
/// body's length), from which user space also learns where the body starts. Copying is cheap next to a
/// program run (measured: ~50 ns for 128 bytes against ~600 ns per run); what costs is ring space,
/// hence records in size classes.
pub const IO_DATA_MAX: usize = 1024;
/// Most bytes of one transfer copied for an HTTP/2 connection (one in [`HTTP2_CONNECTIONS_MAP`]): its
/// frames are packed back to back (a hundred streams' HEADERS in one read), and user space must see
/// every frame head to keep its place; past this a direction's frames are lost until they can be found
/// again.
///
/// [`HTTP2_CONNECTIONS_MAP`]: crate::HTTP2_CONNECTIONS_MAP
pub const IO_DATA_MAX_HTTP2: usize = 16 * 1024;
/// Most bytes of one vectored transfer (`writev`, `sendmsg`, … filling several buffers) copied for an
/// HTTP/2 connection, from all its buffers in order: such a record is put together in a per-CPU map
/// value, which is at most 32 KiB (twice this, for the verifier's bounds, and a header).
pub const IO_DATA_MAX_HTTP2_VECTOR: usize = 8 * 1024;
/// The data capacities of the record sizes, smallest first: a transfer goes in the smallest record
/// its bytes fit in (up to its connection's maximum), so that a record is never more than twice its
/// data (or 128 bytes of data) long.
pub const IO_DATA_CLASSES: [usize; 8] = [
    128,
    256,
    512,
    IO_DATA_MAX,
    2048,
    4096,
    8192,
    IO_DATA_MAX_HTTP2,
];

/// The first eight bytes of the HTTP/2 client preface (`PRI * HTTP/2.0…`), as a little-endian `u64`:
/// a transfer starting with them makes its connection an HTTP/2 one.
pub const HTTP2_PREFACE_START: u64 = u64::from_le_bytes(*b"PRI * HT");

/// The key of a connection in [`HTTP2_CONNECTIONS_MAP`]: its tgid and fd, or, for TLS plaintext, its
/// session with the top bit set (user-space pointers never have it; tgid and fd keys never do either).
///
/// [`HTTP2_CONNECTIONS_MAP`]: crate::HTTP2_CONNECTIONS_MAP
pub const fn connection_key(tgid: u32, fd: u32, session: u64) -> u64 {
    match session {
        0 => ((tgid as u64) << 32) | fd as u64,
        _ => session | (1 << 63),
    }
}

/// What an [`IoEvent`] reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoEventKind {
    /// `length` bytes were read from `fd`.
    Receive = 1,
    /// `length` bytes were written to `fd`.
    Send = 2,
    /// `fd` was closed.
    Close = 3,
}

impl IoEventKind {
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(IoEventKind::Receive),
            2 => Some(IoEventKind::Send),
            3 => Some(IoEventKind::Close),
            _ => None,
        }
    }
}

/// What every I/O record starts with: one transfer (or close) of an instrumented process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoEventHeader {
    /// An [`IoEventKind`].
    pub kind: u32,
    /// Thread-group id (host pid) of the process.
    pub tgid: u32,
    pub fd: u32,
    /// Bytes of the record's data that are valid: at most its capacity and at most `length`.
    pub captured: u32,
    /// `bpf_ktime_get_boot_ns` when the syscall returned (entered, for a close).
    pub boot_time_ns: u64,
    /// Bytes transferred (the syscall's return value).
    pub length: u64,
    /// For TLS plaintext (read or written through the TLS library, not a socket): the library's session
    /// (`SSL *`), which stands for the connection; `fd` is then [`TLS_FD`]. 0 for socket I/O.
    pub session: u64,
}

/// The `fd` of a TLS plaintext record: the library call does not say which socket it used.
pub const TLS_FD: u32 = u32::MAX;

/// An I/O record as the `IO_EVENTS` ring buffer carries it: the header, then the first bytes
/// transferred. `CAPACITY` is one of [`IO_DATA_CLASSES`]; user space reads the header, then `captured`
/// bytes of data.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoEvent<const CAPACITY: usize> {
    pub header: IoEventHeader,
    pub data: [u8; CAPACITY],
}

/// Where the I/O programs find a syscall's first two arguments (fd and buffer) and its return value in
/// the task's saved user registers (`struct pt_regs`), which they load directly (no enter hook, no
/// helper call to read the tracepoint record). Filled by user space before loading: the offsets are
/// the architecture's ABI, set for the architecture user space was built for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallLayout {
    pub regs_fd: u32,
    pub regs_buffer: u32,
    /// The return value, at syscall exit.
    pub regs_ret: u32,
}

impl SyscallLayout {
    /// Offsets that make every program return at once, for an architecture vigil does not know.
    pub const UNKNOWN: SyscallLayout = SyscallLayout {
        regs_fd: super::process::FIELD_ABSENT,
        regs_buffer: super::process::FIELD_ABSENT,
        regs_ret: super::process::FIELD_ABSENT,
    };
}

#[cfg(feature = "user")]
// SAFETY: plain old data, `#[repr(C)]` without padding.
unsafe impl aya::Pod for SyscallLayout {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<IoEventHeader>(), 4 * 4 + 3 * 8);
        assert_eq!(
            core::mem::size_of::<IoEvent<IO_DATA_MAX_HTTP2>>(),
            core::mem::size_of::<IoEventHeader>() + IO_DATA_MAX_HTTP2
        );
        assert_eq!(
            core::mem::size_of::<IoEvent<{ IO_DATA_CLASSES[0] }>>(),
            core::mem::size_of::<IoEventHeader>() + IO_DATA_CLASSES[0]
        );
        assert!(
            IO_DATA_CLASSES
                .windows(2)
                .all(|pair| pair[1] == 2 * pair[0])
        );
        assert!(IO_DATA_CLASSES.contains(&IO_DATA_MAX));
        assert_eq!(
            IO_DATA_CLASSES[IO_DATA_CLASSES.len() - 1],
            IO_DATA_MAX_HTTP2
        );
        assert_eq!(&HTTP2_PREFACE_START.to_le_bytes(), b"PRI * HT");
        assert_eq!(core::mem::size_of::<SyscallLayout>(), 3 * 4);
    }

    #[test]
    fn event_kinds_round_trip() {
        for kind in [IoEventKind::Receive, IoEventKind::Send, IoEventKind::Close] {
            assert_eq!(IoEventKind::from_u32(kind as u32), Some(kind));
        }
        assert_eq!(IoEventKind::from_u32(0), None);
    }
}
