//! Root only: what a scrape of `/metrics` costs on the wire. Compressed with gzip when the scraper asks
//! for it (as Prometheus always does), identical once decompressed; and no empty-valued label on any line
//! (a process outside Kubernetes has every `k8s_*` label empty).

use std::{io::Read as _, process::Command, time::Duration};

use vigil_integration::{Vigil, eventually, free_port, node_http_server, require_root};

/// `GET /metrics` with `accept_encoding`, by curl (the body is streamed in chunks, which curl
/// decodes; it does not decompress without `--compressed`); the response's headers (lower-cased names)
/// and body.
fn scrape(port: u16, accept_encoding: Option<&str>) -> (Vec<(String, String)>, Vec<u8>) {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--max-time", "30", "-D", "/dev/stderr"]);
    if let Some(value) = accept_encoding {
        curl.args(["-H", &format!("Accept-Encoding: {value}")]);
    }
    let output = curl
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "curl: {output:?}");
    let head = String::from_utf8(output.stderr).unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let headers = lines
        .take_while(|line| !line.trim().is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    (headers, output.stdout)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(header, _)| header == name)
        .map(|(_, value)| value.as_str())
}

/// The `# TYPE` lines of an exposition: the families it exports.
fn families(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| line.starts_with("# TYPE"))
        .collect()
}

#[test]
fn metrics_are_gzipped_when_asked_and_carry_no_empty_label() {
    if !require_root("metrics_are_gzipped_when_asked_and_carry_no_empty_label") {
        return;
    }
    let port = free_port();
    let vigil = Vigil::start(&format!(
        "discovery:\n  instrument: [{{open_ports: '{port}'}}]\n"
    ));
    // A node server outside any pod: its series have every k8s_* label (and service_namespace) empty.
    let _server = node_http_server(port, &[]);
    vigil.wait_captured(port);
    assert_eq!(
        vigil_integration::http_client::get_once(port, "/users/1"),
        200
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            vigil
            .try_metric(
                "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/users/{id}\",service_name=\"node\"}"
            )
            == Some(1.0)
        }),
        "the request is counted, on a line without its empty labels:\n{}",
        vigil.metrics()
    );

    let (plain_headers, plain) = scrape(vigil.port, None);
    assert_eq!(header(&plain_headers, "content-encoding"), None);
    let plain = String::from_utf8(plain).unwrap();
    let empty = plain.lines().filter(|line| line.contains("=\"\"")).count();
    assert_eq!(empty, 0, "lines with an empty label:\n{plain}");

    for accept in ["gzip", "deflate, gzip;q=0.8", "*"] {
        let (headers, compressed) = scrape(vigil.port, Some(accept));
        assert_eq!(
            header(&headers, "content-encoding"),
            Some("gzip"),
            "{accept}"
        );
        assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
        let mut text = String::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_string(&mut text)
            .expect("a gzip body");
        // Values move between scrapes; the families and the counted request do not.
        assert_eq!(families(&text), families(&plain), "{accept}");
        assert!(text.contains("http_route=\"/users/{id}\",service_name=\"node\"} 1"));
        assert!(
            compressed.len() * 4 < plain.len(),
            "{} bytes gzipped against {} plain",
            compressed.len(),
            plain.len()
        );
        println!(
            "Accept-Encoding: {accept}: {} bytes gzipped, {} plain",
            compressed.len(),
            plain.len()
        );
    }
    let (headers, _) = scrape(vigil.port, Some("gzip;q=0, identity"));
    assert_eq!(header(&headers, "content-encoding"), None, "gzip refused");
}

#[test]
fn past_the_node_budget_routes_collapse_then_new_label_sets_are_dropped_and_counted() {
    if !require_root(
        "past_the_node_budget_routes_collapse_then_new_label_sets_are_dropped_and_counted",
    ) {
        return;
    }
    let port = free_port();
    // 20 label sets: routes collapse from the 18th.
    let vigil = Vigil::start(&format!(
        "discovery:\n  instrument: [{{open_ports: '{port}'}}]\nmetrics:\n  max_label_sets: 20\n"
    ));
    let _server = node_http_server(port, &[]);
    vigil.wait_captured(port);
    // 25 routes of words (kept by the route heuristic), 200 each; then two new statuses.
    let routes: Vec<String> = (0..25)
        .map(|n| format!("/{}", char::from(b'a' + n as u8).to_string().repeat(3)))
        .collect();
    let mut connection = vigil_integration::http_client::Connection::open(port);
    for route in &routes {
        assert_eq!(connection.get(route), 200);
    }
    assert_eq!(connection.get("/fail"), 500);
    assert_eq!(connection.get("/missing/x"), 404);
    let count = |route: &str, status: u16| {
        vigil.try_metric(&format!(
            "http_server_request_duration_seconds_count{{http_request_method=\"GET\",http_response_status_code=\"{status}\",http_route=\"{route}\",service_name=\"node\"}}"
        ))
    };
    // The last request (the 404) is the one dropped: once it is counted, every request was handled.
    assert!(
        eventually(Duration::from_secs(10), || vigil.try_metric(
            "vigil_red_label_sets_limited_total{action=\"dropped\"}"
        ) == Some(1.0)),
        "{}",
        vigil.metrics()
    );
    assert_eq!(vigil.metric("vigil_red_label_sets"), 20.0);
    // The first 18 routes have their own series; the other 7 collapsed into one _overflow series (the
    // 19th label set) and the 500 into another (the 20th); the 404, which would be a 21st, was dropped.
    for route in &routes[..18] {
        assert_eq!(count(route, 200), Some(1.0), "{route}");
    }
    for route in &routes[18..] {
        assert_eq!(count(route, 200), None, "{route}");
    }
    assert_eq!(count("_overflow", 200), Some(7.0));
    assert_eq!(count("_overflow", 500), Some(1.0));
    assert_eq!(count("_overflow", 404), None);
    assert_eq!(
        vigil.metric("vigil_red_label_sets_limited_total{action=\"route_collapsed\"}"),
        9.0,
        "7 routes, then /fail and /missing/x"
    );
    assert_eq!(vigil.metric("vigil_red_label_sets_max"), 20.0);
    // vigil's own metrics are outside the budget.
    assert_eq!(vigil.metric("vigil_instrumented_processes"), 1.0);
}
