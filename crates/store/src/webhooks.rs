//! Webhook deliveries (the webhook step): a queue with the states and leases of the message
//! queue. A row is unique per `(enrollment, seq)`, every transition is guarded on the state
//! it leaves and on the lease holder, and a claim never holds a lock across the HTTP call.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::state::{self, WebhookState};
use crate::{Result, Tx};

/// A webhook step to deliver.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// The enrollment.
    pub enrollment_id: i64,
    /// The step run's sequence number (with the enrollment, the at-most-once key).
    pub seq: i64,
    /// The contact.
    pub contact_id: i64,
    /// The campaign.
    pub campaign_id: String,
    /// The campaign version the step belongs to.
    pub version_id: i64,
    /// The step.
    pub step_id: String,
    /// When due (ms).
    pub due: i64,
}

/// A stored webhook delivery.
#[derive(Debug, Clone)]
pub struct WebhookRow {
    /// Row id.
    pub id: i64,
    /// The enrollment.
    pub enrollment_id: i64,
    /// Sequence number of the step run.
    pub seq: i64,
    /// The contact.
    pub contact_id: i64,
    /// The campaign.
    pub campaign_id: String,
    /// The campaign version.
    pub version_id: i64,
    /// The step.
    pub step_id: String,
    /// Where it stands in its queue.
    pub state: WebhookState,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due (ms).
    pub next_attempt_at: Option<i64>,
    /// The last problem.
    pub error: Option<String>,
    /// When queued (ms).
    pub created_at: i64,
    /// When the receiver accepted it (ms).
    pub sent_at: Option<i64>,
}

impl WebhookRow {
    /// The `webhook-id` header: the same on every retry, so a receiver can drop repeats.
    pub fn webhook_id(&self) -> String {
        format!("nurture_{}_{}", self.enrollment_id, self.seq)
    }
}

/// One HTTP attempt of a webhook delivery.
#[derive(Debug, Clone)]
pub struct WebhookAttempt {
    /// When (ms).
    pub at: i64,
    /// `sent`, `deferred` or `failed`.
    pub outcome: String,
    /// The status line and the start of the reply, or the transport error.
    pub reply: Option<String>,
}

const COLUMNS: &str = "id, enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, attempts, next_attempt_at, error, created_at, sent_at";

fn decode(r: &AnyRow) -> Result<WebhookRow> {
    Ok(WebhookRow {
        id: r.try_get("id")?,
        enrollment_id: r.try_get("enrollment_id")?,
        seq: r.try_get("seq")?,
        contact_id: r.try_get("contact_id")?,
        campaign_id: r.try_get("campaign_id")?,
        version_id: r.try_get("version_id")?,
        step_id: r.try_get("step_id")?,
        state: state::column(r, "state")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        error: r.try_get("error")?,
        created_at: r.try_get("created_at")?,
        sent_at: r.try_get("sent_at")?,
    })
}

impl Tx {
    /// Queues webhook deliveries; a second row for the same `(enrollment, seq)` is ignored.
    /// Returns how many were queued.
    pub async fn queue_webhooks(&mut self, hooks: &[NewWebhook], now: i64) -> Result<u64> {
        let mut n = 0;
        for h in hooks {
            n += sqlx::query(
                "INSERT INTO webhooks (enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, next_attempt_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $8)
                 ON CONFLICT (enrollment_id, seq) DO NOTHING",
            )
            .bind(h.enrollment_id)
            .bind(h.seq)
            .bind(h.contact_id)
            .bind(&h.campaign_id)
            .bind(h.version_id)
            .bind(&h.step_id)
            .bind(h.due)
            .bind(now)
            .execute(self.conn())
            .await?
            .rows_affected();
        }
        Ok(n)
    }

