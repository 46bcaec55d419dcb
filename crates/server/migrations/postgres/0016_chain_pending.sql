-- Audit records and live events written beside other units of work wait here, in
-- the same transaction as the state change they record, until a chaining round
-- (any replica, under the audit lock) appends them to the signed chain and hands
-- events their ids, in one line and in commit order (see src/store/postgres.rs).
CREATE TABLE audit_pending (
    id      BIGSERIAL PRIMARY KEY,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE TABLE events_pending (
    id        BIGSERIAL PRIMARY KEY,
    recipient TEXT NOT NULL,
    kind      TEXT NOT NULL,
    at        TIMESTAMPTZ NOT NULL,
    body      TEXT NOT NULL
);

-- A chaining round moves events in one statement, which may move none: tell the
-- replicas only when rows were inserted.
DROP TRIGGER events_notify ON events;
CREATE OR REPLACE FUNCTION firedoor_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted) THEN
        PERFORM pg_notify('firedoor_events', '');
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION firedoor_events_notify();

-- A round appends many records in one statement: keep the high-water mark once per
-- statement (the highest seq inserted and its hash) instead of once per row.
DROP TRIGGER audit_high_bump ON audit;
CREATE OR REPLACE FUNCTION audit_high_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_high (one, seq, hash)
        SELECT TRUE, i.seq, i.hash FROM inserted i ORDER BY i.seq DESC LIMIT 1
        ON CONFLICT (one) DO UPDATE SET
            seq = GREATEST(audit_high.seq, EXCLUDED.seq),
            hash = CASE WHEN EXCLUDED.seq >= audit_high.seq THEN EXCLUDED.hash
                        ELSE audit_high.hash END;
    RETURN NULL;
END $$;
CREATE TRIGGER audit_high_bump AFTER INSERT ON audit
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION audit_high_bump();

-- Rows come and go many times a second: let autovacuum tend the pending tables by
-- the number of dead rows, not by a share of a table that is nearly always empty
-- (the broker also vacuums them itself now and then, see src/store/postgres.rs).
ALTER TABLE audit_pending SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
ALTER TABLE events_pending SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
