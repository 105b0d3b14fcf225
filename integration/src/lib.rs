//! Harness for end-to-end scenarios: builds the real `vigil` binary, runs it on loopback, and reads its
//! admin endpoints. Scenarios that need root (eBPF) call [`require_root`] first; their workloads run in
//! simulated pods ([`Pod`]).

pub mod fake_apiserver;
pub mod http_client;
pub mod load;
mod pod;
pub mod soak;

pub use pod::Pod;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, OnceLock},
    thread,
    time::{Duration, Instant},
};

/// The workspace root.
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ is inside the workspace")
}

/// Builds `vigil` (a no-op when up to date) and returns its path, in the profile these tests use.
pub fn vigil_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        let mut build = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        build
            .current_dir(workspace())
            .args(["build", "--quiet", "-p", "vigil", "--bin", "vigil"]);
        if profile == "release" {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build for vigil");
        assert!(status.success(), "cargo build -p vigil failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace().join("target"), PathBuf::from);
        target.join(profile).join("vigil")
    })
}

/// Path of a workload binary of this crate (built with the tests).
pub fn workload_binary(name: &str) -> PathBuf {
    vigil_binary().with_file_name(name)
}

/// `false` (after printing why) when not root: the caller returns, and the test is reported as passed
/// with the reason in its output.
pub fn require_root(test: &str) -> bool {
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        println!("SKIPPED {test}: needs root to load eBPF programs");
    }
    root
}

/// Ports handed out by [`free_port`]: below the kernel's default ephemeral range (32768–60999), so that
/// no client connection takes one as its local port before the server listens on it.
const TEST_PORTS: std::ops::Range<u32> = 20_000..32_000;

/// A free loopback port for a server (checked by binding it, then closed again), never the same twice
/// in one test process.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let span = TEST_PORTS.end - TEST_PORTS.start;
    // Test binaries run one after another: each starts elsewhere in the range.
    let start = std::process::id().wrapping_mul(7_919);
    for _ in 0..span {
        let offset = HANDED_OUT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (TEST_PORTS.start + start.wrapping_add(offset) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}");
}

