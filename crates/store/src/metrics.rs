//! Counts for `/metrics`: the queue and the enrollments as a Prometheus scrape sees them.
//! Each is one aggregate over an indexed column, cheap enough to run on every scrape.

use sqlx::Row;

use crate::{Result, Tx};

impl Tx {
    /// Messages per state, for the states that have any: (state, count).
    pub async fn count_messages_by_state(&mut self) -> Result<Vec<(String, i64)>> {
        let rows =
            sqlx::query("SELECT state, COUNT(*) FROM messages GROUP BY state ORDER BY state")
                .fetch_all(self.conn())
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Enrollments per state, for the states that have any: (state, count).
    pub async fn count_enrollments_by_state(&mut self) -> Result<Vec<(String, i64)>> {
        let rows =
            sqlx::query("SELECT state, COUNT(*) FROM enrollments GROUP BY state ORDER BY state")
                .fetch_all(self.conn())
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
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
