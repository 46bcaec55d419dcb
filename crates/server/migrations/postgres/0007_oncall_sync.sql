-- Schedules synced from an on-call provider (PagerDuty, Opsgenie): the shifts last
-- fetched, mapped to Firedoor users (kept while the provider is unreachable), and
-- how the last attempt went. next_attempt_at is also the lease of the replica
-- fetching now.
CREATE TABLE oncall_sync (
    schedule        TEXT PRIMARY KEY,
    provider        TEXT NOT NULL,
    synced_json     TEXT,
    unmapped_json   TEXT NOT NULL DEFAULT '[]',
    fetched_at      TIMESTAMPTZ,
    last_attempt    TIMESTAMPTZ,
    last_error      TEXT,
    failures        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL
);