/// A running vigil, stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Vigil {
    child: Option<Child>,
    pub port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Vigil {
    /// Starts vigil with a YAML config file (may be empty) and extra flags, on a free port.
    pub fn spawn(config_yaml: &str, extra_args: &[&str]) -> Vigil {
        Vigil::spawn_wrapped(&[], config_yaml, extra_args)
    }

    /// [`Vigil::spawn`] through `wrapper` (a program and its arguments that exec vigil, such as
    /// `setpriv` with a capability set); none when empty.
    ///
    /// The debug endpoints the tests read are on (`VIGIL_WEB__DEBUG_ENDPOINTS=true`; command lines stay
    /// redacted unless the config sets `web.debug_command_lines: true`): see [`Vigil::spawn_with_env`]
    /// to change that.
    pub fn spawn_wrapped(wrapper: &[&str], config_yaml: &str, extra_args: &[&str]) -> Vigil {
        Vigil::spawn_with_env(wrapper, config_yaml, extra_args, &[])
    }

    /// [`Vigil::spawn_wrapped`] with environment variables set for vigil, after (and so over) the
    /// harness's own `VIGIL_WEB__DEBUG_ENDPOINTS=true`.
    pub fn spawn_with_env(
        wrapper: &[&str],
        config_yaml: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Vigil {
        let port = free_port();
        let config = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        std::fs::write(config.path(), config_yaml).unwrap();
        let (_, config_path) = config.keep().unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(vigil_binary());
                command
            }
            None => Command::new(vigil_binary()),
        };
        let mut child = command
            .arg("--config")
            .arg(&config_path)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra_args)
            .env("VIGIL_WEB__DEBUG_ENDPOINTS", "true")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting vigil");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Vigil {
            child: Some(child),
            port,
            stderr,
        }
    }

    /// Starts vigil and waits until `/ready` answers 200.
    pub fn start(config_yaml: &str) -> Vigil {
        let vigil = Vigil::spawn(config_yaml, &[]);
        vigil.wait_ready(Duration::from_secs(20));
        vigil
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// What vigil logged so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `GET path` → (status, body); `None` while nothing listens. The body is decoded from chunks
    /// when sent in them (`/metrics` is streamed).
    pub fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok()?;
        let split = response
            .windows(4)
            .position(|window| window == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&response[..split]).ok()?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let chunked = head.lines().any(|line| {
            line.split_once(':').is_some_and(|(name, value)| {
                name.eq_ignore_ascii_case("transfer-encoding")
                    && value.trim().eq_ignore_ascii_case("chunked")
            })
        });
        let mut body = &response[split + 4..];
        if !chunked {
            return Some((status, String::from_utf8(body.to_vec()).ok()?));
        }
        let mut decoded = Vec::with_capacity(body.len());
        loop {
            let line_end = body.windows(2).position(|window| window == b"\r\n")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&body[..line_end]).ok()?.trim(), 16)
                    .ok()?;
            body = &body[line_end + 2..];
            if size == 0 {
                return Some((status, String::from_utf8(decoded).ok()?));
            }
            decoded.extend_from_slice(body.get(..size)?);
            body = body.get(size + 2..)?;
        }
    }

    /// `GET path`, panicking with vigil's log when it does not answer.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path)
            .unwrap_or_else(|| panic!("vigil did not answer {path}; log:\n{}", self.log()))
    }

    /// `/debug/discovery`, parsed.
    pub fn debug_discovery(&self) -> serde_json::Value {
        let (_, body) = self.get("/debug/discovery");
        serde_json::from_str(&body).unwrap()
    }

    /// The connections of `/debug/connections`.
    pub fn connections(&self) -> Vec<serde_json::Value> {
        let (_, body) = self.get("/debug/connections");
        let connections: serde_json::Value = serde_json::from_str(&body).unwrap();
        connections["connections"].as_array().unwrap().clone()
    }

    /// The process table of `/debug/discovery`.
    pub fn processes(&self) -> Vec<serde_json::Value> {
        self.debug_discovery()["processes"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The process `pid`, as discovery shows it.
    pub fn process(&self, pid: u64) -> Option<serde_json::Value> {
        self.processes()
            .into_iter()
            .find(|process| process["pid"] == pid)
    }

    /// The process listening on `port`, as discovery shows it.
    pub fn listener_on(&self, port: u16) -> Option<serde_json::Value> {
        self.processes().into_iter().find(|process| {
            process["listening_ports"]
                .as_array()
                .is_some_and(|ports| ports.contains(&serde_json::Value::from(port)))
        })
    }

    /// Waits until the process listening on `port` is captured (provisional or instrumented: its
    /// filter entry is in place); requests sent between its `listen` and that moment (one drain
    /// interval) are not seen.
    pub fn wait_captured(&self, port: u16) {
        let captured = |process: &serde_json::Value| {
            process["state"] == "provisional" || process["state"] == "instrumented"
        };
        assert!(
            eventually(Duration::from_secs(5), || self
                .listener_on(port)
                .is_some_and(|process| captured(&process))),
            "the server on {port} was captured: {:?}",
            self.listener_on(port)
        );
    }

    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if matches!(self.try_get("/ready"), Some((200, _))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("vigil not ready after {timeout:?}; log:\n{}", self.log());
    }

    /// The `/metrics` exposition.
    pub fn metrics(&self) -> String {
        self.get("/metrics").1
    }

    /// The value of one sample in `/metrics`, e.g. `metric("vigil_process_events_total{event=\"exec\"}")`.
    /// Panics when the sample is absent, naming the samples of its family that are there: a series that
    /// is not exported never reads as 0.
    pub fn metric(&self, sample: &str) -> f64 {
        let exposition = self.metrics();
        sample_value(&exposition, sample)
            .unwrap_or_else(|| panic!("{}", missing_sample(&exposition, sample)))
    }

    /// The value of one sample in `/metrics`, `None` while it is absent (to poll until it appears).
    pub fn try_metric(&self, sample: &str) -> Option<f64> {
        sample_value(&self.metrics(), sample)
    }

    /// The value of one sample whose series appears lazily (a labelled series before its first
    /// increment), 0 while absent; panics unless its family is exported (its `# TYPE` line).
    pub fn metric_or_zero(&self, sample: &str) -> f64 {
        let exposition = self.metrics();
        assert!(
            family_of(&exposition, sample_name(sample)).is_some(),
            "{}",
            missing_sample(&exposition, sample)
        );
        sample_value(&exposition, sample).unwrap_or(0.0)
    }

    /// Runs `true` and waits until `vigil_process_events_total` is exported: before vigil counts its
    /// first process event, the counter has no series and `/metrics` leaves the family out.
    pub fn wait_for_process_events(&self) {
        let status = Command::new("true").status().expect("running true");
        assert!(status.success());
        self.wait_for_family("vigil_process_events_total", Duration::from_secs(5));
    }

    /// Waits until `family` is exported (its `# TYPE` line is in `/metrics`), panicking after
    /// `timeout`: a family with labels has no series, and is left out, before its first one.
    pub fn wait_for_family(&self, family: &str, timeout: Duration) {
        let exported = eventually(timeout, || {
            family_of(&self.metrics(), family).is_some_and(|(name, _)| name == family)
        });
        assert!(
            exported,
            "{family} not exported within {timeout:?}:\n{}",
            self.metrics()
        );
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "vigil did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills vigil with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill_hard(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits for vigil to exit by itself (for start-up failures).
    pub fn wait_exit(mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                thread::sleep(Duration::from_millis(50)); // let the stderr reader finish
                return (status, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "vigil still running after {timeout:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Vigil {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The tgids in the in-kernel filter bitmap (`TRACKED_TGIDS`) of the newest vigil loaded: what the
/// kernel programs will actually capture.
pub fn tracked_tgids() -> BTreeSet<u32> {
    let newest = aya::maps::loaded_maps()
        .filter_map(Result::ok)
        .filter(|info| info.name_as_str() == Some(vigil_common::TRACKED_TGIDS_MAP))
        .map(|info| info.id())
        .max()
        .expect("a vigil with its TRACKED_TGIDS map is running");
    let data = aya::maps::MapData::from_id(newest).expect("opening TRACKED_TGIDS");
    let map: aya::maps::Array<_, u64> =
        aya::maps::Array::try_from(aya::maps::Map::Array(data)).expect("an array");
    (0..map.len())
        .flat_map(|index| {
            let word = map.get(&index, 0).expect("reading a TRACKED_TGIDS word");
            vigil_common::tracked_tgids_in_word(index, word)
        })
        .collect()
}

/// A helper process (a CPU hog, a workload outside any pod) killed when dropped, even on a failed
/// assertion.
pub struct Background(pub Child);

impl Background {
    pub fn spawn(command: &mut Command) -> Background {
        Background(command.spawn().expect("starting a helper process"))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The node HTTP server of the capture scenarios (`integration/workloads/http-server/server.js`, routes
/// in its header) on `port`, started with `args` outside any pod; returned once it prints that it
/// listens.
pub fn node_http_server(port: u16, args: &[&str]) -> Background {
    let mut server = Background::spawn(
        Command::new("node")
            .arg("server.js")
            .args(args)
            .current_dir(workspace().join("integration/workloads/http-server"))
            .env("PORT", port.to_string())
            .stdout(Stdio::piped()),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.as_mut().expect("stdout is piped"))
        .read_line(&mut line)
        .expect("reading the server's first line");
    assert_eq!(line.trim(), format!("listening {port}"));
    server
}

/// Raises this process's open-file limit to its hard limit (the processes it starts inherit it) and
/// returns it.
pub fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct they are given.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    limit.rlim_cur
}

/// Makes closing `stream` reset it (SO_LINGER 0), leaving no TIME_WAIT socket behind: thousands of
/// them would outlive a test by a minute and weigh on the scenarios after it (every read of
/// /proc/net/tcp lists them).
pub fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `linger` for its size; the fd is open for the call.
    let result = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "{}", std::io::Error::last_os_error());
}

/// `count` idle loopback connections, both ends held by this process (2 × `count` sockets in the
/// host's TCP tables, as on a busy node); dropped, they are reset rather than left in TIME_WAIT.
pub fn idle_connections(count: usize) -> Vec<TcpStream> {
    raise_open_files();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut streams = Vec::with_capacity(2 * count);
    for _ in 0..count {
        streams.push(TcpStream::connect(address).unwrap());
        streams.push(listener.accept().unwrap().0);
    }
    for stream in &streams {
        reset_on_close(stream);
    }
    streams
}

/// VmRSS of `pid`, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// A path segment of letters only (the route heuristic keeps it as a word), distinct for each `n`.
pub fn word(n: usize) -> String {
    let mut word = String::new();
    let mut rest = n;
    loop {
        word.push(char::from(b'a' + (rest % 26) as u8));
        rest /= 26;
        if rest == 0 {
            return word;
        }
    }
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a pid we spawned; a stale pid only yields ESRCH.
    unsafe { libc::kill(pid as i32, signal) };
}

/// Finds `sample` (name with its exact label set, as printed) in a text exposition.
pub fn sample_value(exposition: &str, sample: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

/// The metric name of a sample: `name{labels}` → `name`.
pub fn sample_name(sample: &str) -> &str {
    sample.split_once('{').map_or(sample, |(name, _)| name)
}

/// The family of the metric `name` in a text exposition, as its `# TYPE` line names it, and its type:
/// `name` itself, or for `name_count`, `name_sum` and `name_bucket` a histogram or summary. `None` when
/// no such family is exported.
pub fn family_of<'a>(exposition: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    exposition.lines().find_map(|line| {
        let (family, kind) = line.strip_prefix("# TYPE ")?.split_once(' ')?;
        let suffix = name.strip_prefix(family)?;
        let belongs = match suffix {
            "" => true,
            "_count" | "_sum" => kind == "histogram" || kind == "summary",
            "_bucket" => kind == "histogram",
            _ => false,
        };
        belongs.then_some((family, kind))
    })
}

/// Why `sample` is not in `exposition`: its family is not exported, or it is and has these samples.
fn missing_sample(exposition: &str, sample: &str) -> String {
    let name = sample_name(sample);
    let Some((family, kind)) = family_of(exposition, name) else {
        return format!("{sample} is not in /metrics: no family exports {name} (no `# TYPE` line)");
    };
    let names = match kind {
        "histogram" | "summary" => vec![format!("{family}_count"), format!("{family}_sum")],
        _ => vec![family.to_owned()],
    };
    let mut present = Vec::new();
    for name in &names {
        if let Some(value) = sample_value(exposition, name) {
            present.push(format!("{name} {value}"));
        }
        for (labels, value) in samples(exposition, name) {
            let labels: Vec<String> = labels
                .iter()
                .map(|(label, value)| format!("{label}=\"{value}\""))
                .collect();
            present.push(format!("{name}{{{}}} {value}", labels.join(",")));
        }
    }
    format!(
        "{sample} is not in /metrics; the {kind} {family} has {}",
        if present.is_empty() {
            "no samples".to_owned()
        } else {
            present.join(", ")
        }
    )
}

/// A sample's labels by name. vigil leaves empty-valued labels out of its exposition (in Prometheus an
/// empty label is no label); indexing a label the sample does not carry gives the empty value, as a
/// PromQL matcher `label=""` would.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(BTreeMap<String, String>);

impl std::ops::Index<&str> for Labels {
    type Output = String;

    fn index(&self, name: &str) -> &String {
        static EMPTY: String = String::new();
        self.0.get(name).unwrap_or(&EMPTY)
    }
}

impl std::ops::Deref for Labels {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        Labels(pairs.into_iter().collect())
    }
}

/// The samples of `name` (a metric name as printed, e.g. `http_server_request_duration_seconds_count`)
/// in a text exposition: each with its labels by name and its value.
pub fn samples(exposition: &str, name: &str) -> Vec<(Labels, f64)> {
    let prefix = format!("{name}{{");
    exposition
        .lines()
        .filter_map(|line| {
            let (labels, value) = line.strip_prefix(&prefix)?.rsplit_once("} ")?;
            let labels = labels
                .split("\",")
                .filter_map(|pair| {
                    let (label, value) = pair.split_once("=\"")?;
                    Some((label.to_owned(), value.trim_end_matches('"').to_owned()))
                })
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A throwaway self-signed certificate for 127.0.0.1 (an EC key, made by `openssl` in ~10 ms), in a
/// new directory removed on drop: (directory, certificate, key).
pub fn self_signed_certificate() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl (Debian openssl)");
    assert!(status.success(), "openssl made a certificate");
    (dir, cert, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "\
# HELP vigil_events_total Events.
# TYPE vigil_events_total counter
vigil_events_total{kind=\"exec\",side=\"a\"} 3
vigil_events_total{kind=\"exit\",side=\"a\"} 0
# HELP vigil_latency_seconds Latency.
# TYPE vigil_latency_seconds histogram
vigil_latency_seconds_bucket{le=\"+Inf\"} 2
vigil_latency_seconds_sum 0.5
vigil_latency_seconds_count 2
";

    #[test]
    fn a_sample_belongs_to_the_family_its_type_line_names() {
        let counter = Some(("vigil_events_total", "counter"));
        assert_eq!(family_of(EXPOSITION, "vigil_events_total"), counter);
        let histogram = Some(("vigil_latency_seconds", "histogram"));
        for name in
            ["_count", "_sum", "_bucket"].map(|suffix| format!("vigil_latency_seconds{suffix}"))
        {
            assert_eq!(family_of(EXPOSITION, &name), histogram, "{name}");
        }
        assert_eq!(family_of(EXPOSITION, "vigil_events"), None);
        assert_eq!(family_of(EXPOSITION, "vigil_events_total_count"), None);
        assert_eq!(family_of(EXPOSITION, "vigil_other_total"), None);
        assert_eq!(
            sample_name("vigil_events_total{kind=\"exec\"}"),
            "vigil_events_total"
        );
    }

    #[test]
    fn a_missing_sample_names_what_its_family_has_or_that_there_is_none() {
        let message = missing_sample(EXPOSITION, "vigil_events_total{kind=\"exit\"}");
        assert_eq!(
            message,
            "vigil_events_total{kind=\"exit\"} is not in /metrics; the counter vigil_events_total has \
             vigil_events_total{kind=\"exec\",side=\"a\"} 3, vigil_events_total{kind=\"exit\",side=\"a\"} 0"
        );
        let message = missing_sample(EXPOSITION, "vigil_latency_seconds_count{route=\"/\"}");
        assert!(
            message.ends_with("has vigil_latency_seconds_count 2, vigil_latency_seconds_sum 0.5"),
            "{message}"
        );
        assert_eq!(
            missing_sample(EXPOSITION, "vigil_short_lived_processes_total"),
            "vigil_short_lived_processes_total is not in /metrics: no family exports \
             vigil_short_lived_processes_total (no `# TYPE` line)"
        );
    }
}
