-- Sent, opened and clicked per campaign and step, counted as messages and events arrive, so
-- the dashboard's campaign page reads a few rows per step instead of counting index entries
-- of every message and event (SPEC §12: fast with 1M enrollments).
--
-- `sent` is the number of messages of the step in state 'sent'. `opened` and `clicked` count
-- each enrollment once per step (the unit of `nurture stats`, which counts distinct
-- enrollments per step): `step_marks` holds one row per enrollment, step and kind, inserted
-- with ON CONFLICT DO NOTHING, so a second open of the same email, or the same open recorded
-- by two transactions at once (the second waits for the first's key, then skips), adds no
-- mark. Events name their step with `step_id`; an event without one is counted under the
-- step ''. As in 0011, statement triggers append net changes to `step_deltas`, which
-- `Store::fold_state_counts` folds into `step_counts`; reads sum both.
CREATE TABLE step_counts (
    campaign_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, step_id, kind)
);
CREATE TABLE step_deltas (
    id BIGSERIAL PRIMARY KEY,
    campaign_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    delta BIGINT NOT NULL
);
CREATE TABLE step_marks (
    enrollment_id BIGINT NOT NULL,
    step_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    PRIMARY KEY (enrollment_id, step_id, kind)
);

INSERT INTO step_marks (enrollment_id, step_id, kind, campaign_id)
    SELECT DISTINCT e.id, COALESCE(ev.step_id, ''),
        CASE ev.name WHEN 'email.opened' THEN 'opened' ELSE 'clicked' END, e.campaign_id
    FROM events ev JOIN enrollments e ON e.id = ev.enrollment_id
    WHERE ev.name IN ('email.opened', 'email.clicked');
INSERT INTO step_counts (campaign_id, step_id, kind, n)
    SELECT campaign_id, step_id, 'sent', COUNT(*) FROM messages WHERE state = 'sent' GROUP BY 1, 2;
INSERT INTO step_counts (campaign_id, step_id, kind, n)
    SELECT campaign_id, step_id, kind, COUNT(*) FROM step_marks GROUP BY 1, 2, 3;

CREATE FUNCTION step_marked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO step_deltas (campaign_id, step_id, kind, delta)
        SELECT campaign_id, step_id, kind, COUNT(*) FROM new_rows GROUP BY 1, 2, 3;
    RETURN NULL;
END $$;
CREATE FUNCTION step_unmarked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO step_deltas (campaign_id, step_id, kind, delta)
        SELECT campaign_id, step_id, kind, -COUNT(*) FROM old_rows GROUP BY 1, 2, 3;
    RETURN NULL;
END $$;
CREATE TRIGGER step_marked AFTER INSERT ON step_marks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION step_marked();
CREATE TRIGGER step_unmarked AFTER DELETE ON step_marks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION step_unmarked();

CREATE FUNCTION step_unenrolled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM step_marks WHERE enrollment_id IN (SELECT id FROM old_rows);
    RETURN NULL;
END $$;
CREATE TRIGGER step_unenrolled AFTER DELETE ON enrollments
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION step_unenrolled();

CREATE FUNCTION step_sent_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO step_deltas (campaign_id, step_id, kind, delta)
        SELECT campaign_id, step_id, 'sent', COUNT(*) FROM new_rows WHERE state = 'sent' GROUP BY 1, 2;
    RETURN NULL;
END $$;
CREATE FUNCTION step_sent_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO step_deltas (campaign_id, step_id, kind, delta)
        SELECT campaign_id, step_id, 'sent', SUM(d) FROM (
            SELECT campaign_id, step_id, 1 AS d FROM new_rows WHERE state = 'sent'
            UNION ALL
            SELECT campaign_id, step_id, -1 FROM old_rows WHERE state = 'sent'
        ) changes
        GROUP BY campaign_id, step_id HAVING SUM(d) <> 0;
    RETURN NULL;
END $$;
CREATE FUNCTION step_sent_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO step_deltas (campaign_id, step_id, kind, delta)
        SELECT campaign_id, step_id, 'sent', -COUNT(*) FROM old_rows WHERE state = 'sent' GROUP BY 1, 2;
    RETURN NULL;
END $$;
CREATE TRIGGER step_sent_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION step_sent_insert();
CREATE TRIGGER step_sent_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION step_sent_update();
CREATE TRIGGER step_sent_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION step_sent_delete();

-- The ORDER BY takes the marks' keys in one order, so two statements marking the same
-- enrollments wait for each other instead of deadlocking.
CREATE FUNCTION step_engaged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO step_marks (enrollment_id, step_id, kind, campaign_id)
        SELECT DISTINCT e.id, COALESCE(n.step_id, ''),
            CASE n.name WHEN 'email.opened' THEN 'opened' ELSE 'clicked' END, e.campaign_id
        FROM new_rows n JOIN enrollments e ON e.id = n.enrollment_id
        WHERE n.name IN ('email.opened', 'email.clicked') ORDER BY 1, 2, 3
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER step_engaged AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION step_engaged();
