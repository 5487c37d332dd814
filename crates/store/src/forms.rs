//! Form submissions (SPEC §9): the consent record of every submission and confirmation, the
//! queue of confirmation emails, and per-form counters of refused submissions.
//!
//! A submission decides the contact's fate in one transaction: a new address becomes
//! `pending` and gets a confirmation email queued; a subscribed one is not asked again (its
//! event is recorded at once); an unsubscribed or bounced one keeps its status until it
//! confirms. The HTTP server only inserts queued rows; the daemon's delivery round claims and
//! sends them (`queued → sending → sent`, every transition guarded on the state it leaves),
//! so a confirmation is neither lost when the server answers nor sent twice by two daemons.

use serde_json::{Map, Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::contacts::Upsert;
use crate::events::NewEvent;
use crate::state::{self, ContactStatus, MailState};
use crate::{Result, StoreError, Tx, json_text};

/// What a form submission carries, checked by the caller.
#[derive(Debug, Clone, Default)]
pub struct NewSubmission {
    /// The form's id.
    pub form_id: String,
    /// The submitted address.
    pub email: String,
    /// The other fields, as attributes.
    pub attributes: Map<String, Value>,
    /// Tags the form sets.
    pub tags: Vec<String>,
    /// The consent text as shown next to the button.
    pub consent_text: String,
    /// Its version (a fingerprint of the text).
    pub consent_version: String,
    /// The submitter's IP address, when the form keeps it (`record_ip`).
    pub ip: Option<String>,
    /// The submitter's user agent, when the form keeps it.
    pub user_agent: Option<String>,
    /// Whether the form asks for confirmation by email.
    pub double_opt_in: bool,
    /// A repeat submission queues a new confirmation only when the last one for this contact
    /// and form was queued longer ago than this (ms).
    pub resend_after_ms: i64,
    /// The event recorded on confirmation (or at once): its name.
    pub event: String,
    /// ...and its properties.
    pub properties: Map<String, Value>,
}

/// What a submission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Waiting for confirmation; `mailed` when a confirmation email was queued (false for a
    /// repeat within the hour, or a contact that complained).
    Pending {
        /// The submission's id.
        id: i64,
        /// Whether a confirmation email was queued.
        mailed: bool,
    },
    /// Recorded at once: the form has no double opt-in, or the contact was subscribed.
    Recorded {
        /// The submission's id.
        id: i64,
    },
}

/// The outcome of following a confirmation link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// Confirmed now: the contact is subscribed and the event recorded.
    Now {
        /// The form.
        form_id: String,
    },
    /// Confirmed before; nothing changed.
    Already {
        /// The form.
        form_id: String,
    },
    /// No such submission.
    NotFound,
}

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

/// One consent record, for `contacts show` and `explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct Consent {
    /// The form.
    pub form: String,
    /// The consent text as shown.
    pub text: String,
    /// Its version.
    pub version: String,
    /// When the form was submitted (ms).
    pub submitted_at: i64,
    /// When it was confirmed (ms), if it was.
    pub confirmed_at: Option<i64>,
    /// From which IP, when the form keeps it.
    pub ip: Option<String>,
    /// With which user agent, when the form keeps it.
    pub user_agent: Option<String>,
    /// Where the confirmation email stands.
    pub mail_state: MailState,
    /// When it was sent (ms).
    pub mail_sent_at: Option<i64>,
    /// Why it failed, if it did.
    pub mail_error: Option<String>,
}

/// Counters of one form, for `stats` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormCounts {
    /// The form.
    pub form: String,
    /// Submissions stored.
    pub submissions: i64,
    /// Of those, confirmed.
    pub confirmations: i64,
    /// Confirmation emails sent.
    pub mailed: i64,
    /// Refused submissions by reason.
    pub rejections: Vec<(String, i64)>,
}

fn consent(row: &AnyRow) -> Result<Consent> {
    Ok(Consent {
        form: row.try_get("form_id")?,
        text: row.try_get("consent_text")?,
        version: row.try_get("consent_version")?,
        submitted_at: row.try_get("submitted_at")?,
        confirmed_at: row.try_get("confirmed_at")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        mail_state: state::column(row, "mail_state")?,
        mail_sent_at: row.try_get("mail_sent_at")?,
        mail_error: row.try_get("mail_error")?,
    })
}

