//! API keys: generation, and the digests they are stored and looked up by.
//!
//! A key is `pcl_` followed by 43 base64url characters (256 random bits). It is never stored:
//! the store keeps one SHA-256 digest of it, split in two halves: a *lookup* id (the index of the
//! in-memory table) and a *verifier* (compared in constant time once the entry is found), so the
//! timing of the table lookup says nothing about the half that is checked. A slow hash would add
//! nothing for 256-bit random secrets, and would put milliseconds on every request.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_model::{KeyId, OrgId, Timestamp};
use portcullis_store::NewKey;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AuthnError;

/// The text every generated key starts with, so that secret scanners can recognise them.
pub const KEY_PREFIX: &str = "pcl_";
/// Shortest key accepted for installation (`PORTCULLIS_ADMIN_API_KEY`).
pub const MIN_INSTALLED_KEY_LEN: usize = 32;
/// Characters of a key shown in listings.
const SHOWN_PREFIX_LEN: usize = 12;

/// The two digests of a key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyDigest {
    /// Index into the key table.
    pub lookup: [u8; 16],
    /// Compared in constant time once the entry is found.
    pub verifier: [u8; 16],
}

impl std::fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyDigest(..)")
    }
}

impl KeyDigest {
    /// Digests a presented key.
    pub fn of(key: &[u8]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"portcullis-api-key\0")
            .chain_update(key)
            .finalize();
        let mut lookup = [0u8; 16];
        let mut verifier = [0u8; 16];
        lookup.copy_from_slice(&digest[..16]);
        verifier.copy_from_slice(&digest[16..]);
        Self { lookup, verifier }
    }

    /// Whether `stored` is this key's verifier, in constant time.
    pub fn verifies(&self, stored: &[u8; 16]) -> bool {
        self.verifier.ct_eq(stored).into()
    }

    /// Hex of the lookup id, as stored.
    pub fn lookup_hex(&self) -> String {
        hex(&self.lookup)
    }

    /// Hex of the verifier, as stored.
    pub fn verifier_hex(&self) -> String {
        hex(&self.verifier)
    }
}

/// A freshly generated key: the secret (shown once) and what the store keeps.
pub struct GeneratedKey {
    /// The key itself. Shown to its owner once, then forgotten.
    pub secret: String,
    /// The record to store.
    pub record: NewKey,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("prefix", &self.record.prefix)
            .finish_non_exhaustive()
    }
}

/// Generates a new random key.
pub fn generate(
    name: &str,
    org: Option<OrgId>,
    expires_at: Option<Timestamp>,
) -> Result<GeneratedKey, AuthnError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AuthnError::Randomness(e.to_string()))?;
    let secret = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let record = record_for(&secret, name, org, expires_at);
    Ok(GeneratedKey { secret, record })
}

/// The record for a key chosen by the operator (at least 32 characters).
pub fn install(secret: &str, name: &str, org: Option<OrgId>) -> Result<NewKey, AuthnError> {
    if secret.chars().count() < MIN_INSTALLED_KEY_LEN {
        return Err(AuthnError::KeyTooShort(MIN_INSTALLED_KEY_LEN));
    }
    // An operator-chosen key may carry less entropy than ours: none of it is stored in clear.
    Ok(NewKey {
        prefix: "(configured)".to_owned(),
        ..record_for(secret, name, org, None)
    })
}

fn record_for(
    secret: &str,
    name: &str,
    org: Option<OrgId>,
    expires_at: Option<Timestamp>,
) -> NewKey {
    let digest = KeyDigest::of(secret.as_bytes());
    NewKey {
        id: KeyId::new(),
        name: name.to_owned(),
        prefix: secret.chars().take(SHOWN_PREFIX_LEN).collect(),
        lookup: digest.lookup_hex(),
        hash: digest.verifier_hex(),
        org_id: org,
        expires_at,
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Parses hex into a fixed-size array; `None` for anything else.
pub(crate) fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_long_random_and_prefixed() {
        let a = generate("a", None, None).unwrap();
        let b = generate("b", None, None).unwrap();
        assert!(a.secret.starts_with(KEY_PREFIX));
        assert_eq!(a.secret.len(), KEY_PREFIX.len() + 43);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.record.prefix, &a.secret[..12]);
        assert!(!a.record.hash.contains(&a.secret));
    }

    #[test]
    fn digests_verify_only_their_key() {
        let key = generate("k", None, None).unwrap();
        let stored: [u8; 16] = unhex(&key.record.hash).unwrap();
        assert!(KeyDigest::of(key.secret.as_bytes()).verifies(&stored));
        let mut wrong = key.secret.clone().into_bytes();
        wrong[10] ^= 1;
        assert!(!KeyDigest::of(&wrong).verifies(&stored));
        assert_eq!(
            unhex::<16>(&key.record.lookup),
            Some(KeyDigest::of(key.secret.as_bytes()).lookup)
        );
        assert_ne!(
            key.record.lookup, key.record.hash,
            "lookup and verifier are different halves"
        );
    }

    #[test]
    fn installed_keys_must_be_long() {
        assert!(matches!(
            install("short", "x", None),
            Err(AuthnError::KeyTooShort(32))
        ));
        assert!(install(&"k".repeat(32), "x", None).is_ok());
        assert_eq!(unhex::<2>("zz00"), None);
        assert_eq!(unhex::<1>("0a"), Some([10]));
    }
}
