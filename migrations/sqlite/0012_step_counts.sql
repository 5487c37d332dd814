-- Sent, opened and clicked per campaign and step, counted as messages and events arrive, so
-- the dashboard's campaign page reads a few rows per step instead of counting index entries
-- of every message and event (SPEC §12: fast with 1M enrollments).
--
-- `sent` is the number of messages of the step in state 'sent'. `opened` and `clicked` count
-- each enrollment once per step (the unit of `nurture stats`, which counts distinct
-- enrollments per step): `step_marks` holds one row per enrollment, step and kind, so a
-- second open of the same email finds its mark and counts nothing. The counters move when a
-- mark is added or removed. Events name their step with `step_id`; an event without one is
-- counted under the step ''. As in 0011, SQLite's row triggers keep `step_counts` exact and
-- `step_deltas` stays empty here.
CREATE TABLE step_counts (
    campaign_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, step_id, kind)
);
CREATE TABLE step_deltas (
    id INTEGER PRIMARY KEY,
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

CREATE TRIGGER step_marked AFTER INSERT ON step_marks BEGIN
    INSERT INTO step_counts (campaign_id, step_id, kind, n) VALUES (NEW.campaign_id, NEW.step_id, NEW.kind, 1)
        ON CONFLICT (campaign_id, step_id, kind) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER step_unmarked AFTER DELETE ON step_marks BEGIN
    UPDATE step_counts SET n = n - 1
        WHERE campaign_id = OLD.campaign_id AND step_id = OLD.step_id AND kind = OLD.kind;
END;
CREATE TRIGGER step_unenrolled AFTER DELETE ON enrollments BEGIN
    DELETE FROM step_marks WHERE enrollment_id = OLD.id;
END;

CREATE TRIGGER step_sent_insert AFTER INSERT ON messages WHEN NEW.state = 'sent' BEGIN
    INSERT INTO step_counts (campaign_id, step_id, kind, n) VALUES (NEW.campaign_id, NEW.step_id, 'sent', 1)
        ON CONFLICT (campaign_id, step_id, kind) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER step_sent_update AFTER UPDATE OF state, campaign_id, step_id ON messages
    WHEN (OLD.state = 'sent' OR NEW.state = 'sent') AND (OLD.state IS NOT NEW.state
        OR OLD.campaign_id IS NOT NEW.campaign_id OR OLD.step_id IS NOT NEW.step_id) BEGIN
    UPDATE step_counts SET n = n - 1
        WHERE OLD.state = 'sent' AND campaign_id = OLD.campaign_id AND step_id = OLD.step_id AND kind = 'sent';
    INSERT INTO step_counts (campaign_id, step_id, kind, n)
        SELECT NEW.campaign_id, NEW.step_id, 'sent', 1 WHERE NEW.state = 'sent'
        ON CONFLICT (campaign_id, step_id, kind) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER step_sent_delete AFTER DELETE ON messages WHEN OLD.state = 'sent' BEGIN
    UPDATE step_counts SET n = n - 1
        WHERE campaign_id = OLD.campaign_id AND step_id = OLD.step_id AND kind = 'sent';
END;

-- SQLite has one writer at a time, so "is there a mark yet" cannot change under us.
CREATE TRIGGER step_engaged AFTER INSERT ON events
    WHEN NEW.enrollment_id IS NOT NULL AND NEW.name IN ('email.opened', 'email.clicked') BEGIN
    INSERT INTO step_marks (enrollment_id, step_id, kind, campaign_id)
        SELECT e.id, COALESCE(NEW.step_id, ''),
            CASE NEW.name WHEN 'email.opened' THEN 'opened' ELSE 'clicked' END, e.campaign_id
        FROM enrollments e WHERE e.id = NEW.enrollment_id
        ON CONFLICT (enrollment_id, step_id, kind) DO NOTHING;
END;
