//! Enrollments: a contact walking a campaign. `next_run_at` is indexed for active rows only,
//! so finding due work costs the same with ten or a million enrollments waiting.
//!
//! An enrollment's life in three parts: `enroll` starts it (the re-entry rules read the last
//! ones), `advance` moves it on after each run of a step (and when an edit removes the step
//! it waits at), `exit` ends it from outside (a contact leaving, a campaign removed). Reading
//! them back stays here.

mod advance;
mod enroll;
mod exit;

use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::state::{self, EnrollmentState};
use crate::{Result, StoreError, Tx};

pub use advance::{Advance, NewStepRun};
pub use enroll::{EnrollmentSummary, NewEnrollment};

/// A stored enrollment.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// Row id.
    pub id: i64,
    /// Campaign id.
    pub campaign_id: String,
    /// Contact.
    pub contact_id: i64,
    /// Where it stands.
    pub state: EnrollmentState,
    /// Next step (active) or last step (ended).
    pub step_id: Option<String>,
    /// Steps run so far.
    pub seq: i64,
    /// When the next step is due (ms), while active.
    pub next_run_at: Option<i64>,
    /// Trigger event properties.
    pub trigger_properties: Map<String, Value>,
    /// When enrolled (ms).
    pub enrolled_at: i64,
    /// When ended (ms).
    pub ended_at: Option<i64>,
    /// Why it ended early.
    pub exit_reason: Option<String>,
}

fn decode(r: &AnyRow) -> Result<Enrollment> {
    let props: String = r.try_get("trigger_properties")?;
    Ok(Enrollment {
        id: r.try_get("id")?,
        campaign_id: r.try_get("campaign_id")?,
        contact_id: r.try_get("contact_id")?,
        state: state::column(r, "state")?,
        step_id: r.try_get("step_id")?,
        seq: r.try_get("seq")?,
        next_run_at: r.try_get("next_run_at")?,
        trigger_properties: serde_json::from_str(&props)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        enrolled_at: r.try_get("enrolled_at")?,
        ended_at: r.try_get("ended_at")?,
        exit_reason: r.try_get("exit_reason")?,
    })
}

impl Tx {
    /// An enrollment by id.
    pub async fn enrollment(&mut self, id: i64) -> Result<Option<Enrollment>> {
        let row = sqlx::query(
            "SELECT id, campaign_id, contact_id, state, step_id, seq, next_run_at, trigger_properties, enrolled_at, ended_at, exit_reason
             FROM enrollments WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The trigger event properties of enrollments, by enrollment id.
    pub async fn trigger_properties(
        &mut self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, serde_json::Map<String, serde_json::Value>>> {
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        if self.backend() == crate::Backend::Sqlite {
            for chunk in ids.chunks(crate::CHUNK) {
                let q = self.by_ids(
                    "SELECT json_group_array(json_array(id, json(trigger_properties))) FROM enrollments WHERE id IN ({ids})",
                    chunk,
                );
                out.extend(self.fetch_packed::<(i64, Map<String, Value>)>(q).await?);
            }
            return Ok(out);
        }
        for chunk in ids.chunks(crate::CHUNK) {
            let q = self.by_ids(
                "SELECT id, trigger_properties FROM enrollments WHERE id IN ({ids})",
                chunk,
            );
            let rows = q.fetch_all(self.conn()).await?;
            for row in &rows {
                let props: String = row.try_get("trigger_properties")?;
                out.insert(
                    row.try_get("id")?,
                    serde_json::from_str(&props).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
        }
        Ok(out)
    }

    /// Every enrollment of a contact, oldest first.
    pub async fn contact_enrollments(&mut self, contact_id: i64) -> Result<Vec<Enrollment>> {
        let rows = sqlx::query(
            "SELECT id, campaign_id, contact_id, state, step_id, seq, next_run_at, trigger_properties, enrolled_at, ended_at, exit_reason
             FROM enrollments WHERE contact_id = $1 ORDER BY id",
        )
        .bind(contact_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// Active enrollments of a campaign waiting at each step: (step id, count).
    pub async fn waiting_by_step(&mut self, campaign_id: &str) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT step_id, COUNT(*) FROM enrollments WHERE campaign_id = $1 AND state = 'active' GROUP BY step_id",
        )
        .bind(campaign_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<Option<String>, _>(0)?.unwrap_or_default(),
                    r.try_get(1)?,
                ))
            })
            .collect()
    }
}
