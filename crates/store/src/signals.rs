//! Signals that come back after a message left (SPEC §10): bounces and complaints a relay
//! reports later, and the deliveries some providers confirm. One row per report, naming its
//! source, so `explain` can say who reported what, and so a run of soft bounces can be
//! counted from the rows themselves.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::state::SignalKind;
use crate::{Result, Tx};

/// A report to record (see [`Tx::insert_signal`]).
#[derive(Debug, Clone)]
pub struct NewSignal {
    /// The contact it concerns.
    pub contact_id: i64,
    /// The message it names by Message-ID, when that is one of ours and the contact's.
    pub message_id: Option<i64>,
    /// What happened.
    pub kind: SignalKind,
    /// Where the report came from (`ses`, `sendgrid`, `postmark`, `mailgun`, `generic`,
    /// `dsn`, `arf`).
    pub source: String,
    /// The provider's or the remote server's words (`550 5.1.1 user unknown`).
    pub reason: Option<String>,
    /// The provider's id of the report, so a notification sent twice counts once.
    pub external_id: Option<String>,
    /// When it was recorded (ms).
    pub at: i64,
}

/// A recorded report.
#[derive(Debug, Clone)]
pub struct SignalRow {
    /// Row id (the order reports arrived in).
    pub id: i64,
    /// The contact.
    pub contact_id: i64,
    /// The message, when the report named one of ours.
    pub message_id: Option<i64>,
    /// `hard`, `soft`, `complaint` or `delivered`.
    pub kind: String,
    /// Where it came from.
    pub source: String,
    /// The reported reason.
    pub reason: Option<String>,
    /// When it was recorded (ms).
    pub at: i64,
}

fn decode(r: &AnyRow) -> Result<SignalRow> {
    Ok(SignalRow {
        id: r.try_get("id")?,
        contact_id: r.try_get("contact_id")?,
        message_id: r.try_get("message_id")?,
        kind: r.try_get("kind")?,
        source: r.try_get("source")?,
        reason: r.try_get("reason")?,
        at: r.try_get("at")?,
    })
}

/// `<id@host>`: a Message-ID as the sender stores it, whatever brackets and spaces a report
/// wrote around it (Mailgun and SES drop the brackets, DSNs keep them). `None` when empty.
pub(crate) fn normalize_message_id(raw: &str) -> Option<String> {
    let inner = raw
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!inner.is_empty()).then(|| format!("<{inner}>"))
}

impl Tx {
    /// The id of the message whose Message-ID header is `header` (brackets optional).
    pub async fn message_by_header(&mut self, header: &str) -> Result<Option<i64>> {
        let Some(id) = normalize_message_id(header) else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT id FROM messages WHERE message_id = $1 ORDER BY id LIMIT 1")
            .bind(id)
            .fetch_optional(self.conn())
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Records a report; `None` when its `external_id` was recorded before (a provider
    /// retrying a notification we already took), in which case nothing is written.
    pub async fn insert_signal(&mut self, s: &NewSignal) -> Result<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO signals (contact_id, message_id, kind, source, reason, external_id, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (external_id) DO NOTHING RETURNING id",
        )
        .bind(s.contact_id)
        .bind(s.message_id)
        .bind(s.kind.as_str())
        .bind(&s.source)
        .bind(&s.reason)
        .bind(&s.external_id)
        .bind(s.at)
        .fetch_optional(self.conn())
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// How many soft bounces a contact has had in a row: those recorded after its last
    /// confirmed delivery, its last hard bounce or complaint (whichever came last).
    pub async fn soft_bounce_run(&mut self, contact_id: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM signals
             WHERE contact_id = $1 AND kind = 'soft'
               AND id > COALESCE((SELECT MAX(id) FROM signals WHERE contact_id = $1 AND kind <> 'soft'), 0)",
        )
        .bind(contact_id)
        .fetch_one(self.conn())
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Marks a message the relay accepted (or whose outcome was unknown) as `bounced`, with
    /// `reason`; false when it is in another state.
    pub async fn mark_message_bounced(&mut self, id: i64, reason: &str, now: i64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE messages SET state = 'bounced', error = $1, updated_at = $2
             WHERE id = $3 AND state IN ('sent', 'unknown')",
        )
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Every report about a contact, in the order they arrived.
    pub async fn contact_signals(&mut self, contact_id: i64) -> Result<Vec<SignalRow>> {
        let rows = sqlx::query(
            "SELECT id, contact_id, message_id, kind, source, reason, at FROM signals
             WHERE contact_id = $1 ORDER BY id",
        )
        .bind(contact_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(decode).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_compared_with_their_brackets() {
        assert_eq!(
            normalize_message_id(" abc@x.example ").as_deref(),
            Some("<abc@x.example>")
        );
        assert_eq!(
            normalize_message_id("<abc@x.example>").as_deref(),
            Some("<abc@x.example>")
        );
        assert_eq!(normalize_message_id("<>"), None);
        assert_eq!(normalize_message_id(""), None);
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            SignalKind::Hard,
            SignalKind::Soft,
            SignalKind::Complaint,
            SignalKind::Delivered,
        ] {
            assert_eq!(SignalKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(SignalKind::parse("bounce"), None);
    }
}
