//! Reads for the dashboard (SPEC §12): campaign totals, per-step counts, a campaign's funnel
//! over a window, and a contact search by email prefix.
//!
//! The dashboard must stay fast with a million enrollments, so every query here is either
//! bounded by a `LIMIT` (keyset pagination, never `OFFSET`) or reads counters kept by
//! triggers in the transactions that change the rows (migration 0011): totals, waiting and
//! goals per step (a few rows per campaign and step), the funnel per campaign and UTC day of
//! enrollment (a few rows per day); sent, opened and clicked per step (migration 0012, a few
//! rows per step). The search reads a range of the unique index on `email_key`.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::state::{self, ContactStatus, EnrollmentState};
use crate::{Result, Tx};

/// A UTC day in ms: the funnel counts enrollments per `enrolled_at / DAY_MS`.
const DAY_MS: i64 = 86_400_000;

/// One campaign's enrollment totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignTotals {
    /// Campaign id.
    pub id: String,
    /// Enrollments ever.
    pub enrolled: i64,
    /// Active now.
    pub active: i64,
    /// Completed the sequence.
    pub completed: i64,
    /// Left because the goal (`exit_when`) was reached.
    pub goal: i64,
    /// Left for any other reason (unsubscribed, bounced, an exit step, failed, ...).
    pub exited: i64,
}

/// A campaign's funnel over a window: of the contacts enrolled since a time, how many got an
/// email, opened, clicked and reached the goal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Funnel {
    /// Enrolled in the window.
    pub enrolled: i64,
    /// Of those, sent at least one email.
    pub emailed: i64,
    /// Of those, opened at least one email.
    pub opened: i64,
    /// Of those, clicked at least one link.
    pub clicked: i64,
    /// Of those, reached the goal.
    pub goal: i64,
}

/// One step's email counts, all time: the numbers `nurture stats` shows for the step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepTotals {
    /// Messages of the step accepted by SMTP.
    pub sent: i64,
    /// Enrollments that opened the step's email (once each, however many opens).
    pub opened: i64,
    /// Enrollments that clicked a link of the step's email (once each).
    pub clicked: i64,
}

/// A contact found by the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactHit {
    /// Row id.
    pub id: i64,
    /// Address as first given.
    pub email: String,
    /// The lower-cased address the search pages by.
    pub key: String,
    /// Mailability.
    pub status: ContactStatus,
    /// When created (ms).
    pub created_at: i64,
}

impl Tx {
    /// Enrollment totals of every campaign, by campaign id (campaigns without enrollments are
    /// absent). Read from the counters of migration 0011 (a few rows per campaign and step,
    /// plus PostgreSQL's unfolded deltas), never from the enrollments.
    pub async fn campaign_totals(&mut self) -> Result<BTreeMap<String, CampaignTotals>> {
        self.totals_of(None).await
    }

    /// Enrollment totals of one campaign (all zero when it has no enrollments), from the
    /// same counters as [`Tx::campaign_totals`].
    pub async fn campaign_total(&mut self, campaign_id: &str) -> Result<CampaignTotals> {
        let mut all = self.totals_of(Some(campaign_id)).await?;
        Ok(all.remove(campaign_id).unwrap_or_else(|| CampaignTotals {
            id: campaign_id.to_string(),
            ..CampaignTotals::default()
        }))
    }

