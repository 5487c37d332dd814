//! Counts for `/metrics`: the queue and the enrollments as a Prometheus scrape sees them.
//!
//! Messages and enrollments by state are kept by triggers as rows change (migration
//! `0010_state_counts`): `state_counts` holds folded totals and, on PostgreSQL,
//! `state_deltas` the net changes of statements since the last fold. A count is their sum,
//! so a scrape reads a few dozen rows whatever the number of messages; the engine folds the
//! deltas at the start of every round ([`Store::fold_state_counts`]).

use std::str::FromStr;

use sqlx::Row;

use crate::state::{self, EnrollmentState, MessageState, UnknownState};
use crate::{Backend, Result, Store, Tx};

impl Store {
    /// Folds PostgreSQL's `state_deltas`, `enrollment_deltas`, `funnel_deltas` and
    /// `step_deltas` into `state_counts`, `enrollment_counts`, `funnel_counts` and
    /// `step_counts` (one statement each; nothing to
    /// do on SQLite, whose triggers update the totals directly). Concurrent folds are safe: a delta
    /// row is deleted, and so added, once.
    pub async fn fold_state_counts(&self) -> Result<()> {
        if self.backend() != Backend::Postgres {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        // The ORDER BY makes every fold take the rows of `state_counts` in the same order, so
        // two folds at once wait for each other instead of deadlocking.
        sqlx::query(
            "WITH d AS (DELETE FROM state_deltas RETURNING tbl, state, delta)
             INSERT INTO state_counts (tbl, state, n)
             SELECT tbl, state, SUM(delta) FROM d GROUP BY tbl, state ORDER BY tbl, state
             ON CONFLICT (tbl, state) DO UPDATE SET n = state_counts.n + EXCLUDED.n",
        )
        .execute(tx.conn())
        .await?;
        // The dashboard's enrollment counters (migration 0011), folded the same way.
        sqlx::query(
            "WITH d AS (DELETE FROM enrollment_deltas
                 RETURNING campaign_id, state, exit_reason, step_id, delta)
             INSERT INTO enrollment_counts (campaign_id, state, exit_reason, step_id, n)
             SELECT campaign_id, state, exit_reason, step_id, SUM(delta) FROM d
             GROUP BY campaign_id, state, exit_reason, step_id
             ORDER BY campaign_id, state, exit_reason, step_id
             ON CONFLICT (campaign_id, state, exit_reason, step_id)
             DO UPDATE SET n = enrollment_counts.n + EXCLUDED.n",
        )
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "WITH d AS (DELETE FROM funnel_deltas RETURNING campaign_id, day, kind, delta)
             INSERT INTO funnel_counts (campaign_id, day, kind, n)
             SELECT campaign_id, day, kind, SUM(delta) FROM d
             GROUP BY campaign_id, day, kind ORDER BY campaign_id, day, kind
             ON CONFLICT (campaign_id, day, kind) DO UPDATE SET n = funnel_counts.n + EXCLUDED.n",
        )
        .execute(tx.conn())
        .await?;
        // Sent, opened and clicked per step (migration 0012).
        sqlx::query(
            "WITH d AS (DELETE FROM step_deltas RETURNING campaign_id, step_id, kind, delta)
             INSERT INTO step_counts (campaign_id, step_id, kind, n)
             SELECT campaign_id, step_id, kind, SUM(delta) FROM d
             GROUP BY campaign_id, step_id, kind ORDER BY campaign_id, step_id, kind
             ON CONFLICT (campaign_id, step_id, kind) DO UPDATE SET n = step_counts.n + EXCLUDED.n",
        )
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }
}

impl Tx {
    /// Rows of `tbl` per state, for the states that have any: (state, count).
    async fn count_by_state<T: FromStr<Err = UnknownState>>(
        &mut self,
        tbl: &str,
    ) -> Result<Vec<(T, i64)>> {
        let rows = sqlx::query(
            "SELECT state, CAST(SUM(n) AS BIGINT) FROM (
                 SELECT state, n FROM state_counts WHERE tbl = $1
                 UNION ALL
                 SELECT state, delta AS n FROM state_deltas WHERE tbl = $1
             ) counted
             GROUP BY state HAVING SUM(n) <> 0 ORDER BY state",
        )
        .bind(tbl)
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|r| Ok((state::column(r, 0)?, r.try_get(1)?)))
            .collect()
    }

    /// Messages per state, for the states that have any: (state, count).
    pub async fn count_messages_by_state(&mut self) -> Result<Vec<(MessageState, i64)>> {
        self.count_by_state("messages").await
    }

    /// Enrollments per state, for the states that have any: (state, count).
    pub async fn count_enrollments_by_state(&mut self) -> Result<Vec<(EnrollmentState, i64)>> {
        self.count_by_state("enrollments").await
    }

    /// Work due at `now_ms`: messages queued or deferred whose attempt is due, plus active
    /// enrollments in active campaigns whose next step is due (the same rows the delivery
    /// worker and the scheduler would claim, leases aside).
    pub async fn due_now(&mut self, now_ms: i64) -> Result<i64> {
        let messages: i64 = sqlx::query(
            "SELECT COUNT(*) FROM messages WHERE state IN ('queued', 'deferred') AND held = 0 AND next_attempt_at <= $1",
        )
        .bind(now_ms)
        .fetch_one(self.conn())
        .await?
        .try_get(0)?;
        let enrollments: i64 = sqlx::query(
            "SELECT COUNT(*) FROM enrollments e JOIN campaigns c ON c.id = e.campaign_id
             WHERE e.state = 'active' AND e.next_run_at <= $1 AND c.status = 'active'",
        )
        .bind(now_ms)
        .fetch_one(self.conn())
        .await?
        .try_get(0)?;
        Ok(messages + enrollments)
    }
}
