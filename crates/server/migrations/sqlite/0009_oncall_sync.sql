-- Schedules synced from an on-call provider (PagerDuty, Opsgenie): what the provider
-- said last (its people by email, mapped to Firedoor users when read, so a change of
-- the policy's users table counts at once; kept while the provider is unreachable),
-- which provider schedule that was (source), and how the last attempt went.
-- next_attempt_at is also the lease of the replica fetching now.
CREATE TABLE oncall_sync (
    schedule        TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    fetched_json    TEXT,
    fetched_at      TEXT,
    last_attempt    TEXT,
    last_error      TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL
);
