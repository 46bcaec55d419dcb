-- Who asked for a request made on someone else's behalf, and how far its approval
-- has escalated (see firedoor_core::approval): the stage it reached, since when,
-- and the stage whose approvers were last reminded.
ALTER TABLE requests ADD COLUMN requested_by TEXT;
ALTER TABLE requests ADD COLUMN stage INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN stage_since TEXT;
ALTER TABLE requests ADD COLUMN reminded_stage INTEGER;
CREATE INDEX requests_requested_by ON requests(requested_by, created_at)
    WHERE requested_by IS NOT NULL;
