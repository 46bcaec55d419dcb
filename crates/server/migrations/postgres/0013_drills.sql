-- issue 14: break-glass drills and readiness.
--
-- A drill of one secret: a random nonce, the version then, who or what started it,
-- and until when the asked devices may answer. `closed_at` is set once, by the
-- worker, after the deadline.
CREATE TABLE drills (
    id          TEXT PRIMARY KEY,
    secret      TEXT NOT NULL,
    version     BIGINT NOT NULL,
    nonce       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    started_by  TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    deadline    TIMESTAMPTZ NOT NULL,
    closed_at   TIMESTAMPTZ
);
CREATE INDEX drills_secret ON drills(secret, started_at);
CREATE INDEX drills_open ON drills(closed_at, deadline);

-- The devices a drill asked (eligible and enrolled when it started), and how each
-- did. No proof is stored: only when it passed and how many answers were wrong.
CREATE TABLE drill_devices (
    drill_id        TEXT NOT NULL REFERENCES drills(id),
    device_id       TEXT NOT NULL,
    user_name       TEXT NOT NULL,
    passed_at       TIMESTAMPTZ,
    failures        BIGINT NOT NULL DEFAULT 0,
    last_failure_at TIMESTAMPTZ,
    PRIMARY KEY (drill_id, device_id)
);
CREATE INDEX drill_devices_device ON drill_devices(device_id);

-- Per secret, whether it was below its required ready holders at the last check, so
-- an alert is raised once per transition (not every worker pass, not again after a
-- restart or on another replica).
CREATE TABLE readiness_state (
    secret  TEXT PRIMARY KEY,
    below   BIGINT NOT NULL,
    since   TIMESTAMPTZ NOT NULL,
    ready   BIGINT NOT NULL
);
