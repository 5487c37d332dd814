-- Frequency caps and A/B splits (SPEC §13).
--
-- `capped_at` is when a message that counts toward the frequency caps was handed to SMTP
-- (set in the transaction that marks it `sending`, under the contact's lock); exempt
-- messages keep NULL. A contact's recent sends are read through `messages_capped`.
-- `postponed` counts how often the caps held a message back, for `stats`.
-- `variant` is the A/B variant of a step's email (on `messages`) or the arm a `split` step
-- assigned (on `step_runs`).
ALTER TABLE messages ADD COLUMN variant TEXT;
ALTER TABLE messages ADD COLUMN capped_at BIGINT;
ALTER TABLE messages ADD COLUMN postponed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE step_runs ADD COLUMN variant TEXT;
-- Mail sent before caps existed counts toward them.
UPDATE messages SET capped_at = sent_at WHERE state = 'sent' AND sent_at IS NOT NULL;
CREATE INDEX messages_capped ON messages (contact_id, capped_at) WHERE capped_at IS NOT NULL;
CREATE INDEX messages_variant ON messages (campaign_id, step_id, variant) WHERE variant IS NOT NULL;
CREATE INDEX step_runs_variant ON step_runs (step_id, variant) WHERE variant IS NOT NULL;
