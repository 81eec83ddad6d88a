//! TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps, one step of drift either way) and
//! recovery codes. A code is accepted for a time step only once: the store keeps the last step
//! used and refuses that step and every earlier one.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

use crate::AuthnError;
use crate::random::{from_alphabet, random_bytes};

/// Seconds per step.
pub const STEP_SECS: u64 = 30;
/// Recovery codes issued at enrollment.
pub const RECOVERY_CODES: usize = 10;

/// A TOTP secret (20 random bytes, 160 bits as RFC 4226 recommends).
#[derive(Clone)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    /// A fresh secret.
    pub fn generate() -> Result<Self, AuthnError> {
        Ok(Self(random_bytes::<20>()?.to_vec()))
    }

    /// A secret from its raw bytes (as unsealed from the store).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The raw bytes (to seal them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Base32, as authenticator apps take it.
    pub fn base32(&self) -> String {
        match Secret::Raw(self.0.clone()).to_encoded() {
            Secret::Encoded(s) => s,
            Secret::Raw(_) => String::new(),
        }
    }

    fn totp(&self) -> Result<TOTP, AuthnError> {
        TOTP::new(Algorithm::SHA1, 6, 1, STEP_SECS, self.0.clone())
            .map_err(|e| AuthnError::Totp(e.to_string()))
    }

    /// The code for the step that contains `unix_secs`.
    pub fn code_at(&self, unix_secs: u64) -> Result<String, AuthnError> {
        Ok(self.totp()?.generate(unix_secs))
    }

    /// The step a code matches at `unix_secs` (the current step, the one before or the one
    /// after), compared in constant time; `None` when it matches none.
    pub fn matching_step(&self, code: &str, unix_secs: u64) -> Option<u64> {
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let totp = self.totp().ok()?;
        let now = unix_secs / STEP_SECS;
        let mut found = None;
        // Check all three steps whatever matches, so the timing says nothing.
        for step in [now.saturating_sub(1), now, now + 1] {
            let expected = totp.generate(step * STEP_SECS);
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
                found = Some(step);
            }
        }
        found
    }

    /// The `otpauth://` URI authenticator apps scan.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let label = format!("{}:{}", encode(issuer), encode(account));
        format!(
            "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits=6&period={STEP_SECS}",
            self.base32(),
            encode(issuer)
        )
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The QR code of `uri` as an SVG document.
pub fn qr_svg(uri: &str) -> Result<String, AuthnError> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| AuthnError::Totp(e.to_string()))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build())
}

/// Fresh recovery codes (`xxxxx-xxxxx`, 50 random bits each).
pub fn recovery_codes() -> Result<Vec<String>, AuthnError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw = from_alphabet(ALPHABET, 10)?;
            Ok(format!("{}-{}", &raw[..5], &raw[5..]))
        })
        .collect()
}

/// The digest a recovery code is stored by (case, spaces and dashes do not matter).
pub fn recovery_digest(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    Sha256::new()
        .chain_update(b"portcullis-recovery\0")
        .chain_update(normal.as_bytes())
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_test_vector() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890": at 59 s the 8-digit code is
        // 94287082, so the 6-digit one is its last six digits.
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        assert_eq!(secret.code_at(59).unwrap(), "287082");
        assert_eq!(secret.code_at(1_111_111_109).unwrap(), "081804");
    }

    #[test]
    fn one_step_of_drift_is_accepted_and_no_more() {
        let secret = TotpSecret::generate().unwrap();
        let t = 1_800_000_000;
        let step = t / STEP_SECS;
        let code = secret.code_at(t).unwrap();
        assert_eq!(secret.matching_step(&code, t), Some(step));
        assert_eq!(secret.matching_step(&code, t + 30), Some(step));
        assert_eq!(secret.matching_step(&code, t - 30), Some(step));
        assert_eq!(secret.matching_step(&code, t + 61), None);
        assert_eq!(secret.matching_step("12345", t), None);
        assert_eq!(secret.matching_step("abcdef", t), None);
    }

    #[test]
    fn uri_qr_and_recovery_codes() {
        let secret = TotpSecret::generate().unwrap();
        let uri = secret.otpauth_uri("Portcullis", "ana@example.com");
        assert!(uri.starts_with("otpauth://totp/Portcullis:ana%40example.com?secret="));
        assert!(uri.contains(&secret.base32()));
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.contains("<svg"));
        let codes = recovery_codes().unwrap();
        assert_eq!(codes.len(), 10);
        assert_eq!(
            recovery_digest(&codes[0]),
            recovery_digest(&codes[0].to_uppercase().replace('-', " "))
        );
        assert_ne!(recovery_digest(&codes[0]), recovery_digest(&codes[1]));
    }
}
