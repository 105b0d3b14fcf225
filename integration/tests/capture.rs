//! Root only: HTTP/1.x capture of real servers and clients in simulated pods, counted against the
//! clients' own tallies.

use std::{collections::BTreeMap, process::Stdio, time::Duration};

use vigil_integration::{
    Pod, Vigil, eventually, free_port, http_client, load, require_root, samples, tracked_tgids,
    workspace,
};

/// Counts of one histogram family in `/metrics`, by (label, label) values, for one service.
fn counts(
    vigil: &Vigil,
    family: &str,
    service: &str,
    first_label: &str,
    second_label: &str,
) -> BTreeMap<(String, String), u64> {
    totals(
        vigil,
        &format!("{family}_count"),
        service,
        first_label,
        second_label,
    )
}

/// The values of one sample name in `/metrics`, summed by (label, label) values, for one service.
fn totals(
    vigil: &Vigil,
    sample: &str,
    service: &str,
    first_label: &str,
    second_label: &str,
) -> BTreeMap<(String, String), u64> {
    let (_, body) = vigil.get("/metrics");
    let mut counts = BTreeMap::new();
    for (labels, value) in samples(&body, sample) {
        let label = |name: &str| labels.get(name).cloned().unwrap_or_default();
        if label("service_name") != service {
            continue;
        }
        *counts
            .entry((label(first_label), label(second_label)))
            .or_default() += value as u64;
    }
    counts
}

/// Server requests in `/metrics`, by (route, status).
fn server_counts(vigil: &Vigil, service: &str) -> BTreeMap<(String, String), u64> {
    counts(
        vigil,
        "http_server_request_duration_seconds",
        service,
        "http_route",
        "http_response_status_code",
    )
}

/// What the server series must say for a client tally, given each path's route.
fn expected(
    tally: &http_client::Tally,
    route_of: impl Fn(&str) -> String,
) -> BTreeMap<(String, String), u64> {
    let mut expected = BTreeMap::new();
    for ((path, status), count) in tally {
        *expected
            .entry((route_of(path), status.to_string()))
            .or_default() += count;
    }
    expected
}

/// Waits until `/metrics` shows `want`, then checks it stays so (nothing counted twice).
fn assert_counts_settle(
    want: &BTreeMap<(String, String), u64>,
    got: impl Fn() -> BTreeMap<(String, String), u64>,
) {
    let settled = eventually(Duration::from_secs(10), || got() == *want);
    assert!(settled, "series {:?}\nclient  {want:?}", got());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(got(), *want, "counted more than once");
}

fn node_server_pod(port: u16) -> Pod {
    let mut pod = Pod::start("node", &["server.js"], |command| {
        command
            .current_dir(workspace().join("integration/workloads/http-server"))
            .env("PORT", port.to_string());
    });
    assert_eq!(pod.read_line(), format!("listening {port}"));
    pod
}

/// vigil selecting pods' listeners, and a node server in a pod it captures: (vigil, port, pod).
fn captured_node_server() -> (Vigil, u16, Pod) {
    let vigil = Vigil::start(POD_LISTENERS);
    let port = free_port();
    let pod = node_server_pod(port);
    vigil.wait_captured(port);
    (vigil, port, pod)
}

