-- Audit to a SIEM: one row per sink of the policy ([audit_sinks.NAME]), made when
-- the worker first delivers to it. `delivered_seq` is the last audit record the
-- receiver accepted (the cursor: it only moves after a batch was taken). A replica
-- delivering holds the lease (`lease_token` until `lease_until`); after a failure the
-- sink waits until `next_attempt_at`.
CREATE TABLE audit_sinks (
    name            TEXT PRIMARY KEY,
    delivered_seq   INTEGER NOT NULL DEFAULT 0,
    delivered_at    TEXT,
    lease_token     TEXT,
    lease_until     TEXT,
    next_attempt_at TEXT NOT NULL,
    failures        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    last_error_at   TEXT
);
