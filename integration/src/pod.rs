//! Simulated Kubernetes pods: a real process tree in its own PID namespace (with its own /proc) and a
//! kubelet-style cgroup v2 path (systemd cgroup driver, containerd), so that discovery sees what it sees
//! on a node: `NSpid` with two pids, and a `0::/kubepods.slice/…-pod<uid>.slice/cri-containerd-<id>.scope`
//! cgroup line.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, ChildStdout, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::workload_binary;

/// The cgroup v2 hierarchy of this machine (hybrid mode).
const CGROUP2_ROOT: &str = "/sys/fs/cgroup/unified";

/// A running pod with one container; killed (the whole PID namespace) and its cgroup removed on drop.
pub struct Pod {
    unshare: Child,
    stdout: Option<BufReader<ChildStdout>>,
    /// The pod UID, with dashes.
    pub uid: String,
    /// The container id: 64 hex digits.
    pub container_id: String,
    /// The container's cgroup directory, innermost first, then its parents this pod created.
    cgroups: Vec<PathBuf>,
}

impl Pod {
    /// Starts `program` with `args` as the container of a new pod; `configure` sets its environment,
    /// working directory and standard error (standard output is piped, see [`Pod::read_line`]).
    pub fn start(program: &str, args: &[&str], configure: impl FnOnce(&mut Command)) -> Pod {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let seed = format!("{:08x}{:04x}{:020x}", std::process::id(), sequence, nanos);
        let uid = format!(
            "{}-{}-{}-{}-{}",
            &seed[0..8],
            &seed[8..12],
            &seed[12..16],
            &seed[16..20],
            &seed[20..32]
        );
        let container_id = format!("{seed}{seed}")[..64].to_owned();
        let pod_slice = PathBuf::from(CGROUP2_ROOT)
            .join("kubepods.slice/kubepods-besteffort.slice")
            .join(format!(
                "kubepods-besteffort-pod{}.slice",
                uid.replace('-', "_")
            ));
        let scope = pod_slice.join(format!("cri-containerd-{container_id}.scope"));
        std::fs::create_dir_all(&scope)
            .unwrap_or_else(|error| panic!("creating cgroup {}: {error}", scope.display()));

        let mut command = Command::new("unshare");
        command
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(workload_binary("pod-init"))
            .arg(&scope)
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        configure(&mut command);
        let mut unshare = command.spawn().expect("unshare (util-linux)");
        let stdout = unshare.stdout.take().map(BufReader::new);
        Pod {
            unshare,
            stdout,
            uid,
            container_id,
            cgroups: vec![scope, pod_slice],
        }
    }

    /// The next line the container wrote to standard output.
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .as_mut()
            .expect("stdout is piped")
            .read_line(&mut line)
            .expect("reading the pod's output");
        line.trim_end().to_owned()
    }

    /// Host pids of the pod's processes (its init first), from the container's cgroup.
    pub fn host_pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.cgroups[0].join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|pid| pid.parse().ok())
            .collect()
    }

    /// Kills every process of the pod (its PID namespace ends with its init) and removes its cgroups.
    pub fn kill(mut self) {
        self.teardown();
    }

    fn teardown(&mut self) {
        // SIGKILL to unshare makes the kernel kill its child, the namespace's init, and with it every
        // process of the namespace.
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.host_pids().is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        for cgroup in &self.cgroups {
            let _ = std::fs::remove_dir(cgroup);
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.teardown();
    }
}
