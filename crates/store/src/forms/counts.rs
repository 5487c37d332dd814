//! Per-form counters for `stats` and `/metrics`: submissions, confirmations and emails sent
//! are counted from the submissions; refused submissions, which store no row, are counted
//! by reason.

use sqlx::Row;

use crate::{Result, Tx};

/// Counters of one form, for `stats` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormCounts {
    /// The form.
    pub form: String,
    /// Submissions stored.
    pub submissions: i64,
    /// Of those, confirmed.
    pub confirmations: i64,
    /// Confirmation emails sent.
    pub mailed: i64,
    /// Refused submissions by reason.
    pub rejections: Vec<(String, i64)>,
}

impl Tx {
    /// Counts one refused submission of `form_id` for `reason`.
    pub async fn count_form_rejection(&mut self, form_id: &str, reason: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO form_rejections (form_id, reason, count) VALUES ($1, $2, 1)
             ON CONFLICT (form_id, reason) DO UPDATE SET count = form_rejections.count + 1",
        )
        .bind(form_id)
        .bind(reason)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Submissions, confirmations, emails sent and rejections per form, by form id.
    pub async fn form_counts(&mut self) -> Result<Vec<FormCounts>> {
        let mut out: std::collections::BTreeMap<String, FormCounts> = Default::default();
        let rows = sqlx::query(
            "SELECT form_id, COUNT(*) AS submissions,
                    SUM(CASE WHEN confirmed_at IS NOT NULL THEN 1 ELSE 0 END) AS confirmations,
                    SUM(CASE WHEN mail_state = 'sent' THEN 1 ELSE 0 END) AS mailed
             FROM form_submissions GROUP BY form_id",
        )
        .fetch_all(self.conn())
        .await?;
        for r in rows {
            let form: String = r.try_get("form_id")?;
            let c = out.entry(form.clone()).or_default();
            c.form = form;
            c.submissions = r.try_get("submissions")?;
            c.confirmations = r.try_get::<Option<i64>, _>("confirmations")?.unwrap_or(0);
            c.mailed = r.try_get::<Option<i64>, _>("mailed")?.unwrap_or(0);
        }
        let rows = sqlx::query(
            "SELECT form_id, reason, count FROM form_rejections ORDER BY form_id, reason",
        )
        .fetch_all(self.conn())
        .await?;
        for r in rows {
            let form: String = r.try_get("form_id")?;
            let c = out.entry(form.clone()).or_default();
            c.form = form;
            c.rejections
                .push((r.try_get("reason")?, r.try_get("count")?));
        }
        Ok(out.into_values().collect())
    }
}
