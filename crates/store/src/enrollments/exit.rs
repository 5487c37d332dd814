//! Ending enrollments from outside a run (a contact bounced or unsubscribed, a campaign
//! removed), together with the mail still waiting for them, in the same transaction.

use crate::{Result, Tx};

impl Tx {
    /// Ends every active enrollment of a contact (bounce, unsubscribe), and suppresses the
    /// mail still waiting for it (queued, or deferred for a retry) in any campaign.
    pub async fn exit_contact_enrollments(
        &mut self,
        contact_id: i64,
        reason: &str,
        now: i64,
    ) -> Result<u64> {
        let n = sqlx::query(
            "UPDATE enrollments SET state = 'exited', exit_reason = $1, ended_at = $2, next_run_at = NULL
             WHERE contact_id = $3 AND state = 'active'",
        )
        .bind(reason)
        .bind(now)
        .bind(contact_id)
        .execute(self.conn())
        .await?
        .rows_affected();
        self.suppress_waiting_messages(
            crate::Waiting::Contact(contact_id),
            &format!("not sent: the contact {reason}"),
            now,
        )
        .await?;
        Ok(n)
    }

    /// Ends every active enrollment of a campaign (file removed), and suppresses the
    /// campaign's mail still waiting (queued, or deferred for a retry).
    pub async fn exit_campaign_enrollments(
        &mut self,
        campaign_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<u64> {
        let n = sqlx::query(
            "UPDATE enrollments SET state = 'exited', exit_reason = $1, ended_at = $2, next_run_at = NULL
             WHERE campaign_id = $3 AND state = 'active'",
        )
        .bind(reason)
        .bind(now)
        .bind(campaign_id)
        .execute(self.conn())
        .await?
        .rows_affected();
        let why = match reason {
            "campaign_removed" => "not sent: the campaign was removed".to_string(),
            other => format!("not sent: the campaign's enrollments ended ({other})"),
        };
        self.suppress_waiting_messages(crate::Waiting::Campaign(campaign_id), &why, now)
            .await?;
        Ok(n)
    }
}