    /// Deliveries left in `sending` past their lease (a process died mid-POST) become
    /// `unknown`: the receiver may have acted, so they are never POSTed again blindly.
    pub async fn expire_webhooks(&mut self, now: i64) -> Result<u64> {
        let n = sqlx::query(
            "UPDATE webhooks SET state = 'unknown', error = 'the sending process stopped before the outcome was recorded', lease_until = NULL, updated_at = $1
             WHERE state = 'sending' AND lease_until < $1",
        )
        .bind(now)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n)
    }

    /// Claims up to `limit` due deliveries for `owner`, marking them `sending` until
    /// `lease_until` and counting the attempt. The caller commits before it POSTs.
    pub async fn claim_webhooks(
        &mut self,
        now: i64,
        lease_until: i64,
        owner: i64,
        limit: i64,
    ) -> Result<Vec<WebhookRow>> {
        // PostgreSQL: SKIP LOCKED gives concurrent workers disjoint rows. SQLite: the
        // transaction began IMMEDIATE, so nobody else writes between the select and the update.
        let sql = format!(
            "UPDATE webhooks SET state = 'sending', attempts = attempts + 1, lease_until = $1, lease_owner = $2, updated_at = $3
             WHERE id IN (SELECT id FROM webhooks WHERE state IN ('queued', 'deferred') AND next_attempt_at <= $3
                          ORDER BY next_attempt_at, id LIMIT $4{})
             RETURNING {COLUMNS}",
            if self.backend() == crate::Backend::Postgres {
                " FOR UPDATE SKIP LOCKED"
            } else {
                ""
            }
        );
        let rows = crate::dynamic(sql)
            .bind(lease_until)
            .bind(owner)
            .bind(now)
            .bind(limit)
            .fetch_all(self.conn())
            .await?;
        let mut out: Vec<WebhookRow> = rows.iter().map(decode).collect::<Result<_>>()?;
        out.sort_by_key(|w| w.id);
        Ok(out)
    }

    /// Records the outcome of a POST: `sending → to`, guarded on `owner`'s lease. False when
    /// the lease was lost (the row is then someone else's to record).
    pub async fn finish_webhook(
        &mut self,
        id: i64,
        to: &str,
        error: Option<&str>,
        next_attempt_at: Option<i64>,
        now: i64,
        owner: i64,
    ) -> Result<bool> {
        let sent_at = (to == "sent").then_some(now);
        let n = sqlx::query(
            "UPDATE webhooks SET state = $1, error = $2, next_attempt_at = $3, sent_at = COALESCE($4, sent_at), lease_until = NULL, updated_at = $5
             WHERE id = $6 AND state = 'sending' AND lease_owner = $7",
        )
        .bind(to)
        .bind(error)
        .bind(next_attempt_at)
        .bind(sent_at)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Records one HTTP attempt, for `explain`.
    pub async fn insert_webhook_attempt(
        &mut self,
        webhook_id: i64,
        outcome: &str,
        reply: Option<&str>,
        at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhook_attempts (webhook_id, at, outcome, reply) VALUES ($1, $2, $3, $4)",
        )
        .bind(webhook_id)
        .bind(at)
        .bind(outcome)
        .bind(reply)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// The earliest due time of a queued or deferred delivery (ms).
    pub async fn next_webhook_due(&mut self) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) FROM webhooks WHERE state IN ('queued', 'deferred')",
        )
        .fetch_one(self.conn())
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Every webhook delivery of a contact, oldest first.
    pub async fn contact_webhooks(&mut self, contact_id: i64) -> Result<Vec<WebhookRow>> {
        let rows = crate::dynamic(format!(
            "SELECT {COLUMNS} FROM webhooks WHERE contact_id = $1 ORDER BY id"
        ))
        .bind(contact_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// The attempts of a webhook delivery, oldest first.
    pub async fn webhook_attempts(&mut self, webhook_id: i64) -> Result<Vec<WebhookAttempt>> {
        let rows = sqlx::query(
            "SELECT at, outcome, reply FROM webhook_attempts WHERE webhook_id = $1 ORDER BY at",
        )
        .bind(webhook_id)
        .fetch_all(self.conn())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(WebhookAttempt {
                at: r.try_get("at")?,
                outcome: r.try_get("outcome")?,
                reply: r.try_get("reply")?,
            });
        }
        Ok(out)
    }
}
