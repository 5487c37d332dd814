//! The delivery queue: one row per email, an explicit state machine
//! (`queued → sending → sent | deferred | failed | bounced | suppressed | unknown`) in which
//! every transition is guarded on the state it leaves.
//!
//! Split by what is done to a message: `queue` puts mail in (and holds or suppresses what
//! waits), `claim` leases it to one sender and marks it `sending` under the send-time check,
//! `outcome` records how delivery ended. Reading rows back stays here.

mod claim;
mod outcome;
mod queue;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::state::{self, MessageState};
use crate::{Result, Tx};

pub use queue::{NewMessage, Waiting};

/// A queued or finished message.
#[derive(Debug, Clone)]
pub struct MessageRow {
    /// Row id.
    pub id: i64,
    /// Enrollment.
    pub enrollment_id: i64,
    /// The enrollment's step counter when queued.
    pub seq: i64,
    /// Contact.
    pub contact_id: i64,
    /// Campaign id.
    pub campaign_id: String,
    /// Campaign version the step came from.
    pub version_id: i64,
    /// Step id.
    pub step_id: String,
    /// Where it stands in the queue.
    pub state: MessageState,
    /// Attempts so far.
    pub attempts: i64,
    /// Message-ID header, once built.
    pub message_id: Option<String>,
    /// Last error or SMTP reply.
    pub error: Option<String>,
    /// Queued at (ms).
    pub created_at: i64,
    /// Accepted at (ms).
    pub sent_at: Option<i64>,
    /// Next attempt (ms).
    pub next_attempt_at: Option<i64>,
    /// The A/B variant of the step's email it was assigned (SPEC §13), if the step has any.
    pub variant: Option<String>,
}

/// A message as `contacts show` lists it.
pub type MessageSummary = MessageRow;

fn decode(r: &AnyRow) -> Result<MessageRow> {
    Ok(MessageRow {
        id: r.try_get("id")?,
        enrollment_id: r.try_get("enrollment_id")?,
        seq: r.try_get("seq")?,
        contact_id: r.try_get("contact_id")?,
        campaign_id: r.try_get("campaign_id")?,
        version_id: r.try_get("version_id")?,
        step_id: r.try_get("step_id")?,
        state: state::column(r, "state")?,
        attempts: r.try_get("attempts")?,
        message_id: r.try_get("message_id")?,
        error: r.try_get("error")?,
        created_at: r.try_get("created_at")?,
        sent_at: r.try_get("sent_at")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        variant: r.try_get("variant")?,
    })
}

impl Tx {
    /// The earliest due time of a queued or deferred message (ms).
    pub async fn next_message_due(&mut self) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) FROM messages WHERE state IN ('queued', 'deferred') AND held = 0",
        )
        .fetch_one(self.conn())
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Every message of a contact, oldest first.
    pub async fn contact_messages(&mut self, contact_id: i64) -> Result<Vec<MessageRow>> {
        let rows = sqlx::query(
            "SELECT id, enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, attempts, message_id, error, created_at, sent_at, next_attempt_at, variant
             FROM messages WHERE contact_id = $1 ORDER BY id",
        )
        .bind(contact_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// The state and lease holder of messages, by id.
    pub async fn message_states(&mut self, ids: &[i64]) -> Result<Vec<(i64, String, Option<i64>)>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(crate::CHUNK) {
            let sql = format!(
                "SELECT id, state, lease_owner FROM messages WHERE id IN ({})",
                crate::id_list(chunk)
            );
            for row in crate::dynamic(sql).fetch_all(self.conn()).await? {
                out.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
            }
        }
        Ok(out)
    }

    /// A message by id.
    pub async fn message(&mut self, id: i64) -> Result<Option<MessageRow>> {
        let row = sqlx::query(
            "SELECT id, enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, attempts, message_id, error, created_at, sent_at, next_attempt_at, variant
             FROM messages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(decode).transpose()
    }
}
