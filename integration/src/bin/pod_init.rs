//! Workload: the first process of a simulated pod, as the pause container is in a pod that shares its
//! PID namespace.
//!
//! `pod-init CGROUP_DIR COMMAND [ARGS...]`, run as pid 1 of a new PID namespace (`unshare --pid --fork
//! --mount-proc`): moves itself into the cgroup directory (a kubelet-style cgroup v2 path; the command
//! inherits it), starts the command, and reaps every child, orphans included, until none is left.

use std::process::Command;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: pod-init CGROUP_DIR COMMAND [ARGS...]";
    let cgroup = args.next().expect(usage);
    let command = args.next().expect(usage);
    std::fs::write(format!("{cgroup}/cgroup.procs"), "0")
        .unwrap_or_else(|error| panic!("joining cgroup {cgroup}: {error}"));
    #[expect(
        clippy::zombie_processes,
        reason = "the waitpid(-1) loop below reaps it, and the orphans it leaves"
    )]
    Command::new(&command)
        .args(args)
        .spawn()
        .unwrap_or_else(|error| panic!("starting {command}: {error}"));
    loop {
        // SAFETY: waitpid with a null status pointer; any child of this process.
        let reaped = unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) };
        if reaped < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
            return;
        }
    }
}
