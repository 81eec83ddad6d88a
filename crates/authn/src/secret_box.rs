//! The server's secret key and what it seals: TOTP secrets, token signing keys and mail bodies
//! are stored encrypted (XChaCha20-Poly1305), each with its purpose bound in as associated data
//! so a sealed value cannot be moved from one use to another.
//!
//! The key comes from configuration (base64 of 32 bytes) or from `<data>/secret.key`, created on
//! first start with owner-only permissions. Every replica sharing a database needs the same key.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::AuthnError;
use crate::random::random_bytes;

const VERSION: &str = "v1.";

/// Seals and opens values with the server's secret key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A box from 32 key bytes.
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// A box from a configured key: base64 (standard or URL-safe) of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, AuthnError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text))
            .map_err(|_| AuthnError::SecretKey("the secret key is not base64".into()))?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            AuthnError::SecretKey(format!(
                "the secret key must be 32 bytes, got {} (generate one with `head -c 32 /dev/urandom | base64`)",
                b.len()
            ))
        })?;
        Ok(Self::from_key(&key))
    }

    /// Reads the key file, creating it (owner read/write only) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, AuthnError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text)
                .map_err(|e| AuthnError::SecretKey(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = random_bytes()?;
                write_private(path, STANDARD.encode(key).as_bytes()).map_err(|e| {
                    AuthnError::SecretKey(format!("cannot create {}: {e}", path.display()))
                })?;
                tracing::info!(path = %path.display(), "created the server's secret key");
                Ok(Self::from_key(&key))
            }
            Err(e) => Err(AuthnError::SecretKey(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Seals `plain` for `purpose`.
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> Result<String, AuthnError> {
        let nonce_bytes: [u8; 24] = random_bytes()?;
        let nonce = XNonce::from(nonce_bytes);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| AuthnError::SecretKey("encryption failed".into()))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{VERSION}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens a value sealed for `purpose`; fails when it was sealed with another key or for
    /// another purpose, or was altered.
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Vec<u8>, AuthnError> {
        let fail = || {
            AuthnError::SecretKey(format!(
                "a sealed {purpose} cannot be opened with this server's secret key"
            ))
        };
        let bytes = sealed
            .strip_prefix(VERSION)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .ok_or_else(fail)?;
        if bytes.len() < 24 {
            return Err(fail());
        }
        let (nonce, body) = bytes.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| fail())?;
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: body,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| fail())
    }
}

/// Writes a file only its owner can read.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_purpose() {
        let a = SecretBox::from_key(&[7; 32]);
        let b = SecretBox::from_key(&[8; 32]);
        let sealed = a.seal("totp", b"JBSWY3DPEHPK3PXP").unwrap();
        assert!(!sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_eq!(a.open("totp", &sealed).unwrap(), b"JBSWY3DPEHPK3PXP");
        assert!(a.open("mail", &sealed).is_err(), "another purpose");
        assert!(b.open("totp", &sealed).is_err(), "another key");
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(a.open("totp", &tampered).is_err(), "altered");
        assert_ne!(a.seal("totp", b"x").unwrap(), a.seal("totp", b"x").unwrap());
    }

    #[test]
    fn the_key_file_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let first = SecretBox::load_or_create(&path).unwrap();
        let sealed = first.seal("p", b"v").unwrap();
        let again = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(again.open("p", &sealed).unwrap(), b"v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(SecretBox::from_base64("c2hvcnQ=").is_err());
    }
}
