-- Enrollments counted per campaign, state, exit reason and step as they change, so the
-- dashboard's campaign list (totals) and its per-step "waiting" and "goal" counts read a few
-- rows per campaign instead of counting index entries of every enrollment (SPEC §12: fast
-- with 1M enrollments).
--
-- The key is the same (campaign_id, state, exit_reason, step_id) the old GROUP BY used, with
-- NULL stored as '' because key columns cannot be NULL. As in 0010, statement triggers append
-- each statement's net change to `enrollment_deltas` (appends never wait for each other, so
-- concurrent workers do not queue on one hot counter row); `Store::fold_state_counts` folds
-- them into `enrollment_counts` at the start of each engine round and reads sum both.
CREATE TABLE enrollment_counts (
    campaign_id TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_reason TEXT NOT NULL,
    step_id TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, state, exit_reason, step_id)
);
CREATE TABLE enrollment_deltas (
    id BIGSERIAL PRIMARY KEY,
    campaign_id TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_reason TEXT NOT NULL,
    step_id TEXT NOT NULL,
    delta BIGINT NOT NULL
);

INSERT INTO enrollment_counts (campaign_id, state, exit_reason, step_id, n)
    SELECT campaign_id, state, COALESCE(exit_reason, ''), COALESCE(step_id, ''), COUNT(*)
    FROM enrollments GROUP BY campaign_id, state, COALESCE(exit_reason, ''), COALESCE(step_id, '');

CREATE FUNCTION enrollment_counted_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO enrollment_deltas (campaign_id, state, exit_reason, step_id, delta)
        SELECT campaign_id, state, COALESCE(exit_reason, ''), COALESCE(step_id, ''), COUNT(*)
        FROM new_rows GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END $$;

CREATE FUNCTION enrollment_counted_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO enrollment_deltas (campaign_id, state, exit_reason, step_id, delta)
        SELECT campaign_id, state, exit_reason, step_id, SUM(d) FROM (
            SELECT campaign_id, state, COALESCE(exit_reason, '') AS exit_reason,
                COALESCE(step_id, '') AS step_id, 1 AS d FROM new_rows
            UNION ALL
            SELECT campaign_id, state, COALESCE(exit_reason, ''), COALESCE(step_id, ''), -1
            FROM old_rows
        ) changes
        GROUP BY campaign_id, state, exit_reason, step_id
        HAVING SUM(d) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION enrollment_counted_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO enrollment_deltas (campaign_id, state, exit_reason, step_id, delta)
        SELECT campaign_id, state, COALESCE(exit_reason, ''), COALESCE(step_id, ''), -COUNT(*)
        FROM old_rows GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END $$;

CREATE TRIGGER enrollment_counts_insert AFTER INSERT ON enrollments
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION enrollment_counted_insert();
CREATE TRIGGER enrollment_counts_update AFTER UPDATE ON enrollments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION enrollment_counted_update();
CREATE TRIGGER enrollment_counts_delete AFTER DELETE ON enrollments
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION enrollment_counted_delete();

-- The funnel (SPEC §12) per campaign and UTC day of enrollment (`enrolled_at / 86400000`):
-- enrolled, emailed (at least one message sent), opened, clicked (at least one such event),
-- goal (exit reason `goal`), so a window of N days sums at most 5·N rows. "At least one" is
-- decided by `funnel_marks`, one row per enrollment and stage reached, keyed by both and
-- inserted with ON CONFLICT DO NOTHING: a second open, a click before the open, or the same
-- open recorded by two transactions at once (the second waits for the first's key, then
-- skips) adds no mark; the counters move only by the marks actually added or removed, as
-- deltas folded like `state_deltas`. (Messages and events are never deleted on their own;
-- an enrollment's deletion takes its marks with it.)
CREATE TABLE funnel_counts (
    campaign_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    kind TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, day, kind)
);
CREATE TABLE funnel_deltas (
    id BIGSERIAL PRIMARY KEY,
    campaign_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    kind TEXT NOT NULL,
    delta BIGINT NOT NULL
);
CREATE TABLE funnel_marks (
    enrollment_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    PRIMARY KEY (enrollment_id, kind)
);

INSERT INTO funnel_marks (enrollment_id, kind, campaign_id, day)
    SELECT DISTINCT e.id, 'emailed', e.campaign_id, e.enrolled_at / 86400000
    FROM messages m JOIN enrollments e ON e.id = m.enrollment_id WHERE m.state = 'sent';
INSERT INTO funnel_marks (enrollment_id, kind, campaign_id, day)
    SELECT DISTINCT e.id, CASE ev.name WHEN 'email.opened' THEN 'opened' ELSE 'clicked' END,
        e.campaign_id, e.enrolled_at / 86400000
    FROM events ev JOIN enrollments e ON e.id = ev.enrollment_id
    WHERE ev.name IN ('email.opened', 'email.clicked');
