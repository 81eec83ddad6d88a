//! TOTP MFA (RFC 6238): enrollment, the two-step login with codes computed here, replay
//! refusal, single-use recovery codes, and an independent check that the codes are standard.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const STEP: Duration = Duration::from_secs(30);

/// RFC 6238 TOTP (HMAC-SHA-1, 6 digits, 30 s) written with Python's standard library only;
/// it checks itself against the RFC's test vector before it answers.
const PYTHON_TOTP: &str = r#"
import base64, hashlib, hmac, struct, sys
def totp(key, t):
    digest = hmac.new(key, struct.pack(">Q", t // 30), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1000000)
assert totp(b"12345678901234567890", 59) == "287082"
assert totp(b"12345678901234567890", 1111111109) == "081804"
secret = sys.argv[1].upper()
key = base64.b32decode(secret + "=" * (-len(secret) % 8))
print(totp(key, int(sys.argv[2])))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_login_replay_and_recovery_codes() {
    let s = Server::start().await;
    s.active_user("ana@example.com").await;
    let session = s.login_ok("ana@example.com", PASSWORD).await;
    let status = s
        .get(&session.access, "/api/v1/me/mfa")
        .await
        .json_with(200);
    assert_eq!(status["totp"], false);

    // Enrollment: secret, otpauth URI and QR code.
    let begun = s
        .post(&session.access, "/api/v1/me/mfa/totp", json!({}))
        .await
        .json_with(201);
    let secret = begun["secret"].as_str().unwrap().to_owned();
    assert_eq!(base32_decode(&secret).len(), 20, "a 160-bit secret");
    let uri = begun["otpauthUri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert_contains(uri, &format!("secret={secret}"));
    assert_contains(uri, "ana%40example.com");
    assert_contains(begun["qrSvg"].as_str().unwrap(), "<svg");
    // Not enrolled before the first code.
    assert_eq!(
        s.get(&session.access, "/api/v1/me/mfa")
            .await
            .json_with(200)["totp"],
        false
    );

    // A wrong code does not confirm; the code computed here by an independent RFC 6238
    // implementation (Python's hmac) does, and it is the code of the secret at the server's time.
    let now = s.clock.now_secs();
    let right = python(PYTHON_TOTP, &[&secret, &now.to_string()]);
    assert_eq!(right, totp_at(&secret, now), "Python and Rust disagree");
    s.post(
        &session.access,
        "/api/v1/me/mfa/totp/confirm",
        json!({ "code": other_code(&right) }),
    )
    .await
    .error(401, "invalid_code");
    let confirmed = s
        .post(
            &session.access,
            "/api/v1/me/mfa/totp/confirm",
            json!({ "code": right }),
        )
        .await
        .json_with(200);
    let recovery: Vec<String> = confirmed["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10, "{confirmed}");
    let mut distinct = recovery.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "recovery codes are distinct");
    let status = s
        .get(&session.access, "/api/v1/me/mfa")
        .await
        .json_with(200);
    assert_eq!(status["totp"], true);
    assert_eq!(status["recoveryCodesLeft"], 10);

    // Log out; the session ends.
    s.call(
        reqwest::Method::POST,
        "/logout",
        Some(&session.access),
        None,
    )
    .await
    .expect(204);
    s.me(&session.access).await.expect(401);

    // The confirmation used this step's code: move to the next step.
    s.advance(STEP);

    // A wrong password never reaches the second step.
    let body = s
        .login("ana@example.com", "wrong password!")
        .await
        .json_with(401);
    assert_eq!(body["error"]["code"], "invalid_credentials");
    assert!(body.get("mfaToken").is_none(), "{body}");

    // The password alone: a second step is required.
    let mfa_token = mfa_required(&s).await;
    let code = s.totp(&secret);
    s.token(json!({ "grantType": "mfa", "mfaToken": mfa_token, "totpCode": other_code(&code) }))
        .await
        .error(401, "invalid_code");
    let tokens = s
        .token(json!({ "grantType": "mfa", "mfaToken": mfa_token, "totpCode": code }))
        .await
        .json_with(200);
    assert_eq!(tokens["stage"], "active");
    s.me(tokens["accessToken"].as_str().unwrap())
        .await
        .expect(200);
    // The challenge is spent with the login it completed.
    s.token(json!({ "grantType": "mfa", "mfaToken": mfa_token, "totpCode": code }))
        .await
        .error(401, "login_expired");

    // The same code again (same time step, a new login): refused.
    let replay = mfa_required(&s).await;
    s.token(json!({ "grantType": "mfa", "mfaToken": replay, "totpCode": code }))
        .await
        .error(401, "invalid_code");
    // …and in one step with the password, too.
    s.token(json!({ "email": "ana@example.com", "password": PASSWORD, "totpCode": code }))
        .await
        .error(401, "invalid_code");

    // The next step's code works (on the same challenge, still within its attempts).
    s.advance(STEP);
    let next = s.totp(&secret);
    assert_ne!(next, code);
    let tokens = s
        .token(json!({ "grantType": "mfa", "mfaToken": replay, "totpCode": next }))
        .await
        .json_with(200);
    s.me(tokens["accessToken"].as_str().unwrap())
        .await
        .expect(200);

    // Password and code in one request.
    s.advance(STEP);
    let one_step = s
        .token(json!({ "email": "ana@example.com", "password": PASSWORD, "totpCode": s.totp(&secret) }))
        .await
        .json_with(200);
    assert_eq!(one_step["stage"], "active");
    let one_step_access = one_step["accessToken"].as_str().unwrap();
    s.me(one_step_access).await.expect(200);

    // A recovery code works once.
    let challenge = mfa_required(&s).await;
    let tokens = s
        .token(json!({ "grantType": "mfa", "mfaToken": challenge, "recoveryCode": recovery[0] }))
        .await
        .json_with(200);
    s.me(tokens["accessToken"].as_str().unwrap())
        .await
        .expect(200);
    assert_eq!(
        s.get(one_step_access, "/api/v1/me/mfa")
            .await
            .json_with(200)["recoveryCodesLeft"],
        9
    );
    let challenge = mfa_required(&s).await;
    s.token(json!({ "grantType": "mfa", "mfaToken": challenge, "recoveryCode": recovery[0] }))
        .await
        .error(401, "invalid_code");
    // Another one, with the password in one request (case and dashes do not matter).
    let spelled = recovery[1].to_uppercase().replace('-', "");
    s.token(json!({ "email": "ana@example.com", "password": PASSWORD, "recoveryCode": spelled }))
        .await
        .expect(200);
    s.token(
        json!({ "email": "ana@example.com", "password": PASSWORD, "recoveryCode": recovery[1] }),
    )
    .await
    .error(401, "invalid_code");
    assert_eq!(
        s.get(one_step_access, "/api/v1/me/mfa")
            .await
            .json_with(200)["recoveryCodesLeft"],
        8
    );

    let enrolled = s.audit("mfa.enroll").await;
    assert!(
        enrolled
            .iter()
            .any(|a| a["target"].as_str().unwrap_or("").contains("ana")),
        "{enrolled:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_totp_needs_a_current_code_or_an_admin() {
    let s = Server::start().await;
    let id = s.active_user("ana@example.com").await;
    let session = s.login_ok("ana@example.com", PASSWORD).await;
    let (secret, _) = s.enroll_totp(&session.access).await;
    s.advance(STEP);

    // A wrong code does not remove it.
    let code = s.totp(&secret);
    s.call(
        reqwest::Method::DELETE,
        "/api/v1/me/mfa/totp",
        Some(&session.access),
        Some(&json!({ "code": other_code(&code) })),
    )
    .await
    .error(401, "invalid_code");
    s.call(
        reqwest::Method::DELETE,
        "/api/v1/me/mfa/totp",
        Some(&session.access),
        Some(&json!({ "code": code })),
    )
    .await
    .expect(204);
    // The password alone opens a session again.
    assert_eq!(
        s.login_ok("ana@example.com", PASSWORD).await.stage(),
        "active"
    );

    // Enroll again; an admin removes it.
    s.advance(STEP);
    s.enroll_totp(&session.access).await;
    mfa_required(&s).await;
    s.delete(ADMIN_KEY, &format!("/api/v1/orgs/default/users/{id}/mfa"))
        .await
        .expect(204);
    assert_eq!(
        s.login_ok("ana@example.com", PASSWORD).await.stage(),
        "active"
    );
    s.delete(ADMIN_KEY, &format!("/api/v1/orgs/default/users/{id}/mfa"))
        .await
        .expect(404);
    let removed = s.audit("mfa.remove").await;
    assert!(removed.len() >= 2, "{removed:?}");
    s.stop().await;
}

/// Logs ana in with the password only, expects `mfa_required`, returns the `mfaToken`.
async fn mfa_required(s: &Server) -> String {
    let reply = s.login("ana@example.com", PASSWORD).await;
    let body = reply.json_with(401);
    assert_eq!(body["error"]["code"], "mfa_required", "{body}");
    body["mfaToken"]
        .as_str()
        .unwrap_or_else(|| panic!("an mfaToken in {body}"))
        .to_owned()
}
