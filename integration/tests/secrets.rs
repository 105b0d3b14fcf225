//! Root only: no secret leaves the node. A captured server started with a password in its command line
//! receives requests carrying secrets in `Authorization`, `Cookie`, a query string and a body; none of
//! them appears in `/metrics`, `/debug/discovery`, `/debug/connections` or vigil's log at trace level,
//! with the debug endpoints on (command lines not allowed, the default).

use std::{io::BufReader, net::TcpStream, time::Duration};

use vigil_integration::{
    Vigil, eventually, free_port, http_client::exchange, node_http_server, require_root,
};

const CMDLINE_SECRET: &str = "s3cr3t-cmdline";
const AUTHORIZATION_SECRET: &str = "s3cr3t-authorization";
const COOKIE_SECRET: &str = "s3cr3t-cookie";
const QUERY_SECRET: &str = "s3cr3t-query";
const BODY_SECRET: &str = "s3cr3t-body";

#[test]
fn secrets_in_requests_and_command_lines_are_never_logged_or_served() {
    if !require_root("secrets_in_requests_and_command_lines_are_never_logged_or_served") {
        return;
    }
    let port = free_port();
    let vigil = Vigil::spawn(
        &format!("discovery:\n  instrument: [{{open_ports: '{port}'}}]\n"),
        &["--log.level", "trace"],
    );
    vigil.wait_ready(Duration::from_secs(20));
    let _server = node_http_server(port, &[&format!("--password={CMDLINE_SECRET}")]);
    vigil.wait_captured(port);

    let mut connection = BufReader::new(TcpStream::connect(("127.0.0.1", port)).unwrap());
    let host = format!("Host: 127.0.0.1:{port}");
    for request in [
        format!(
            "GET /users/1 HTTP/1.1\r\n{host}\r\nAuthorization: Bearer {AUTHORIZATION_SECRET}\r\n\r\n"
        ),
        format!("GET /users/1 HTTP/1.1\r\n{host}\r\nCookie: session={COOKIE_SECRET}\r\n\r\n"),
        format!("GET /users/1?token={QUERY_SECRET} HTTP/1.1\r\n{host}\r\n\r\n"),
        format!(
            "POST /users/1 HTTP/1.1\r\n{host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\npassword={BODY_SECRET}",
            "password=".len() + BODY_SECRET.len()
        ),
    ] {
        assert_eq!(exchange(&mut connection, &request), 200, "{request}");
    }
    let counted = |method: &str, count: f64| {
        vigil.try_metric(&format!(
            "http_server_request_duration_seconds_count{{http_request_method=\"{method}\",http_response_status_code=\"200\",http_route=\"/users/{{id}}\",service_name=\"node\"}}"
        )) == Some(count)
    };
    assert!(
        eventually(Duration::from_secs(10), || counted("GET", 3.0)
            && counted("POST", 1.0)),
        "the four requests are counted:\n{}",
        vigil.metrics()
    );

    // The server is in the table, its command line redacted to the executable and argument count.
    let discovery = vigil.get("/debug/discovery").1;
    let listener = vigil
        .listener_on(port)
        .expect("the server is in /debug/discovery");
    let cmdline = listener["cmdline"].as_str().unwrap();
    assert!(
        cmdline.ends_with("node [+2 arguments]"),
        "redacted: {cmdline}"
    );
    let connections = vigil.get("/debug/connections").1;
    assert!(
        connections.contains(&format!(":{port}")),
        "the connection is shown: {connections}"
    );
    let places = [
        ("/metrics", vigil.metrics()),
        ("/debug/discovery", discovery),
        ("/debug/connections", connections),
        ("the log", vigil.log()),
    ];
    let log_lines = places[3].1.lines().count();
    assert!(
        log_lines > 20,
        "the log is at trace level: {log_lines} lines"
    );
    for secret in [
        CMDLINE_SECRET,
        AUTHORIZATION_SECRET,
        COOKIE_SECRET,
        QUERY_SECRET,
        BODY_SECRET,
    ] {
        for (place, text) in &places {
            assert!(
                !text.contains(secret),
                "{secret} leaked into {place}:\n{}",
                text.lines()
                    .filter(|line| line.contains(secret))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    println!(
        "no secret in /metrics, /debug/discovery, /debug/connections or {log_lines} log lines at trace level"
    );
}
