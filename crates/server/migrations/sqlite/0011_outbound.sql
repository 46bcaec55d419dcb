-- Notifications to chat and webhooks (the policy's [notifications.NAME]): one row
-- per event and channel, written in the event's transaction, sent by the worker
-- with retries; `dead` once given up, until an admin retries it.
CREATE TABLE outbound (
    id              TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    last_status     INTEGER,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX outbound_due ON outbound(state, next_attempt_at);