    /// Totals of every campaign, or of one when `only` is given.
    async fn totals_of(&mut self, only: Option<&str>) -> Result<BTreeMap<String, CampaignTotals>> {
        let rows = sqlx::query(
            "SELECT campaign_id, state, exit_reason, CAST(SUM(n) AS BIGINT) FROM (
                 SELECT campaign_id, state, exit_reason, n FROM enrollment_counts
                 WHERE campaign_id = $1 OR $1 = ''
                 UNION ALL
                 SELECT campaign_id, state, exit_reason, delta AS n FROM enrollment_deltas
                 WHERE campaign_id = $1 OR $1 = ''
             ) counted
             GROUP BY campaign_id, state, exit_reason HAVING SUM(n) <> 0",
        )
        .bind(only.unwrap_or(""))
        .fetch_all(self.conn())
        .await?;
        let mut out: BTreeMap<String, CampaignTotals> = BTreeMap::new();
        for r in rows {
            let id: String = r.try_get(0)?;
            let state: EnrollmentState = state::column(&r, 1)?;
            let reason: String = r.try_get(2)?;
            let n: i64 = r.try_get(3)?;
            let t = out.entry(id.clone()).or_insert_with(|| CampaignTotals {
                id,
                ..CampaignTotals::default()
            });
            t.enrolled += n;
            match (state, reason.as_str()) {
                (EnrollmentState::Active, _) => t.active += n,
                (EnrollmentState::Completed, _) => t.completed += n,
                (EnrollmentState::Exited, "goal") => t.goal += n,
                (EnrollmentState::Exited | EnrollmentState::Failed, _) => t.exited += n,
            }
        }
        Ok(out)
    }

    /// Counted enrollments of one campaign in `state` (and, when given, with `reason`) per
    /// step: (step id, count), steps with none left out. Reads the counters of migration 0011.
    async fn counted_by_step(
        &mut self,
        campaign_id: &str,
        state: EnrollmentState,
        reason: Option<&str>,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT step_id, CAST(SUM(n) AS BIGINT) FROM (
                 SELECT step_id, exit_reason, n FROM enrollment_counts
                 WHERE campaign_id = $1 AND state = $2
                 UNION ALL
                 SELECT step_id, exit_reason, delta AS n FROM enrollment_deltas
                 WHERE campaign_id = $1 AND state = $2
             ) counted
             WHERE exit_reason = $3 OR $3 = ''
             GROUP BY step_id HAVING SUM(n) <> 0 ORDER BY step_id",
        )
        .bind(campaign_id)
        .bind(state.as_str())
        .bind(reason.unwrap_or(""))
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Active enrollments of a campaign waiting at each step: (step id, count). The same
    /// numbers as [`Tx::waiting_by_step`], from the counters instead of the enrollments.
    pub async fn waiting_at_steps(&mut self, campaign_id: &str) -> Result<Vec<(String, i64)>> {
        self.counted_by_step(campaign_id, EnrollmentState::Active, None)
            .await
    }

    /// Enrollments of a campaign that reached its goal while waiting at each step:
    /// (step id, count). From the counters of migration 0011.
    pub async fn goals_by_step(&mut self, campaign_id: &str) -> Result<Vec<(String, i64)>> {
        self.counted_by_step(campaign_id, EnrollmentState::Exited, Some("goal"))
            .await
    }

    /// Sent, opened and clicked per step of a campaign, by step id (steps with none absent).
    /// From the counters of migration 0012 (at most three rows per step, plus PostgreSQL's
    /// unfolded deltas), never from the messages or events.
    pub async fn step_totals(&mut self, campaign_id: &str) -> Result<BTreeMap<String, StepTotals>> {
        let rows = sqlx::query(
            "SELECT step_id, kind, CAST(SUM(n) AS BIGINT) FROM (
                 SELECT step_id, kind, n FROM step_counts WHERE campaign_id = $1
                 UNION ALL
                 SELECT step_id, kind, delta AS n FROM step_deltas WHERE campaign_id = $1
             ) counted
             GROUP BY step_id, kind HAVING SUM(n) <> 0",
        )
        .bind(campaign_id)
        .fetch_all(self.conn())
        .await?;
        let mut out: BTreeMap<String, StepTotals> = BTreeMap::new();
        for r in rows {
            let step: String = r.try_get(0)?;
            let kind: String = r.try_get(1)?;
            let n: i64 = r.try_get(2)?;
            let t = out.entry(step).or_default();
            match kind.as_str() {
                "sent" => t.sent = n,
                "opened" => t.opened = n,
                "clicked" => t.clicked = n,
                _ => {}
            }
        }
        Ok(out)
    }

    /// The funnel of the contacts enrolled in a campaign on the UTC day of `since` (ms) or
    /// later: the window is whole UTC days.
    ///
    /// Sums the per-day counters of migration 0011 (at most five rows per day of the window,
    /// plus PostgreSQL's unfolded deltas), so the cost grows with the window's days, not with
    /// the number of enrollments.
    pub async fn funnel(&mut self, campaign_id: &str, since: i64) -> Result<Funnel> {
        let rows = sqlx::query(
            "SELECT kind, CAST(SUM(n) AS BIGINT) FROM (
                 SELECT kind, n FROM funnel_counts WHERE campaign_id = $1 AND day >= $2
                 UNION ALL
                 SELECT kind, delta AS n FROM funnel_deltas WHERE campaign_id = $1 AND day >= $2
             ) counted
             GROUP BY kind",
        )
        .bind(campaign_id)
        .bind(since.div_euclid(DAY_MS))
        .fetch_all(self.conn())
        .await?;
        let mut f = Funnel::default();
        for r in rows {
            let kind: String = r.try_get(0)?;
            let n: i64 = r.try_get(1)?;
            match kind.as_str() {
                "enrolled" => f.enrolled = n,
                "emailed" => f.emailed = n,
                "opened" => f.opened = n,
                "clicked" => f.clicked = n,
                "goal" => f.goal = n,
                _ => {}
            }
        }
        Ok(f)
    }

    /// Contacts whose address starts with `prefix` (any case), in address order, after the
    /// address `after` (keyset pagination), at most `limit` (capped at 200).
    pub async fn search_contacts(
        &mut self,
        prefix: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ContactHit>> {
        let prefix = prefix.trim().to_lowercase();
        let limit = limit.clamp(1, 200);
        // A range on the unique index: `email_key >= prefix AND email_key < prefix + U+10FFFF`
        // reads only matching keys (byte order in SQLite; PostgreSQL's collation also sorts
        // the highest code point after every address character). The `starts_with` below
        // keeps the answer exact whatever the collation.
        let low = match after {
            Some(a) if a.to_lowercase() > prefix => a.to_lowercase(),
            _ => prefix.clone(),
        };
        let strict = after.is_some_and(|a| a.to_lowercase() >= prefix);
        let high = format!("{prefix}\u{10FFFF}");
        let sql = if strict {
            "SELECT id, email, email_key, status, created_at FROM contacts
             WHERE email_key > $1 AND email_key < $2 ORDER BY email_key LIMIT $3"
        } else {
            "SELECT id, email, email_key, status, created_at FROM contacts
             WHERE email_key >= $1 AND email_key < $2 ORDER BY email_key LIMIT $3"
        };
        let rows = sqlx::query(sql)
            .bind(low)
            .bind(high)
            .bind(limit)
            .fetch_all(self.conn())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let key: String = r.try_get(2)?;
            if !key.starts_with(&prefix) {
                continue;
            }
            let status: String = r.try_get(3)?;
            out.push(ContactHit {
                id: r.try_get(0)?,
                email: r.try_get(1)?,
                key,
                status: state::decode(&status)?,
                created_at: r.try_get(4)?,
            });
        }
        Ok(out)
    }
}
