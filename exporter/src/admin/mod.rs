//! The admin HTTP server: `/metrics`, `/live`, `/ready`, `/debug/discovery`, `/debug/connections` and a
//! landing page at `/`.
//!
//! `/ready` answers 200 once the eBPF programs have been loaded and attached (a program that failed is
//! reported in `vigil_probes_attached` and the log; it does not hold readiness back) and the first /proc
//! scan has seeded the process table; until then 503 with what it is waiting for.
//!
//! `/metrics` is gzip-compressed when the request accepts it (`Accept-Encoding: gzip`, as Prometheus
//! always sends), and leaves out empty-valued labels. It is written on a blocking thread and streamed in
//! chunks of [`CHUNK_BYTES`] as it is written: a scrape holds neither the whole text nor its compressed
//! copy in memory, and takes no lock the capture path needs (see [`crate::metrics::Exposition`]).
//!
//! `/debug/*` is served only with `web.debug_endpoints: true` (else 404 saying how to enable it; the
//! landing page lists only what is served), and shows command lines redacted to the executable and
//! argument count unless `web.debug_command_lines: true`.
//!
//! With `--web.config.file` ([`web_config`]): TLS ([`tls`]), and with `basic_auth_users` every path
//! answers 401 with `WWW-Authenticate: Basic` without the credentials of a user ([`basic_auth`]), except
//! `/live` and `/ready`: they tell only whether vigil runs and is ready, and the kubelet's probes cannot
//! send credentials from a Secret. The file is read again when it or a file it names changes
//! ([`security`]). Request bodies, header values and query strings are never logged.

use std::{
    convert::Infallible,
    io::{self, BufWriter, Write as _},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Frame},
    header,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

use crate::{
    capture::Capture,
    discovery::{CommandLines, Discovery},
    metrics::Exposition,
};

mod basic_auth;
mod security;
mod tls;
pub mod web_config;

pub use security::WebSecurity;
pub use web_config::{WebConfigError, WebSettings};

/// A response body: whole, or streamed (`/metrics`).
type Body = BoxBody<Bytes, Infallible>;

/// The size of the pieces `/metrics` is written and sent in.
const CHUNK_BYTES: usize = 64 * 1024;

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether `/debug/*` is served, and how it shows command lines (`web.debug_endpoints`,
/// `web.debug_command_lines`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugEndpoints {
    pub enabled: bool,
    pub command_lines: CommandLines,
}

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
    /// What `/metrics` serves.
    pub exposition: Exposition,
    pub readiness: Arc<Readiness>,
    /// Set once the eBPF programs are loaded (discovery writes their filter map).
    pub discovery: Arc<OnceLock<Arc<Mutex<Discovery>>>>,
    /// Set once capture starts, with discovery.
    pub capture: Arc<OnceLock<Arc<Mutex<Capture>>>>,
    /// The pods of this node and their monitoring status (`null` without Kubernetes).
    pub pods: Arc<Mutex<serde_json::Value>>,
    pub debug: DebugEndpoints,
}

/// The landing page at `/`: links to the endpoints served, and only those.
fn landing_page(debug: DebugEndpoints) -> String {
    let mut page = format!(
        concat!(
            "<!DOCTYPE html>\n<html><head><title>vigil</title></head><body>\n",
            "<h1>vigil</h1>\n<p>eBPF process discovery and RED metrics, version {}.</p>\n<ul>\n",
            "<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\n",
            "<li><a href=\"/ready\">/ready</a>: readiness</li>\n",
            "<li><a href=\"/live\">/live</a>: liveness</li>\n",
        ),
        env!("CARGO_PKG_VERSION")
    );
    if debug.enabled {
        page.push_str(concat!(
            "<li><a href=\"/debug/discovery\">/debug/discovery</a>: the process table as JSON</li>\n",
            "<li><a href=\"/debug/connections\">/debug/connections</a>: the connections capture follows, as JSON</li>\n",
        ));
    }
    page.push_str("</ul>\n</body></html>\n");
    page
}

