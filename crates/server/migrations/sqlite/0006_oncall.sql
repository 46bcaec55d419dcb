-- On-call overrides: someone covers a schedule (declared in the policy) for a while.
-- Removing one keeps the row (removed_at), so what was in force stays readable.
CREATE TABLE oncall_overrides (
    id          TEXT PRIMARY KEY,
    schedule    TEXT NOT NULL,
    user_name   TEXT NOT NULL REFERENCES users(name),
    starts_at   TEXT NOT NULL,
    ends_at     TEXT NOT NULL,
    reason      TEXT,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    removed_at  TEXT
);
CREATE INDEX oncall_overrides_ends ON oncall_overrides(ends_at);