/// A buffered connection to the server on `port`.
fn connect(port: u16) -> std::io::BufReader<std::net::TcpStream> {
    std::io::BufReader::new(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
}

fn route_of_node_path(path: &str) -> String {
    match path {
        path if path.starts_with("/users/") => "/users/{id}".to_owned(),
        path => path.to_owned(),
    }
}

const POD_LISTENERS: &str =
    "discovery:\n  instrument: [{open_ports: '1-65535', container: true}]\n";

#[test]
fn node_server_requests_are_counted_exactly_by_route_and_status() {
    if !require_root("node_server_requests_are_counted_exactly_by_route_and_status") {
        return;
    }
    let (vigil, port, _pod) = captured_node_server();
    // The load starts while node is still provisional: its first requests are held, then published.
    let paths: Vec<String> = (0..50)
        .map(|n| format!("/users/{n}"))
        .chain([
            "/missing/page".to_owned(),
            "/fail".to_owned(),
            "/".to_owned(),
        ])
        .collect();
    let mut tally = http_client::keep_alive_load(port, 8, 6_250, &paths);
    for n in 0..500 {
        let path = &paths[n % paths.len()];
        let status = http_client::get_once(port, path);
        *tally.entry((path.clone(), status)).or_default() += 1;
    }
    let total: u64 = tally.values().sum();
    assert_eq!(total, 50_500);
    for status in [200, 404, 500] {
        assert!(
            tally.keys().any(|(_, got)| *got == status),
            "{status} in the mix"
        );
    }
    assert_counts_settle(&expected(&tally, route_of_node_path), || {
        server_counts(&vigil, "node")
    });
    assert_eq!(
        vigil.metric("vigil_ebpf_events_lost_total{source=\"io_events\"}"),
        0.0
    );
    println!("node: {total} requests counted exactly");
}

#[test]
fn wrk_keep_alive_load_is_counted_with_its_status_mix() {
    if !require_root("wrk_keep_alive_load_is_counted_with_its_status_mix") {
        return;
    }
    let (vigil, port, _pod) = captured_node_server();
    let connections = 8;
    let completed = load::wrk_status_mix(port, connections);
    let by_status = || {
        let mut by_status = BTreeMap::<String, u64>::new();
        for ((_, status), count) in server_counts(&vigil, "node") {
            *by_status.entry(status).or_default() += count;
        }
        by_status
    };
    // wrk does not count the responses in flight when it stops (at most one per connection); the
    // server answered them and vigil counts them.
    let in_flight = |counted: &BTreeMap<String, u64>| {
        load::counted_beyond(counted, &completed).filter(|extra| *extra <= u64::from(connections))
    };
    let settled = eventually(Duration::from_secs(10), || {
        in_flight(&by_status()).is_some()
    });
    let counted = by_status();
    assert!(settled, "vigil {counted:?}\nwrk   {completed:?}");
    println!(
        "wrk: {} requests completed, vigil counted {} more (in flight when wrk stopped)",
        completed.values().sum::<u64>(),
        in_flight(&counted).unwrap()
    );
}

#[test]
fn python_http_server_requests_are_counted_exactly() {
    if !require_root("python_http_server_requests_are_counted_exactly") {
        return;
    }
    let vigil = Vigil::start(POD_LISTENERS);
    let port = free_port();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "hello\n").unwrap();
    let port_arg = port.to_string();
    let directory = site.path().to_str().unwrap().to_owned();
    let mut pod = Pod::start(
        "python3",
        &[
            "-u",
            "-c",
            "import functools, http.server, sys\n\
             class Handler(http.server.SimpleHTTPRequestHandler):\n\
             \x20   protocol_version = 'HTTP/1.1'\n\
             \x20   disable_nagle_algorithm = True\n\
             handler = functools.partial(Handler, directory=sys.argv[2])\n\
             server = http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), handler)\n\
             print(f'listening {sys.argv[1]}', flush=True)\n\
             server.serve_forever()",
            &port_arg,
            &directory,
        ],
        |command| {
            command.stderr(Stdio::null());
        },
    );
    assert_eq!(pod.read_line(), format!("listening {port}"));
    vigil.wait_captured(port);
    // Keep-alive (HTTP/1.1 with Content-Length; no Nagle delay between the head and body writes) for
    // files; an error response closes the connection, so the 404s come one connection per request, as
    // do a share of the 200s (recvfrom/sendto here).
    let mut tally = http_client::keep_alive_load(port, 4, 12_000, &["/index.html".to_owned()]);
    for n in 0..2_000 {
        let path = if n % 4 == 0 {
            "/nothing-here"
        } else {
            "/index.html"
        };
        let status = http_client::get_once(port, path);
        *tally.entry((path.to_owned(), status)).or_default() += 1;
    }
    assert!(tally.contains_key(&("/index.html".to_owned(), 200)));
    assert!(tally.contains_key(&("/nothing-here".to_owned(), 404)));
    assert_eq!(tally.values().sum::<u64>(), 50_000);
    assert_counts_settle(&expected(&tally, str::to_owned), || {
        server_counts(&vigil, "python3.11")
            .into_iter()
            .chain(server_counts(&vigil, "python3"))
            .collect()
    });
}