/// What `/debug/*` answers while `web.debug_endpoints` is off.
const DEBUG_OFF: &str = "not found: the debug endpoints are off; set web.debug_endpoints: true in the configuration file (or VIGIL_WEB__DEBUG_ENDPOINTS=true) to serve them\n";

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()).boxed())
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

/// What a scrape writes into: each write goes to the response as one chunk (a full buffer of
/// [`CHUNK_BYTES`], or a piece of compressed output); an error once the client is gone.
struct ChunkSender(mpsc::Sender<Bytes>);

impl io::Write for ChunkSender {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(bytes))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `/metrics`: the exposition written on a blocking thread and streamed as it is written, compressed
/// at gzip's fastest level (a scrape's CPU matters more than the last few percent) when `gzip`.
fn metrics_response(exposition: Exposition, gzip: bool) -> Response<Body> {
    let (sender, receiver) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let sink = ChunkSender(sender);
        let written = match gzip {
            // The exposition writes a label set's lines at once (kilobytes): the compressor takes them
            // as they come, and writes to the sink in pieces of its own buffer.
            true => {
                let mut out = flate2::write::GzEncoder::new(sink, flate2::Compression::fast());
                exposition
                    .write(&mut out)
                    .and_then(|()| out.finish().map(drop))
            }
            false => {
                let mut out = BufWriter::with_capacity(CHUNK_BYTES, sink);
                exposition.write(&mut out).and_then(|()| out.flush())
            }
        };
        if let Err(error) = written {
            tracing::debug!(%error, "a scrape went away before its exposition was written");
        }
    });
    let chunks = futures::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok(Frame::data(chunk)), receiver))
    });
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(StreamBody::new(chunks).boxed())
        .expect("static response parts are valid");
    if gzip {
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
        headers.insert(
            header::VARY,
            header::HeaderValue::from_static("Accept-Encoding"),
        );
    }
    response
}

fn route(state: &AdminState, request: &Request<hyper::body::Incoming>) -> Response<Body> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET and HEAD\n");
    }
    match request.uri().path() {
        "/" => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            landing_page(state.debug),
        ),
        "/metrics" => metrics_response(state.exposition.clone(), accepts_gzip(request.headers())),
        "/live" => respond(StatusCode::OK, TEXT, "ok\n"),
        "/ready" => match state.readiness.waiting_for() {
            None => respond(StatusCode::OK, TEXT, "ready\n"),
            Some(what) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("not ready: waiting for {what}\n"),
            ),
        },
        path if path.starts_with("/debug/") && !state.debug.enabled => {
            respond(StatusCode::NOT_FOUND, TEXT, DEBUG_OFF)
        }
        "/debug/discovery" => match state.discovery.get() {
            Some(discovery) => {
                // The lock is held only to copy the table; serialising happens after it is released.
                let snapshot = discovery
                    .lock()
                    .expect("discovery lock poisoned")
                    .snapshot(std::time::Instant::now(), state.debug.command_lines);
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

/// 401 with the challenge a basic-auth client answers.
fn unauthorized() -> Response<Body> {
    let mut response = respond(
        StatusCode::UNAUTHORIZED,
        "text/plain; charset=utf-8",
        "unauthorized\n",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic"),
    );
    response
}

/// One request: authenticated when users are configured (not `/live` and `/ready`), routed, and given
/// the configured headers.
async fn handle(
    state: &AdminState,
    settings: &WebSettings,
    request: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let open = matches!(request.uri().path(), "/live" | "/ready");
    let admitted = match &settings.users {
        Some(users) if !open => users.admits(request.headers()).await,
        _ => true,
    };
    let mut response = match admitted {
        true => route(state, &request),
        false => unauthorized(),
    };
    for (name, value) in &settings.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// Serves HTTP/1.1 on one connection (plain or TLS) until it ends or `shutdown` is cancelled.
async fn serve_connection<I>(
    io: I,
    state: Arc<AdminState>,
    settings: Arc<WebSettings>,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let state = state.clone();
        let settings = settings.clone();
        async move { Ok::<_, Infallible>(handle(&state, &settings, request).await) }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "admin connection ended with an error");
            }
        }
        () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
    }
}

