-- no-transaction
-- Forms (SPEC §9): contacts gain the status `pending` (submitted a form, not yet confirmed),
-- and every form submission is kept as a consent record that also carries its confirmation
-- email through a small queue of its own.
--
-- SQLite cannot alter a CHECK constraint, so `contacts` is rebuilt (the 12-step procedure of
-- https://sqlite.org/lang_altertable.html). That needs foreign keys OFF, which SQLite ignores
-- inside a transaction: hence `no-transaction` above, and a transaction of our own below.
-- With foreign keys on, `DROP TABLE contacts` would delete every row that references it.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE contacts_new (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'subscribed'
        CHECK (status IN ('subscribed', 'unsubscribed', 'bounced', 'complained', 'pending')),
    status_reason TEXT,
    status_changed_at BIGINT,
    attributes TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    consent_source TEXT,
    consent_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO contacts_new (id, email, email_key, status, status_reason, status_changed_at, attributes, tags, consent_source, consent_at, created_at, updated_at)
    SELECT id, email, email_key, status, status_reason, status_changed_at, attributes, tags, consent_source, consent_at, created_at, updated_at FROM contacts;
DROP TABLE contacts;
ALTER TABLE contacts_new RENAME TO contacts;

-- One row per submission of a form: what was consented to (the text as shown and its
-- version), when, optionally from where, and when it was confirmed. `fields` are the
-- submitted attributes. The `mail_*` columns are the confirmation email's queue: `queued`
-- rows are sent by the daemon's delivery round (the HTTP server only inserts them), claimed
-- `queued → sending` in one guarded statement, then `sent`; a `sending` row whose lease ran
-- out (the process died mid-send) becomes `unknown`, never re-sent blindly. `none` means no
-- email: single opt-in, already subscribed, or a repeat within the hour.
CREATE TABLE form_submissions (
    id INTEGER PRIMARY KEY,
    form_id TEXT NOT NULL,
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    consent_text TEXT NOT NULL,
    consent_version TEXT NOT NULL,
    fields TEXT NOT NULL DEFAULT '{}',
    ip TEXT,
    user_agent TEXT,
    submitted_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    mail_state TEXT NOT NULL
        CHECK (mail_state IN ('none', 'queued', 'sending', 'sent', 'failed', 'unknown', 'suppressed')),
    mail_attempts BIGINT NOT NULL DEFAULT 0,
    mail_queued_at BIGINT,
    mail_next_at BIGINT,
    mail_lease_until BIGINT,
    mail_message_id TEXT,
    mail_error TEXT,
    mail_sent_at BIGINT
);
CREATE INDEX form_submissions_mail ON form_submissions (mail_next_at) WHERE mail_state = 'queued';
CREATE INDEX form_submissions_sending ON form_submissions (mail_lease_until) WHERE mail_state = 'sending';
CREATE INDEX form_submissions_contact ON form_submissions (contact_id, form_id, submitted_at);

-- Refused submissions (bots, floods, bad input) per form and reason: counts only, never an
-- address.
CREATE TABLE form_rejections (
    form_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    count BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (form_id, reason)
);
PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
