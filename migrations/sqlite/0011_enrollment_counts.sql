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
