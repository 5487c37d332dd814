-- What comes back after a message left: bounces and complaints reported later by a relay's
-- webhook or by a delivery status notification / abuse report that reached a mailbox
-- (SPEC §10), and the deliveries some providers confirm (they end a run of soft bounces).
--
-- One row per report. `source` names where it came from (`ses`, `sendgrid`, `postmark`,
-- `mailgun`, `generic`, `dsn`, `arf`) so `explain` can say who said so. `message_id` is
-- the message the report names by its Message-ID, when it names one we sent.
-- `external_id` is the provider's id of the report: a provider that sends the same
-- notification again (they retry until they get a 2xx) records nothing new.
CREATE TABLE signals (
    id INTEGER PRIMARY KEY,
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    message_id BIGINT REFERENCES messages (id),
    kind TEXT NOT NULL CHECK (kind IN ('hard', 'soft', 'complaint', 'delivered')),
    source TEXT NOT NULL,
    reason TEXT,
    external_id TEXT UNIQUE,
    at BIGINT NOT NULL
);
CREATE INDEX signals_contact ON signals (contact_id, id);
CREATE INDEX signals_message ON signals (message_id) WHERE message_id IS NOT NULL;
-- Reports name messages by their Message-ID header.
CREATE INDEX messages_message_id ON messages (message_id) WHERE message_id IS NOT NULL;
