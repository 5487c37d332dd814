-- Messages and enrollments counted by state as they change, so a /metrics scrape reads a
-- few rows instead of grouping every message (O(1) in the number of messages).
--
-- Several workers change messages at once, so they must not all update one counter row:
-- every transaction would queue behind that row's lock until commit, and two transactions
-- taking counter rows in different orders would deadlock. Instead each statement appends its
-- net change per state to `state_deltas` (inserts never wait for each other), from
-- statement-level triggers over the statement's transition tables. Whoever reads the counts
-- first folds the deltas into `state_counts` in one statement (see `Tx::fold_state_counts`):
-- the cost of a scrape is the number of statements since the last one, not the number of
-- messages.
CREATE TABLE state_counts (
    tbl TEXT NOT NULL,
    state TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (tbl, state)
);
CREATE TABLE state_deltas (
    id BIGSERIAL PRIMARY KEY,
    tbl TEXT NOT NULL,
    state TEXT NOT NULL,
    delta BIGINT NOT NULL
);

INSERT INTO state_counts (tbl, state, n)
    SELECT 'messages', state, COUNT(*) FROM messages GROUP BY state;
INSERT INTO state_counts (tbl, state, n)
    SELECT 'enrollments', state, COUNT(*) FROM enrollments GROUP BY state;

CREATE FUNCTION state_counted_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO state_deltas (tbl, state, delta)
        SELECT TG_TABLE_NAME, state, COUNT(*) FROM new_rows GROUP BY state;
    RETURN NULL;
END $$;

CREATE FUNCTION state_counted_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO state_deltas (tbl, state, delta)
        SELECT TG_TABLE_NAME, state, SUM(d) FROM (
            SELECT state, 1 AS d FROM new_rows
            UNION ALL
            SELECT state, -1 AS d FROM old_rows
        ) changes
        GROUP BY state
        HAVING SUM(d) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION state_counted_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO state_deltas (tbl, state, delta)
        SELECT TG_TABLE_NAME, state, -COUNT(*) FROM old_rows GROUP BY state;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_counted_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION state_counted_insert();
CREATE TRIGGER messages_counted_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION state_counted_update();
CREATE TRIGGER messages_counted_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION state_counted_delete();

CREATE TRIGGER enrollments_counted_insert AFTER INSERT ON enrollments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION state_counted_insert();
CREATE TRIGGER enrollments_counted_update AFTER UPDATE ON enrollments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION state_counted_update();
CREATE TRIGGER enrollments_counted_delete AFTER DELETE ON enrollments
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION state_counted_delete();
