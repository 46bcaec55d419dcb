-- Firedoor broker schema. Times are RFC 3339 UTC text with microseconds
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ), so text order is time order.

CREATE TABLE users (
    name        TEXT PRIMARY KEY,
    groups_json TEXT NOT NULL,
    admin       INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);

-- API tokens: only the SHA-256 of the token is kept.
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL REFERENCES users(name),
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE TABLE requests (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    bundle           TEXT NOT NULL,
    flow             TEXT NOT NULL,
    requester        TEXT NOT NULL,
    state            TEXT NOT NULL,
    duration_secs    INTEGER NOT NULL,
    justification    TEXT,
    ticket           TEXT,
    created_at       TEXT NOT NULL,
    pending_until    TEXT NOT NULL,
    approvals_needed INTEGER NOT NULL,
    grant_id         TEXT,
    error            TEXT,
    idempotency_key  TEXT,
    body_hash        TEXT,
    updated_at       TEXT NOT NULL
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
    at         TEXT NOT NULL,
    PRIMARY KEY (request_id, by_user)
);

CREATE TABLE grants (
    id                TEXT PRIMARY KEY,
    request_id        TEXT NOT NULL UNIQUE REFERENCES requests(id),
    bundle            TEXT NOT NULL,
    flow              TEXT NOT NULL,
    holder            TEXT NOT NULL,
    state             TEXT NOT NULL,
    duration_secs     INTEGER NOT NULL,
    activated_at      TEXT,
    expires_at        TEXT NOT NULL,
    ended_at          TEXT,
    end_reason        TEXT,
    ended_by          TEXT,
    last_error        TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT,
    expiring_notified INTEGER NOT NULL DEFAULT 0,
    -- age-encrypted to the broker key; wiped when the grant ends.
    credentials       BLOB
);
CREATE INDEX grants_state ON grants(state, expires_at);
CREATE INDEX grants_holder ON grants(holder);

-- Live events, one row per recipient; ids are the SSE event ids.
CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL,
    kind      TEXT NOT NULL,
    at        TEXT NOT NULL,
    body      TEXT NOT NULL
);
CREATE INDEX events_recipient ON events(recipient, id);

-- Hash-chained audit log (see firedoor_core::audit).
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
