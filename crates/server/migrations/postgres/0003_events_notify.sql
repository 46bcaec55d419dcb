-- Inserting live events tells every replica's event streams, as the transaction
-- commits (PostgreSQL sends a NOTIFY at commit, once per transaction for the same
-- payload, and never for a rollback). A trigger instead of a separate statement
-- from the broker: one round trip less per unit of work.
CREATE FUNCTION firedoor_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('firedoor_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION firedoor_events_notify();
