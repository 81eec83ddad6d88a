//! TLS termination with rustls: a listener of its own beside the plain one (which stays for
//! loopback and for running behind another proxy), HTTP/2 or HTTP/1.1 by ALPN, and the
//! certificate and key re-read from their files when they change, without a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::InconsistentKeys;
use rustls::pki_types::pem::{self, PemObject};
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

/// Reads a certificate chain and key into what rustls serves, refusing a key that is not the
/// certificate's (every handshake would then fail with a bad signature).
fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {}", cert.display(), pem_error(&e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {}", cert.display(), pem_error(&e)))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        pem::Error::NoItemsFound => format!("{}: no private key in the file", key.display()),
        e => format!("{}: {}", key.display(), pem_error(&e)),
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| format!("{}: the private key is not usable: {e}", key.display()))?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) => Ok(pair),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(format!(
            "the certificate in {} is not for the private key in {}",
            cert.display(),
            key.display()
        )),
        // ring's keys always know their public half; a key that did not could not be
        // checked, and is refused rather than risk serving a pair that cannot sign.
        Err(rustls::Error::InconsistentKeys(_)) => Err(format!(
            "the private key in {} cannot be checked against the certificate in {}",
            key.display(),
            cert.display()
        )),
        Err(e) => Err(format!(
            "{}: the certificate cannot be read: {e}",
            cert.display()
        )),
    }
}

/// A PEM reading error in words (the library's own text shows markers as byte arrays).
fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "the file ends before the line -----END {}-----: is it still being written?",
            String::from_utf8_lossy(end_marker).trim()
        ),
        pem::Error::IllegalSectionStart { line } => {
            let line = String::from_utf8_lossy(line);
            format!(
                "a PEM section starts with a line that is not valid: {}",
                line.chars().take(80).collect::<String>().trim()
            )
        }
        pem::Error::NoItemsFound => "no PEM section of the expected kind in the file".to_owned(),
        pem::Error::Io(e) => e.to_string(),
        e => e.to_string(),
    }
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

/// What a file looked like when last checked: its modification time and length (a length
/// change catches a rewrite within the file system's time granularity).
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The certificate and key files, and what was last seen of them.
struct Files {
    cert: PathBuf,
    key: PathBuf,
    /// The files as they were when the pair in use was loaded.
    loaded: (Stamp, Stamp),
    /// The files as the last check saw them: a change is loaded once the files stay as they
    /// are for a check (a certificate file written in place could otherwise be read between
    /// its leaf and its chain, and served with the chain cut short until the next check).
    seen: (Stamp, Stamp),
    /// The files and the reason of the last failed load, so that a failure is reported once.
    reported: Option<((Stamp, Stamp), String)>,
}

/// What a check of the files found.
enum Checked {
    /// Nothing changed since the pair in use was loaded.
    Unchanged,
    /// A new pair, to be served from now on.
    Reloaded(CertifiedKey),
    /// The files changed and cannot be used; `first` when this failure is new.
    Failed { error: String, first: bool },
}

impl Files {
    /// Loads the pair to start with.
    fn open(cert: &Path, key: &Path) -> Result<(Self, CertifiedKey), String> {
        // Read before the files, so that a change during the load is seen by the next check.
        let loaded = (stamp(cert), stamp(key));
        let pair = load(cert, key)?;
        let files = Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded,
            seen: loaded,
            reported: None,
        };
        Ok((files, pair))
    }

    /// Loads the pair again if a file changed and has stayed as it is since the last check. A
    /// pair that fails keeps being tried at each check (a half-written file may be complete by
    /// the next one, with the same stamp).
    fn check(&mut self) -> Checked {
        let now = (stamp(&self.cert), stamp(&self.key));
        let settled = now == self.seen;
        self.seen = now;
        if now == self.loaded || !settled {
            return Checked::Unchanged;
        }
        match load(&self.cert, &self.key) {
            Ok(pair) => {
                self.loaded = now;
                self.reported = None;
                Checked::Reloaded(pair)
            }
            Err(error) => {
                let failure = (now, error);
                let first = self.reported.as_ref() != Some(&failure);
                let error = failure.1.clone();
                self.reported = Some(failure);
                Checked::Failed { error, first }
            }
        }
    }
}

