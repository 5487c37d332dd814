//! The queue of confirmation emails, kept in the submission rows: the HTTP server only
//! queues, the daemon claims under a lease and records the outcome, each transition guarded
//! on the state it leaves.

use serde_json::{Map, Value};
use sqlx::Row;

use crate::{Result, StoreError, Tx};

/// A confirmation email claimed for sending.
#[derive(Debug, Clone)]
pub struct FormMail {
    /// The submission.
    pub id: i64,
    /// The form.
    pub form_id: String,
    /// The recipient.
    pub email: String,
    /// The contact's attributes (and the submitted fields).
    pub attributes: Map<String, Value>,
    /// The contact's tags.
    pub tags: Vec<String>,
    /// Attempts so far, this one included.
    pub attempts: i64,
    /// When it was first queued (ms).
    pub queued_at: i64,
}

/// How sending a confirmation email ended.
#[derive(Debug, Clone)]
pub enum MailOutcome {
    /// Accepted by the server (or written to the outbox).
    Sent {
        /// Its Message-ID.
        message_id: String,
    },
    /// Try again at this time (ms).
    Retry {
        /// Why.
        error: String,
        /// When.
        at: i64,
    },
    /// Given up.
    Failed {
        /// Why.
        error: String,
    },
    /// The server may have accepted it: never re-sent blindly.
    Unknown {
        /// Why.
        error: String,
    },
}

impl Tx {
    /// Queues the confirmation email of an unconfirmed submission again (an expired link's
    /// "send me a new link"), unless one was queued within `resend_after_ms`. True when queued.
    pub async fn requeue_confirmation(
        &mut self,
        id: i64,
        resend_after_ms: i64,
        now: i64,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE form_submissions SET mail_state = 'queued', mail_queued_at = $1, mail_next_at = $1,
                 mail_attempts = 0, mail_error = NULL, mail_lease_until = NULL
             WHERE id = $2 AND confirmed_at IS NULL AND mail_state IN ('sent', 'failed', 'unknown', 'none')
               AND (mail_queued_at IS NULL OR mail_queued_at <= $3)",
        )
        .bind(now)
        .bind(id)
        .bind(now - resend_after_ms)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Claims up to `limit` confirmation emails due at `now` for sending, leased until
    /// `lease_until`; first, emails left `sending` past their lease by a process that died
    /// become `unknown` (never re-sent blindly).
    pub async fn claim_form_mail(
        &mut self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<FormMail>> {
        sqlx::query(
            "UPDATE form_submissions SET mail_state = 'unknown', mail_error = 'the process sending it stopped before recording the outcome'
             WHERE mail_state = 'sending' AND mail_lease_until < $1",
        )
        .bind(now)
        .execute(self.conn())
        .await?;
        // One statement: PostgreSQL skips rows another daemon is claiming; SQLite's
        // transaction already holds the write lock.
        let sql = self.pick(
            "UPDATE form_submissions SET mail_state = 'sending', mail_lease_until = $1, mail_attempts = mail_attempts + 1
             WHERE id IN (SELECT id FROM form_submissions WHERE mail_state = 'queued' AND mail_next_at <= $2
                          ORDER BY mail_next_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id",
            "UPDATE form_submissions SET mail_state = 'sending', mail_lease_until = $1, mail_attempts = mail_attempts + 1
             WHERE id IN (SELECT id FROM form_submissions WHERE mail_state = 'queued' AND mail_next_at <= $2
                          ORDER BY mail_next_at LIMIT $3)
             RETURNING id",
        );
        let ids: Vec<i64> = sqlx::query(sql)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .fetch_all(self.conn())
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(
                "SELECT s.id, s.form_id, s.fields, s.mail_attempts, s.mail_queued_at, c.email, c.attributes, c.tags
                 FROM form_submissions s JOIN contacts c ON c.id = s.contact_id WHERE s.id = $1",
            )
            .bind(id)
            .fetch_one(self.conn())
            .await?;
            let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
            let mut attributes: Map<String, Value> =
                serde_json::from_str(&row.try_get::<String, _>("attributes")?).map_err(corrupt)?;
            let fields: Map<String, Value> =
                serde_json::from_str(&row.try_get::<String, _>("fields")?).map_err(corrupt)?;
            // The confirmation may greet the submitter by the name just typed.
            for (k, v) in fields {
                attributes.entry(k).or_insert(v);
            }
            out.push(FormMail {
                id,
                form_id: row.try_get("form_id")?,
                email: row.try_get("email")?,
                attributes,
                tags: serde_json::from_str(&row.try_get::<String, _>("tags")?).map_err(corrupt)?,
                attempts: row.try_get("mail_attempts")?,
                queued_at: row
                    .try_get::<Option<i64>, _>("mail_queued_at")?
                    .unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// Records how sending a claimed confirmation email ended; false when it was no longer
    /// `sending` (its lease ran out and it became `unknown`).
    pub async fn finish_form_mail(
        &mut self,
        id: i64,
        outcome: &MailOutcome,
        now: i64,
    ) -> Result<bool> {
        let q = match outcome {
            MailOutcome::Sent { message_id } => sqlx::query(
                "UPDATE form_submissions SET mail_state = 'sent', mail_message_id = $1, mail_sent_at = $2, mail_error = NULL
                 WHERE id = $3 AND mail_state = 'sending'",
            )
            .bind(message_id.clone())
            .bind(now),
            MailOutcome::Retry { error, at } => sqlx::query(
                "UPDATE form_submissions SET mail_state = 'queued', mail_error = $1, mail_next_at = $2
                 WHERE id = $3 AND mail_state = 'sending'",
            )
            .bind(error.clone())
            .bind(*at),
            MailOutcome::Failed { error } => sqlx::query(
                "UPDATE form_submissions SET mail_state = 'failed', mail_error = $1, mail_next_at = $2
                 WHERE id = $3 AND mail_state = 'sending'",
            )
            .bind(error.clone())
            .bind(now),
            MailOutcome::Unknown { error } => sqlx::query(
                "UPDATE form_submissions SET mail_state = 'unknown', mail_error = $1, mail_next_at = $2
                 WHERE id = $3 AND mail_state = 'sending'",
            )
            .bind(error.clone())
            .bind(now),
        };
        Ok(q.bind(id).execute(self.conn()).await?.rows_affected() == 1)
    }

    /// The earliest time a queued confirmation email is due, if any.
    pub async fn next_form_mail_due(&mut self) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(mail_next_at) FROM form_submissions WHERE mail_state = 'queued'",
        )
        .fetch_one(self.conn())
        .await?;
        Ok(row.try_get(0)?)
    }
}
