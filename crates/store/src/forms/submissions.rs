//! Storing a submission: the contact it creates or finds, the consent record kept for
//! `contacts show` and `explain`, and whether a confirmation email is queued or the form's
//! event recorded at once.

use serde_json::{Map, Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::contacts::Upsert;
use crate::events::NewEvent;
use crate::state::{self, ContactStatus, MailState};
use crate::{Result, Tx, json_text};

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
    /// form's event at once. See the `forms` module docs for who gets what.
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

    pub(super) async fn insert_form_event(
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
