-- A schedule firing enrolls its audience in batches, each its own transaction. The firing row
-- records how far it got, so that a crash midway is resumed by the next tick instead of
-- losing the rest: `enrolled_through` is the last contact id handled (contacts are scanned in
-- id order), advanced in the same transaction as that batch's enrollments; `completed_at` is
-- set once the scan reaches the end. Firings recorded before this migration were run to the
-- end by the code of the time (or lost midway, beyond recovery): they count as completed.
ALTER TABLE schedule_firings ADD COLUMN enrolled_through BIGINT NOT NULL DEFAULT 0;
ALTER TABLE schedule_firings ADD COLUMN completed_at BIGINT;
UPDATE schedule_firings SET completed_at = fired_at;
CREATE INDEX schedule_firings_open ON schedule_firings (campaign_id, fire_at) WHERE completed_at IS NULL;
