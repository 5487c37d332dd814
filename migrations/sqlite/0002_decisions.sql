-- Decisions the engine makes that run no step, kept so `nurture explain` can tell the story:
-- today a send-window postponement ("outside the send window ...; next opening ..."). Skips,
-- goal exits and sends are in `step_runs`, SMTP attempts in `message_attempts`. These rows are
-- history only: the (enrollment, seq) key of `step_runs` alone keeps a step at most once.
CREATE TABLE decisions (
    id INTEGER PRIMARY KEY,
    enrollment_id BIGINT NOT NULL REFERENCES enrollments (id),
    seq BIGINT NOT NULL,                            -- steps the enrollment had run at the time
    step_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('postponed')),
    detail TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX decisions_enrollment ON decisions (enrollment_id, at);
