//! Moving enrollments on: claiming the due ones, advancing them after a run with each move
//! guarded on the `seq` it was claimed with, recording the step runs once each, and moving
//! those waiting at a step an edit removed.

use sqlx::Row;

use super::{Enrollment, decode};
use crate::state::EnrollmentState;
use crate::{Result, Tx};

/// A step run to record (see [`Tx::insert_step_runs`]).
#[derive(Debug, Clone)]
pub struct NewStepRun {
    /// Enrollment.
    pub enrollment_id: i64,
    /// The enrollment's step counter for this run.
    pub seq: i64,
    /// Step id.
    pub step_id: String,
    /// `queued`, `skipped`, `tagged`, `exited`, ...
    pub outcome: &'static str,
    /// Why (a skip's false condition, a goal).
    pub reason: Option<String>,
    /// The arm a `split` step assigned (SPEC §13).
    pub variant: Option<String>,
}

/// Where an enrollment goes after a run (see [`Tx::advance_enrollments`]).
#[derive(Debug, Clone)]
pub struct Advance {
    /// Enrollment.
    pub id: i64,
    /// The `seq` it was claimed with (the guard).
    pub expected_seq: i64,
    /// The new `seq`.
    pub seq: i64,
    /// The step it waits at (or ended at).
    pub step_id: Option<String>,
    /// When it is due next (active only).
    pub next_run_at: Option<i64>,
    /// `Active`, `Completed` or `Exited`.
    pub state: EnrollmentState,
    /// Why it exited.
    pub exit_reason: Option<String>,
}

impl Tx {
    /// Locks and returns up to `limit` active enrollments due at `now` in active campaigns.
    pub async fn claim_due_enrollments(&mut self, now: i64, limit: i64) -> Result<Vec<Enrollment>> {
        // PostgreSQL: rows locked here stay locked until this transaction ends, and other
        // workers skip them. SQLite: BEGIN IMMEDIATE already excludes other writers.
        let sql = self.pick(
            "SELECT e.id, e.campaign_id, e.contact_id, e.state, e.step_id, e.seq, e.next_run_at, e.trigger_properties,
                    e.enrolled_at, e.ended_at, e.exit_reason
             FROM enrollments e JOIN campaigns c ON c.id = e.campaign_id
             WHERE e.state = 'active' AND e.next_run_at <= $1 AND c.status = 'active'
             ORDER BY e.next_run_at LIMIT $2
             FOR UPDATE OF e SKIP LOCKED",
            "SELECT e.id, e.campaign_id, e.contact_id, e.state, e.step_id, e.seq, e.next_run_at, e.trigger_properties,
                    e.enrolled_at, e.ended_at, e.exit_reason
             FROM enrollments e JOIN campaigns c ON c.id = e.campaign_id
             WHERE e.state = 'active' AND e.next_run_at <= $1 AND c.status = 'active'
             ORDER BY e.next_run_at LIMIT $2",
        );
        let rows = sqlx::query(sql)
            .bind(now)
            .bind(limit)
            .fetch_all(self.conn())
            .await?;
        rows.iter().map(decode).collect()
    }