#[test]
fn uninstrumented_processes_produce_nothing_even_on_matching_ports() {
    if !require_root("uninstrumented_processes_produce_nothing_even_on_matching_ports") {
        return;
    }
    let vigil = Vigil::start(
        "discovery:\n  instrument: [{open_ports: '1-65535', container: true}]\n  \
         exclude_instrument: [{cmd_args: 'node server.js'}]\n",
    );
    let port = free_port();
    let _pod = node_server_pod(port);
    // The kernel captures a listener at once; discovery releases it when it finds it excluded.
    assert!(
        eventually(Duration::from_secs(5), || vigil
            .listener_on(port)
            .is_some_and(|process| process["state"] == "excluded")),
        "the server was evaluated: {:?}",
        vigil.listener_on(port)
    );
    let pid = vigil.listener_on(port).unwrap()["pid"].as_u64().unwrap() as u32;
    assert!(
        !tracked_tgids().contains(&pid),
        "released from the kernel filter"
    );
    let received_before = vigil.metric("vigil_io_events_total{kind=\"receive\"}");
    let tally = http_client::keep_alive_load(port, 2, 500, &["/users/1".to_owned()]);
    assert_eq!(tally.values().sum::<u64>(), 1_000);
    std::thread::sleep(Duration::from_millis(300));
    assert!(server_counts(&vigil, "node").is_empty());
    assert_eq!(
        vigil.metric("vigil_io_events_total{kind=\"receive\"}") - received_before,
        0.0,
        "the kernel filter let records of an excluded process through"
    );
}

#[test]
fn keep_alive_connections_open_before_vigil_starts_are_adopted() {
    if !require_root("keep_alive_connections_open_before_vigil_starts_are_adopted") {
        return;
    }
    let port = free_port();
    let _pod = node_server_pod(port);
    let mut connections: Vec<http_client::Connection> = (0..4)
        .map(|_| http_client::Connection::open(port))
        .collect();
    for connection in &mut connections {
        for _ in 0..100 {
            assert_eq!(connection.get("/users/7"), 200);
        }
    }
    let vigil = Vigil::start(POD_LISTENERS);
    // Node is older than the minimum age: published as soon as the start-up scan finds it.
    for connection in &mut connections {
        for _ in 0..1_000 {
            assert_eq!(connection.get("/users/7"), 200);
        }
    }
    let want = BTreeMap::from([(("/users/{id}".to_owned(), "200".to_owned()), 4_000)]);
    assert_counts_settle(&want, || server_counts(&vigil, "node"));

    // Each adopted connection is tracked as the server's, with the socket's addresses: node's end on
    // the server port, the peer our client's end.
    let node = vigil.listener_on(port).expect("the server is in the table")["pid"].clone();
    let tracked = vigil.connections();
    for connection in &connections {
        let peer = connection.local_addr().to_string();
        let found: Vec<&serde_json::Value> = tracked
            .iter()
            .filter(|tracked| tracked["peer"] == peer.as_str())
            .collect();
        assert_eq!(found.len(), 1, "{peer} once in {tracked:#?}");
        let found = found[0];
        assert_eq!(found["pid"], node, "{found}");
        assert_eq!(found["role"], "server", "{found}");
        assert_eq!(found["transport"], "inet", "{found}");
        assert_eq!(found["local"], format!("127.0.0.1:{port}"), "{found}");
        assert_eq!(found["server_requests_in_flight"], 0, "{found}");
    }
}

