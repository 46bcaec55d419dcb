-- Incidents from the policy's sources (Alertmanager, PagerDuty): one row per
-- incident and matching rule. Requests made for one name it.
CREATE TABLE incidents (
    id          TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    external_id TEXT NOT NULL,
    rule        TEXT NOT NULL,
    title       TEXT NOT NULL,
    url         TEXT,
    state       TEXT NOT NULL,
    opened_at   TEXT NOT NULL,
    resolved_at TEXT,
    UNIQUE (source, external_id, rule)
);

-- Deliveries already handled, by the provider's id (PagerDuty's event id): a replay
-- is refused.
CREATE TABLE webhook_deliveries (
    source      TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (source, delivery_id)
);

ALTER TABLE requests ADD COLUMN incident_id TEXT;