/// Serves until `shutdown` is cancelled, with the web configuration `security` has in force when each
/// connection is accepted.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    security: Arc<WebSecurity>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
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
        let security = security.clone();
        tokio::spawn(async move {
            // Read (and reloaded if a file changed) off the accept loop: a reload reads files.
            let settings = tokio::task::spawn_blocking(move || security.current())
                .await
                .expect("reading the web configuration does not panic");
            match settings.tls.clone() {
                None => serve_connection(stream, state, settings, shutdown).await,
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => serve_connection(stream, state, settings, shutdown).await,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "admin TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "admin TLS handshake timed out"),
                    }
                }
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
    fn the_landing_page_links_the_debug_endpoints_only_when_they_are_served() {
        let debug = |enabled| DebugEndpoints {
            enabled,
            command_lines: CommandLines::Redacted,
        };
        let off = landing_page(debug(false));
        assert!(off.contains("/metrics") && !off.contains("/debug"), "{off}");
        let on = landing_page(debug(true));
        assert!(on.contains("/debug/discovery") && on.contains("/debug/connections"));
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

    /// An exposition of `label_sets` server label sets (each about 2 KiB of text), as vigil builds it.
    fn exposition(label_sets: usize) -> Exposition {
        use crate::metrics::{
            Call, Exchange, Measure, RedFamilies, RedSeries, ServiceLabels, Side,
        };
        let config = crate::config::Config::load(None, [], &[]).unwrap().metrics;
        let registry = crate::metrics::new_registry();
        let mut series = RedSeries::new(&config, RedFamilies::register(&registry, &config));
        let labels = ServiceLabels::host("shop", "");
        for n in 0..label_sets {
            let exchange = Exchange {
                side: Side::Server,
                call: Call::Http {
                    method: "GET",
                    target: "/health".to_owned(),
                    status: 200 + n as u16,
                },
                measure: Measure::Request {
                    seconds: 0.01,
                    request_body: Some(0),
                    response_body: Some(10),
                },
            };
            series.record(&labels, 1, exchange);
        }
        Exposition::new(registry, series.exposition())
    }

    /// The body of `/metrics`, gzip-compressed or not, decoded.
    async fn scrape(exposition: Exposition, gzip: bool) -> String {
        use std::io::Read as _;
        let response = metrics_response(exposition, gzip);
        assert_eq!(
            response.headers().get(header::CONTENT_ENCODING).is_some(),
            gzip
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let mut text = String::new();
        match gzip {
            true => flate2::read::GzDecoder::new(&body[..])
                .read_to_string(&mut text)
                .unwrap(),
            false => std::io::Cursor::new(&body[..])
                .read_to_string(&mut text)
                .unwrap(),
        };
        text
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_streamed_exposition_is_the_whole_exposition_compressed_or_not() {
        // Many chunks: about 500 KiB of text.
        let exposition = exposition(250);
        // vigil's own process_* metrics change from one reading to the next.
        let steady = |text: &str| {
            text.lines()
                .filter(|line| !line.contains("process_"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let text = exposition.text();
        assert!(text.len() > 8 * CHUNK_BYTES, "{} bytes", text.len());
        assert!(text.contains("http_server_request_duration_seconds_count{"));
        assert!(text.contains("vigil_build_info{"));
        for gzip in [false, true] {
            let scraped = scrape(exposition.clone(), gzip).await;
            assert_eq!(steady(&scraped), steady(&text), "gzip {gzip}");
        }
    }
}
