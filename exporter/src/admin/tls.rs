//! `tls_server_config` turned into a rustls server configuration (ring provider, HTTP/1.1 by ALPN).
//!
//! Client certificates: `RequireAndVerifyClientCert` and `VerifyClientCertIfGiven` verify against
//! `client_ca_file` with rustls' WebPKI verifier. `RequestClientCert` and `RequireAnyClientCert` (any
//! certificate, verified by nobody) are refused: rustls has no such verifier on purpose, and the
//! toolkit itself calls them insecure.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    RootCertStore, ServerConfig, SupportedProtocolVersion,
    server::WebPkiClientVerifier,
    version::{TLS12, TLS13},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};

use super::web_config::{ClientAuthType, TlsServerConfig, TlsVersion};

/// A key at fault and why.
type KeyError = (String, String);

fn fault(key: &str, message: impl Into<String>) -> KeyError {
    (format!("tls_server_config.{key}"), message.into())
}

/// PEM text given inline (`inline_key`) or in a file (`file_key`, relative to `directory`); the file
/// is added to `sources`. `None` when neither is given.
fn pem(
    inline: &Option<String>,
    file: &Option<PathBuf>,
    (inline_key, file_key): (&str, &str),
    directory: &Path,
    sources: &mut Vec<PathBuf>,
) -> Result<Option<(Vec<u8>, String)>, KeyError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(fault(
            file_key,
            format!("give {inline_key} or {file_key}, not both"),
        )),
        (Some(text), None) => Ok(Some((text.clone().into_bytes(), inline_key.to_owned()))),
        (None, Some(file)) => {
            let path = directory.join(file);
            let bytes = std::fs::read(&path).map_err(|error| {
                fault(file_key, format!("cannot read {}: {error}", path.display()))
            })?;
            sources.push(path);
            Ok(Some((bytes, file_key.to_owned())))
        }
        (None, None) => Ok(None),
    }
}

fn certificates(bytes: &[u8], key: &str) -> Result<Vec<CertificateDer<'static>>, KeyError> {
    let certificates = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| fault(key, format!("not PEM certificates: {error}")))?;
    if certificates.is_empty() {
        return Err(fault(key, "no PEM certificate in it"));
    }
    Ok(certificates)
}

fn version(version: TlsVersion, key: &str) -> Result<&'static SupportedProtocolVersion, KeyError> {
    match version {
        TlsVersion::TLS12 => Ok(&TLS12),
        TlsVersion::TLS13 => Ok(&TLS13),
        old => Err(fault(
            key,
            format!("{old:?} is not supported (rustls speaks TLS12 and TLS13)"),
        )),
    }
}

/// The server configuration `config` describes; `None` when it names no certificate and no key
/// (plain HTTP, as in the toolkit). Files it reads are added to `sources`.
pub(super) fn server_config(
    config: &TlsServerConfig,
    directory: &Path,
    sources: &mut Vec<PathBuf>,
) -> Result<Option<ServerConfig>, KeyError> {
    if let Some((key, why)) = config.unsupported() {
        return Err((key.to_owned(), why.to_owned()));
    }
    let cert = pem(
        &config.cert,
        &config.cert_file,
        ("cert", "cert_file"),
        directory,
        sources,
    )?;
    let key = pem(
        &config.key,
        &config.key_file,
        ("key", "key_file"),
        directory,
        sources,
    )?;
    let client_ca = pem(
        &config.client_ca,
        &config.client_ca_file,
        ("client_ca", "client_ca_file"),
        directory,
        sources,
    )?;
    let (cert, key) = match (cert, key) {
        (None, None) => {
            if client_ca.is_some() || config.client_auth_type != ClientAuthType::NoClientCert {
                return Err(fault(
                    "cert_file",
                    "client certificates need TLS: give cert_file and key_file",
                ));
            }
            return Ok(None);
        }
        (Some(_), None) => return Err(fault("key_file", "a certificate needs its key")),
        (None, Some(_)) => return Err(fault("cert_file", "a key needs its certificate")),
        (Some(cert), Some(key)) => (cert, key),
    };
    let chain = certificates(&cert.0, &cert.1)?;
    let private_key = PrivateKeyDer::from_pem_slice(&key.0)
        .map_err(|error| fault(&key.1, format!("no PEM private key in it: {error}")))?;

    let min = version(
        config.min_version.unwrap_or(TlsVersion::TLS12),
        "min_version",
    )?;
    let max = version(
        config.max_version.unwrap_or(TlsVersion::TLS13),
        "max_version",
    )?;
    let versions: Vec<&'static SupportedProtocolVersion> = [&TLS12, &TLS13]
        .into_iter()
        .filter(|candidate| {
            let rank = |version: &SupportedProtocolVersion| u16::from(version.version);
            (rank(min)..=rank(max)).contains(&rank(candidate))
        })
        .collect();
    if versions.is_empty() {
        return Err(fault("min_version", "min_version is above max_version"));
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|error| fault("min_version", error.to_string()))?;
    let builder = match config.client_auth_type {
        ClientAuthType::NoClientCert => {
            if client_ca.is_some() {
                return Err(fault(
                    "client_auth_type",
                    "client_ca_file is given but client_auth_type is NoClientCert; set RequireAndVerifyClientCert",
                ));
            }
            builder.with_no_client_auth()
        }
        kind @ (ClientAuthType::RequestClientCert | ClientAuthType::RequireAnyClientCert) => {
            return Err(fault(
                "client_auth_type",
                format!(
                    "{kind:?} accepts certificates nobody verified and is not supported; use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file"
                ),
            ));
        }
        kind @ (ClientAuthType::RequireAndVerifyClientCert
        | ClientAuthType::VerifyClientCertIfGiven) => {
            let Some((ca, ca_key)) = client_ca else {
                return Err(fault(
                    "client_ca_file",
                    format!(
                        "{kind:?} needs client_ca_file (the CA that signs client certificates)"
                    ),
                ));
            };
            let mut roots = RootCertStore::empty();
            for certificate in certificates(&ca, &ca_key)? {
                roots
                    .add(certificate)
                    .map_err(|error| fault(&ca_key, format!("not a usable CA: {error}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match kind {
                ClientAuthType::VerifyClientCertIfGiven => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|error| fault(&ca_key, error.to_string()))?,
            )
        }
    };
    let mut server = builder
        .with_single_cert(chain, private_key)
        .map_err(|error| {
            fault(
                &key.1,
                format!("the key does not fit the certificate: {error}"),
            )
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    server.ignore_client_order = config.prefer_server_cipher_suites.unwrap_or(true);
    Ok(Some(server))
}
