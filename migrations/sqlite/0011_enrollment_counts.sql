-- Enrollments counted per campaign, state, exit reason and step as they change, so the
-- dashboard's campaign list (totals) and its per-step "waiting" and "goal" counts read a few
-- rows per campaign instead of counting index entries of every enrollment (SPEC §12: fast
-- with 1M enrollments).
--
-- The key is the same (campaign_id, state, exit_reason, step_id) the old GROUP BY used, with
-- NULL stored as '' because key columns cannot be NULL on PostgreSQL. As in 0010, SQLite's
-- row triggers keep `enrollment_counts` exact and `enrollment_deltas` stays empty here.
CREATE TABLE enrollment_counts (
    campaign_id TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_reason TEXT NOT NULL,
    step_id TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, state, exit_reason, step_id)
);
CREATE TABLE enrollment_deltas (
    id INTEGER PRIMARY KEY,
    campaign_id TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_reason TEXT NOT NULL,
    step_id TEXT NOT NULL,
    delta BIGINT NOT NULL
);

INSERT INTO enrollment_counts (campaign_id, state, exit_reason, step_id, n)
    SELECT campaign_id, state, COALESCE(exit_reason, ''), COALESCE(step_id, ''), COUNT(*)
    FROM enrollments GROUP BY campaign_id, state, COALESCE(exit_reason, ''), COALESCE(step_id, '');

