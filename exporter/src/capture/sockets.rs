//! The addresses of a captured connection: the local and peer address of a process's socket.
//!
//! The socket is duplicated out of the process (`pidfd_getfd`, which `CAP_SYS_PTRACE` allows) and asked
//! `getsockname`/`getpeername`, then the duplicate is closed at once: exact in any network namespace
//! (a pod's), one lookup per connection, no scan of `/proc/PID/net/tcp` (which lists every socket of
//! the namespace, `TIME_WAIT` ones included). The fd number is the one the records carried: if the
//! process closed it and opened another under the same number since, the lookup describes the new
//! one (the close record, applied first, would then have started a new connection anyway).

use std::{
    net::SocketAddr,
    os::fd::{AsFd, OwnedFd},
};

use rustix::{
    net::{AddressFamily, SocketAddrAny, getpeername, getsockname},
    process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open},
};

/// What a captured fd is, as far as its connection's addresses go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addresses {
    /// A TCP (or other IP) socket: its local and peer address.
    Inet { local: SocketAddr, peer: SocketAddr },
    /// A Unix domain socket (no ports).
    Unix,
}

/// Why a connection's addresses could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The process is gone, or vigil may not look into it.
    #[error("cannot open process {tgid}: {source}")]
    Process {
        tgid: u32,
        #[source]
        source: rustix::io::Errno,
    },
    /// The fd is closed already, or vigil may not duplicate it.
    #[error("cannot get fd {fd} of process {tgid}: {source}")]
    Descriptor {
        tgid: u32,
        fd: u32,
        #[source]
        source: rustix::io::Errno,
    },
    /// Not a socket (a pipe or a file the process wrote HTTP to), or not a connected one.
    #[error("fd {fd} of process {tgid} is not a connected socket: {source}")]
    NotConnected {
        tgid: u32,
        fd: u32,
        #[source]
        source: rustix::io::Errno,
    },
    /// A socket of another family (neither IP nor Unix).
    #[error("fd {fd} of process {tgid} is a socket of another family")]
    OtherFamily { tgid: u32, fd: u32 },
}

/// A process, opened once for the lookups of several of its fds.
pub struct ProcessHandle {
    tgid: u32,
    pidfd: OwnedFd,
}

impl ProcessHandle {
    pub fn open(tgid: u32) -> Result<ProcessHandle, SocketError> {
        let process = |source| SocketError::Process { tgid, source };
        let pid = Pid::from_raw(tgid as i32).ok_or(process(rustix::io::Errno::SRCH))?;
        let pidfd = pidfd_open(pid, PidfdFlags::empty()).map_err(process)?;
        Ok(ProcessHandle { tgid, pidfd })
    }

    /// The addresses of the process's socket `fd`.
    pub fn addresses(&self, fd: u32) -> Result<Addresses, SocketError> {
        let tgid = self.tgid;
        let socket = pidfd_getfd(self.pidfd.as_fd(), fd as i32, PidfdGetfdFlags::empty())
            .map_err(|source| SocketError::Descriptor { tgid, fd, source })?;
        let not_connected = |source| SocketError::NotConnected { tgid, fd, source };
        let local = getsockname(&socket).map_err(not_connected)?;
        let peer = getpeername(&socket)
            .map_err(not_connected)?
            .ok_or(not_connected(rustix::io::Errno::NOTCONN))?;
        classify(local, peer).ok_or(SocketError::OtherFamily { tgid, fd })
    }
}

fn classify(local: SocketAddrAny, peer: SocketAddrAny) -> Option<Addresses> {
    if local.address_family() == AddressFamily::UNIX {
        return Some(Addresses::Unix);
    }
    Some(Addresses::Inet {
        local: SocketAddr::try_from(local).ok()?,
        peer: SocketAddr::try_from(peer).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
        os::{fd::AsRawFd, unix::net::UnixStream},
    };

    use super::*;

    /// vigil's own sockets, looked up through its own pidfd: the same path as another process's
    /// (pidfd_getfd on oneself needs no privilege).
    #[test]
    fn tcp_socket_addresses_both_ways() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(b"x").unwrap();
        server.read_exact(&mut [0]).unwrap();
        let me = ProcessHandle::open(std::process::id()).unwrap();
        assert_eq!(
            me.addresses(server.as_raw_fd() as u32).unwrap(),
            Addresses::Inet {
                local: server.local_addr().unwrap(),
                peer: client.local_addr().unwrap()
            }
        );
        assert_eq!(
            me.addresses(client.as_raw_fd() as u32).unwrap(),
            Addresses::Inet {
                local: client.local_addr().unwrap(),
                peer: listener.local_addr().unwrap()
            }
        );
    }

    #[test]
    fn unix_sockets_files_and_closed_fds() {
        let me = ProcessHandle::open(std::process::id()).unwrap();
        let (left, _right) = UnixStream::pair().unwrap();
        assert_eq!(
            me.addresses(left.as_raw_fd() as u32).unwrap(),
            Addresses::Unix
        );
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let error = me.addresses(file.as_raw_fd() as u32).unwrap_err();
        assert!(matches!(error, SocketError::NotConnected { .. }), "{error}");
        let closed = file.as_raw_fd() as u32;
        drop(file);
        let error = me.addresses(closed).unwrap_err();
        assert!(matches!(error, SocketError::Descriptor { .. }), "{error}");
    }

    #[test]
    fn a_listening_socket_is_not_a_connection() {
        let me = ProcessHandle::open(std::process::id()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let error = me.addresses(listener.as_raw_fd() as u32).unwrap_err();
        assert!(matches!(error, SocketError::NotConnected { .. }), "{error}");
    }
}
