use std::io::Write as _;

use super::*;

/// A self-signed EC certificate for 127.0.0.1 that is also a CA, valid for a century (`openssl req
/// -x509 … -addext basicConstraints=critical,CA:TRUE`), its key, and a key that does not fit it.
const CERT: &str = include_str!("testdata/cert.pem");
const KEY: &str = include_str!("testdata/key.pem");
const OTHER_KEY: &str = include_str!("testdata/other-key.pem");

/// A bcrypt hash of `secret` (cost 4).
fn hash() -> String {
    bcrypt::hash_with_salt("secret", 4, [3; 16])
        .unwrap()
        .to_string()
}

/// A directory with the certificate files and `web.yml` holding `yaml`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(yaml: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("cert.pem", CERT),
            ("key.pem", KEY),
            ("other-key.pem", OTHER_KEY),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let mut file = std::fs::File::create(dir.path().join("web.yml")).unwrap();
        file.write_all(yaml.as_bytes()).unwrap();
        Fixture { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("web.yml")
    }

    fn load(&self) -> Result<WebSettings, WebConfigError> {
        WebSettings::load(&self.path())
    }
}

/// The error `yaml` is refused with; it must name the file.
fn error_of(yaml: &str) -> String {
    let fixture = Fixture::new(yaml);
    let error = match fixture.load() {
        Ok(_) => panic!("refused: {yaml}"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains(&fixture.path().display().to_string()),
        "names the file: {error}"
    );
    error
}

const TLS: &str = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n";

#[test]
fn an_empty_file_is_plain_http_without_authentication() {
    for yaml in ["", "# nothing\n", "{}\n", "basic_auth_users: {}\n"] {
        let settings = Fixture::new(yaml).load().unwrap();
        assert!(
            settings.tls.is_none() && settings.users.is_none(),
            "{yaml:?}"
        );
        assert!(settings.headers.is_empty());
    }
}

#[test]
fn a_full_file_loads_with_relative_and_inline_files() {
    let yaml = format!(
        "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: cert.pem\n  \
         min_version: TLS13\n  prefer_server_cipher_suites: false\n\
         http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n    \
         Strict-Transport-Security: max-age=31536000\n    X-XSS-Protection: \"\"\n\
         basic_auth_users:\n  alice: {}\n",
        hash()
    );
    let fixture = Fixture::new(&yaml);
    let settings = fixture.load().unwrap();
    let tls = settings.tls.as_ref().unwrap();
    assert_eq!(tls.alpn_protocols, [b"http/1.1".to_vec()]);
    assert!(!tls.ignore_client_order);
    assert!(settings.users.is_some());
    let headers: Vec<String> = settings
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
        .collect();
    assert_eq!(
        headers,
        [
            "strict-transport-security: max-age=31536000",
            "x-frame-options: deny"
        ]
    );
    // Watched for changes: the file and the three it names (the CA is the certificate here).
    let dir = fixture.dir.path();
    assert_eq!(
        settings.sources,
        [
            fixture.path(),
            dir.join("cert.pem"),
            dir.join("key.pem"),
            dir.join("cert.pem")
        ]
    );

    let indent = |pem: &str| pem.replace('\n', "\n    ");
    let inline = format!(
        "tls_server_config:\n  cert: |\n    {}\n  key: |\n    {}\n",
        indent(CERT),
        indent(KEY)
    );
    assert!(Fixture::new(&inline).load().unwrap().tls.is_some());
}

#[test]
fn every_error_names_its_key() {
    let hash = hash();
    let cases: Vec<(String, &[&str])> = vec![
        // Unknown keys, at each level.
        ("tls_sever_config: {}\n".into(), &["tls_sever_config"]),
        (
            "tls_server_config:\n  cert_fil: cert.pem\n".into(),
            &["cert_fil", "tls_server_config"],
        ),
        (
            "http_server_config:\n  header: {}\n".into(),
            &["header", "http_server_config"],
        ),
        (
            "http_server_config:\n  headers:\n    X-Powered-By: vigil\n".into(),
            &["http_server_config.headers.X-Powered-By"],
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: always\n".into(),
            &["http_server_config.headers.X-Frame-Options", "deny"],
        ),
        // Files.
        (
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: key.pem\n".into(),
            &["tls_server_config.cert_file", "missing.pem"],
        ),
        (
            "tls_server_config:\n  cert_file: key.pem\n  key_file: key.pem\n".into(),
            &["tls_server_config.cert_file", "no PEM certificate"],
        ),
        (
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: cert.pem\n".into(),
            &["tls_server_config.key_file", "no PEM private key"],
        ),
        (
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: other-key.pem\n".into(),
            &["tls_server_config.key_file", "does not fit"],
        ),
        (
            "tls_server_config:\n  cert_file: cert.pem\n".into(),
            &["tls_server_config.key_file"],
        ),
        (
            "tls_server_config:\n  key_file: key.pem\n".into(),
            &["tls_server_config.cert_file"],
        ),
        (
            format!("{TLS}  cert: inline\n"),
            &["tls_server_config.cert_file", "not both"],
        ),
        // Client certificates.
        (
            format!("{TLS}  client_auth_type: Sometimes\n"),
            &["client_auth_type", "Sometimes"],
        ),
        (
            format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n"),
            &["tls_server_config.client_ca_file"],
        ),
        (
            format!("{TLS}  client_auth_type: VerifyClientCertIfGiven\n"),
            &["tls_server_config.client_ca_file"],
        ),
        (
            format!("{TLS}  client_auth_type: RequireAnyClientCert\n  client_ca_file: cert.pem\n"),
            &["tls_server_config.client_auth_type", "not supported"],
        ),
        (
            format!("{TLS}  client_auth_type: RequestClientCert\n"),
            &["tls_server_config.client_auth_type", "not supported"],
        ),
        (
            format!("{TLS}  client_ca_file: cert.pem\n"),
            &["tls_server_config.client_auth_type", "NoClientCert"],
        ),
        (
            format!(
                "{TLS}  client_ca_file: key.pem\n  client_auth_type: RequireAndVerifyClientCert\n"
            ),
            &["tls_server_config.client_ca_file"],
        ),
        (
            "tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n".into(),
            &["tls_server_config.cert_file"],
        ),
        // Versions.
        (
            format!("{TLS}  min_version: TLS11\n"),
            &["tls_server_config.min_version", "TLS11"],
        ),
        (
            format!("{TLS}  min_version: TLS14\n"),
            &["min_version", "TLS14"],
        ),
        (
            format!("{TLS}  min_version: TLS13\n  max_version: TLS12\n"),
            &["tls_server_config.min_version"],
        ),
        // Toolkit keys vigil does not implement.
        (
            format!("{TLS}  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"),
            &["tls_server_config.cipher_suites", "not supported"],
        ),
        (
            format!("{TLS}  curve_preferences: [X25519]\n"),
            &["tls_server_config.curve_preferences", "not supported"],
        ),
        (
            format!("{TLS}  client_allowed_sans: [example.com]\n"),
            &["tls_server_config.client_allowed_sans", "not supported"],
        ),
        (
            "rate_limit:\n  interval: 1s\n  burst: 20\n".into(),
            &["rate_limit", "not supported"],
        ),
        // Users.
        (
            "basic_auth_users:\n  alice: secret\n".into(),
            &["basic_auth_users.alice", "bcrypt"],
        ),
        (
            format!("basic_auth_users:\n  - alice: {hash}\n"),
            &["basic_auth_users"],
        ),
        // Not YAML of this shape at all.
        ("- a\n- b\n".into(), &["sequence"]),
    ];
    for (yaml, expected) in cases {
        let error = error_of(&yaml);
        for needle in expected {
            assert!(
                error.contains(needle),
                "{yaml:?}: {error:?} lacks {needle:?}"
            );
        }
    }
}

#[test]
fn an_unreadable_file_is_named() {
    let error = WebSettings::load(Path::new("/nonexistent/web.yml"))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("/nonexistent/web.yml"), "{error}");
}