CREATE TRIGGER enrollment_counts_insert AFTER INSERT ON enrollments BEGIN
    INSERT INTO enrollment_counts (campaign_id, state, exit_reason, step_id, n)
        VALUES (NEW.campaign_id, NEW.state, COALESCE(NEW.exit_reason, ''), COALESCE(NEW.step_id, ''), 1)
        ON CONFLICT (campaign_id, state, exit_reason, step_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER enrollment_counts_update AFTER UPDATE OF campaign_id, state, exit_reason, step_id ON enrollments
    WHEN OLD.campaign_id IS NOT NEW.campaign_id OR OLD.state IS NOT NEW.state
        OR OLD.exit_reason IS NOT NEW.exit_reason OR OLD.step_id IS NOT NEW.step_id BEGIN
    UPDATE enrollment_counts SET n = n - 1
        WHERE campaign_id = OLD.campaign_id AND state = OLD.state
            AND exit_reason = COALESCE(OLD.exit_reason, '') AND step_id = COALESCE(OLD.step_id, '');
    INSERT INTO enrollment_counts (campaign_id, state, exit_reason, step_id, n)
        VALUES (NEW.campaign_id, NEW.state, COALESCE(NEW.exit_reason, ''), COALESCE(NEW.step_id, ''), 1)
        ON CONFLICT (campaign_id, state, exit_reason, step_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER enrollment_counts_delete AFTER DELETE ON enrollments BEGIN
    UPDATE enrollment_counts SET n = n - 1
        WHERE campaign_id = OLD.campaign_id AND state = OLD.state
            AND exit_reason = COALESCE(OLD.exit_reason, '') AND step_id = COALESCE(OLD.step_id, '');
END;

-- The funnel (SPEC §12) per campaign and UTC day of enrollment (`enrolled_at / 86400000`):
-- enrolled, emailed (at least one message sent), opened, clicked (at least one such event),
-- goal (exit reason `goal`), so a window of N days sums at most 5·N rows. "At least one" is
-- decided by `funnel_marks`, one row per enrollment and stage reached, keyed by both: a
-- second open, or a click before the open, finds its mark already there and counts nothing;
-- the counters move when a mark is added or removed. (Messages and events are never deleted
-- on their own; an enrollment's deletion takes its marks with it.)
CREATE TABLE funnel_counts (
    campaign_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    kind TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, day, kind)
);
CREATE TABLE funnel_deltas (
    id INTEGER PRIMARY KEY,
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

CREATE TRIGGER funnel_marked AFTER INSERT ON funnel_marks BEGIN
    INSERT INTO funnel_counts (campaign_id, day, kind, n) VALUES (NEW.campaign_id, NEW.day, NEW.kind, 1)
        ON CONFLICT (campaign_id, day, kind) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER funnel_unmarked AFTER DELETE ON funnel_marks BEGIN
    UPDATE funnel_counts SET n = n - 1
        WHERE campaign_id = OLD.campaign_id AND day = OLD.day AND kind = OLD.kind;
END;

CREATE TRIGGER funnel_enrolled AFTER INSERT ON enrollments BEGIN
    INSERT INTO funnel_counts (campaign_id, day, kind, n)
        VALUES (NEW.campaign_id, NEW.enrolled_at / 86400000, 'enrolled', 1)
        ON CONFLICT (campaign_id, day, kind) DO UPDATE SET n = n + 1;
    INSERT INTO funnel_counts (campaign_id, day, kind, n)
        SELECT NEW.campaign_id, NEW.enrolled_at / 86400000, 'goal', 1 WHERE NEW.exit_reason IS 'goal'
        ON CONFLICT (campaign_id, day, kind) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER funnel_goal_changed AFTER UPDATE OF exit_reason ON enrollments
    WHEN (OLD.exit_reason IS 'goal') <> (NEW.exit_reason IS 'goal') BEGIN
    INSERT INTO funnel_counts (campaign_id, day, kind, n)
        VALUES (NEW.campaign_id, NEW.enrolled_at / 86400000, 'goal',
            CASE WHEN NEW.exit_reason IS 'goal' THEN 1 ELSE -1 END)
        ON CONFLICT (campaign_id, day, kind) DO UPDATE SET n = n + excluded.n;
END;
CREATE TRIGGER funnel_unenrolled AFTER DELETE ON enrollments BEGIN
    UPDATE funnel_counts SET n = n - 1
        WHERE campaign_id = OLD.campaign_id AND day = OLD.enrolled_at / 86400000 AND kind = 'enrolled';
    UPDATE funnel_counts SET n = n - 1
        WHERE OLD.exit_reason IS 'goal'
            AND campaign_id = OLD.campaign_id AND day = OLD.enrolled_at / 86400000 AND kind = 'goal';
    DELETE FROM funnel_marks WHERE enrollment_id = OLD.id;
END;

-- SQLite has one writer at a time, so "is there a mark yet" cannot change under us.
CREATE TRIGGER funnel_emailed_insert AFTER INSERT ON messages WHEN NEW.state = 'sent' BEGIN
    INSERT INTO funnel_marks (enrollment_id, kind, campaign_id, day)
        SELECT e.id, 'emailed', e.campaign_id, e.enrolled_at / 86400000 FROM enrollments e
        WHERE e.id = NEW.enrollment_id AND NOT EXISTS (
            SELECT 1 FROM funnel_marks f WHERE f.enrollment_id = e.id AND f.kind = 'emailed');
END;
CREATE TRIGGER funnel_emailed_update AFTER UPDATE OF state ON messages
    WHEN NEW.state = 'sent' AND OLD.state IS NOT 'sent' BEGIN
    INSERT INTO funnel_marks (enrollment_id, kind, campaign_id, day)
        SELECT e.id, 'emailed', e.campaign_id, e.enrolled_at / 86400000 FROM enrollments e
        WHERE e.id = NEW.enrollment_id AND NOT EXISTS (
            SELECT 1 FROM funnel_marks f WHERE f.enrollment_id = e.id AND f.kind = 'emailed');
END;
CREATE TRIGGER funnel_engaged AFTER INSERT ON events
    WHEN NEW.enrollment_id IS NOT NULL AND NEW.name IN ('email.opened', 'email.clicked') BEGIN
    INSERT INTO funnel_marks (enrollment_id, kind, campaign_id, day)
        SELECT e.id, CASE NEW.name WHEN 'email.opened' THEN 'opened' ELSE 'clicked' END,
            e.campaign_id, e.enrolled_at / 86400000 FROM enrollments e
        WHERE e.id = NEW.enrollment_id AND NOT EXISTS (
            SELECT 1 FROM funnel_marks f WHERE f.enrollment_id = e.id
                AND f.kind = CASE NEW.name WHEN 'email.opened' THEN 'opened' ELSE 'clicked' END);
END;
