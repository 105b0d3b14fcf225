//! An HTTP/1.1 server whose accepts, receives, sends and closes all go through io_uring, so that the
//! syscall tracepoints vigil captures with see none of its traffic: a real blind spot of syscall-based
//! capture. It listens with the `listen` syscall (discovery matches it by port), on 127.0.0.1:PORT,
//! prints `listening PORT`, and answers one request per connection with `200 ok` and closes it, one
//! connection at a time.

use std::{net::TcpListener, os::fd::AsRawFd as _};

use io_uring::{IoUring, opcode, squeue, types};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// Submits `entry` and waits for its completion; its result (a negative errno on failure).
fn run(ring: &mut IoUring, entry: squeue::Entry) -> i32 {
    // SAFETY: every buffer an entry points at outlives the call, which waits for the completion.
    unsafe { ring.submission().push(&entry) }.expect("submission queue has room");
    ring.submit_and_wait(1).expect("io_uring_enter");
    ring.completion()
        .next()
        .expect("a completion after waiting")
        .result()
}

fn main() {
    let port: u16 = std::env::var("PORT")
        .expect("PORT")
        .parse()
        .expect("PORT is a port");
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("binding");
    println!("listening {port}");
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let listening = types::Fd(listener.as_raw_fd());
    let mut buffer = vec![0u8; 4096];
    loop {
        let accepted = run(
            &mut ring,
            opcode::Accept::new(listening, std::ptr::null_mut(), std::ptr::null_mut()).build(),
        );
        if accepted < 0 {
            continue;
        }
        let connection = types::Fd(accepted);
        let received = run(
            &mut ring,
            opcode::Recv::new(connection, buffer.as_mut_ptr(), buffer.len() as u32).build(),
        );
        if received > 0 {
            run(
                &mut ring,
                opcode::Send::new(connection, RESPONSE.as_ptr(), RESPONSE.len() as u32).build(),
            );
        }
        run(&mut ring, opcode::Close::new(connection).build());
    }
}
