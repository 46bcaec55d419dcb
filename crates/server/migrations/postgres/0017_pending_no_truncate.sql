-- A vacuum that finds empty pages at the end of a table truncates them, and to do
-- so takes an ACCESS EXCLUSIVE lock on it, retrying for up to 5 s while writers hold
-- theirs. The pending tables are written by every unit of work and emptied by
-- every chaining round, so their tail is nearly always empty: each vacuum stalled
-- the writers (a broker-run VACUUM of the two took 350 ms on average under load).
-- They stay a few pages long anyway; never truncate them.
ALTER TABLE audit_pending SET (vacuum_truncate = false);
ALTER TABLE events_pending SET (vacuum_truncate = false);
