//! Reading one process from /proc: its identity (pid, start time), parent, namespaced pid, executable,
//! command line and cgroup; and on demand its sockets, network namespace and environment.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ffi::OsString,
    path::{Path, PathBuf},
};

use procfs::{
    ProcError,
    process::{FDTarget, Process},
};
use serde::Serialize;

use super::cgroup::ContainerRef;

/// Longest command line kept (bytes); longer ones are cut at a character boundary.
const CMDLINE_MAX: usize = 256;

/// A process as the kernel names it over its whole life: a pid alone can be reused by another program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ProcessIdentity {
    /// Host pid (thread-group id in the initial PID namespace).
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
}

/// What discovery knows about a live process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    pub identity: ProcessIdentity,
    /// Host pid of the parent.
    pub parent_pid: u32,
    /// The pid inside the process's own (innermost) PID namespace, when it differs from the host pid.
    pub ns_pid: Option<u32>,
    /// `/proc/PID/exe`; `None` for kernel threads, or when /proc refuses it (then exe selectors cannot match).
    pub exe: Option<PathBuf>,
    /// Arguments joined by spaces, at most 256 bytes. It may hold secrets (`--password=…`): shown only
    /// where explicitly allowed; elsewhere [`ProcessInfo::redacted_command_line`].
    pub cmdline: String,
    /// How many arguments follow the program name (argv[0]).
    pub arguments: usize,
    /// The cgroup v2 path (`0::` line of `/proc/PID/cgroup`).
    pub cgroup: Option<String>,
    /// Container and pod, parsed from `cgroup`.
    pub container: ContainerRef,
}

impl ProcessInfo {
    /// The command line without its arguments: the executable (`/proc/PID/exe`, else the program name
    /// the process gave itself) and how many arguments followed, e.g. `/usr/bin/python3 [+3 arguments]`.
    pub fn redacted_command_line(&self) -> String {
        let program = match &self.exe {
            Some(exe) => exe.display().to_string(),
            None => self
                .cmdline
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_owned(),
        };
        match self.arguments {
            0 => program,
            1 => format!("{program} [+1 argument]"),
            n => format!("{program} [+{n} arguments]"),
        }
    }
}

/// Why a process could not be read; each is a reason label, and none is final (the caller retries).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The process is gone, or was never there.
    #[error("process not found")]
    NotFound,
    /// /proc refused (missing capability, or hidepid).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The file was read half-way (the process was exiting, or execing).
    #[error("incomplete read: {0}")]
    Incomplete(String),
    /// The id is a thread of another process, not a process.
    #[error("pid {pid} is a thread of process {tgid}")]
    Thread { pid: u32, tgid: u32 },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl ReadError {
    /// The `reason` label of this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ReadError::NotFound => "not_found",
            ReadError::PermissionDenied(_) => "permission_denied",
            ReadError::Incomplete(_) => "incomplete",
            ReadError::Thread { .. } => "thread",
            ReadError::Other(_) => "other",
        }
    }
}

impl ReadError {
    /// What failing to read `path` (a file or link under /proc) with `error` means.
    fn of_file(path: &Path, error: std::io::Error) -> ReadError {
        match error.kind() {
            std::io::ErrorKind::NotFound => ReadError::NotFound,
            std::io::ErrorKind::PermissionDenied => {
                ReadError::PermissionDenied(path.display().to_string())
            }
            _ => ReadError::Other(format!("{}: {error}", path.display())),
        }
    }
}

impl From<ProcError> for ReadError {
    fn from(error: ProcError) -> Self {
        match error {
            ProcError::NotFound(_) => ReadError::NotFound,
            ProcError::PermissionDenied(path) => ReadError::PermissionDenied(
                path.map(|p| p.display().to_string()).unwrap_or_default(),
            ),
            ProcError::Incomplete(path) => {
                ReadError::Incomplete(path.map(|p| p.display().to_string()).unwrap_or_default())
            }
            ProcError::Io(error, _) if error.raw_os_error() == Some(libc::ESRCH) => {
                ReadError::NotFound
            }
            other => ReadError::Other(other.to_string()),
        }
    }
}

/// Reads processes from a procfs mount (`/proc`, or a fixture tree in tests).
#[derive(Clone, Debug)]
pub struct ProcReader {
    root: PathBuf,
}

impl ProcReader {
    pub fn new(root: &Path) -> Self {
        ProcReader {
            root: root.to_owned(),
        }
    }