impl Tx {
    /// Records a submission: creates or updates the contact, stores the consent record and,
    /// as the contact's status and the form ask, queues a confirmation email or records the
    /// form's event at once. See the module docs for who gets what.
    pub async fn submit_form(&mut self, s: &NewSubmission, now: i64) -> Result<Submitted> {
        let existing = self.contact_by_email(&s.email).await?;
        let new = existing.is_none();
        // The submitted fields are applied at once only to a contact this submission creates
        // (nobody else's profile changes before the address's owner confirms) or when no
        // confirmation is asked for.
        let apply_now = new
            || !s.double_opt_in
            || existing
                .as_ref()
                .is_some_and(|c| c.status == ContactStatus::Subscribed);
        let (contact, _) = self
            .upsert_contact(
                &Upsert {
                    email: s.email.clone(),
                    attributes: if apply_now {
                        s.attributes.clone()
                    } else {
                        Map::new()
                    },
                    tags: if apply_now {
                        s.tags.clone()
                    } else {
                        Vec::new()
                    },
                    consent_source: Some(format!("form:{}", s.form_id)),
                    ..Upsert::default()
                },
                now,
            )
            .await?;
        if new && s.double_opt_in {
            self.set_contact_status(
                contact.id,
                ContactStatus::Pending,
                &format!("form {}: waiting for confirmation", s.form_id),
                now,
            )
            .await?;
        }
        let record_now = !s.double_opt_in || (!new && contact.status == ContactStatus::Subscribed);
        let mail_state = if record_now {
            MailState::None
        } else if contact.status == ContactStatus::Complained {
            // Someone who marked our mail as spam is not mailed again, not even a confirmation.
            MailState::Suppressed
        } else if self
            .recently_mailed(contact.id, &s.form_id, now - s.resend_after_ms)
            .await?
        {
            MailState::None
        } else {
            MailState::Queued
        };
        let queued = mail_state == MailState::Queued;
        let row = sqlx::query(
            "INSERT INTO form_submissions (form_id, contact_id, consent_text, consent_version, fields, ip, user_agent,
                 submitted_at, confirmed_at, mail_state, mail_queued_at, mail_next_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
             RETURNING id",
        )
        .bind(&s.form_id)
        .bind(contact.id)
        .bind(&s.consent_text)
        .bind(&s.consent_version)
        .bind(json_text(&s.attributes))
        .bind(s.ip.as_deref())
        .bind(s.user_agent.as_deref())
        .bind(now)
        .bind(record_now.then_some(now))
        .bind(mail_state.as_str())
        .bind(queued.then_some(now))
        .fetch_one(self.conn())
        .await?;
        let id: i64 = row.try_get(0)?;
        if record_now {
            self.insert_form_event(contact.id, id, s, now).await?;
            return Ok(Submitted::Recorded { id });
        }
        Ok(Submitted::Pending { id, mailed: queued })
    }

    async fn insert_form_event(
        &mut self,
        contact_id: i64,
        submission: i64,
        s: &NewSubmission,
        now: i64,
    ) -> Result<()> {
        let mut properties = s.properties.clone();
        properties.entry("form").or_insert_with(|| json!(s.form_id));
        self.insert_event(
            &NewEvent {
                contact_id,
                name: s.event.clone(),
                properties,
                occurred_at: now,
                // One event per submission, whatever repeats.
                idempotency_key: Some(format!("form-submission:{submission}")),
                ..NewEvent::default()
            },
            now,
        )
        .await?;
        Ok(())
    }

