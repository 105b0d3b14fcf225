//! Workload: a process whose threads start and exit while it stays alive.
//!
//! `thread-churn serve PORT RATE SECONDS` listens on 127.0.0.1:PORT, prints `listening PORT`, starts and
//! joins RATE threads per second (in batches every 10 ms) for SECONDS, prints `churned N` with the
//! number of threads, and then serves until killed.
//!
//! `thread-churn THREADS [--leader-exits-first]` starts THREADS short-lived threads and joins them,
//! prints `churned`, then waits for a line on stdin and exits. With `--leader-exits-first` the main
//! thread (pid == tgid) exits first through the raw `exit` syscall, as node's does on SIGTERM, and a last thread
//! ends the process 300 ms later: the leader's exit must not count as the process's.

use std::{
    io::BufRead as _,
    net::TcpListener,
    thread,
    time::{Duration, Instant},
};

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("serve") {
        let numbers: Vec<u64> = args.skip(1).map(|n| n.parse().expect("a number")).collect();
        let [port, rate, seconds] = numbers[..] else {
            panic!("usage: thread-churn serve PORT RATE SECONDS");
        };
        serve_while_churning(port as u16, rate, seconds);
        return;
    }
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

fn serve_while_churning(port: u16, rate: u64, seconds: u64) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("binding the port");
    println!("listening {port}");
    let batch = (rate / 100).max(1);
    let start = Instant::now();
    let mut churned = 0;
    for tick in 0..seconds * 100 {
        let handles: Vec<_> = (0..batch).map(|_| thread::spawn(|| {})).collect();
        for handle in handles {
            handle.join().expect("churn thread");
        }
        churned += batch;
        // Keep the rate whatever the scheduling delays: sleep to the next 10 ms tick.
        let next = start + Duration::from_millis(10 * (tick + 1));
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    println!("churned {churned}");
    for connection in listener.incoming() {
        drop(connection);
    }
}