    /// The identity of `pid` now, reading only `/proc/PID/stat`.
    pub fn identity(&self, pid: u32) -> Result<ProcessIdentity, ReadError> {
        let stat = self.open(pid)?.stat()?;
        Ok(ProcessIdentity {
            pid,
            start_ticks: stat.starttime,
        })
    }

    /// Whether `identity` is alive: same pid, same start time, not a zombie.
    pub fn is_alive(&self, identity: ProcessIdentity) -> Result<bool, ReadError> {
        match self
            .open(identity.pid)
            .and_then(|process| Ok(process.stat()?))
        {
            Ok(stat) => {
                Ok(stat.starttime == identity.start_ticks && !matches!(stat.state, 'Z' | 'X'))
            }
            Err(ReadError::NotFound) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Everything discovery records about `pid`; zombies and kernel threads' missing `exe` are not errors,
    /// a zombie is reported as [`ReadError::NotFound`] (it is gone in all but name).
    pub fn read(&self, pid: u32) -> Result<ProcessInfo, ReadError> {
        let process = self.open(pid)?;
        let stat = process.stat()?;
        if matches!(stat.state, 'Z' | 'X') {
            return Err(ReadError::NotFound);
        }
        let status = process.status()?;
        if status.tgid as u32 != pid {
            return Err(ReadError::Thread {
                pid,
                tgid: status.tgid as u32,
            });
        }
        let ns_pid = status
            .nspid
            .and_then(|pids| pids.last().copied())
            .map(|ns_pid| ns_pid as u32)
            .filter(|&ns_pid| ns_pid != pid);
        let exe = match process.exe() {
            Ok(exe) => Some(exe),
            Err(ProcError::NotFound(_)) => None,
            // Some sandboxes deny it even to root (another user namespace owns the process): the
            // process is still recorded, it just cannot be selected by executable.
            Err(ProcError::PermissionDenied(_)) => None,
            Err(error) => return Err(error.into()),
        };
        let argv = process.cmdline().unwrap_or_default();
        let arguments = argv.len().saturating_sub(1);
        let cmdline = truncate(argv.join(" "), CMDLINE_MAX);
        let cgroup = std::fs::read_to_string(self.root.join(pid.to_string()).join("cgroup"))
            .ok()
            .and_then(|text| unified_cgroup(&text).map(str::to_owned));
        // A process that exec'd or exited while we read is caught by its start time.
        let identity = ProcessIdentity {
            pid,
            start_ticks: stat.starttime,
        };
        if self.identity(pid)? != identity {
            return Err(ReadError::Incomplete(format!(
                "pid {pid} was reused while being read"
            )));
        }
        let container = cgroup
            .as_deref()
            .map(ContainerRef::from_cgroup_path)
            .unwrap_or_default();
        Ok(ProcessInfo {
            identity,
            parent_pid: stat.ppid as u32,
            ns_pid,
            exe,
            cmdline,
            arguments,
            cgroup,
            container,
        })
    }

    /// The inodes of the sockets `pid` has open (from its fds).
    pub fn socket_inodes(&self, pid: u32) -> Result<BTreeSet<u64>, ReadError> {
        let mut inodes = BTreeSet::new();
        for fd in self.open(pid)?.fd()? {
            // An fd closed while we iterate is simply not there any more.
            let Ok(fd) = fd else { continue };
            if let FDTarget::Socket(inode) = fd.target {
                inodes.insert(inode);
            }
        }
        Ok(inodes)
    }

    /// The inode of `pid`'s network namespace (`/proc/PID/ns/net`).
    pub fn net_namespace(&self, pid: u32) -> Result<u64, ReadError> {
        let link = self.root.join(pid.to_string()).join("ns/net");
        let target = std::fs::read_link(&link).map_err(|error| ReadError::of_file(&link, error))?;
        target
            .to_str()
            .and_then(net_namespace_inode)
            .ok_or_else(|| ReadError::Other(format!("{}: unexpected {target:?}", link.display())))
    }

    /// The served TCP sockets (inode → local port) of `pid`'s network namespace, from
    /// `/proc/PID/net/tcp{,6}` (see [`served_sockets_in`]). The kernel walks its whole TCP hash to
    /// produce these files, TIME_WAIT sockets included (about 2 µs a socket here: tens of milliseconds
    /// on a busy node), so callers cache the result per namespace.
    pub fn served_sockets(&self, pid: u32) -> Result<BTreeMap<u64, u16>, ReadError> {
        let net = self.root.join(pid.to_string()).join("net");
        let read = |name: &str| {
            let path = net.join(name);
            std::fs::read_to_string(&path).map_err(|error| ReadError::of_file(&path, error))
        };
        Ok(served_sockets_in(&[&read("tcp")?, &read("tcp6")?]))
    }

    /// The environment `pid` was started with (`/proc/PID/environ`; reading it needs the ptrace
    /// access vigil has).
    pub fn environment(&self, pid: u32) -> Result<HashMap<OsString, OsString>, ReadError> {
        Ok(self.open(pid)?.environ()?)
    }

    /// The pids of every process in /proc now.
    pub fn pids(&self) -> Result<Vec<u32>, ReadError> {
        let entries =
            std::fs::read_dir(&self.root).map_err(|error| ReadError::Other(error.to_string()))?;
        Ok(entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect())
    }

    fn open(&self, pid: u32) -> Result<Process, ReadError> {
        Ok(Process::new_with_root(self.root.join(pid.to_string()))?)
    }
}

/// The served sockets (inode → local port) in the texts of `/proc/PID/net/tcp` and `tcp6`: the
/// listening sockets, and the established connections accepted on one of their ports (a connection
/// whose local port is a listening port of the namespace; a client's connection has an ephemeral local
/// port).
///
/// Read here rather than through `procfs` (which parses every field of every line into an entry):
/// on a busy node most lines are TIME_WAIT or client connections, and this skips them on their state
/// column before parsing anything else; the evaluation of every process that listens waits on it.
pub(crate) fn served_sockets_in(tables: &[&str]) -> BTreeMap<u64, u16> {
    const ESTABLISHED: &str = "01";
    const LISTEN: &str = "0A";
    // (state, local port, inode) of the lines in one of those states.
    let entries: Vec<(bool, u16, u64)> = tables
        .iter()
        .flat_map(|table| table.lines().skip(1))
        .filter_map(|line| {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let mut fields = line.split_ascii_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            let listening = match state {
                LISTEN => true,
                ESTABLISHED => false,
                _ => return None,
            };
            let (_, port) = local.rsplit_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let inode = fields.nth(5)?.parse().ok()?;
            Some((listening, port, inode))
        })
        .collect();
    let listening_ports: BTreeSet<u16> = entries
        .iter()
        .filter(|(listening, _, _)| *listening)
        .map(|(_, port, _)| *port)
        .collect();
    entries
        .into_iter()
        .filter(|(listening, port, _)| *listening || listening_ports.contains(port))
        .map(|(_, port, inode)| (inode, port))
        .collect()
}

/// The cgroup v2 path in the text of `/proc/PID/cgroup` (its `0::` line).
pub(crate) fn unified_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|line| line.strip_prefix("0::"))
}