#[test]
fn an_instrumented_node_client_is_timed_against_an_uninstrumented_server() {
    if !require_root("an_instrumented_node_client_is_timed_against_an_uninstrumented_server") {
        return;
    }
    let vigil = Vigil::start("discovery:\n  instrument: [{cmd_args: '*client.js*'}]\n");
    let port = free_port();
    let _server = node_server_pod(port);
    // The client waits a second before its first request: it is captured and published by then.
    let mut client = Pod::start("node", &["client.js"], |command| {
        command
            .current_dir(workspace().join("integration/workloads/http-server"))
            .env("PORT", port.to_string())
            .env("REQUESTS", "600");
    });
    // By (method, status): the requests, then the response body bytes, as the client counted them.
    let by_status = |report: &str| {
        let mut tally = BTreeMap::new();
        for pair in report.split_whitespace() {
            let (status, count) = pair.split_once('=').expect("status=count");
            tally.insert(
                ("GET".to_owned(), status.to_owned()),
                count.parse::<u64>().unwrap(),
            );
        }
        tally
    };
    let report = client.read_line();
    let tally = by_status(&report);
    let body_bytes = by_status(&client.read_line());
    assert_eq!(tally.values().sum::<u64>(), 600, "{report}");
    let client_totals = |sample: &str| {
        totals(
            &vigil,
            sample,
            "node",
            "http_request_method",
            "http_response_status_code",
        )
    };
    assert_counts_settle(&tally, || {
        client_totals("http_client_request_duration_seconds_count")
    });
    assert_eq!(
        client_totals("http_client_response_body_size_bytes_sum"),
        body_bytes
    );
    assert_eq!(
        client_totals("http_client_response_body_size_bytes_count"),
        tally
    );
    // GETs without a body: 600 observations of 0 bytes.
    assert_eq!(
        client_totals("http_client_request_body_size_bytes_count"),
        tally
    );
    assert!(
        client_totals("http_client_request_body_size_bytes_sum")
            .values()
            .all(|sum| *sum == 0)
    );
    assert!(
        server_counts(&vigil, "node").is_empty(),
        "the server is not instrumented"
    );
}

#[test]
fn every_framing_case_pairs_with_a_real_node_server() {
    if !require_root("every_framing_case_pairs_with_a_real_node_server") {
        return;
    }
    let (vigil, port, _pod) = captured_node_server();
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    let mut keep_alive = connect(port);
    let mut exchange = |request: String| http_client::exchange(&mut keep_alive, &request);
    // One keep-alive connection through every kind of response framing.
    assert_eq!(
        exchange(format!("HEAD /users/1 HTTP/1.1\r\n{host}\r\n")),
        200
    );
    assert_eq!(exchange(format!("GET /empty HTTP/1.1\r\n{host}\r\n")), 204);
    assert_eq!(exchange(format!("GET /cached HTTP/1.1\r\n{host}\r\n")), 304);
    assert_eq!(
        exchange(format!("GET /chunked HTTP/1.1\r\n{host}\r\n")),
        200
    );
    assert_eq!(exchange(format!("GET /stream HTTP/1.1\r\n{host}\r\n")), 200);
    // node answers `Expect: 100-continue` with an interim response before the final one.
    assert_eq!(
        exchange(format!(
            "POST /users/9 HTTP/1.1\r\n{host}Content-Length: 4\r\nExpect: 100-continue\r\n\r\nbody"
        )),
        200
    );
    assert_eq!(
        exchange(format!("GET /users/2 HTTP/1.1\r\n{host}\r\n")),
        200
    );
    // HTTP/1.0: the streamed response is delimited by the server closing the connection.
    let mut once = connect(port);
    assert_eq!(
        http_client::exchange(&mut once, &format!("GET /stream HTTP/1.0\r\n{host}\r\n")),
        200
    );
    let counts = || {
        counts(
            &vigil,
            "http_server_request_duration_seconds",
            "node",
            "http_request_method",
            "http_route",
        )
    };
    let want: BTreeMap<(String, String), u64> = [
        (("HEAD", "/users/{id}"), 1),
        (("GET", "/empty"), 1),
        (("GET", "/cached"), 1),
        (("GET", "/chunked"), 1),
        (("GET", "/stream"), 2),
        (("POST", "/users/{id}"), 1),
        (("GET", "/users/{id}"), 1),
    ]
    .into_iter()
    .map(|((method, route), count)| ((method.to_owned(), route.to_owned()), count))
    .collect();
    assert_counts_settle(&want, counts);
    let statuses = server_counts(&vigil, "node");
    assert_eq!(
        statuses.get(&("/empty".to_owned(), "204".to_owned())),
        Some(&1)
    );
    assert_eq!(
        statuses.get(&("/cached".to_owned(), "304".to_owned())),
        Some(&1)
    );
    assert!(
        !statuses.keys().any(|(_, status)| status == "100"),
        "the interim response is not a request: {statuses:?}"
    );
}

