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
CREATE INDEX enrollment_deltas_campaign ON enrollment_deltas (campaign_id);

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