/// The inode in the target of a `/proc/PID/ns/net` link (`net:[4026531840]`).
pub(crate) fn net_namespace_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(exe: Option<&str>, cmdline: &str, arguments: usize) -> ProcessInfo {
        ProcessInfo {
            identity: ProcessIdentity {
                pid: 1,
                start_ticks: 1,
            },
            parent_pid: 0,
            ns_pid: None,
            exe: exe.map(PathBuf::from),
            cmdline: cmdline.to_owned(),
            arguments,
            cgroup: None,
            container: ContainerRef::default(),
        }
    }

    #[test]
    fn a_redacted_command_line_keeps_the_executable_and_the_argument_count() {
        let python = info(
            Some("/usr/bin/python3.13"),
            "python3 app.py --password=s3cr3t -v",
            3,
        );
        assert_eq!(
            python.redacted_command_line(),
            "/usr/bin/python3.13 [+3 arguments]"
        );
        // Without /proc/PID/exe: the program name the process gave itself.
        let node = info(None, "node --token=abc", 1);
        assert_eq!(node.redacted_command_line(), "node [+1 argument]");
        assert_eq!(
            info(Some("/bin/sh"), "sh", 0).redacted_command_line(),
            "/bin/sh"
        );
        assert_eq!(info(None, "", 0).redacted_command_line(), "");
    }

    #[test]
    fn served_sockets_are_listeners_and_connections_accepted_on_their_ports() {
        // Lines as the kernel writes them: a listener on 8080 (0x1F90), a connection accepted on it,
        // a client connection from an ephemeral port, a TIME_WAIT socket on 8080 and a listener in
        // tcp6 on 9090 (0x2382).
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 101 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 102 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 103 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F90 0100007F:C351 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
";
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:2382 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 201 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(
            served_sockets_in(&[tcp, tcp6]),
            BTreeMap::from([(101, 8080), (102, 8080), (201, 9090)])
        );
        assert!(served_sockets_in(&["", "garbage\n0: x y 0A"]).is_empty());
    }
}
