-- Who the store knows (users) and who covers on-call (overrides, synced shifts):
-- a broker keeps them in memory tagged with this number and reads only the number
-- to know its copy is current (see migrations/postgres/0018). Every change of the
-- three tables bumps it in the same transaction.
CREATE TABLE directory_version (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    n   INTEGER NOT NULL
);
INSERT INTO directory_version (one, n) VALUES (1, 1);
CREATE TRIGGER users_directory_ins AFTER INSERT ON users BEGIN UPDATE directory_version SET n = n + 1; END;
CREATE TRIGGER users_directory_upd AFTER UPDATE ON users BEGIN UPDATE directory_version SET n = n + 1; END;
CREATE TRIGGER users_directory_del AFTER DELETE ON users BEGIN UPDATE directory_version SET n = n + 1; END;
CREATE TRIGGER oncall_overrides_directory_ins AFTER INSERT ON oncall_overrides BEGIN UPDATE directory_version SET n = n + 1; END;
CREATE TRIGGER oncall_overrides_directory_upd AFTER UPDATE ON oncall_overrides BEGIN UPDATE directory_version SET n = n + 1; END;
CREATE TRIGGER oncall_overrides_directory_del AFTER DELETE ON oncall_overrides BEGIN UPDATE directory_version SET n = n + 1; END;
CREATE TRIGGER oncall_sync_directory_ins AFTER INSERT ON oncall_sync BEGIN UPDATE directory_version SET n = n + 1; END;
CREATE TRIGGER oncall_sync_directory_upd AFTER UPDATE ON oncall_sync BEGIN UPDATE directory_version SET n = n + 1; END;
CREATE TRIGGER oncall_sync_directory_del AFTER DELETE ON oncall_sync BEGIN UPDATE directory_version SET n = n + 1; END;