#[test]
fn body_sizes_match_what_a_real_node_server_was_sent_and_answered() {
    if !require_root("body_sizes_match_what_a_real_node_server_was_sent_and_answered") {
        return;
    }
    let (vigil, port, _pod) = captured_node_server();
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    let chunked_upload = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    // (method, route, request, bytes of the request's body as sent), on one keep-alive connection.
    let requests = [
        (
            "GET",
            "/users/{id}",
            format!("GET /users/2 HTTP/1.1\r\n{host}\r\n"),
            0,
        ),
        (
            "POST",
            "/users/{id}",
            format!(
                "POST /users/9 HTTP/1.1\r\n{host}Content-Length: 300\r\n\r\n{}",
                "x".repeat(300)
            ),
            300,
        ),
        // Longer than vigil captures of a transfer: the length comes from the head.
        (
            "POST",
            "/users/{id}",
            format!(
                "POST /users/10 HTTP/1.1\r\n{host}Content-Length: 5000\r\n\r\n{}",
                "y".repeat(5000)
            ),
            5000,
        ),
        (
            "PUT",
            "/users/{id}",
            format!(
                "PUT /users/5 HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n{chunked_upload}"
            ),
            chunked_upload.len() as u64,
        ),
        (
            "HEAD",
            "/users/{id}",
            format!("HEAD /users/1 HTTP/1.1\r\n{host}\r\n"),
            0,
        ),
        (
            "GET",
            "/empty",
            format!("GET /empty HTTP/1.1\r\n{host}\r\n"),
            0,
        ),
        (
            "GET",
            "/cached",
            format!("GET /cached HTTP/1.1\r\n{host}\r\n"),
            0,
        ),
        (
            "GET",
            "/chunked",
            format!("GET /chunked HTTP/1.1\r\n{host}\r\n"),
            0,
        ),
        (
            "GET",
            "/stream",
            format!("GET /stream HTTP/1.1\r\n{host}\r\n"),
            0,
        ),
        // Last on the connection with a length, so that no body is still being counted.
        (
            "DELETE",
            "/users/{id}",
            format!("DELETE /users/3 HTTP/1.1\r\n{host}\r\n"),
            0,
        ),
    ];
    let mut request_bytes = BTreeMap::<(String, String), u64>::new();
    let mut response_bytes = BTreeMap::<(String, String), u64>::new();
    let mut requests_by_route = BTreeMap::<(String, String), u64>::new();
    let mut add = |method: &str, route: &str, sent: u64, answered: u64| {
        let key = (method.to_owned(), route.to_owned());
        *request_bytes.entry(key.clone()).or_default() += sent;
        *response_bytes.entry(key.clone()).or_default() += answered;
        *requests_by_route.entry(key).or_default() += 1;
    };
    let mut keep_alive = connect(port);
    for (method, route, request, sent) in &requests {
        let (status, answered) = http_client::exchange_with_body(&mut keep_alive, request);
        assert!(status < 400, "{method} {route}: {status}");
        add(method, route, *sent, answered);
    }
    // HTTP/1.0: the streamed response is delimited by the server closing the connection.
    let mut once = connect(port);
    let (_, answered) =
        http_client::exchange_with_body(&mut once, &format!("GET /stream HTTP/1.0\r\n{host}\r\n"));
    add("GET", "/stream", 0, answered);

    let server_totals =
        |sample: &str| totals(&vigil, sample, "node", "http_request_method", "http_route");
    assert_counts_settle(&requests_by_route, || {
        server_totals("http_server_response_body_size_bytes_count")
    });
    assert_eq!(
        server_totals("http_server_response_body_size_bytes_sum"),
        response_bytes
    );
    assert_eq!(
        server_totals("http_server_request_body_size_bytes_count"),
        requests_by_route
    );
    assert_eq!(
        server_totals("http_server_request_body_size_bytes_sum"),
        request_bytes
    );
    assert_eq!(
        vigil.metric("vigil_http_unmeasured_bodies_total{side=\"server\"}"),
        0.0
    );
}