INSERT INTO funnel_counts (campaign_id, day, kind, n)
    SELECT campaign_id, enrolled_at / 86400000, 'enrolled', COUNT(*) FROM enrollments GROUP BY 1, 2;
INSERT INTO funnel_counts (campaign_id, day, kind, n)
    SELECT campaign_id, enrolled_at / 86400000, 'goal', COUNT(*) FROM enrollments
    WHERE exit_reason = 'goal' GROUP BY 1, 2;
INSERT INTO funnel_counts (campaign_id, day, kind, n)
    SELECT campaign_id, day, kind, COUNT(*) FROM funnel_marks GROUP BY 1, 2, 3;

CREATE FUNCTION funnel_marked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO funnel_deltas (campaign_id, day, kind, delta)
        SELECT campaign_id, day, kind, COUNT(*) FROM new_rows GROUP BY 1, 2, 3;
    RETURN NULL;
END $$;
CREATE FUNCTION funnel_unmarked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO funnel_deltas (campaign_id, day, kind, delta)
        SELECT campaign_id, day, kind, -COUNT(*) FROM old_rows GROUP BY 1, 2, 3;
    RETURN NULL;
END $$;
CREATE TRIGGER funnel_marked AFTER INSERT ON funnel_marks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION funnel_marked();
CREATE TRIGGER funnel_unmarked AFTER DELETE ON funnel_marks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION funnel_unmarked();

CREATE FUNCTION funnel_enrolled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO funnel_deltas (campaign_id, day, kind, delta)
        SELECT campaign_id, enrolled_at / 86400000, 'enrolled', COUNT(*) FROM new_rows GROUP BY 1, 2
        UNION ALL
        SELECT campaign_id, enrolled_at / 86400000, 'goal', COUNT(*) FROM new_rows
        WHERE exit_reason = 'goal' GROUP BY 1, 2;
    RETURN NULL;
END $$;
CREATE FUNCTION funnel_goal_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO funnel_deltas (campaign_id, day, kind, delta)
        SELECT campaign_id, day, 'goal', SUM(d) FROM (
            SELECT campaign_id, enrolled_at / 86400000 AS day, 1 AS d FROM new_rows
            WHERE exit_reason = 'goal'
            UNION ALL
            SELECT campaign_id, enrolled_at / 86400000, -1 FROM old_rows WHERE exit_reason = 'goal'
        ) changes
        GROUP BY campaign_id, day HAVING SUM(d) <> 0;
    RETURN NULL;
END $$;
CREATE FUNCTION funnel_unenrolled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO funnel_deltas (campaign_id, day, kind, delta)
        SELECT campaign_id, enrolled_at / 86400000, 'enrolled', -COUNT(*) FROM old_rows GROUP BY 1, 2
        UNION ALL
        SELECT campaign_id, enrolled_at / 86400000, 'goal', -COUNT(*) FROM old_rows
        WHERE exit_reason = 'goal' GROUP BY 1, 2;
    DELETE FROM funnel_marks WHERE enrollment_id IN (SELECT id FROM old_rows);
    RETURN NULL;
END $$;
CREATE TRIGGER funnel_enrolled AFTER INSERT ON enrollments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION funnel_enrolled();
CREATE TRIGGER funnel_goal_changed AFTER UPDATE ON enrollments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION funnel_goal_changed();
CREATE TRIGGER funnel_unenrolled AFTER DELETE ON enrollments
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION funnel_unenrolled();

-- The ORDER BY takes the marks' keys in one order, so two statements marking the same
-- enrollments wait for each other instead of deadlocking.
CREATE FUNCTION funnel_emailed_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO funnel_marks (enrollment_id, kind, campaign_id, day)
        SELECT DISTINCT e.id, 'emailed', e.campaign_id, e.enrolled_at / 86400000
        FROM new_rows n JOIN enrollments e ON e.id = n.enrollment_id
        WHERE n.state = 'sent' ORDER BY 1
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE FUNCTION funnel_emailed_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO funnel_marks (enrollment_id, kind, campaign_id, day)
        SELECT DISTINCT e.id, 'emailed', e.campaign_id, e.enrolled_at / 86400000
        FROM new_rows n JOIN old_rows o ON o.id = n.id JOIN enrollments e ON e.id = n.enrollment_id
        WHERE n.state = 'sent' AND o.state <> 'sent' ORDER BY 1
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE FUNCTION funnel_engaged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO funnel_marks (enrollment_id, kind, campaign_id, day)
        SELECT DISTINCT e.id, CASE n.name WHEN 'email.opened' THEN 'opened' ELSE 'clicked' END,
            e.campaign_id, e.enrolled_at / 86400000
        FROM new_rows n JOIN enrollments e ON e.id = n.enrollment_id
        WHERE n.name IN ('email.opened', 'email.clicked') ORDER BY 1, 2
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER funnel_emailed_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION funnel_emailed_insert();
CREATE TRIGGER funnel_emailed_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION funnel_emailed_update();
CREATE TRIGGER funnel_engaged AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION funnel_engaged();
