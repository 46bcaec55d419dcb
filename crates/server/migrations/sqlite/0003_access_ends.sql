-- Access ends everywhere (issue 8 §2): API tokens expire, users can be disabled.

-- When a token stops authenticating. Tokens issued before this column existed get
-- created_at + 90 days (the default lifetime), in the same fixed-width text form.
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
UPDATE tokens
   SET expires_at = strftime('%Y-%m-%dT%H:%M:%S', created_at, '+90 days') || substr(created_at, 20)
 WHERE expires_at IS NULL;

-- A disabled user authenticates as nothing; their tokens and devices were revoked
-- when they were disabled.
ALTER TABLE users ADD COLUMN disabled_at TEXT;
