-- Firedoor broker schema on PostgreSQL: the shared store of several broker replicas.
-- The same tables as the SQLite store (migrations/sqlite 0001-0004), with native
-- types: times are timestamptz (microseconds, like the SQLite text form), integers
-- BIGINT, sealed values BYTEA. Flags stay integers so that one SQL text serves both
-- stores. The audit log keeps `at` as text: it is an input of each record's hash, so
-- its exact characters are part of the chain.

CREATE TABLE users (
    name        TEXT PRIMARY KEY,
    groups_json TEXT NOT NULL,
    admin       BIGINT NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL,
    disabled_at TIMESTAMPTZ
);

-- API tokens: only the SHA-256 of the token is kept.
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL REFERENCES users(name),
    hash       TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ
);

CREATE TABLE requests (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    bundle           TEXT NOT NULL,
    flow             TEXT NOT NULL,
    requester        TEXT NOT NULL,
    state            TEXT NOT NULL,
    duration_secs    BIGINT NOT NULL,
    justification    TEXT,
    ticket           TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    pending_until    TIMESTAMPTZ NOT NULL,
    approvals_needed BIGINT NOT NULL,
    grant_id         TEXT,
    error            TEXT,
    idempotency_key  TEXT,
    body_hash        TEXT,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX requests_idempotency ON requests(requester, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX requests_state ON requests(state, pending_until);
CREATE INDEX requests_requester ON requests(requester, created_at);

CREATE TABLE decisions (
    request_id TEXT NOT NULL REFERENCES requests(id),
    by_user    TEXT NOT NULL,
    decision   TEXT NOT NULL,
    comment    TEXT,
    at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (request_id, by_user)
);

CREATE TABLE grants (
    id                TEXT PRIMARY KEY,
    request_id        TEXT NOT NULL UNIQUE REFERENCES requests(id),
    bundle            TEXT NOT NULL,
    flow              TEXT NOT NULL,
    holder            TEXT NOT NULL,
    state             TEXT NOT NULL,
    duration_secs     BIGINT NOT NULL,
    activated_at      TIMESTAMPTZ,
    expires_at        TIMESTAMPTZ NOT NULL,
    ended_at          TIMESTAMPTZ,
    end_reason        TEXT,
    ended_by          TEXT,
    last_error        TEXT,
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   TIMESTAMPTZ,
    expiring_notified BIGINT NOT NULL DEFAULT 0,
    -- age-encrypted to the broker key; wiped when the grant ends.
    credentials       BYTEA
);
CREATE INDEX grants_state ON grants(state, expires_at);
CREATE INDEX grants_holder ON grants(holder);

-- Live events, one row per recipient; ids are the SSE event ids. Rows are only
-- inserted while the store's write lock is held, so ids are handed out in commit
-- order and a reader that has seen id N never later finds a new id below N.
CREATE TABLE events (
    id        BIGSERIAL PRIMARY KEY,
    recipient TEXT NOT NULL,
    kind      TEXT NOT NULL,
    at        TIMESTAMPTZ NOT NULL,
    body      TEXT NOT NULL
);
CREATE INDEX events_recipient ON events(recipient, id);

-- Hash-chained, signed audit log (see firedoor_core::audit).
CREATE TABLE audit (
    seq       BIGINT PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    signature TEXT
);

-- The highest audit seq ever written (SQLite's AUTOINCREMENT counter plays this
-- part there): removing the end of the log leaves it behind, which `audit verify`
-- reports.
CREATE TABLE audit_high (
    one  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq  BIGINT NOT NULL
);
CREATE FUNCTION audit_high_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_high (one, seq) VALUES (TRUE, NEW.seq)
        ON CONFLICT (one) DO UPDATE SET seq = GREATEST(audit_high.seq, EXCLUDED.seq);
    RETURN NEW;
END $$;
CREATE TRIGGER audit_high_bump AFTER INSERT ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_high_bump();

-- Offline break glass (see firedoor_core::breakglass and migrations/sqlite/0002).
CREATE TABLE devices (
    id          TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES users(name),
    name        TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    signing_key TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ,
    head_seq    BIGINT NOT NULL DEFAULT 0,
    head_hash   TEXT NOT NULL
);
CREATE INDEX devices_user ON devices(user_name);

CREATE TABLE secrets (
    name                TEXT PRIMARY KEY,
    version             BIGINT NOT NULL DEFAULT 0,
    value               BYTEA,
    pending_value       BYTEA,
    updated_at          TIMESTAMPTZ,
    rotation_due_at     TIMESTAMPTZ,
    rotation_attempts   BIGINT NOT NULL DEFAULT 0,
    next_rotation_at    TIMESTAMPTZ,
    last_rotation_error TEXT,
    rotating_until      TIMESTAMPTZ,
    rotation_reason     TEXT
);

CREATE TABLE envelopes (
    device_id  TEXT NOT NULL REFERENCES devices(id),
    secret     TEXT NOT NULL,
    version    BIGINT NOT NULL,
    meta_json  TEXT NOT NULL,
    signature  TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    sealed_at  TIMESTAMPTZ NOT NULL,
    not_after  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (device_id, secret)
);
CREATE INDEX envelopes_secret ON envelopes(secret, version);

CREATE TABLE device_unlocks (
    device_id   TEXT NOT NULL REFERENCES devices(id),
    seq         BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    body        TEXT NOT NULL,
    signature   TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (device_id, seq)
);
