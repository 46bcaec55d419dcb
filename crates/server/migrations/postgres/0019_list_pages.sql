-- Lists are read a page at a time in their order (newest first), continuing after
-- the last row of the previous page: GET /requests?scope=all, GET /grants (mine,
-- all, live). These indexes let a page read only its own rows, however long the
-- history.
CREATE INDEX requests_created ON requests(created_at, id);
CREATE INDEX grants_expires ON grants(expires_at, id);
CREATE INDEX grants_holder_expires ON grants(holder, expires_at, id);
DROP INDEX grants_holder;