/// The Python server of `vectored_server.py` in a pod, moving its bytes with the syscalls `io` names.
fn vectored_server_pod(port: u16, io: &str) -> Pod {
    let mut pod = Pod::start("python3", &["-u", "vectored_server.py"], |command| {
        command
            .current_dir(workspace().join("integration/workloads/python"))
            .env("PORT", port.to_string())
            .env("IO", io);
    });
    assert_eq!(pod.read_line(), format!("listening {port}"));
    pod
}

#[test]
fn recvmsg_sendmsg_readv_and_sendfile_servers_are_captured_with_their_body_sizes() {
    if !require_root(
        "recvmsg_sendmsg_readv_and_sendfile_servers_are_captured_with_their_body_sizes",
    ) {
        return;
    }
    let vigil = Vigil::start(POD_LISTENERS);
    // recvmsg / sendmsg (head and body in two buffers of one call), kept alive.
    let port = free_port();
    let msg_pod = vectored_server_pod(port, "msg");
    // The service name is the executable's file name (python3.N, wherever `python3` led).
    let service = msg_pod
        .host_pids()
        .into_iter()
        .filter_map(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
        .filter_map(|exe| Some(exe.file_name()?.to_str()?.to_owned()))
        .find(|name| name.starts_with("python"))
        .expect("the python process of the pod");
    let server_totals = |sample: &str| {
        totals(
            &vigil,
            sample,
            &service,
            "http_route",
            "http_response_status_code",
        )
    };
    vigil.wait_captured(port);
    let mut keep_alive = connect(port);
    let mut answered = 0;
    for _ in 0..200 {
        let (status, body) = http_client::exchange_with_body(
            &mut keep_alive,
            &format!("GET /msg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
        );
        assert_eq!(status, 200);
        answered += body;
    }
    // readv / send + sendfile, the body delimited by the close: its size is counted from sendfile.
    let port = free_port();
    let _vector = vectored_server_pod(port, "vector");
    vigil.wait_captured(port);
    for _ in 0..50 {
        let mut once = connect(port);
        let (status, body) = http_client::exchange_with_body(
            &mut once,
            &format!("GET /vector HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
        );
        assert_eq!(status, 200);
        answered += body;
    }
    let requests = BTreeMap::from([
        (("/msg".to_owned(), "200".to_owned()), 200),
        (("/vector".to_owned(), "200".to_owned()), 50),
    ]);
    assert_counts_settle(&requests, || {
        server_totals("http_server_request_duration_seconds_count")
    });
    // Response bodies end at the close of the sendfile connections: wait for all of them.
    let response_bodies = || server_totals("http_server_response_body_size_bytes_count");
    assert!(
        eventually(Duration::from_secs(10), || response_bodies() == requests),
        "{:?}",
        response_bodies()
    );
    let sizes = server_totals("http_server_response_body_size_bytes_sum");
    assert_eq!(sizes.values().sum::<u64>(), answered, "{sizes:?}");
    assert_eq!(answered, 250 * 3000);
}

#[test]
fn requests_pipelined_in_one_write_are_each_counted() {
    if !require_root("requests_pipelined_in_one_write_are_each_counted") {
        return;
    }
    let (vigil, port, _pod) = captured_node_server();
    let mut connection = connect(port);
    // Three short requests in one write (105 bytes: within what vigil captures of a read), ten times.
    let pipelined = "GET /users/1 HTTP/1.1\r\nHost: h\r\n\r\n".repeat(3);
    for _ in 0..10 {
        std::io::Write::write_all(connection.get_mut(), pipelined.as_bytes()).unwrap();
        for _ in 0..3 {
            assert_eq!(http_client::read_response(&mut connection, false), 200);
        }
    }
    let want = BTreeMap::from([(("/users/{id}".to_owned(), "200".to_owned()), 30)]);
    assert_counts_settle(&want, || server_counts(&vigil, "node"));
    assert_eq!(
        vigil.metric("vigil_http_unpaired_responses_total{side=\"server\"}"),
        0.0
    );
}

#[test]
fn a_pipelined_burst_past_the_captured_bytes_is_counted_as_far_as_seen_and_the_rest_reported() {
    if !require_root(
        "a_pipelined_burst_past_the_captured_bytes_is_counted_as_far_as_seen_and_the_rest_reported",
    ) {
        return;
    }
    let (vigil, port, _pod) = captured_node_server();
    let mut connection = connect(port);
    // A hundred 34-byte requests in one write: vigil captures the first 1024 bytes of the read (30
    // requests and a piece of the 31st).
    let burst = "GET /users/1 HTTP/1.1\r\nHost: h\r\n\r\n".repeat(100);
    std::io::Write::write_all(connection.get_mut(), burst.as_bytes()).unwrap();
    for _ in 0..100 {
        assert_eq!(http_client::read_response(&mut connection, false), 200);
    }
    let counted = || {
        server_counts(&vigil, "node")
            .get(&("/users/{id}".to_owned(), "200".to_owned()))
            .copied()
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(5), || counted() >= 30),
        "the requests within the captured bytes are counted: {}",
        counted()
    );
    std::thread::sleep(Duration::from_millis(300));
    let (counted, unpaired, truncated) = (
        counted(),
        vigil.metric("vigil_http_unpaired_responses_total{side=\"server\"}"),
        vigil.metric("vigil_http_truncated_pipelines_total{side=\"server\"}"),
    );
    // Nothing counted twice, and what was not counted is reported: the read cut among the burst, and
    // each response past it as unpaired (written one by one) or a write cut among them too.
    assert!(counted <= 100, "{counted}");
    assert!(truncated >= 1.0, "the cut read is reported");
    assert!(
        counted as f64 + unpaired == 100.0 || truncated >= 2.0,
        "{counted} counted, {unpaired} unpaired, {truncated} cut"
    );
    println!(
        "pipelined burst of 100: {counted} counted, {unpaired} responses unpaired, {truncated} transfers cut among pipelined messages"
    );
}

#[test]
fn requests_right_after_listen_are_captured_before_the_process_is_evaluated() {
    if !require_root("requests_right_after_listen_are_captured_before_the_process_is_evaluated") {
        return;
    }
    // Drained once a second: the listen event waits up to a second in the ring, and the requests sent
    // meanwhile are captured only because the kernel put the listener in its filter at `listen`.
    let vigil = Vigil::start(&format!("{POD_LISTENERS}ebpf:\n  drain_interval: 1s\n"));
    let port = free_port();
    let _pod = node_server_pod(port);
    let tally = http_client::keep_alive_load(port, 1, 20, &["/users/3".to_owned()]);
    assert_eq!(tally.values().sum::<u64>(), 20);
    let want = BTreeMap::from([(("/users/{id}".to_owned(), "200".to_owned()), 20)]);
    assert_counts_settle(&want, || server_counts(&vigil, "node"));
}
