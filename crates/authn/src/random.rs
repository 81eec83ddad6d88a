//! Random secrets: tokens, codes and temporary passwords, from the operating system's generator.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::AuthnError;

/// `N` random bytes.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], AuthnError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| AuthnError::Randomness(e.to_string()))?;
    Ok(out)
}

/// A bearer secret: `prefix` + 256 random bits, base64url.
pub fn token(prefix: &str) -> Result<String, AuthnError> {
    Ok(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
    ))
}

/// The digest a bearer secret is stored and looked up by (hex SHA-256 with a purpose label).
/// The secrets carry 256 random bits, so a fast hash is enough.
pub fn digest(purpose: &str, secret: &str) -> String {
    let d = Sha256::new()
        .chain_update(purpose.as_bytes())
        .chain_update([0])
        .chain_update(secret.as_bytes())
        .finalize();
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// `len` characters drawn uniformly from `alphabet` (at most 256 symbols).
pub fn from_alphabet(alphabet: &[u8], len: usize) -> Result<String, AuthnError> {
    // Rejection sampling keeps every symbol equally likely.
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<64>()? {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_digests_depend_on_the_purpose() {
        let a = token("pcr_").unwrap();
        assert!(a.starts_with("pcr_") && a.len() == 4 + 43);
        assert_ne!(a, token("pcr_").unwrap());
        assert_ne!(digest("refresh", &a), digest("reset", &a));
        assert_eq!(digest("refresh", &a), digest("refresh", &a));
        let s = from_alphabet(b"abc", 500).unwrap();
        assert_eq!(s.len(), 500);
        assert!(s.contains('a') && s.contains('b') && s.contains('c'));
    }
}
