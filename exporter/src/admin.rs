//! The admin HTTP server: `/metrics`, `/live`, `/ready`, `/debug/discovery`, `/debug/connections` and a
//! landing page at `/`.
//!
//! `/ready` answers 200 once the eBPF programs have been loaded and attached (a program that failed is
//! reported in `vigil_probes_attached` and the log; it does not hold readiness back) and the first /proc
//! scan has seeded the process table; until then 503 with what it is waiting for.
//!
//! `/metrics` is gzip-compressed when the request accepts it (`Accept-Encoding: gzip`, as Prometheus
//! always sends), and leaves out empty-valued labels.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Bytes, header, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{capture::Capture, discovery::Discovery};

/// What `/ready` waits for.
#[derive(Debug, Default)]
pub struct Readiness {
    probes_attached: AtomicBool,
    first_scan_done: AtomicBool,
}

impl Readiness {
    pub fn set_probes_attached(&self) {
        self.probes_attached.store(true, Ordering::SeqCst);
    }

    pub fn set_first_scan_done(&self) {
        self.first_scan_done.store(true, Ordering::SeqCst);
    }

    /// `None` when ready, else what is still missing.
    fn waiting_for(&self) -> Option<&'static str> {
        if !self.probes_attached.load(Ordering::SeqCst) {
            Some("attaching eBPF programs")
        } else if !self.first_scan_done.load(Ordering::SeqCst) {
            Some("the first /proc scan")
        } else {
            None
        }
    }
}

/// Everything the admin server reads.
pub struct AdminState {
    pub registry: Registry,
    pub readiness: Arc<Readiness>,
    /// Set once the eBPF programs are loaded (discovery writes their filter map).
    pub discovery: Arc<OnceLock<Arc<Mutex<Discovery>>>>,
    /// Set once capture starts, with discovery.
    pub capture: Arc<OnceLock<Arc<Mutex<Capture>>>>,
    /// The pods of this node and their monitoring status (`null` without Kubernetes).
    pub pods: Arc<Mutex<serde_json::Value>>,
}

const LANDING_PAGE: &str = concat!(
    "<!DOCTYPE html>\n<html><head><title>vigil</title></head><body>\n",
    "<h1>vigil</h1>\n<p>eBPF process discovery and RED metrics, version ",
    env!("CARGO_PKG_VERSION"),
    ".</p>\n<ul>\n",
    "<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\n",
    "<li><a href=\"/ready\">/ready</a>: readiness</li>\n",
    "<li><a href=\"/live\">/live</a>: liveness</li>\n",
    "<li><a href=\"/debug/discovery\">/debug/discovery</a>: the process table as JSON</li>\n",
    "<li><a href=\"/debug/connections\">/debug/connections</a>: the connections capture follows, as JSON</li>\n",
    "</ul>\n</body></html>\n"
);

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

/// Whether `Accept-Encoding` lists gzip with a non-zero quality (RFC 9110 §12.5.3).
fn accepts_gzip(headers: &header::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|parameter| {
                parameter
                    .strip_prefix("q=")
                    .and_then(|quality| quality.parse::<f32>().ok())
                    .is_some_and(|quality| quality == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// `bytes` gzip-compressed at the fastest level (a scrape's CPU matters more than the last few percent).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(bytes)
        .expect("compressing into memory does not fail");
    encoder
        .finish()
        .expect("compressing into memory does not fail")
}

fn route(state: &AdminState, request: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET and HEAD\n");
    }
    match request.uri().path() {
        "/" => respond(StatusCode::OK, "text/html; charset=utf-8", LANDING_PAGE),
        "/metrics" => {
            let text = crate::metrics::encode(&state.registry);
            let content_type = "text/plain; version=0.0.4; charset=utf-8";
            match accepts_gzip(request.headers()) {
                true => {
                    let mut response = respond(StatusCode::OK, content_type, gzip(text.as_bytes()));
                    let headers = response.headers_mut();
                    headers.insert(
                        header::CONTENT_ENCODING,
                        header::HeaderValue::from_static("gzip"),
                    );
                    headers.insert(
                        header::VARY,
                        header::HeaderValue::from_static("Accept-Encoding"),
                    );
                    response
                }
                false => respond(StatusCode::OK, content_type, text),
            }
        }
        "/live" => respond(StatusCode::OK, TEXT, "ok\n"),
        "/ready" => match state.readiness.waiting_for() {
            None => respond(StatusCode::OK, TEXT, "ready\n"),
            Some(what) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("not ready: waiting for {what}\n"),
            ),
        },
        "/debug/discovery" => match state.discovery.get() {
            Some(discovery) => {
                // The lock is held only to copy the table; serialising happens after it is released.
                let snapshot = discovery
                    .lock()
                    .expect("discovery lock poisoned")
                    .snapshot(std::time::Instant::now());
                let pods = state.pods.lock().expect("pods lock poisoned").clone();
                let mut json = serde_json::to_value(snapshot).expect("plain data");
                json["pods"] = pods;
                respond(StatusCode::OK, "application/json", json.to_string())
            }
            None => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                "discovery has not started yet\n",
            ),
        },
        "/debug/connections" => match state.capture.get() {
            Some(capture) => {
                // The lock is held only to copy the rows; serialising happens after it is released.
                let connections = capture.lock().expect("capture lock poisoned").connections();
                let json = serde_json::json!({ "connections": connections });
                respond(StatusCode::OK, "application/json", json.to_string())
            }
            None => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                "capture has not started yet\n",
            ),
        },
        _ => respond(StatusCode::NOT_FOUND, TEXT, "not found; see /\n"),
    }
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "admin server accept failed");
                    continue;
                }
            },
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = route(&state, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "admin connection ended with an error");
                    }
                }
                () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(values: &[&str]) -> bool {
        let mut headers = header::HeaderMap::new();
        for value in values {
            headers.append(
                header::ACCEPT_ENCODING,
                header::HeaderValue::from_str(value).unwrap(),
            );
        }
        accepts_gzip(&headers)
    }

    #[test]
    fn gzip_is_used_when_accepted_and_only_then() {
        // What Prometheus sends.
        assert!(accepts(&["gzip"]));
        assert!(accepts(&["deflate, GZIP;q=0.5"]));
        assert!(accepts(&["br", "gzip"]));
        assert!(accepts(&["*"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["gzip;q=0", "br"]));
        assert!(!accepts(&["x-gzip-like"]));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let text = "metric{a=\"b\"} 1\n".repeat(1000);
        let compressed = gzip(text.as_bytes());
        assert!(compressed.len() < text.len() / 10);
        let mut plain = String::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, text);
    }
}
