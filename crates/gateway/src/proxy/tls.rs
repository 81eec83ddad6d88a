//! TLS towards `https://` backends: each backend's trust (its CA bundle, or the Mozilla roots),
//! its optional client certificate (mTLS) and the name its certificate is checked against. The
//! files are read once, when the proxy is built; anything wrong with them is an error naming
//! the backend and the file, so a bad configuration stops the start instead of failing later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::{Backend, GatewayError};

/// How Portcullis authenticates an `https://` backend, and itself to it. There is deliberately
/// no way to skip verification: a backend with a private CA gets that CA as `ca_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendTls {
    /// PEM bundle of the CA certificates to trust for this backend (an internal CA); when
    /// absent, the Mozilla roots (`webpki-roots`).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the backend (mTLS); set with `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// The name the backend's certificate must carry, when it differs from the URL's host.
    pub server_name: Option<String>,
}

impl BackendTls {
    /// Whether any setting is given (they only make sense for an `https://` backend).
    pub fn is_set(&self) -> bool {
        self != &Self::default()
    }
}

/// What an `https://` backend's connectors share: the rustls settings, without ALPN (each
/// connector sets its own), and the name the certificate is checked against.
pub(crate) struct TlsSettings {
    pub(crate) config: ClientConfig,
    pub(crate) server_name: ServerName<'static>,
}

fn bad(backend: &Backend, message: String) -> GatewayError {
    GatewayError::BadBackend {
        name: backend.name.clone(),
        message,
    }
}

fn read_failure(key: &str, file: &Path, e: impl std::fmt::Display) -> String {
    format!("{key} {}: {e}", file.display())
}

