-- Break-glass uses (issue 14): every unlock, offline (a device's record arrived)
-- or online (the broker released the value), stays open until it is classified
-- (kind: drill, incident, other). `incident_ref` is the incident as the person
-- gave it; `incident_id` the broker's incident it matched. `rotation_waits` is 1
-- while a rotation `after_incident` waits for that incident (the due time is the
-- secret's rotation_due_at, so a restart loses nothing).
CREATE TABLE breakglass_uses (
    id             TEXT PRIMARY KEY,
    secret         TEXT NOT NULL,
    version        BIGINT NOT NULL,
    user_name      TEXT NOT NULL,
    mode           TEXT NOT NULL,
    device_id      TEXT,
    seq            BIGINT,
    reason         TEXT NOT NULL,
    unlocked_at    TIMESTAMPTZ NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    incident_ref   TEXT,
    incident_id    TEXT,
    kind           TEXT,
    note           TEXT,
    classified_by  TEXT,
    classified_at  TIMESTAMPTZ,
    rotation_waits BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX breakglass_uses_open ON breakglass_uses(kind, recorded_at);
CREATE INDEX breakglass_uses_user ON breakglass_uses(user_name);
CREATE INDEX breakglass_uses_waiting ON breakglass_uses(rotation_waits);