/// Binds the TLS listener and serves `app` on it until `stop`; the files are re-read when their
/// modification time or length changes. A pair that cannot be loaded (a file half written, a
/// certificate whose key is not written yet) keeps the pair in use; it is tried again at every
/// check, and logged once per change of the files and the reason.
pub async fn serve(
    settings: TlsSettings,
    workers: Arc<crate::workers::Workers>,
    stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let (mut files, first) = Files::open(&settings.cert_file, &settings.key_file)?;
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
    // The files are looked at in a task of their own, on a blocking thread: a file system
    // that hangs (a network mount) holds up reloads, never the accepting of connections.
    let mut reload_stop = stop.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(settings.reload_interval);
        loop {
            tokio::select! {
                _ = reload_stop.changed() => return,
                _ = ticker.tick() => {}
            }
            let checked = tokio::task::spawn_blocking(move || {
                let checked = files.check();
                (files, checked)
            })
            .await;
            let Ok((checked_files, checked)) = checked else {
                return;
            };
            files = checked_files;
            match checked {
                Checked::Unchanged => {}
                Checked::Reloaded(pair) => {
                    resolver.current.store(Arc::new(pair));
                    tracing::info!(cert = %files.cert.display(), key = %files.key.display(), "TLS certificate reloaded");
                }
                Checked::Failed { error, first: true } => {
                    tracing::warn!(%error, "TLS certificate or key changed but cannot be used; the previous pair stays in use")
                }
                Checked::Failed { first: false, .. } => {}
            }
        }
    });
    let task = tokio::spawn(async move {
        let mut stop = stop;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                (tcp, peer) = crate::workers::accept(&listener) => {
                    workers.dispatch(tcp, peer, Some(acceptor.clone()));
                }
            }
        }
    });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new self-signed certificate and its key, in PEM.
    fn pair() -> (String, String) {
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        (generated.cert.pem(), generated.signing_key.serialize_pem())
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, pair().0).unwrap();
        std::fs::write(&key, pair().1).unwrap();
        let error = load(&cert, &key).expect_err("a mismatched pair is refused");
        assert!(error.contains("is not for the private key"), "{error}");
        assert!(error.contains(&*cert.to_string_lossy()), "{error}");
        assert!(error.contains(&*key.to_string_lossy()), "{error}");
    }

    #[test]
    fn a_failed_reload_is_reported_once_per_change_and_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let (first_cert, first_key) = pair();
        std::fs::write(&cert, &first_cert).unwrap();
        std::fs::write(&key, &first_key).unwrap();
        let (mut files, _) = Files::open(&cert, &key).unwrap();
        assert!(matches!(files.check(), Checked::Unchanged));

        // A certificate whose key is not written yet: reported once, not at every check.
        let (new_cert, new_key) = pair();
        std::fs::write(&cert, &new_cert).unwrap();
        assert!(
            matches!(files.check(), Checked::Unchanged),
            "not settled yet"
        );
        let Checked::Failed { error, first } = files.check() else {
            panic!("a certificate without its key was loaded");
        };
        assert!(first);
        assert!(error.contains("is not for the private key"), "{error}");
        assert!(matches!(
            files.check(),
            Checked::Failed { first: false, .. }
        ));

        // A key half written: a new failure (reported, in words, not byte arrays).
        std::fs::write(&key, &new_key[..new_key.len() / 2]).unwrap();
        assert!(
            matches!(files.check(), Checked::Unchanged),
            "not settled yet"
        );
        let Checked::Failed { error, first } = files.check() else {
            panic!("a half-written key was loaded");
        };
        assert!(first);
        assert!(error.contains("-----END PRIVATE KEY-----"), "{error}");
        assert!(!error.contains('['), "{error}");

        // The key complete: the new pair is loaded, then nothing changes.
        std::fs::write(&key, &new_key).unwrap();
        assert!(
            matches!(files.check(), Checked::Unchanged),
            "not settled yet"
        );
        assert!(matches!(files.check(), Checked::Reloaded(_)));
        assert!(matches!(files.check(), Checked::Unchanged));
    }

    /// A certificate file is loaded once it stays as it is for a check: one read between its
    /// leaf and the rest of its chain (written in place) is not served with the chain cut short.
    #[test]
    fn a_changed_file_is_loaded_once_it_has_settled() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let (first_cert, first_key) = pair();
        std::fs::write(&cert, &first_cert).unwrap();
        std::fs::write(&key, &first_key).unwrap();
        let (mut files, _) = Files::open(&cert, &key).unwrap();
        // A new pair, its certificate file first holding the leaf alone (a loadable pair)...
        let (leaf, new_key) = pair();
        std::fs::write(&key, &new_key).unwrap();
        std::fs::write(&cert, &leaf).unwrap();
        assert!(matches!(files.check(), Checked::Unchanged));
        // ... then the chain after it, before the next check.
        std::fs::write(&cert, format!("{leaf}{}", pair().0)).unwrap();
        assert!(matches!(files.check(), Checked::Unchanged));
        let Checked::Reloaded(loaded) = files.check() else {
            panic!("the settled pair was not loaded");
        };
        assert_eq!(loaded.cert.len(), 2, "the whole chain");
    }
}
