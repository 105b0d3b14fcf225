//! Workload: a process whose threads start and exit while it stays alive.
//!
//! `thread-churn THREADS [--leader-exits-first]` starts THREADS short-lived threads and joins them,
//! prints `churned`, then waits for a line on stdin and exits. With `--leader-exits-first` the main
//! thread (pid == tgid) exits first through the raw `exit` syscall, as node's does on SIGTERM, and a last thread
//! ends the process 300 ms later: the leader's exit must not count as the process's.

use std::{io::BufRead as _, thread, time::Duration};

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .expect("usage: thread-churn THREADS [--leader-exits-first]");
    let leader_exits_first = args.next().as_deref() == Some("--leader-exits-first");

    let handles: Vec<_> = (0..threads)
        .map(|_| thread::spawn(|| thread::sleep(Duration::from_millis(5))))
        .collect();
    for handle in handles {
        handle.join().expect("churn thread");
    }
    println!("churned");

    if leader_exits_first {
        thread::spawn(|| {
            thread::sleep(Duration::from_millis(300));
            std::process::exit(0);
        });
        // SAFETY: `exit` (not `exit_group`) ends only the calling main thread, without unwinding (which
        // `pthread_exit` would force through Rust's main and abort); the thread above touches nothing
        // of the main thread's stack and ends the process.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
        unreachable!("the exit syscall does not return");
    }
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}
