-- Messages and enrollments counted by state as they change, so a /metrics scrape reads a
-- few rows instead of grouping every message (O(1) in the number of messages).
--
-- SQLite has one writer at a time, so row triggers keep `state_counts` exact directly;
-- `state_deltas` exists for the schema to match PostgreSQL's and stays empty here.
CREATE TABLE state_counts (
    tbl TEXT NOT NULL,
    state TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (tbl, state)
);
CREATE TABLE state_deltas (
    id INTEGER PRIMARY KEY,
    tbl TEXT NOT NULL,
    state TEXT NOT NULL,
    delta BIGINT NOT NULL
);

INSERT INTO state_counts (tbl, state, n)
    SELECT 'messages', state, COUNT(*) FROM messages GROUP BY state;
INSERT INTO state_counts (tbl, state, n)
    SELECT 'enrollments', state, COUNT(*) FROM enrollments GROUP BY state;

CREATE TRIGGER messages_counted_insert AFTER INSERT ON messages BEGIN
    INSERT INTO state_counts (tbl, state, n) VALUES ('messages', NEW.state, 1)
        ON CONFLICT (tbl, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER messages_counted_update AFTER UPDATE OF state ON messages
    WHEN OLD.state IS NOT NEW.state BEGIN
    UPDATE state_counts SET n = n - 1 WHERE tbl = 'messages' AND state = OLD.state;
    INSERT INTO state_counts (tbl, state, n) VALUES ('messages', NEW.state, 1)
        ON CONFLICT (tbl, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER messages_counted_delete AFTER DELETE ON messages BEGIN
    UPDATE state_counts SET n = n - 1 WHERE tbl = 'messages' AND state = OLD.state;
END;

CREATE TRIGGER enrollments_counted_insert AFTER INSERT ON enrollments BEGIN
    INSERT INTO state_counts (tbl, state, n) VALUES ('enrollments', NEW.state, 1)
        ON CONFLICT (tbl, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER enrollments_counted_update AFTER UPDATE OF state ON enrollments
    WHEN OLD.state IS NOT NEW.state BEGIN
    UPDATE state_counts SET n = n - 1 WHERE tbl = 'enrollments' AND state = OLD.state;
    INSERT INTO state_counts (tbl, state, n) VALUES ('enrollments', NEW.state, 1)
        ON CONFLICT (tbl, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER enrollments_counted_delete AFTER DELETE ON enrollments BEGIN
    UPDATE state_counts SET n = n - 1 WHERE tbl = 'enrollments' AND state = OLD.state;
END;
