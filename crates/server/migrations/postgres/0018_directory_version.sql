-- Who the store knows (users) and who covers on-call (overrides, synced shifts)
-- change rarely but are read by nearly every call: each broker keeps them in
-- memory, tagged with this number, and reads only the number (in the same
-- statement as the caller's token, or at the start of a unit of work) to know its
-- copy is still what the store holds. Every change of the three tables bumps it in
-- the same transaction, so a copy is never used after the change commits.
CREATE TABLE directory_version (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    n   BIGINT NOT NULL
);
INSERT INTO directory_version (one, n) VALUES (TRUE, 1);
CREATE FUNCTION directory_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE directory_version SET n = n + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER users_directory AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION directory_bump();
CREATE TRIGGER oncall_overrides_directory AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON oncall_overrides
    FOR EACH STATEMENT EXECUTE FUNCTION directory_bump();
CREATE TRIGGER oncall_sync_directory AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON oncall_sync
    FOR EACH STATEMENT EXECUTE FUNCTION directory_bump();
