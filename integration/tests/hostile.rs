//! Root only: hostile traffic to a captured node server — random bytes, slowloris, a 64 KiB header, a
//! 1 MiB request line, binary on the HTTP port, 1 000 unknown methods, 100 000 unique paths and 10 000
//! open connections — with legitimate requests sent in between. vigil stays up and ready, its memory
//! stays bounded, its series stay under their caps, and every legitimate request is counted exactly.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    thread,
    time::Duration,
};

use vigil_integration::{
    Vigil, eventually, free_port, http_client::Connection, node_http_server, raise_open_files,
    require_root, reset_on_close, rss_mib, samples, word,
};

/// `n` legitimate keep-alive requests, `GET /legit/<i>` (route `/legit/{id}`).
fn legitimate(port: u16, n: usize) -> usize {
    let mut connection = Connection::open(port);
    for i in 0..n {
        assert_eq!(connection.get(&format!("/legit/{i}")), 200);
    }
    n
}

/// Bytes that look like nothing (xorshift; the same every run).
fn noise(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Sends `bytes` on a new connection and reads whatever comes back until the server closes it or a
/// second passes; write errors (the server closing early) are part of the attack.
fn send_and_drain(port: u16, bytes: &[u8]) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
}

#[test]
fn hostile_traffic_leaves_vigil_up_bounded_and_exact_on_legitimate_requests() {
    if !require_root("hostile_traffic_leaves_vigil_up_bounded_and_exact_on_legitimate_requests") {
        return;
    }
    let open_files = raise_open_files();
    // 10 000 connections on each side, and room for the rest.
    let idle_connections = 10_000.min(open_files.saturating_sub(1_000) as usize);
    let port = free_port();
    let vigil = Vigil::start(&format!(
        "discovery:\n  instrument: [{{open_ports: '{port}'}}]\n"
    ));
    let _server = node_http_server(port, &[]);
    vigil.wait_captured(port);
    let baseline = rss_mib(vigil.pid());
    let mut sent = legitimate(port, 100);

    // Random bytes, and binary that starts like a TLS handshake, on the HTTP port.
    for seed in 0..50 {
        send_and_drain(port, &noise(seed, 8 * 1024));
    }
    let mut handshake = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
    handshake.extend(noise(99, 4096));
    send_and_drain(port, &handshake);
    sent += legitimate(port, 100);

    // Slowloris: 50 connections, each dribbling a request head one header byte at a time.
    let slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.write_all(b"GET /slow HTTP/1.1\r\nX-A: ").unwrap();
            stream
        })
        .collect();
    for _ in 0..20 {
        for mut stream in &slow {
            let _ = stream.write_all(b"a");
        }
        thread::sleep(Duration::from_millis(50));
    }
    // A 64 KiB header and a 1 MiB request line (node refuses both: 431, then closes).
    let mut big_header = b"GET /big HTTP/1.1\r\nX-Big: ".to_vec();
    big_header.extend(std::iter::repeat_n(b'a', 64 * 1024));
    big_header.extend(b"\r\n\r\n");
    send_and_drain(port, &big_header);
    let mut long_line = b"GET /".to_vec();
    long_line.extend(std::iter::repeat_n(b'b', 1024 * 1024));
    long_line.extend(b" HTTP/1.1\r\n\r\n");
    send_and_drain(port, &long_line);
    sent += legitimate(port, 100);

    // 1 000 methods nobody defined (node answers 400 and closes).
    for n in 0..1_000 {
        let method = word(n + 1_000).to_uppercase();
        send_and_drain(port, format!("{method} / HTTP/1.1\r\n\r\n").as_bytes());
    }
    sent += legitimate(port, 100);

    // 100 000 unique paths, on four keep-alive connections.
    let unique = thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                scope.spawn(move || {
                    let mut connection = Connection::open(port);
                    for n in (worker..100_000).step_by(4) {
                        assert_eq!(
                            connection.get(&format!("/p/{}/{}", word(n), word(n * 7 + 3))),
                            200
                        );
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .for_each(|worker| worker.join().unwrap());
        100_000
    });
    sent += legitimate(port, 100);

    // 10 000 connections, each after one request, left open.
    let mut open = Vec::with_capacity(idle_connections);
    for _ in 0..idle_connections {
        let mut connection = Connection::open(port);
        assert_eq!(connection.get("/idle"), 200);
        open.push(connection);
    }
    sent += legitimate(port, 100);

    let legit = "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/legit/{id}\",service_name=\"node\"}";
    assert!(
        eventually(Duration::from_secs(20), || vigil.try_metric(legit)
            == Some(sent as f64)),
        "legitimate requests counted: {:?} of {sent}",
        vigil.try_metric(legit)
    );
    thread::sleep(Duration::from_secs(1));
    assert_eq!(vigil.metric(legit), sent as f64, "nothing counted twice");
    assert_eq!(vigil.get("/ready").0, 200, "vigil is up and ready");

    let exposition = vigil.metrics();
    let series = samples(&exposition, "http_server_request_duration_seconds_count");
    let routes: std::collections::BTreeSet<&str> = series
        .iter()
        .map(|(labels, _)| labels["http_route"].as_str())
        .collect();
    let methods: std::collections::BTreeSet<&str> = series
        .iter()
        .map(|(labels, _)| labels["http_request_method"].as_str())
        .collect();
    assert!(
        routes.len() <= 101,
        "at most metrics.max_routes_per_service routes and _overflow: {}",
        routes.len()
    );
    assert!(
        methods
            .iter()
            .all(|method| ["GET", "_OTHER"].contains(method)),
        "unknown methods are _OTHER: {methods:?}"
    );
    let paths_counted: f64 = series
        .iter()
        .filter(|(labels, _)| {
            labels["http_route"].starts_with("/p/") || labels["http_route"] == "_overflow"
        })
        .map(|(_, count)| count)
        .sum();
    // Every one counted once under a bounded route, unless the burst overflowed the I/O ring (then
    // counted as lost records, and fewer requests).
    let lost = vigil.metric("vigil_ebpf_events_lost_total{source=\"io_events\"}");
    assert!(
        paths_counted == unique as f64 || (paths_counted < unique as f64 && lost > 0.0),
        "unique-path requests counted {paths_counted} of {unique}; I/O records lost: {lost}"
    );
    let rss = rss_mib(vigil.pid());
    let followed = vigil.metric("vigil_capture_connections");
    assert!(
        followed >= idle_connections as f64,
        "the open connections are followed: {followed}"
    );
    assert!(
        rss < baseline + 64.0,
        "RSS {rss:.1} MiB against {baseline:.1} MiB before the attack"
    );
    println!(
        "after the attack: RSS {rss:.1} MiB (before {baseline:.1} MiB), {followed} connections followed, {} routes, {} label sets, methods {methods:?}; unique-path requests counted {paths_counted} of {unique} (I/O records lost: {lost})",
        routes.len(),
        vigil.metric("vigil_red_label_sets")
    );
    for stream in &slow {
        reset_on_close(stream);
    }
    for connection in &open {
        reset_on_close(connection.stream());
    }
}
