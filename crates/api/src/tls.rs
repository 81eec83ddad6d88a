//! TLS termination with rustls: a listener of its own beside the plain one (which stays for
//! loopback and for running behind another proxy), HTTP/2 or HTTP/1.1 by ALPN, and the
//! certificate and key re-read from their files when they change, without a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// TLS settings (`tls:` in the configuration).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Address of the TLS listener.
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// How often the files are checked for a change.
    pub reload_interval: Duration,
}

/// Reads a certificate chain and key into what rustls serves.
fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("the private key is not usable: {e}"))?;
    Ok(CertifiedKey::new(chain, signing))
}

/// Serves whatever certificate was loaded last.
#[derive(Debug)]
struct Reloading {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Binds the TLS listener and serves `app` on it until `stop`; the files are re-read when their
/// modification time changes (a failed read keeps the certificate in use, and is logged).
pub async fn serve(
    settings: TlsSettings,
    workers: Arc<crate::workers::Workers>,
    stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let first = load(&settings.cert_file, &settings.key_file)?;
    let resolver = Arc::new(Reloading {
        current: ArcSwap::from_pointee(first),
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let task = tokio::spawn(async move {
        let mut stop = stop;
        let mut ticker = tokio::time::interval(settings.reload_interval);
        let mut stamps = (modified(&settings.cert_file), modified(&settings.key_file));
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = ticker.tick() => {
                    let now = (modified(&settings.cert_file), modified(&settings.key_file));
                    if now != stamps {
                        match load(&settings.cert_file, &settings.key_file) {
                            Ok(key) => {
                                resolver.current.store(Arc::new(key));
                                stamps = now;
                                tracing::info!(cert = %settings.cert_file.display(), "TLS certificate reloaded");
                            }
                            Err(e) => tracing::warn!(error = %e, "TLS certificate changed but cannot be loaded; the previous one stays in use"),
                        }
                    }
                }
                accepted = listener.accept() => {
                    let Ok((tcp, peer)) = accepted else { continue };
                    workers.dispatch(tcp, peer, Some(acceptor.clone()));
                }
            }
        }
    });
    Ok((addr, task))
}
