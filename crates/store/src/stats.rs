//! Counts for `nurture stats`.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::state::{self, EnrollmentState, MessageState};
use crate::{Result, Tx};

/// Per-step counts.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StepStats {
    /// Step id.
    pub id: String,
    /// Accepted by SMTP.
    pub sent: i64,
    /// Given up.
    pub failed: i64,
    /// Unique opens (per message).
    pub opened: i64,
    /// Unique clicks (per message).
    pub clicked: i64,
    /// Unsubscribes from this step's email.
    pub unsubscribed: i64,
    /// Hard bounces.
    pub bounced: i64,
    /// Waiting for a retry.
    pub deferred: i64,
    /// The sending process died before the outcome was recorded; never re-sent blindly.
    pub unknown: i64,
}

/// Per-campaign counts.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CampaignStats {
    /// Campaign id.
    pub id: String,
    /// Enrollments ever.
    pub enrolled: i64,
    /// Active now.
    pub active: i64,
    /// Completed.
    pub completed: i64,
    /// Exited early, by reason.
    pub exited: BTreeMap<String, i64>,
    /// Per step, in no particular order (the caller orders by the campaign).
    pub steps: Vec<StepStats>,
}

impl Tx {
    /// Counts for one campaign.
    pub async fn campaign_stats(&mut self, campaign_id: &str) -> Result<CampaignStats> {
        let mut s = CampaignStats {
            id: campaign_id.to_string(),
            ..Default::default()
        };
        let rows = sqlx::query(
            "SELECT state, COALESCE(exit_reason, ''), COUNT(*) FROM enrollments WHERE campaign_id = $1 GROUP BY state, exit_reason",
        )
        .bind(campaign_id)
        .fetch_all(self.conn())
        .await?;
        for r in rows {
            let state: EnrollmentState = state::column(&r, 0)?;
            let reason: String = r.try_get(1)?;
            let n: i64 = r.try_get(2)?;
            s.enrolled += n;
            match state {
                EnrollmentState::Active => s.active += n,
                EnrollmentState::Completed => s.completed += n,
                EnrollmentState::Exited | EnrollmentState::Failed => {
                    let why = if reason.is_empty() {
                        state.as_str().to_string()
                    } else {
                        reason
                    };
                    *s.exited.entry(why).or_default() += n
                }
            }
        }
        let mut steps: BTreeMap<String, StepStats> = BTreeMap::new();
        let rows = sqlx::query("SELECT step_id, state, COUNT(*) FROM messages WHERE campaign_id = $1 GROUP BY step_id, state")
            .bind(campaign_id)
            .fetch_all(self.conn())
            .await?;
        for r in rows {
            let step: String = r.try_get(0)?;
            let state: MessageState = state::column(&r, 1)?;
            let n: i64 = r.try_get(2)?;
            let e = steps.entry(step.clone()).or_insert_with(|| StepStats {
                id: step,
                ..Default::default()
            });
            match state {
                MessageState::Sent => e.sent += n,
                MessageState::Failed => e.failed += n,
                MessageState::Bounced => e.bounced += n,
                MessageState::Deferred => e.deferred += n,
                MessageState::Unknown => e.unknown += n,
                MessageState::Queued | MessageState::Sending | MessageState::Suppressed => {}
            }
        }
        let rows = sqlx::query(
            "SELECT ev.step_id, ev.name, COUNT(DISTINCT ev.enrollment_id) FROM events ev JOIN enrollments en ON en.id = ev.enrollment_id
             WHERE en.campaign_id = $1 AND ev.name IN ('email.opened', 'email.clicked', 'email.unsubscribed') GROUP BY ev.step_id, ev.name",
        )
        .bind(campaign_id)
        .fetch_all(self.conn())
        .await?;
        for r in rows {
            let step: Option<String> = r.try_get(0)?;
            let name: String = r.try_get(1)?;
            let n: i64 = r.try_get(2)?;
            let step = step.unwrap_or_default();
            let e = steps.entry(step.clone()).or_insert_with(|| StepStats {
                id: step,
                ..Default::default()
            });
            match name.as_str() {
                "email.opened" => e.opened += n,
                "email.clicked" => e.clicked += n,
                _ => e.unsubscribed += n,
            }
        }
        s.steps = steps.into_values().collect();
        Ok(s)
    }
}
