//! Passwords: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane), stored as PHC
//! strings; the length rules; temporary passwords.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::AuthnError;
use crate::random::{from_alphabet, random_bytes};

/// Longest password accepted (argon2 takes any length; this bounds the work an attacker can ask
/// for and fits every password manager).
pub const MAX_LEN: usize = 128;

fn hasher() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks a new password against the rules (`min_len` from the org settings); the error says
/// what is wrong.
pub fn check_rules(password: &str, min_len: usize) -> Result<(), AuthnError> {
    let len = password.chars().count();
    if len < min_len {
        return Err(AuthnError::WeakPassword(format!(
            "the password must be at least {min_len} characters long, got {len}"
        )));
    }
    if len > MAX_LEN {
        return Err(AuthnError::WeakPassword(format!(
            "the password must be at most {MAX_LEN} characters long, got {len}"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(AuthnError::WeakPassword(
            "the password must not contain control characters".into(),
        ));
    }
    if password.trim().is_empty() {
        return Err(AuthnError::WeakPassword(
            "the password must not be only spaces".into(),
        ));
    }
    Ok(())
}

/// Hashes a password into a PHC string.
pub fn hash(password: &str) -> Result<String, AuthnError> {
    let salt_bytes: [u8; 16] = random_bytes()?;
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| AuthnError::Randomness(e.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthnError::Randomness(format!("password hashing failed: {e}")))
}

/// Whether `password` matches the stored PHC string (argon2 compares in constant time). Also
/// false for a stored value that is not a PHC string, or a password over [`MAX_LEN`].
pub fn verify(phc: &str, password: &str) -> bool {
    if password.chars().count() > MAX_LEN {
        // Spend the same time as a real check, so the answer's timing says nothing.
        dummy_verify(password);
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Does the work of one verification against a fixed hash, so that a login for an unknown or
/// password-less account takes as long as a wrong password for a real one.
pub fn dummy_verify(password: &str) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash("portcullis-dummy-password").ok());
    if let Some(parsed) = stored.as_deref().and_then(|s| PasswordHash::new(s).ok()) {
        let truncated: String = password.chars().take(MAX_LEN).collect();
        let _ = hasher().verify_password(truncated.as_bytes(), &parsed);
    }
}

/// A temporary password: random, easy to type (no 0/O, 1/l/I), at least 16 characters and at
/// least `min_len`.
pub fn temporary(min_len: usize) -> Result<String, AuthnError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    from_alphabet(ALPHABET, min_len.clamp(16, MAX_LEN))
}

/// Bounds the argon2 work running at once: each verification holds 19 MiB and a core for tens
/// of milliseconds, so a burst of logins must queue rather than exhaust memory.
fn argon2_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores * 2)
    })
}

/// [`verify`] off the async workers (argon2 is CPU-bound), within the bound on concurrent
/// argon2 work. `None` as `phc` does the dummy verification and answers false.
pub async fn verify_off_thread(phc: Option<String>, password: &str) -> bool {
    let Ok(_slot) = argon2_slots().acquire().await else {
        return false;
    };
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify(&phc, &password),
        None => {
            dummy_verify(&password);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// [`hash`] off the async workers, within the bound on concurrent argon2 work.
pub async fn hash_off_thread(password: &str) -> Result<String, AuthnError> {
    let _slot = argon2_slots()
        .acquire()
        .await
        .map_err(|e| AuthnError::Randomness(e.to_string()))?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| AuthnError::Randomness(format!("password hashing stopped: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(&phc, "correct horse battery"));
        assert!(!verify(&phc, "correct horse batterY"));
        assert!(!verify("not a phc", "x"));
        assert_ne!(phc, hash("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn rules_name_what_is_wrong() {
        let e = check_rules("short", 8).unwrap_err().to_string();
        assert!(e.contains("at least 8") && e.contains("got 5"), "{e}");
        let e = check_rules(&"x".repeat(129), 8).unwrap_err().to_string();
        assert!(e.contains("at most 128"), "{e}");
        assert!(check_rules("tab\there!", 8).is_err());
        assert!(check_rules("          ", 8).is_err());
        assert!(check_rules("ünïcödé✓", 8).is_ok(), "characters, not bytes");
        assert!(check_rules("long enough", 12).is_err());
    }

    #[test]
    fn temporary_passwords_meet_the_rules() {
        let t = temporary(8).unwrap();
        assert_eq!(t.len(), 16);
        check_rules(&t, 8).unwrap();
        assert_eq!(temporary(40).unwrap().len(), 40);
    }
}
