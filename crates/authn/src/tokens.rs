//! Signed session tokens: EdDSA (Ed25519) JWTs with a `kid`, the key ring that signs and
//! verifies them, and the JWKS document that lets backends verify them without calling back.
//!
//! Keys live in the store, their private halves sealed with the server key, so every replica
//! signs with the same keys. A rotation adds a key that becomes active after a delay (published
//! in the JWKS first, so verifiers know it before it signs) and keeps the earlier ones that may
//! still have tokens in circulation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use portcullis_store::{SigningKeyRecord, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::random::random_bytes;
use crate::{AuthnError, SecretBox};

const SEAL_PURPOSE: &str = "signing-key";
/// Earlier keys kept (still verifying) when a new one is added.
const KEEP_EARLIER: usize = 2;

/// The user object of a token (seed 003's authentication service shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUser {
    /// User id.
    pub user_id: String,
    /// Group names in the token's org.
    pub groups: Vec<String>,
    /// Email.
    pub email: String,
    /// Display name (the username when none is set).
    pub name: String,
}

/// The claims of a session access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The user id.
    pub sub: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// Token id.
    pub jti: String,
    /// The session.
    pub sid: String,
    /// The org (slug) the session is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The user.
    pub user: TokenUser,
}

/// Why a token was refused (the caller only learns "invalid token").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or not signed by a key of ours with EdDSA.
    #[error("malformed token or unknown signing key")]
    Malformed,
    /// The signature, issuer or audience is wrong.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Past its `exp`.
    #[error("the token has expired")]
    Expired,
}

struct LoadedKey {
    kid: String,
    active_from: i64,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_x: String,
}

/// Tokens already verified on this replica, by SHA-256 of the whole token: a session sends
/// the same token on every request, and the Ed25519 check (~50 µs here) need not be repeated.
/// Any change to a token changes its digest, so only the exact verified text hits. Sharded
/// mutexes, each held for one map operation; a full shard is emptied.
struct VerifiedCache {
    shards: Vec<CacheShard>,
}

/// Token digest -> (session id, `exp`).
type CacheShard = Mutex<HashMap<[u8; 32], (String, u64)>>;

const CACHE_SHARDS: usize = 32;
const CACHE_PER_SHARD: usize = 4096;

impl VerifiedCache {
    fn new() -> Self {
        Self {
            shards: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        }
    }

    fn shard(&self, key: &[u8; 32]) -> &CacheShard {
        &self.shards[usize::from(key[0]) % CACHE_SHARDS]
    }

    fn get(&self, key: &[u8; 32], now_secs: u64) -> Option<String> {
        let shard = self.shard(key).lock().ok()?;
        shard
            .get(key)
            .filter(|(_, exp)| *exp > now_secs)
            .map(|(sid, _)| sid.clone())
    }

    fn put(&self, key: [u8; 32], sid: String, exp: u64) {
        if let Ok(mut shard) = self.shard(&key).lock() {
            if shard.len() >= CACHE_PER_SHARD {
                shard.clear();
            }
            shard.insert(key, (sid, exp));
        }
    }

    fn clear(&self) {
        for shard in &self.shards {
            if let Ok(mut s) = shard.lock() {
                s.clear();
            }
        }
    }
}

/// The signing keys of this deployment.
pub struct KeyRing {
    verified: VerifiedCache,
    keys: ArcSwap<Vec<Arc<LoadedKey>>>,
    secret_box: SecretBox,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("kids", &self.kids())
            .finish_non_exhaustive()
    }
}

/// RFC 8410 PKCS#8 wrapping of an Ed25519 seed.
fn pkcs8_of(seed: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(seed);
    der
}

