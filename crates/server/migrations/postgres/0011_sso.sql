-- Single sign-on (OpenID Connect).
--
-- The nonces the broker issued for sign-ins (only their SHA-256 is kept), each good
-- once (`used_at`) until `expires_at`.
CREATE TABLE sso_nonces (
    hash       TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX sso_nonces_expires ON sso_nonces(expires_at);

-- A sign-in through the IdP: the client's session key (ed25519, base64) signs every
-- refresh; the current refresh token is kept as a SHA-256 hash. It works until
-- `expires_at` (session_max after the sign-in) unless revoked.
CREATE TABLE sso_sessions (
    id             TEXT PRIMARY KEY,
    user_name      TEXT NOT NULL REFERENCES users(name),
    session_key    TEXT NOT NULL,
    refresh_hash   TEXT NOT NULL UNIQUE,
    created_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    refreshed_at   TIMESTAMPTZ,
    revoked_at     TIMESTAMPTZ,
    revoked_reason TEXT
);
CREATE INDEX sso_sessions_user ON sso_sessions(user_name);

-- Refresh tokens already exchanged: one coming back means it was copied, and its
-- session is revoked.
CREATE TABLE sso_used_refresh (
    hash       TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    used_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX sso_used_refresh_session ON sso_used_refresh(session_id);

-- The session an access token was issued for (none: an admin-issued token).
ALTER TABLE tokens ADD COLUMN session_id TEXT;
CREATE INDEX tokens_session ON tokens(session_id);
