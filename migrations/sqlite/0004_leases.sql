-- Leases name their holder, and a paused campaign's mail is held.
--
-- `lease_owner` is the worker (one engine in one process) that claimed a message; every
-- later transition of the claim (renewing the lease, marking it `sending`, recording the
-- outcome) is guarded on it, so a worker whose lease ran out and was taken over by another
-- can no longer touch the message: its late updates miss their guard and are counted.
--
-- `held` = 1 keeps a queued or deferred message of a paused (or draft) campaign out of the
-- delivery queue until the campaign is active again; the due index leaves held rows out so a
-- paused campaign's backlog costs the claims nothing.
ALTER TABLE messages ADD COLUMN lease_owner BIGINT;
ALTER TABLE messages ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
DROP INDEX messages_due;
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE state IN ('queued', 'deferred') AND held = 0;
CREATE INDEX messages_held ON messages (campaign_id) WHERE held = 1;
