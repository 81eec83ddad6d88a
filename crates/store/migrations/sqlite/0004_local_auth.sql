-- Local users' credentials, login sessions, token signing keys and the mail outbox.
-- Times are milliseconds since the Unix epoch. No secret is stored in the clear: passwords are
-- argon2id PHC strings, tokens and codes are SHA-256 digests, TOTP secrets, signing keys and
-- mail bodies are sealed with the server's secret key.

CREATE TABLE local_passwords (
    user_id     TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    phc         TEXT NOT NULL,
    temporary   BIGINT NOT NULL DEFAULT 0,
    expires_at  BIGINT,
    changed_at  BIGINT NOT NULL
);

CREATE TABLE password_resets (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX password_resets_user ON password_resets (user_id);

CREATE TABLE totp_factors (
    user_id        TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_sealed  TEXT NOT NULL,
    confirmed      BIGINT NOT NULL DEFAULT 0,
    last_step      BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL
);

CREATE TABLE recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE login_failures (
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    at       BIGINT NOT NULL
);
CREATE INDEX login_failures_user ON login_failures (user_id, at);

CREATE TABLE account_locks (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    locked_until  BIGINT NOT NULL
);

-- The second step of a login (TOTP code) refers to the first by this single-use token.
CREATE TABLE login_challenges (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id      TEXT REFERENCES orgs (id) ON DELETE CASCADE,
    browser     BIGINT NOT NULL DEFAULT 0,
    expires_at  BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id        TEXT REFERENCES orgs (id) ON DELETE CASCADE,
    stage         TEXT NOT NULL CHECK (stage IN ('active', 'password_change', 'mfa_enrollment')),
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    idle_ms       BIGINT,
    last_seen_at  BIGINT NOT NULL,
    revoked_at    BIGINT,
    client        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    spent_at    BIGINT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    alg             TEXT NOT NULL,
    private_sealed  TEXT NOT NULL,
    public_key      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    active_from     BIGINT NOT NULL,
    retired_at      BIGINT
);

CREATE TABLE mail_outbox (
    id           TEXT PRIMARY KEY,
    recipient    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    body_sealed  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    sent_at      BIGINT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    last_error   TEXT
);
