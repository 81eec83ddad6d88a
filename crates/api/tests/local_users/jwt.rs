//! Session tokens: they verify against the served JWKS with an independent JWT library
//! (PyJWT), and forged ones (`alg: none`, HS256 keyed with the public key, a foreign key or
//! `kid`, a changed payload) and expired ones are refused.

use serde_json::{Value, json};

use crate::support::*;

/// Verifies a token with PyJWT against a JWKS; prints the claims.
const VERIFY: &str = r#"
import json, sys, jwt
jwks, token, issuer = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
kid = jwt.get_unverified_header(token)["kid"]
keys = [k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == kid]
assert len(keys) == 1, "the token's kid is not in the JWKS"
claims = jwt.decode(token, keys[0].key, algorithms=["EdDSA"], audience="portcullis",
                    issuer=issuer, options={"require": ["exp", "iat", "sub", "iss", "aud"]})
print(json.dumps(claims))
"#;

/// Builds forged variants of a token: unsigned, HMAC-signed with the public key (raw bytes, its
/// base64url text, its PEM), signed by another Ed25519 key (with a foreign and with our `kid`),
/// and our signature under a header naming a foreign `kid`.
const FORGE: &str = r#"
import base64, hashlib, hmac, json, sys, jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
token, x, kid = sys.argv[1], sys.argv[2], sys.argv[3]
head, payload, signature = token.split(".")
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def unb64(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
def header(h): return b64(json.dumps(h, separators=(",", ":")).encode())
def hs256(secret):
    h = header({"alg": "HS256", "typ": "JWT", "kid": kid})
    mac = hmac.new(secret, (h + "." + payload).encode(), hashlib.sha256).digest()
    return h + "." + payload + "." + b64(mac)
raw = unb64(x)
pem = Ed25519PublicKey.from_public_bytes(raw).public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
claims = json.loads(unb64(payload))
attacker = Ed25519PrivateKey.generate()
print(json.dumps({
    "alg none": header({"alg": "none", "typ": "JWT"}) + "." + payload + ".",
    "alg none with our kid": header({"alg": "none", "typ": "JWT", "kid": kid}) + "." + payload + ".",
    "alg None": header({"alg": "None", "typ": "JWT"}) + "." + payload + "." + signature,
    "HS256 keyed with the raw public key": hs256(raw),
    "HS256 keyed with the JWK x text": hs256(x.encode()),
    "HS256 keyed with the PEM public key": hs256(pem),
    "another key, foreign kid": jwt.encode(claims, attacker, algorithm="EdDSA", headers={"kid": "attacker"}),
    "another key, our kid": jwt.encode(claims, attacker, algorithm="EdDSA", headers={"kid": kid}),
    "our signature, foreign kid": header({"alg": "EdDSA", "typ": "JWT", "kid": "attacker"}) + "." + payload + "." + signature,
    "no kid": header({"alg": "EdDSA", "typ": "JWT"}) + "." + payload + "." + signature,
}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_verify_against_the_jwks_with_pyjwt() {
    if !crate::python::python_has(&["jwt", "cryptography"], "pip install 'pyjwt[crypto]'") {
        return;
    }
    let s = Server::start().await;
    let id = s.active_user("ana@example.com").await;
    let tokens = s.login_ok("ana@example.com", PASSWORD).await;

    let jwks_reply = s
        .send(s.request(reqwest::Method::GET, "/.well-known/jwks.json"))
        .await;
    let jwks = jwks_reply.json_with(200);
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(
        base64_url_decode(key["x"].as_str().unwrap()).len(),
        32,
        "{key}"
    );
    let header = jwt_part(&tokens.access, 0);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], key["kid"]);

    let out = python(VERIFY, &[&jwks.to_string(), &tokens.access, &s.base]);
    let claims: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["sid"], tokens.sid.as_str());
    assert_eq!(claims["iss"], s.base.as_str());
    assert_eq!(claims["aud"], "portcullis");
    assert_eq!(claims["org"], "default");
    assert_eq!(claims["user"]["email"], "ana@example.com");
    assert_eq!(claims["user"]["userId"], id.as_str());
    assert!(claims["user"]["groups"].is_array(), "{claims}");
    assert!(claims["user"]["name"].is_string(), "{claims}");
    assert!(!claims["jti"].as_str().unwrap_or("").is_empty(), "{claims}");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        15 * 60,
        "an API access token lives 15 minutes: {claims}"
    );
    assert_eq!(
        claims["exp"].as_i64(),
        tokens.body["expireAt"].as_i64(),
        "expireAt is the token's exp"
    );
    let other = s.login_ok("ana@example.com", PASSWORD).await;
    assert_ne!(jwt_part(&other.access, 1)["jti"], claims["jti"]);

    // PyJWT does verify: a changed payload fails there too.
    let tampered = with_payload(&tokens.access, |c| {
        c["user"]["email"] = json!("admin@localhost")
    });
    let (ok, _, err) = python_status(VERIFY, &[&jwks.to_string(), &tampered, &s.base]);
    assert!(!ok, "PyJWT accepted a tampered token");
    assert_contains(&err, "Signature");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_expired_tokens_are_refused() {
    if !crate::python::python_has(&["jwt", "cryptography"], "pip install 'pyjwt[crypto]'") {
        return;
    }
    let s = Server::start().await;
    s.active_user("ana@example.com").await;
    let admin_id = s.me(ADMIN_KEY).await.json_with(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tokens = s.login_ok("ana@example.com", PASSWORD).await;
    s.me(&tokens.access).await.expect(200);
    let jwks = s
        .send(s.request(reqwest::Method::GET, "/.well-known/jwks.json"))
        .await
        .json_with(200);
    let (x, kid) = (
        jwks["keys"][0]["x"].as_str().unwrap(),
        jwks["keys"][0]["kid"].as_str().unwrap(),
    );

    let forged: Value = serde_json::from_str(&python(FORGE, &[&tokens.access, x, kid])).unwrap();
    let mut cases: Vec<(String, String)> = forged
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    cases.push((
        "a payload naming the admin".into(),
        with_payload(&tokens.access, |c| {
            c["sub"] = json!(admin_id);
            c["user"]["userId"] = json!(admin_id);
            c["user"]["email"] = json!(ADMIN_EMAIL);
        }),
    ));
    cases.push((
        "a later exp".into(),
        with_payload(&tokens.access, |c| {
            c["exp"] = json!(c["exp"].as_i64().unwrap() + 86_400)
        }),
    ));
    cases.push((
        "the signature cut off".into(),
        tokens.access.rsplit_once('.').unwrap().0.to_owned() + ".",
    ));
    assert_eq!(cases.len(), 13);
    for (name, token) in &cases {
        let reply = s.me(token).await;
        assert_eq!(reply.status, 401, "{name}: {}", reply.text);
        assert_eq!(reply.json()["error"]["code"], "unauthenticated", "{name}");
        // As a cookie too.
        let reply = s.get_with_cookie(token, "/api/v1/me").await;
        assert_eq!(reply.status, 401, "{name} (cookie): {}", reply.text);
    }
    // The genuine token still works.
    s.me(&tokens.access).await.expect(200);

    // Expiry: 15 minutes for an API access token, by the server's clock.
    s.advance(14 * MINUTE);
    s.me(&tokens.access).await.expect(200);
    s.advance(MINUTE + SECOND);
    let msg = s.me(&tokens.access).await.error(401, "unauthenticated");
    assert_contains(&msg, "expired");
    // The session itself lives on: its refresh token gives a fresh access token.
    let fresh = s.refresh(&tokens.refresh).await.json_with(200);
    s.me(fresh["accessToken"].as_str().unwrap())
        .await
        .expect(200);
    s.stop().await;
}

/// The token with its payload changed by `change`; header and signature kept.
fn with_payload(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = jwt_part(token, 1);
    change(&mut claims);
    format!(
        "{}.{}.{}",
        parts[0],
        b64url(claims.to_string().as_bytes()),
        parts[2]
    )
}

fn base64_url_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}
