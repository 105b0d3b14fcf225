//! `--web.config.file` against real `curl`: TLS with basic auth (right, wrong and missing credentials,
//! plain HTTP to the TLS port, the open probes, response headers, users changed while running), TLS
//! with verified client certificates (none, one signed by the CA, one signed by another), and a bad
//! file refused at start. Root only where vigil runs; certificates are made by `openssl`, bcrypt hashes
//! by the `bcrypt` crate.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use vigil_integration::{Vigil, eventually, require_root, self_signed_certificate, vigil_binary};

/// A bcrypt hash of `password` (cost 6: vigil is a debug build in tests, and each miss costs one).
fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 6).unwrap()
}

/// What curl got: the status (0 when no HTTP response came), the response head and the body.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// `curl` with `args` against `url`.
fn curl(args: &[&str], url: &str) -> Reply {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D", "/dev/stderr"])
        .args(["-o", "/dev/stdout", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Reply {
        status: status.trim().parse().unwrap_or(0),
        head: String::from_utf8_lossy(&output.stderr).to_lowercase(),
        body: body.to_owned(),
    }
}

/// Writes `yaml` as `web.yml` in `dir`.
fn write_web_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("web.yml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Starts vigil with the web configuration file `web_config` and waits until `/ready` answers 200 over
/// HTTPS (it needs no credentials) with `tls_args`.
fn start(web_config: &Path, tls_args: &[&str]) -> Vigil {
    let vigil = Vigil::spawn("", &["--web.config.file", web_config.to_str().unwrap()]);
    let ready = format!("https://127.0.0.1:{}/ready", vigil.port);
    assert!(
        eventually(Duration::from_secs(30), || curl(tls_args, &ready).status
            == 200),
        "vigil became ready over HTTPS; log:\n{}",
        vigil.log()
    );
    vigil
}

fn openssl(args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA in `dir` (`{name}-ca.pem`, `{name}-ca.key`) and a client certificate it signs
/// (`{name}-client.pem`, `{name}-client.key`).
fn client_ca_and_certificate(dir: &Path, name: &str) {
    let path = |file: &str| dir.join(format!("{name}-{file}")).display().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let subject = format!("/CN={name} CA");
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", &subject];
    ca.extend(ec);
    let (ca_key, ca_pem) = (path("ca.key"), path("ca.pem"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_pem]);
    openssl(&ca);
    let (key, csr, pem) = (path("client.key"), path("client.csr"), path("client.pem"));
    let mut request = vec!["req", "-subj", "/CN=prometheus"];
    request.extend(ec);
    request.extend(["-keyout", &key, "-out", &csr]);
    openssl(&request);
    let extensions = path("client.ext");
    std::fs::write(&extensions, "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &extensions,
        "-out",
        &pem,
    ]);
}

#[test]
fn basic_auth_over_tls_admits_only_the_right_credentials() {
    if !require_root("basic_auth_over_tls_admits_only_the_right_credentials") {
        return;
    }
    let (dir, cert, key) = self_signed_certificate();
    let web_config = write_web_config(
        dir.path(),
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
             basic_auth_users:\n  alice: {}\n",
            cert.display(),
            key.display(),
            bcrypt_hash("right-password")
        ),
    );
    let ca = cert.to_str().unwrap();
    let vigil = start(&web_config, &["--cacert", ca]);
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", vigil.port);

    let right = curl(
        &["--cacert", ca, "-u", "alice:right-password"],
        &url("/metrics"),
    );
    assert_eq!(right.status, 200, "{}", right.head);
    assert!(right.body.contains("vigil_build_info"), "{}", right.body);
    assert!(
        right.head.contains("x-content-type-options: nosniff"),
        "{}",
        right.head
    );
    // Again: the verified credentials are cached; the answer is the same.
    let again = curl(
        &["--cacert", ca, "-u", "alice:right-password"],
        &url("/metrics"),
    );
    assert_eq!(again.status, 200);

    for (what, args) in [
        (
            "wrong password",
            vec!["--cacert", ca, "-u", "alice:wrong-password"],
        ),
        (
            "unknown user",
            vec!["--cacert", ca, "-u", "mallory:right-password"],
        ),
        ("no credentials", vec!["--cacert", ca]),
    ] {
        for path in [
            "/metrics",
            "/",
            "/debug/discovery",
            "/debug/connections",
            "/nowhere",
        ] {
            let reply = curl(&args, &url(path));
            assert_eq!(reply.status, 401, "{what} on {path}: {}", reply.head);
            assert!(
                reply.head.contains("www-authenticate: basic"),
                "{what} on {path}: {}",
                reply.head
            );
            assert!(
                !reply.body.contains("vigil_"),
                "{what} on {path}: {}",
                reply.body
            );
        }
    }
    // The debug endpoints (on in the harness) with the credentials.
    let debug = curl(
        &["--cacert", ca, "-u", "alice:right-password"],
        &url("/debug/discovery"),
    );
    assert_eq!(debug.status, 200, "{}", debug.body);
    // The probes need no credentials (the kubelet has none to send); they tell only liveness and
    // readiness.
    for path in ["/live", "/ready"] {
        assert_eq!(curl(&["--cacert", ca], &url(path)).status, 200, "{path}");
    }
    // Plain HTTP to the TLS port gets no HTTP answer at all.
    let plain = curl(&[], &format!("http://127.0.0.1:{}/metrics", vigil.port));
    assert_eq!(plain.status, 0, "{}", plain.head);
    // TLS without trusting the certificate: curl refuses it (it is really the configured one).
    assert_eq!(curl(&[], &url("/live")).status, 0);

    // Users changed while vigil runs: the file is read again at the next connection.
    std::fs::write(
        &web_config,
        std::fs::read_to_string(&web_config).unwrap().replace(
            "  alice: ",
            &format!("  bob: {}\n  carol: ", bcrypt_hash("bobs-password")),
        ),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || curl(
            &["--cacert", ca, "-u", "bob:bobs-password"],
            &url("/metrics")
        )
        .status
            == 200),
        "bob is admitted after the change; log:\n{}",
        vigil.log()
    );
    assert_eq!(
        curl(
            &["--cacert", ca, "-u", "alice:right-password"],
            &url("/metrics")
        )
        .status,
        401,
        "alice is gone"
    );
    assert!(vigil.log().contains("web configuration reloaded"));
}

#[test]
fn a_rotated_certificate_is_served_without_a_restart() {
    if !require_root("a_rotated_certificate_is_served_without_a_restart") {
        return;
    }
    let (dir, cert, key) = self_signed_certificate();
    let first = dir.path().join("first.pem");
    std::fs::copy(&cert, &first).unwrap();
    let web_config = write_web_config(
        dir.path(),
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            cert.display(),
            key.display()
        ),
    );
    let trusting = |pem: &Path| vec!["--cacert".to_owned(), pem.display().to_string()];
    let status = |pem: &Path, url: &str| {
        let args = trusting(pem);
        curl(&args.iter().map(String::as_str).collect::<Vec<_>>(), url).status
    };
    let vigil = start(&web_config, &["--cacert", first.to_str().unwrap()]);
    let url = format!("https://127.0.0.1:{}/metrics", vigil.port);

    // A broken certificate written in place: the one in force stays, with a warning.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    assert_eq!(status(&first, &url), 200, "still the first certificate");
    assert!(
        eventually(Duration::from_secs(5), || vigil
            .log()
            .contains("does not load; keeping the previous one")),
        "{}",
        vigil.log()
    );

    // The rotation: a new key and certificate at the same paths (as cert-manager or a kubelet-mounted
    // Secret leaves them).
    let (next_dir, next_cert, next_key) = self_signed_certificate();
    std::fs::copy(&next_key, &key).unwrap();
    std::fs::copy(&next_cert, &cert).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || status(&next_cert, &url) == 200),
        "the rotated certificate is served; log:\n{}",
        vigil.log()
    );
    assert_eq!(status(&first, &url), 0, "the first one is no longer served");
    drop(next_dir);
}