/// A new signing key, sealed, active from `active_from`.
pub fn generate_key(
    secret_box: &SecretBox,
    now: i64,
    active_from: i64,
) -> Result<SigningKeyRecord, AuthnError> {
    let seed: [u8; 32] = random_bytes()?;
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let kid: String = Sha256::digest(public)[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(SigningKeyRecord {
        kid,
        alg: "EdDSA".into(),
        private_sealed: secret_box.seal(SEAL_PURPOSE, &seed)?,
        public_key: URL_SAFE_NO_PAD.encode(public),
        created_at: now,
        active_from,
    })
}

/// Adds a new key to the store, active after `delay_ms`, keeping the earlier ones that still
/// verify tokens. Returns its `kid`.
pub async fn rotate(
    store: &Store,
    secret_box: &SecretBox,
    now: i64,
    delay_ms: i64,
) -> Result<String, AuthnError> {
    let key = generate_key(secret_box, now, now + delay_ms.max(0))?;
    store.add_signing_key(&key, KEEP_EARLIER, now).await?;
    if let Err(e) = store.announce_signing_keys().await {
        tracing::warn!(error = %e, "could not announce the new signing key; replicas pick it up at their next reload");
    }
    Ok(key.kid)
}

impl KeyRing {
    /// Loads the keys from the store, creating the first one on a fresh database.
    pub async fn load(
        store: &Store,
        secret_box: SecretBox,
        issuer: String,
        audience: String,
        now: i64,
    ) -> Result<Arc<Self>, AuthnError> {
        if store.signing_keys().await?.is_empty() {
            rotate(store, &secret_box, now, 0).await?;
        }
        let ring = Arc::new(Self {
            verified: VerifiedCache::new(),
            keys: ArcSwap::from_pointee(Vec::new()),
            secret_box,
            issuer,
            audience,
        });
        ring.reload(store).await?;
        Ok(ring)
    }

    /// Reads the keys again (after a rotation by the CLI or another replica).
    pub async fn reload(&self, store: &Store) -> Result<(), AuthnError> {
        let mut loaded = Vec::new();
        for record in store.signing_keys().await? {
            if record.alg != "EdDSA" {
                tracing::warn!(kid = %record.kid, alg = %record.alg, "signing key with an unknown algorithm ignored");
                continue;
            }
            let seed: [u8; 32] = self
                .secret_box
                .open(SEAL_PURPOSE, &record.private_sealed)
                .map_err(|_| {
                    AuthnError::SecretKey(format!(
                        "stored signing key {} was sealed with another secret key: every replica of a database needs the same key (auth.secret_key, or the same <data>/secret.key)",
                        record.kid
                    ))
                })?
                .try_into()
                .map_err(|_| AuthnError::SecretKey("a stored signing key is damaged".into()))?;
            let public = URL_SAFE_NO_PAD
                .decode(&record.public_key)
                .map_err(|_| AuthnError::SecretKey("a stored public key is damaged".into()))?;
            loaded.push(Arc::new(LoadedKey {
                kid: record.kid,
                active_from: record.active_from,
                encoding: EncodingKey::from_ed_der(&pkcs8_of(&seed)),
                decoding: DecodingKey::from_ed_der(&public),
                public_x: record.public_key,
            }));
        }
        if loaded.is_empty() {
            return Err(AuthnError::SecretKey(
                "no token signing key is stored".into(),
            ));
        }
        let retired = self
            .keys
            .load()
            .iter()
            .any(|old| !loaded.iter().any(|k| k.kid == old.kid));
        self.keys.store(Arc::new(loaded));
        if retired {
            // Tokens of a retired key must be checked again (and refused).
            self.verified.clear();
        }
        Ok(())
    }

    /// The issuer (`iss`) of our tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience (`aud`) of our session tokens.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The key ids known, oldest first.
    pub fn kids(&self) -> Vec<String> {
        self.keys.load().iter().map(|k| k.kid.clone()).collect()
    }

    /// The key that signs at `now_ms`: the newest one already active.
    fn signer(&self, now_ms: i64) -> Option<Arc<LoadedKey>> {
        let keys = self.keys.load();
        keys.iter()
            .filter(|k| k.active_from <= now_ms)
            .max_by_key(|k| k.active_from)
            .or_else(|| keys.first())
            .cloned()
    }

    /// Signs any claims with the current key.
    pub fn sign<T: Serialize>(&self, claims: &T, now_ms: i64) -> Result<String, AuthnError> {
        let key = self
            .signer(now_ms)
            .ok_or_else(|| AuthnError::SecretKey("no token signing key is loaded".into()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| AuthnError::SecretKey(format!("signing failed: {e}")))
    }

    /// Verifies a session token: EdDSA only, a `kid` of ours, our issuer and audience, and not
    /// past `exp` by the given clock (`alg: none`, HMAC with a public key and foreign keys never
    /// get as far as a signature check).
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<SessionClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Malformed);
        }
        let kid = header.kid.ok_or(TokenError::Malformed)?;
        let keys = self.keys.load();
        let key = keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::Malformed)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Expiry is checked below against Portcullis's clock, not the library's.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        let data = jsonwebtoken::decode::<SessionClaims>(token, &key.decoding, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        if data.claims.exp <= now_secs {
            return Err(TokenError::Expired);
        }
        Ok(data.claims)
    }

    /// The session id of a valid session token: [`KeyRing::verify`] the first time this replica
    /// sees the token, a digest lookup afterwards (until the token's `exp`).
    pub fn session_of(&self, token: &str, now_secs: u64) -> Result<String, TokenError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(sid) = self.verified.get(&key, now_secs) {
            return Ok(sid);
        }
        let claims = self.verify(token, now_secs)?;
        self.verified.put(key, claims.sid.clone(), claims.exp);
        Ok(claims.sid)
    }

    /// The JWKS document: every key not retired (upcoming, current and previous).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .load()
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "alg": "EdDSA",
                    "use": "sig",
                    "kid": k.kid,
                    "x": k.public_x,
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}
