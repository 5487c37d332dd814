-- nurture schema, SQLite flavour. Times are Unix milliseconds (BIGINT) in both backends so
-- the same queries serve SQLite and PostgreSQL; JSON is stored as TEXT.

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE contacts (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,                 -- lower-cased email: one contact per address
    status TEXT NOT NULL DEFAULT 'subscribed'
        CHECK (status IN ('subscribed', 'unsubscribed', 'bounced', 'complained')),
    status_reason TEXT,
    status_changed_at BIGINT,
    attributes TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    consent_source TEXT,
    consent_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    name TEXT NOT NULL,
    properties TEXT NOT NULL DEFAULT '{}',
    occurred_at BIGINT NOT NULL,
    idempotency_key TEXT UNIQUE,
    enrollment_id BIGINT,                           -- email.opened / email.clicked: which enrollment
    step_id TEXT,
    processed_at BIGINT,                            -- NULL until triggers have seen it
    created_at BIGINT NOT NULL
);
CREATE INDEX events_pending ON events (id) WHERE processed_at IS NULL;
CREATE INDEX events_contact ON events (contact_id, name, occurred_at);
CREATE INDEX events_enrollment ON events (enrollment_id, name, step_id) WHERE enrollment_id IS NOT NULL;

CREATE TABLE campaign_versions (
    id INTEGER PRIMARY KEY,
    campaign_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (campaign_id, fingerprint)
);

CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    version_id BIGINT NOT NULL REFERENCES campaign_versions (id),
    status TEXT NOT NULL CHECK (status IN ('active', 'paused', 'draft', 'removed')),
    updated_at BIGINT NOT NULL
);

CREATE TABLE enrollments (
    id INTEGER PRIMARY KEY,
    campaign_id TEXT NOT NULL,
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    state TEXT NOT NULL CHECK (state IN ('active', 'completed', 'exited', 'failed')),
    step_id TEXT,                                   -- next step to run while active
    seq BIGINT NOT NULL DEFAULT 0,                  -- steps run so far; every advance is guarded on it
    next_run_at BIGINT,
    trigger_properties TEXT NOT NULL DEFAULT '{}',
    enrolled_at BIGINT NOT NULL,
    ended_at BIGINT,
    exit_reason TEXT,
    CHECK ((state = 'active') = (next_run_at IS NOT NULL))
);
CREATE UNIQUE INDEX enrollments_one_active ON enrollments (campaign_id, contact_id) WHERE state = 'active';
CREATE INDEX enrollments_due ON enrollments (next_run_at) WHERE state = 'active';
CREATE INDEX enrollments_contact ON enrollments (contact_id, campaign_id);

-- One row per step an enrollment ran, keyed by (enrollment, seq): a step runs at most once.
CREATE TABLE step_runs (
    enrollment_id BIGINT NOT NULL REFERENCES enrollments (id),
    seq BIGINT NOT NULL,
    step_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    at BIGINT NOT NULL,
    PRIMARY KEY (enrollment_id, seq)
);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    enrollment_id BIGINT NOT NULL REFERENCES enrollments (id),
    seq BIGINT NOT NULL,
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    campaign_id TEXT NOT NULL,
    version_id BIGINT NOT NULL REFERENCES campaign_versions (id),
    step_id TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'sending', 'sent', 'deferred', 'failed', 'bounced', 'suppressed', 'unknown')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    lease_until BIGINT,
    message_id TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    updated_at BIGINT NOT NULL,
    UNIQUE (enrollment_id, seq)
);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE state IN ('queued', 'deferred');
CREATE INDEX messages_sending ON messages (lease_until) WHERE state = 'sending';
CREATE INDEX messages_contact ON messages (contact_id);

CREATE TABLE message_attempts (
    message_id BIGINT NOT NULL REFERENCES messages (id),
    at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    reply TEXT
);
CREATE INDEX message_attempts_message ON message_attempts (message_id);

-- A schedule firing happens once across every process: the primary key decides who fires it.
CREATE TABLE schedule_firings (
    campaign_id TEXT NOT NULL,
    fire_at BIGINT NOT NULL,
    fired_at BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, fire_at)
);