#[test]
fn verified_client_certificates_are_required_when_configured() {
    if !require_root("verified_client_certificates_are_required_when_configured") {
        return;
    }
    let (dir, cert, key) = self_signed_certificate();
    client_ca_and_certificate(dir.path(), "trusted");
    client_ca_and_certificate(dir.path(), "rogue");
    // Relative names: relative to the web configuration file's directory.
    let web_config = write_web_config(
        dir.path(),
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: trusted-ca.pem\n",
            cert.file_name().unwrap().to_str().unwrap(),
            key.file_name().unwrap().to_str().unwrap(),
        ),
    );
    let ca = cert.to_str().unwrap();
    let file = |name: &str| dir.path().join(name).display().to_string();
    let (trusted_cert, trusted_key) = (file("trusted-client.pem"), file("trusted-client.key"));
    let trusted = [
        "--cacert",
        ca,
        "--cert",
        &trusted_cert,
        "--key",
        &trusted_key,
    ];
    let vigil = start(&web_config, &trusted);
    let url = format!("https://127.0.0.1:{}/metrics", vigil.port);

    let served = curl(&trusted, &url);
    assert_eq!(served.status, 200, "{}", served.head);
    assert!(served.body.contains("vigil_build_info"));

    let refused = curl(&["--cacert", ca], &url);
    assert_eq!(refused.status, 0, "no client certificate: {}", refused.head);
    let (rogue_cert, rogue_key) = (file("rogue-client.pem"), file("rogue-client.key"));
    let rogue = curl(
        &["--cacert", ca, "--cert", &rogue_cert, "--key", &rogue_key],
        &url,
    );
    assert_eq!(
        rogue.status, 0,
        "a certificate of another CA: {}",
        rogue.head
    );
    // TLS 1.2 as well (the default min_version).
    let tls12 = [&trusted[..], &["--tls-max", "1.2"]].concat();
    assert_eq!(curl(&tls12, &url).status, 200);
    assert_eq!(
        curl(&["--cacert", ca, "--tls-max", "1.2"], &url).status,
        0,
        "TLS 1.2 without a certificate"
    );
}

#[test]
fn a_bad_web_config_file_stops_vigil_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    for (yaml, key) in [
        (
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n",
            "tls_server_config.cert_file",
        ),
        (
            "basic_auth_users:\n  alice: plain-text\n",
            "basic_auth_users.alice",
        ),
        ("tls_server_config:\n  certfile: a.pem\n", "certfile"),
    ] {
        let web_config = write_web_config(dir.path(), yaml);
        let output = Command::new(vigil_binary())
            .args(["--web.config.file", web_config.to_str().unwrap()])
            .args(["--web.listen-address", "127.0.0.1:0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{yaml}: {stderr}");
        assert!(stderr.contains(key), "{yaml}: {stderr}");
        assert!(
            stderr.contains(&web_config.display().to_string()),
            "{stderr}"
        );
    }
    // Unreadable.
    let output = Command::new(vigil_binary())
        .args([
            "--web.config.file",
            "/nonexistent/web.yml",
            "--check-config",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/web.yml"));
}