    /// Whether a confirmation for this contact and form was queued after `since`.
    async fn recently_mailed(
        &mut self,
        contact_id: i64,
        form_id: &str,
        since: i64,
    ) -> Result<bool> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM form_submissions
             WHERE contact_id = $1 AND form_id = $2 AND mail_queued_at IS NOT NULL AND mail_queued_at > $3",
        )
        .bind(contact_id)
        .bind(form_id)
        .bind(since)
        .fetch_one(self.conn())
        .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// Confirms a submission: the consent is marked confirmed, the contact subscribed (with
    /// the submitted fields and the form's tags), and the form's event `event` recorded with
    /// `properties`. Repeating it changes nothing.
    pub async fn confirm_submission(
        &mut self,
        id: i64,
        event: &str,
        properties: &Map<String, Value>,
        tags: &[String],
        now: i64,
    ) -> Result<Confirmed> {
        let Some(row) = sqlx::query(
            "SELECT s.form_id, s.contact_id, s.fields, s.confirmed_at, s.consent_text, s.consent_version, c.email
             FROM form_submissions s JOIN contacts c ON c.id = s.contact_id WHERE s.id = $1",
        )
        .bind(id)
        .fetch_optional(self.conn())
        .await?
        else {
            return Ok(Confirmed::NotFound);
        };
        let form_id: String = row.try_get("form_id")?;
        // Guarded on the column it sets: of two concurrent confirmations, one does the rest.
        let n = sqlx::query(
            "UPDATE form_submissions SET confirmed_at = $1 WHERE id = $2 AND confirmed_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(self.conn())
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(Confirmed::Already { form_id });
        }
        let contact_id: i64 = row.try_get("contact_id")?;
        let fields: String = row.try_get("fields")?;
        let attributes: Map<String, Value> =
            serde_json::from_str(&fields).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.upsert_contact(
            &Upsert {
                email: row.try_get("email")?,
                attributes: attributes.clone(),
                tags: tags.to_vec(),
                ..Upsert::default()
            },
            now,
        )
        .await?;
        self.set_contact_status(
            contact_id,
            ContactStatus::Subscribed,
            &format!("confirmed form {form_id}"),
            now,
        )
        .await?;
        sqlx::query("UPDATE contacts SET consent_source = $1, consent_at = $2 WHERE id = $3")
            .bind(format!("form:{form_id}"))
            .bind(now)
            .bind(contact_id)
            .execute(self.conn())
            .await?;
        let s = NewSubmission {
            form_id: form_id.clone(),
            event: event.to_string(),
            properties: properties.clone(),
            ..NewSubmission::default()
        };
        self.insert_form_event(contact_id, id, &s, now).await?;
        Ok(Confirmed::Now { form_id })
    }

    /// The form and confirmation time of a submission, if it exists.
    pub async fn submission(&mut self, id: i64) -> Result<Option<(String, Option<i64>)>> {
        let row = sqlx::query("SELECT form_id, confirmed_at FROM form_submissions WHERE id = $1")
            .bind(id)
            .fetch_optional(self.conn())
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// The confirmation email's one-click unsubscribe (or "no thanks"): a still pending
    /// contact becomes `unsubscribed`. False when the submission is unknown.
    pub async fn decline_submission(&mut self, id: i64, now: i64) -> Result<bool> {
        let Some(row) =
            sqlx::query("SELECT contact_id, form_id FROM form_submissions WHERE id = $1")
                .bind(id)
                .fetch_optional(self.conn())
                .await?
        else {
            return Ok(false);
        };
        let contact_id: i64 = row.try_get(0)?;
        let form_id: String = row.try_get(1)?;
        sqlx::query(
            "UPDATE contacts SET status = 'unsubscribed', status_reason = $1, status_changed_at = $2, updated_at = $2
             WHERE id = $3 AND status = 'pending'",
        )
        .bind(format!("declined the confirmation of form {form_id}"))
        .bind(now)
        .bind(contact_id)
        .execute(self.conn())
        .await?;
        Ok(true)
    }

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

    /// Counts one refused submission of `form_id` for `reason`.
    pub async fn count_form_rejection(&mut self, form_id: &str, reason: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO form_rejections (form_id, reason, count) VALUES ($1, $2, 1)
             ON CONFLICT (form_id, reason) DO UPDATE SET count = form_rejections.count + 1",
        )
        .bind(form_id)
        .bind(reason)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Submissions, confirmations, emails sent and rejections per form, by form id.
    pub async fn form_counts(&mut self) -> Result<Vec<FormCounts>> {
        let mut out: std::collections::BTreeMap<String, FormCounts> = Default::default();
        let rows = sqlx::query(
            "SELECT form_id, COUNT(*) AS submissions,
                    SUM(CASE WHEN confirmed_at IS NOT NULL THEN 1 ELSE 0 END) AS confirmations,
                    SUM(CASE WHEN mail_state = 'sent' THEN 1 ELSE 0 END) AS mailed
             FROM form_submissions GROUP BY form_id",
        )
        .fetch_all(self.conn())
        .await?;
        for r in rows {
            let form: String = r.try_get("form_id")?;
            let c = out.entry(form.clone()).or_default();
            c.form = form;
            c.submissions = r.try_get("submissions")?;
            c.confirmations = r.try_get::<Option<i64>, _>("confirmations")?.unwrap_or(0);
            c.mailed = r.try_get::<Option<i64>, _>("mailed")?.unwrap_or(0);
        }
        let rows = sqlx::query(
            "SELECT form_id, reason, count FROM form_rejections ORDER BY form_id, reason",
        )
        .fetch_all(self.conn())
        .await?;
        for r in rows {
            let form: String = r.try_get("form_id")?;
            let c = out.entry(form.clone()).or_default();
            c.form = form;
            c.rejections
                .push((r.try_get("reason")?, r.try_get("count")?));
        }
        Ok(out.into_values().collect())
    }

    /// A contact's consent records, oldest first.
    pub async fn consents(&mut self, contact_id: i64) -> Result<Vec<Consent>> {
        let rows = sqlx::query(
            "SELECT form_id, consent_text, consent_version, submitted_at, confirmed_at, ip, user_agent,
                    mail_state, mail_sent_at, mail_error
             FROM form_submissions WHERE contact_id = $1 ORDER BY submitted_at, id",
        )
        .bind(contact_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(consent).collect()
    }
}