/// Reads the backend's files and builds its rustls client settings (ring provider, TLS 1.2
/// and 1.3).
pub(crate) fn settings(backend: &Backend) -> Result<TlsSettings, GatewayError> {
    let tls = &backend.tls;
    let roots = match &tls.ca_file {
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
        Some(file) => {
            let certs = CertificateDer::pem_file_iter(file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(backend, read_failure("ca_file", file, e)))?;
            if certs.is_empty() {
                return Err(bad(
                    backend,
                    read_failure("ca_file", file, "no PEM certificate in it"),
                ));
            }
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| bad(backend, read_failure("ca_file", file, e)))?;
            }
            roots
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(backend, format!("TLS settings: {e}")))?
        .with_root_certificates(roots);
    let config = match (&tls.client_cert_file, &tls.client_key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert_file), Some(key_file)) => {
            let chain = CertificateDer::pem_file_iter(cert_file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(backend, read_failure("client_cert_file", cert_file, e)))?;
            if chain.is_empty() {
                return Err(bad(
                    backend,
                    read_failure("client_cert_file", cert_file, "no PEM certificate in it"),
                ));
            }
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|e| bad(backend, read_failure("client_key_file", key_file, e)))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                bad(
                    backend,
                    format!(
                        "client_cert_file {} with client_key_file {}: {e}",
                        cert_file.display(),
                        key_file.display()
                    ),
                )
            })?
        }
        _ => {
            return Err(bad(
                backend,
                "client_cert_file and client_key_file go together: give both or neither".into(),
            ));
        }
    };
    let name = match &tls.server_name {
        Some(name) => name.clone(),
        None => backend
            .url
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    };
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| bad(backend, format!("server name '{name}': {e}")))?;
    Ok(TlsSettings {
        config,
        server_name,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proxy::Proxy;

    /// The idle time the proxies here are made with (nothing here waits on it).
    const IDLE: Duration = Duration::from_secs(30);

    fn backend(url: &str, tls: BackendTls) -> Backend {
        Backend {
            tls,
            ..Backend::new("jobs", url.parse().unwrap(), Duration::from_secs(1))
        }
    }

    /// The message of the `BadBackend` error `Proxy::new` gives for `b`.
    #[track_caller]
    fn refused(b: Backend) -> String {
        match Proxy::new(vec![b], 1024, IDLE) {
            Err(e @ GatewayError::BadBackend { .. }) => e.to_string(),
            Err(e) => panic!("not BadBackend: {e:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    /// A CA certificate, and a leaf certificate with its key signed by that CA.
    fn pki() -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["portcullis".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
    }

    #[test]
    fn a_readable_ca_and_client_certificate_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = pki();
        std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), key).unwrap();
        let tls = BackendTls {
            ca_file: Some(dir.path().join("ca.pem")),
            client_cert_file: Some(dir.path().join("cert.pem")),
            client_key_file: Some(dir.path().join("key.pem")),
            server_name: Some("jobs.internal".into()),
        };
        let proxy = Proxy::new(vec![backend("https://10.0.0.7:8443/v1", tls)], 1024, IDLE).unwrap();
        assert!(proxy.has_backend("jobs"));
        // No ca_file: the Mozilla roots.
        Proxy::new(
            vec![backend("https://api.example.com", BackendTls::default())],
            1024,
            IDLE,
        )
        .unwrap();
    }

    #[test]
    fn a_missing_or_non_pem_ca_file_is_refused_naming_the_backend_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-ca.pem");
        let message = refused(backend(
            "https://jobs.internal",
            BackendTls {
                ca_file: Some(missing.clone()),
                ..Default::default()
            },
        ));
        assert!(message.contains("'jobs'"), "{message}");
        assert!(
            message.contains(&format!("ca_file {}", missing.display())),
            "{message}"
        );

        let garbage = dir.path().join("ca.txt");
        std::fs::write(&garbage, "this is not a certificate\n").unwrap();
        let message = refused(backend(
            "https://jobs.internal",
            BackendTls {
                ca_file: Some(garbage.clone()),
                ..Default::default()
            },
        ));
        assert!(message.contains("'jobs'"), "{message}");
        assert!(
            message.contains(&garbage.display().to_string()),
            "{message}"
        );
        assert!(message.contains("no PEM certificate"), "{message}");

        // A PEM block that is not a certificate (a key) is no CA either.
        let (_, _, key) = pki();
        std::fs::write(&garbage, key).unwrap();
        let message = refused(backend(
            "https://jobs.internal",
            BackendTls {
                ca_file: Some(garbage.clone()),
                ..Default::default()
            },
        ));
        assert!(
            message.contains(&garbage.display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn bad_client_certificates_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert, key) = pki();
        let (_, _, other_key) = pki();
        let cert_file = dir.path().join("cert.pem");
        let key_file = dir.path().join("key.pem");
        let other_key_file = dir.path().join("other.pem");
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        std::fs::write(&other_key_file, other_key).unwrap();
        let with = |cert: Option<&Path>, key: Option<&Path>| {
            backend(
                "https://jobs.internal",
                BackendTls {
                    client_cert_file: cert.map(Path::to_owned),
                    client_key_file: key.map(Path::to_owned),
                    ..Default::default()
                },
            )
        };
        let missing_key = dir.path().join("missing.key");
        let message = refused(with(Some(&cert_file), Some(&missing_key)));
        assert!(
            message.contains(&format!("client_key_file {}", missing_key.display())),
            "{message}"
        );
        // A certificate where the key should be.
        let message = refused(with(Some(&cert_file), Some(&cert_file)));
        assert!(
            message.contains(&format!("client_key_file {}", cert_file.display())),
            "{message}"
        );
        let message = refused(with(Some(&key_file), Some(&key_file)));
        assert!(
            message.contains(&format!("client_cert_file {}", key_file.display())),
            "{message}"
        );
        // A key that does not belong to the certificate.
        let message = refused(with(Some(&cert_file), Some(&other_key_file)));
        assert!(
            message.contains(&other_key_file.display().to_string()),
            "{message}"
        );
        let message = refused(with(Some(&cert_file), None));
        assert!(message.contains("both or neither"), "{message}");
    }

    #[test]
    fn tls_settings_need_https_and_h2c_needs_http() {
        let message = refused(backend(
            "http://jobs.internal",
            BackendTls {
                server_name: Some("jobs".into()),
                ..Default::default()
            },
        ));
        assert!(message.contains("https://"), "{message}");
        let mut b = backend("https://jobs.internal", BackendTls::default());
        b.http2 = true;
        let message = refused(b);
        assert!(message.contains("ALPN"), "{message}");
        let message = refused(backend(
            "https://jobs.internal",
            BackendTls {
                server_name: Some("not a name".into()),
                ..Default::default()
            },
        ));
        assert!(message.contains("server name 'not a name'"), "{message}");
        let message = refused(backend("ftp://jobs.internal", BackendTls::default()));
        assert!(message.contains("http(s)://"), "{message}");
    }
}
