-- Live events are kept for a while (default 7 days), then pruned. The highest id
-- pruned so far is kept here: a stream resuming below it (Last-Event-ID) is told to
-- resync instead of silently missing what was pruned.
CREATE TABLE events_pruned (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    through INTEGER NOT NULL
);
CREATE INDEX events_at ON events(at);
