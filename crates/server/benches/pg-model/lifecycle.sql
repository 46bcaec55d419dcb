-- One grant lifecycle's store work (create -> approve -> active -> revoke), modelled on
-- the statements the PostgreSQL store sends (FIREDOOR_BENCH_PG_LOG of the broker bench).
-- Per lifecycle: 5 units of work, 3 token checks, 2 chaining rounds, 4 event reads
-- (2 brokers x 2 rounds), 2 view reloads, 2 grant loads.
-- As written, statements are grouped into pipelines: per unit of work, the reads that
-- decide its writes, then its writes, pending records and COMMIT (what a pipelining
-- store driver would send). scripts/bench-pg-model.sh also runs it with the pipeline
-- lines taken out: one statement per round trip, as the store sends them today (BEGIN
-- and each lock are statements of their own here; the store sends those in one
-- message).
\set rid random(1, 2000000000)
SELECT u.name, u.groups_json, u.admin, t.id, (SELECT n FROM directory_version) FROM tokens t JOIN users u ON u.name = t.user_name WHERE t.hash = 'h1' AND t.revoked_at IS NULL AND t.expires_at > now() AND u.disabled_at IS NULL;
\startpipeline
BEGIN;
SELECT pg_advisory_xact_lock_shared(1179210309);
SELECT n FROM directory_version;
\endpipeline
\startpipeline
INSERT INTO requests (id, kind, bundle, flow, requester, state, duration_secs, justification, ticket, created_at, pending_until, approvals_needed, grant_id, idempotency_key, body_hash, updated_at, incident_id, requested_by, stage) VALUES (:rid::text, 'access', 'db-read', 'default', 'bench', 'pending', 3600, 'INC-1 bench', NULL, now(), now() + interval '1 hour', 1, NULL, NULL, NULL, now(), NULL, NULL, 0);
WITH a AS (INSERT INTO audit_pending (at, actor, action, subject, details) VALUES ('2026-11-27T07:00:00.000000Z', 'bench', 'request_created', :rid::text, '{"bundle":"db-read","reason":"INC-1 bench"}')) INSERT INTO events_pending (recipient, kind, at, body) VALUES ('bench', 'request_created', now(), '{"kind":"request_created","message":"bench"}');
COMMIT;
\endpipeline
\startpipeline
BEGIN;
SELECT pg_advisory_xact_lock(1179210305);
SELECT p.id, p.at, p.actor, p.action, p.subject, p.details, h.seq, h.hash, (SELECT a.signature IS NOT NULL FROM audit a WHERE a.seq = h.seq) FROM audit_high h LEFT JOIN audit_pending p ON TRUE ORDER BY p.id;
\endpipeline
\startpipeline
WITH p AS (SELECT id, at, actor, action, subject, details, row_number() OVER (ORDER BY id) AS n FROM audit_pending), a AS (INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash, signature) SELECT h.seq + p.n, p.at, p.actor, p.action, p.subject, p.details, repeat('a', 64), repeat('b', 64), repeat('c', 128) FROM p, audit_high h), da AS (DELETE FROM audit_pending WHERE id IN (SELECT id FROM p)), de AS (DELETE FROM events_pending RETURNING id, recipient, kind, at, body) INSERT INTO events (recipient, kind, at, body) SELECT recipient, kind, at, body FROM de ORDER BY id;
COMMIT;
\endpipeline
SELECT id, recipient, body FROM events WHERE id > (SELECT COALESCE(MAX(id), 0) - 3 FROM events) ORDER BY id LIMIT 1000;
SELECT id, recipient, body FROM events WHERE id > (SELECT COALESCE(MAX(id), 0) - 3 FROM events) ORDER BY id LIMIT 1000;
\startpipeline
SELECT id, kind, bundle, flow, requester, state, duration_secs, justification, ticket, created_at, pending_until, approvals_needed, grant_id, error, incident_id, requested_by, stage, stage_since, reminded_stage FROM requests WHERE id = :rid::text;
SELECT by_user, decision, comment, at FROM decisions WHERE request_id = :rid::text ORDER BY at, by_user;
\endpipeline
SELECT u.name, u.groups_json, u.admin, t.id, (SELECT n FROM directory_version) FROM tokens t JOIN users u ON u.name = t.user_name WHERE t.hash = 'h1' AND t.revoked_at IS NULL AND t.expires_at > now() AND u.disabled_at IS NULL;
\startpipeline
BEGIN;
SELECT pg_advisory_xact_lock_shared(1179210309);
SELECT pg_advisory_xact_lock(1179210313, :rid);
SELECT id, kind, bundle, flow, requester, state, duration_secs, justification, ticket, created_at, pending_until, approvals_needed, grant_id, error, incident_id, requested_by, stage, stage_since, reminded_stage FROM requests WHERE id = :rid::text;
SELECT by_user, decision, comment, at FROM decisions WHERE request_id = :rid::text ORDER BY at, by_user;
SELECT n FROM directory_version;
\endpipeline
\startpipeline
INSERT INTO decisions (request_id, by_user, decision, comment, at) VALUES (:rid::text, 'bench', 'approve', NULL, now());
UPDATE requests SET state = 'approved', updated_at = now(), error = COALESCE(NULL, error) WHERE id = :rid::text AND state = 'pending';
INSERT INTO grants (id, request_id, bundle, flow, holder, state, duration_secs, expires_at, next_attempt_at) VALUES ('g' || :rid, :rid::text, 'db-read', 'default', 'bench', 'provisioning', 3600, now() + interval '1 hour', now());
UPDATE requests SET grant_id = 'g' || :rid, updated_at = now() WHERE id = :rid::text;
WITH a AS (INSERT INTO audit_pending (at, actor, action, subject, details) VALUES ('2026-11-27T07:00:00.000000Z', 'bench', 'request_approved', :rid::text, '{"bundle":"db-read","reason":"INC-1 bench"}')) INSERT INTO events_pending (recipient, kind, at, body) VALUES ('bench', 'request_approved', now(), '{"kind":"request_approved","message":"bench"}');
COMMIT;
\endpipeline
SELECT id, request_id, bundle, flow, holder, state, duration_secs, activated_at, expires_at, ended_at, end_reason, ended_by, last_error, attempts, next_attempt_at FROM grants WHERE id = 'g' || :rid;
\startpipeline
BEGIN;
SELECT pg_advisory_xact_lock_shared(1179210309);
SELECT pg_advisory_xact_lock(1179210313, :rid);
SELECT state FROM grants WHERE id = 'g' || :rid;
\endpipeline
\startpipeline
UPDATE grants SET state = 'active', activated_at = now(), expires_at = now() + interval '1 hour', credentials = NULL, last_error = NULL, next_attempt_at = NULL WHERE id = 'g' || :rid AND state = 'provisioning';
UPDATE requests SET state = 'active', updated_at = now(), error = COALESCE(NULL, error) WHERE id = :rid::text AND state = 'approved';
WITH a AS (INSERT INTO audit_pending (at, actor, action, subject, details) VALUES ('2026-11-27T07:00:00.000000Z', 'bench', 'grant_active', :rid::text, '{"bundle":"db-read","reason":"INC-1 bench"}')) INSERT INTO events_pending (recipient, kind, at, body) VALUES ('bench', 'grant_active', now(), '{"kind":"grant_active","message":"bench"}');
COMMIT;
\endpipeline
\startpipeline
BEGIN;
SELECT pg_advisory_xact_lock(1179210305);
SELECT p.id, p.at, p.actor, p.action, p.subject, p.details, h.seq, h.hash, (SELECT a.signature IS NOT NULL FROM audit a WHERE a.seq = h.seq) FROM audit_high h LEFT JOIN audit_pending p ON TRUE ORDER BY p.id;
\endpipeline
\startpipeline
WITH p AS (SELECT id, at, actor, action, subject, details, row_number() OVER (ORDER BY id) AS n FROM audit_pending), a AS (INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash, signature) SELECT h.seq + p.n, p.at, p.actor, p.action, p.subject, p.details, repeat('a', 64), repeat('b', 64), repeat('c', 128) FROM p, audit_high h), da AS (DELETE FROM audit_pending WHERE id IN (SELECT id FROM p)), de AS (DELETE FROM events_pending RETURNING id, recipient, kind, at, body) INSERT INTO events (recipient, kind, at, body) SELECT recipient, kind, at, body FROM de ORDER BY id;
COMMIT;
\endpipeline
SELECT id, recipient, body FROM events WHERE id > (SELECT COALESCE(MAX(id), 0) - 3 FROM events) ORDER BY id LIMIT 1000;
SELECT id, recipient, body FROM events WHERE id > (SELECT COALESCE(MAX(id), 0) - 3 FROM events) ORDER BY id LIMIT 1000;
\startpipeline
SELECT id, kind, bundle, flow, requester, state, duration_secs, justification, ticket, created_at, pending_until, approvals_needed, grant_id, error, incident_id, requested_by, stage, stage_since, reminded_stage FROM requests WHERE id = :rid::text;
SELECT by_user, decision, comment, at FROM decisions WHERE request_id = :rid::text ORDER BY at, by_user;
\endpipeline
SELECT u.name, u.groups_json, u.admin, t.id, (SELECT n FROM directory_version) FROM tokens t JOIN users u ON u.name = t.user_name WHERE t.hash = 'h1' AND t.revoked_at IS NULL AND t.expires_at > now() AND u.disabled_at IS NULL;
\startpipeline
BEGIN;
SELECT pg_advisory_xact_lock_shared(1179210309);
SELECT pg_advisory_xact_lock(1179210313, :rid);
SELECT id, request_id, bundle, flow, holder, state, duration_secs, activated_at, expires_at, ended_at, end_reason, ended_by, last_error, attempts, next_attempt_at FROM grants WHERE id = 'g' || :rid;
\endpipeline
\startpipeline
UPDATE grants SET state = 'revoking', end_reason = 'revoked', ended_by = 'bench', next_attempt_at = now() WHERE id = 'g' || :rid AND state = 'active';
SELECT id, kind, bundle, flow, requester, state, duration_secs, justification, ticket, created_at, pending_until, approvals_needed, grant_id, error, incident_id, requested_by, stage, stage_since, reminded_stage FROM requests WHERE id = :rid::text;
WITH a AS (INSERT INTO audit_pending (at, actor, action, subject, details) VALUES ('2026-11-27T07:00:00.000000Z', 'bench', 'grant_revoking', :rid::text, '{"bundle":"db-read","reason":"INC-1 bench"}')) INSERT INTO events_pending (recipient, kind, at, body) VALUES ('bench', 'grant_revoking', now(), '{"kind":"grant_revoking","message":"bench"}');
COMMIT;
\endpipeline
SELECT id, request_id, bundle, flow, holder, state, duration_secs, activated_at, expires_at, ended_at, end_reason, ended_by, last_error, attempts, next_attempt_at FROM grants WHERE id = 'g' || :rid;
\startpipeline
BEGIN;
SELECT pg_advisory_xact_lock_shared(1179210309);
SELECT pg_advisory_xact_lock(1179210313, :rid);
\endpipeline
\startpipeline
UPDATE grants SET state = 'revoked', ended_at = now(), credentials = NULL, last_error = NULL, next_attempt_at = NULL WHERE id = 'g' || :rid AND state IN ('revoking', 'revoke_failed');
UPDATE requests SET state = 'ended', updated_at = now(), error = COALESCE(NULL, error) WHERE id = :rid::text AND state = 'active';
WITH a AS (INSERT INTO audit_pending (at, actor, action, subject, details) VALUES ('2026-11-27T07:00:00.000000Z', 'bench', 'grant_revoked', :rid::text, '{"bundle":"db-read","reason":"INC-1 bench"}')) INSERT INTO events_pending (recipient, kind, at, body) VALUES ('bench', 'grant_revoked', now(), '{"kind":"grant_revoked","message":"bench"}');
COMMIT;
\endpipeline
