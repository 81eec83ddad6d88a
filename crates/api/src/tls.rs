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

/// The bytes of the certificate and key files.
type Contents = (Vec<u8>, Vec<u8>);

/// Reads both files.
fn read(cert: &Path, key: &Path) -> Result<Contents, String> {
    let one = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    Ok((one(cert)?, one(key)?))
}

/// Reads a certificate chain and key (the files' bytes; `cert` and `key` name them in errors)
/// into what rustls serves, refusing a key that is not the certificate's (every handshake
/// would then fail with a bad signature).
fn parse(cert: &Path, key: &Path, (cert_pem, key_pem): &Contents) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {}", cert.display(), pem_error(&e)))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
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
    /// The files' stamps when their contents last matched the pair in use.
    loaded: (Stamp, Stamp),
    /// What the files held when the pair in use was loaded.
    in_use: Contents,
    /// What the files held at the last check that found them changed: a change is loaded once
    /// two checks in a row read the same (a certificate file written in place could otherwise
    /// be read between its leaf and its chain, and served with the chain cut short). By
    /// contents, not stamps: a file whose time moves at every look (a copy made by a timer, a
    /// mount reporting the current time) still settles.
    pending: Option<Contents>,
    /// The files and the reason of the last failed load, so that a failure is reported once.
    reported: Option<(Contents, String)>,
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
        let in_use = read(cert, key)?;
        let pair = parse(cert, key, &in_use)?;
        let files = Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded,
            in_use,
            pending: None,
            reported: None,
        };
        Ok((files, pair))
    }

    /// Loads the pair again if the files changed and read the same at two checks in a row
    /// (the files are read only when their stamps moved). A pair that fails keeps being tried
    /// at each check while the files stay as they are, and is reported once.
    fn check(&mut self) -> Checked {
        let now = (stamp(&self.cert), stamp(&self.key));
        if now == self.loaded {
            self.pending = None;
            return Checked::Unchanged;
        }
        let contents = match read(&self.cert, &self.key) {
            Ok(contents) => contents,
            Err(error) => return self.failed((Vec::new(), Vec::new()), error),
        };
        if contents == self.in_use {
            // Touched, or rewritten with what it held.
            self.loaded = now;
            self.pending = None;
            return Checked::Unchanged;
        }
        if self.pending.as_ref() != Some(&contents) {
            self.pending = Some(contents);
            return Checked::Unchanged;
        }
        match parse(&self.cert, &self.key, &contents) {
            Ok(pair) => {
                self.loaded = now;
                self.in_use = contents;
                self.pending = None;
                self.reported = None;
                Checked::Reloaded(pair)
            }
            Err(error) => self.failed(contents, error),
        }
    }

    /// A failed load of `contents`, reported once per contents and reason.
    fn failed(&mut self, contents: Contents, error: String) -> Checked {
        let failure = (contents, error);
        let first = self.reported.as_ref() != Some(&failure);
        let error = failure.1.clone();
        self.reported = Some(failure);
        Checked::Failed { error, first }
    }
}

/// Binds the TLS listener and serves `app` on it until `stop`; the files are read again when
/// their modification time or length changes, and loaded once two checks in a row read the
/// same. A pair that cannot be loaded (a file half written, a certificate whose key is not
/// written yet) keeps the pair in use; it is tried again at every check, and logged once per
/// change of the files and the reason.
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
        // Two checks are always an interval apart, however long one took (the settle rule
        // compares consecutive checks).
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            let (checked_files, checked) = match checked {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(error = %e, "the TLS certificate check failed; the certificate in use is no longer reloaded");
                    return;
                }
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
        let contents = read(&cert, &key).unwrap();
        let error = parse(&cert, &key, &contents).expect_err("a mismatched pair is refused");
        assert!(error.contains("is not for the private key"), "{error}");
        assert!(error.contains(&*cert.to_string_lossy()), "{error}");
        assert!(error.contains(&*key.to_string_lossy()), "{error}");
    }

    /// Writes `contents` to `path` with a modification time later than any written before by
    /// this helper, so that a check sees the change whatever the file system's time granularity.
    fn rewrite(path: &Path, contents: impl AsRef<[u8]>) {
        static LATER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        std::fs::write(path, contents).unwrap();
        let n = LATER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let time = SystemTime::now() + Duration::from_secs(3600 + n);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }

    /// A pair written to `dir` and opened: the files, their paths, and the certificate's PEM.
    fn opened(dir: &Path) -> (Files, PathBuf, PathBuf, String) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let (first_cert, first_key) = pair();
        std::fs::write(&cert, &first_cert).unwrap();
        std::fs::write(&key, &first_key).unwrap();
        let (files, _) = Files::open(&cert, &key).unwrap();
        (files, cert, key, first_cert)
    }

    #[test]
    fn a_failed_reload_is_reported_once_per_change_and_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, cert, key, _) = opened(dir.path());
        assert!(matches!(files.check(), Checked::Unchanged));

        // A certificate whose key is not written yet: reported once, not at every check.
        let (new_cert, new_key) = pair();
        rewrite(&cert, &new_cert);
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
        rewrite(&key, &new_key[..new_key.len() / 2]);
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
        rewrite(&key, &new_key);
        assert!(
            matches!(files.check(), Checked::Unchanged),
            "not settled yet"
        );
        assert!(matches!(files.check(), Checked::Reloaded(_)));
        assert!(matches!(files.check(), Checked::Unchanged));
    }

    /// A certificate file is loaded once two checks read the same: one read between its leaf
    /// and the rest of its chain (written in place) is not served with the chain cut short.
    /// Files whose time moves at every look still settle, and are loaded once.
    #[test]
    fn a_changed_file_is_loaded_once_it_has_settled() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, cert, key, first_cert) = opened(dir.path());
        // Touched without a change: nothing to load.
        rewrite(&cert, &first_cert);
        assert!(matches!(files.check(), Checked::Unchanged));
        assert!(matches!(files.check(), Checked::Unchanged));
        // A new pair, its certificate file first holding the leaf alone (a loadable pair)...
        let (leaf, new_key) = pair();
        rewrite(&key, &new_key);
        rewrite(&cert, &leaf);
        assert!(matches!(files.check(), Checked::Unchanged));
        // ... then the chain after it, before the next check.
        let chain = format!("{leaf}{}", pair().0);
        rewrite(&cert, &chain);
        assert!(matches!(files.check(), Checked::Unchanged));
        // Its time moves again (a copy made at every look), its contents do not: loaded.
        rewrite(&cert, &chain);
        let Checked::Reloaded(loaded) = files.check() else {
            panic!("the settled pair was not loaded");
        };
        assert_eq!(loaded.cert.len(), 2, "the whole chain");
        rewrite(&cert, &chain);
        assert!(matches!(files.check(), Checked::Unchanged), "loaded once");
    }
}
