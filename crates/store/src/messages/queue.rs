//! Putting mail into the queue, and settling what waits there when its campaign or contact
//! changes (held while a campaign is paused, suppressed when a contact or campaign is gone).

use sqlx::Row;

use crate::{Result, Tx};

/// An email to queue (see [`Tx::queue_messages`]).
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Enrollment.
    pub enrollment_id: i64,
    /// The enrollment's step counter for the step run.
    pub seq: i64,
    /// Contact.
    pub contact_id: i64,
    /// Campaign id.
    pub campaign_id: String,
    /// Campaign version the step comes from.
    pub version_id: i64,
    /// Step id.
    pub step_id: String,
    /// First attempt at (ms).
    pub due: i64,
    /// The A/B variant of the step's email, if the step has variants.
    pub variant: Option<String>,
}

/// Whose waiting mail [`Tx::suppress_waiting_messages`] settles.
#[derive(Debug, Clone, Copy)]
pub enum Waiting<'a> {
    /// Every message of a contact (unsubscribed, bounced).
    Contact(i64),
    /// Every message of a campaign (removed).
    Campaign(&'a str),
    /// The messages of these enrollments (exited by their goal).
    Enrollments(&'a [i64]),
}

impl Tx {
    /// Queues an email for a step run; the unique (enrollment, seq) key makes a second insert
    /// for the same step run a no-op.
    #[allow(clippy::too_many_arguments)]
    pub async fn queue_message(
        &mut self,
        enrollment_id: i64,
        seq: i64,
        contact_id: i64,
        campaign_id: &str,
        version_id: i64,
        step_id: &str,
        due: i64,
        now: i64,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO messages (enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, next_attempt_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $8)
             ON CONFLICT (enrollment_id, seq) DO NOTHING RETURNING id",
        )
        .bind(enrollment_id)
        .bind(seq)
        .bind(contact_id)
        .bind(campaign_id)
        .bind(version_id)
        .bind(step_id)
        .bind(due)
        .bind(now)
        .fetch_optional(self.conn())
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Queues many emails; the unique (enrollment, seq) key makes a repeat a no-op. Returns
    /// how many were queued.
    pub async fn queue_messages(&mut self, messages: &[NewMessage], now: i64) -> Result<u64> {
        let mut n = 0;
        for chunk in messages.chunks(crate::CHUNK) {
            let mut sql = format!(
                "INSERT INTO messages (enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, next_attempt_at, created_at, updated_at, variant) VALUES {}",
                self.value_rows(chunk.len(), 11)
            );
            sql.push_str(" ON CONFLICT (enrollment_id, seq) DO NOTHING");
            let mut q = crate::batched(sql);
            for m in chunk {
                q = q
                    .bind(m.enrollment_id)
                    .bind(m.seq)
                    .bind(m.contact_id)
                    .bind(m.campaign_id.as_str())
                    .bind(m.version_id)
                    .bind(m.step_id.as_str())
                    .bind("queued")
                    .bind(m.due)
                    .bind(now)
                    .bind(now)
                    .bind(m.variant.clone());
            }
            n += q.execute(self.conn()).await?.rows_affected();
        }
        Ok(n)
    }

    /// Holds (`hold`) or releases the queued and deferred mail of a campaign that was paused
    /// or resumed; returns how many messages changed.
    pub async fn hold_campaign_messages(
        &mut self,
        campaign_id: &str,
        hold: bool,
        now: i64,
    ) -> Result<u64> {
        let (to, from) = if hold { (1, 0) } else { (0, 1) };
        let n = sqlx::query(
            "UPDATE messages SET held = $1, updated_at = $2
             WHERE campaign_id = $3 AND held = $4 AND state IN ('queued', 'deferred')",
        )
        .bind(to)
        .bind(now)
        .bind(campaign_id)
        .bind(from)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n)
    }

    /// Suppresses the queued and deferred mail of a contact, of a campaign or of some
    /// enrollments (whichever `scope` names), with `reason`; returns how many.
    pub async fn suppress_waiting_messages(
        &mut self,
        scope: Waiting<'_>,
        reason: &str,
        now: i64,
    ) -> Result<u64> {
        let set = "UPDATE messages SET state = 'suppressed', next_attempt_at = NULL, lease_until = NULL, held = 0, error = $1, updated_at = $2";
        let waiting = "state IN ('queued', 'deferred')";
        let n = match scope {
            Waiting::Contact(id) => {
                crate::dynamic(format!("{set} WHERE contact_id = $3 AND {waiting}"))
                    .bind(reason)
                    .bind(now)
                    .bind(id)
                    .execute(self.conn())
                    .await?
                    .rows_affected()
            }
            Waiting::Campaign(id) => {
                crate::dynamic(format!("{set} WHERE campaign_id = $3 AND {waiting}"))
                    .bind(reason)
                    .bind(now)
                    .bind(id)
                    .execute(self.conn())
                    .await?
                    .rows_affected()
            }
            Waiting::Enrollments(ids) => {
                let mut n = 0;
                for chunk in ids.chunks(crate::CHUNK) {
                    let sql = format!(
                        "{set} WHERE enrollment_id IN ({}) AND {waiting}",
                        crate::id_list(chunk)
                    );
                    n += crate::dynamic(sql)
                        .bind(reason)
                        .bind(now)
                        .execute(self.conn())
                        .await?
                        .rows_affected();
                }
                n
            }
        };
        Ok(n)
    }
}
