//! Following the link of a confirmation email: confirming subscribes the contact and records
//! the form's event once, however often the link is followed; declining unsubscribes a
//! contact still pending.

use serde_json::{Map, Value};
use sqlx::Row;

use super::NewSubmission;
use crate::contacts::Upsert;
use crate::state::ContactStatus;
use crate::{Result, StoreError, Tx};

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

impl Tx {
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
}