    /// The earliest due time of any active enrollment in an active campaign (ms).
    pub async fn next_due(&mut self) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(e.next_run_at) FROM enrollments e JOIN campaigns c ON c.id = e.campaign_id
             WHERE e.state = 'active' AND c.status = 'active'",
        )
        .fetch_one(self.conn())
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Moves many enrollments on in one statement per chunk, each guarded on the `seq` it
    /// was claimed with; returns how many moved (fewer means another process advanced one).
    pub async fn advance_enrollments(&mut self, advances: &[Advance], now: i64) -> Result<u64> {
        // Those that stay active change three columns only: SQLite then leaves the indexes
        // on `state` (one active enrollment per campaign and contact) alone.
        let (moving, ending): (Vec<&Advance>, Vec<&Advance>) = advances
            .iter()
            .partition(|a| a.state == EnrollmentState::Active);
        let mut n = 0;
        // One row of values per enrollment, joined on the id: a `CASE id WHEN … END` per
        // column would be searched linearly for every row (quadratic in the batch).
        // `expected + 0`: without it SQLite's planner indexes `v` on `expected` and scans
        // every active enrollment (quadratic again); with it, `v` drives the join and each
        // enrollment is found by its primary key.
        for chunk in moving.chunks(crate::CHUNK) {
            let sql = format!(
                "WITH v(id, expected, seq, step_id, next_run_at) AS (VALUES {})
                 UPDATE enrollments SET step_id = v.step_id, seq = v.seq, next_run_at = v.next_run_at
                 FROM v WHERE enrollments.id = v.id AND enrollments.state = 'active' AND enrollments.seq = v.expected + 0",
                self.value_rows(chunk.len(), 5)
            );
            let mut q = crate::batched(sql);
            for a in chunk {
                q = q
                    .bind(a.id)
                    .bind(a.expected_seq)
                    .bind(a.seq)
                    .bind(a.step_id.clone())
                    .bind(a.next_run_at);
            }
            n += q.execute(self.conn()).await?.rows_affected();
        }
        for chunk in ending.chunks(crate::CHUNK) {
            let sql = format!(
                "WITH v(id, expected, seq, step_id, exit_reason, state) AS (VALUES {})
                 UPDATE enrollments SET step_id = v.step_id, exit_reason = v.exit_reason, seq = v.seq,
                     next_run_at = NULL, state = v.state, ended_at = {}
                 FROM v WHERE enrollments.id = v.id AND enrollments.state = 'active' AND enrollments.seq = v.expected + 0",
                self.value_rows(chunk.len(), 6),
                self.placeholders_after(chunk.len() * 6)
            );
            let mut q = crate::batched(sql);
            for a in chunk {
                // An ending advance is never `Active` (partitioned above); anything but an
                // exit ends as completed, as before the enum.
                let state = if a.state == EnrollmentState::Exited {
                    EnrollmentState::Exited
                } else {
                    EnrollmentState::Completed
                };
                q = q
                    .bind(a.id)
                    .bind(a.expected_seq)
                    .bind(a.seq)
                    .bind(a.step_id.clone())
                    .bind(a.exit_reason.clone())
                    .bind(state.as_str());
            }
            n += q.bind(now).execute(self.conn()).await?.rows_affected();
        }
        Ok(n)
    }

    /// Records many step runs; the primary key (enrollment, seq) makes each happen once.
    pub async fn insert_step_runs(&mut self, runs: &[NewStepRun], at: i64) -> Result<()> {
        for chunk in runs.chunks(crate::CHUNK) {
            let mut sql = format!(
                "INSERT INTO step_runs (enrollment_id, seq, step_id, outcome, reason, at, variant) VALUES {}",
                self.value_rows(chunk.len(), 7)
            );
            sql.push_str(" ON CONFLICT (enrollment_id, seq) DO NOTHING");
            let mut q = crate::batched(sql);
            for r in chunk {
                q = q
                    .bind(r.enrollment_id)
                    .bind(r.seq)
                    .bind(r.step_id.clone())
                    .bind(r.outcome)
                    .bind(r.reason.clone())
                    .bind(at)
                    .bind(r.variant.clone());
            }
            q.execute(self.conn()).await?;
        }
        Ok(())
    }

    /// Moves every active enrollment of a campaign waiting at `from` to `to` (step removed by
    /// an edit), or completes them when `to` is `None`.
    pub async fn remap_step(
        &mut self,
        campaign_id: &str,
        from: &str,
        to: Option<&str>,
        now: i64,
    ) -> Result<u64> {
        let n = match to {
            Some(to) => sqlx::query("UPDATE enrollments SET step_id = $1 WHERE campaign_id = $2 AND step_id = $3 AND state = 'active'")
                .bind(to)
                .bind(campaign_id)
                .bind(from)
                .execute(self.conn())
                .await?
                .rows_affected(),
            None => sqlx::query(
                "UPDATE enrollments SET state = 'completed', ended_at = $1, next_run_at = NULL
                 WHERE campaign_id = $2 AND step_id = $3 AND state = 'active'",
            )
            .bind(now)
            .bind(campaign_id)
            .bind(from)
            .execute(self.conn())
            .await?
            .rows_affected(),
        };
        Ok(n)
    }
}
