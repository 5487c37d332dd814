-- Lead scores and webhook deliveries (SPEC §11).
--
-- A score is kept as the points it was worth when last computed, with that time and the
-- half-life in force: its value at any later time is points * 0.5^(elapsed / half_life) plus
-- the attribute/tag points, exact and computed without reading the signals again.
-- `score_points` keeps each signal's points for `explain` and `contacts show`.
CREATE TABLE scores (
    contact_id BIGINT PRIMARY KEY REFERENCES contacts (id),
    points REAL NOT NULL,
    profile REAL NOT NULL,
    profile_reasons TEXT NOT NULL,
    half_life_ms BIGINT,
    computed_at BIGINT NOT NULL
);

CREATE TABLE score_points (
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    event_id BIGINT,
    at BIGINT NOT NULL,
    points REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX score_points_contact ON score_points (contact_id, at);

-- A webhook step's delivery: one row per (enrollment, seq), so a step POSTs at most once,
-- with the states and lease of an email (`sending` whose lease ran out becomes `unknown`:
-- the receiver may have acted on it, so it is never POSTed again blindly).
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY,
    enrollment_id BIGINT NOT NULL REFERENCES enrollments (id),
    seq BIGINT NOT NULL,
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    campaign_id TEXT NOT NULL,
    version_id BIGINT NOT NULL REFERENCES campaign_versions (id),
    step_id TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'sending', 'sent', 'deferred', 'failed', 'unknown')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    lease_until BIGINT,
    lease_owner BIGINT,
    error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    updated_at BIGINT NOT NULL,
    UNIQUE (enrollment_id, seq)
);
CREATE INDEX webhooks_due ON webhooks (next_attempt_at) WHERE state IN ('queued', 'deferred');
CREATE INDEX webhooks_sending ON webhooks (lease_until) WHERE state = 'sending';
CREATE INDEX webhooks_contact ON webhooks (contact_id);

CREATE TABLE webhook_attempts (
    webhook_id BIGINT NOT NULL REFERENCES webhooks (id),
    at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    reply TEXT
);
CREATE INDEX webhook_attempts_webhook ON webhook_attempts (webhook_id);
