//! Starting enrollments: many at once for a batch of triggering events, one whose contact
//! is already active in the campaign left out by the partial unique index rather than by a
//! prior read; and the last enrollments the re-entry rules decide on.

use serde_json::{Map, Value};
use sqlx::Row;

use super::Enrollment;
use crate::state::{self, EnrollmentState};
use crate::{Result, Tx, json_text};

/// A new enrollment.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    /// Campaign id.
    pub campaign_id: String,
    /// Contact.
    pub contact_id: i64,
    /// First step.
    pub step_id: String,
    /// When the first step is due (ms).
    pub next_run_at: i64,
    /// The trigger event's properties.
    pub trigger_properties: Map<String, Value>,
}

/// An enrollment's last state for the re-entry rules.
#[derive(Debug, Clone)]
pub struct EnrollmentSummary {
    /// State.
    pub state: EnrollmentState,
    /// When it ended (ms).
    pub ended_at: Option<i64>,
}

impl Tx {
    /// The most recent enrollment of each of these contacts in each campaign:
    /// `((campaign, contact), summary)`.
    pub async fn last_enrollments(
        &mut self,
        contact_ids: &[i64],
    ) -> Result<Vec<((String, i64), EnrollmentSummary)>> {
        let mut out = Vec::new();
        for chunk in contact_ids.chunks(crate::CHUNK) {
            let q = self.by_ids(
                "SELECT campaign_id, contact_id, state, ended_at FROM enrollments WHERE contact_id IN ({ids}) ORDER BY id",
                chunk,
            );
            for r in q.fetch_all(self.conn()).await? {
                out.push((
                    (r.try_get("campaign_id")?, r.try_get("contact_id")?),
                    EnrollmentSummary {
                        state: state::column(&r, "state")?,
                        ended_at: r.try_get("ended_at")?,
                    },
                ));
            }
        }
        Ok(out)
    }

    /// Inserts many enrollments; one whose contact is already active in the campaign is left
    /// out (the partial unique index decides). Returns how many were inserted.
    pub async fn insert_enrollments(&mut self, new: &[NewEnrollment], now: i64) -> Result<u64> {
        let mut n = 0;
        for chunk in new.chunks(crate::CHUNK) {
            let q = self.enrollment_insert(chunk, now, "");
            n += q.execute(self.conn()).await?.rows_affected();
        }
        Ok(n)
    }

    /// A multi-row insert of new enrollments (`returning` ends it), all values bound.
    fn enrollment_insert(
        &self,
        chunk: &[NewEnrollment],
        now: i64,
        returning: &str,
    ) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let mut sql = format!(
            "INSERT INTO enrollments (campaign_id, contact_id, state, step_id, seq, next_run_at, trigger_properties, enrolled_at) VALUES {}",
            self.value_rows(chunk.len(), 8)
        );
        sql.push_str(" ON CONFLICT DO NOTHING");
        sql.push_str(returning);
        let mut q = crate::batched(sql);
        for e in chunk {
            q = q
                .bind(e.campaign_id.clone())
                .bind(e.contact_id)
                .bind(EnrollmentState::Active.as_str())
                .bind(e.step_id.clone())
                .bind(0_i64)
                .bind(e.next_run_at)
                .bind(json_text(&e.trigger_properties))
                .bind(now);
        }
        q
    }

    /// Inserts enrollments like [`Tx::insert_enrollments`] and returns those inserted, as
    /// rows (a contact already active in the campaign is left out by the unique index).
    pub async fn insert_enrollments_returning(
        &mut self,
        new: &[NewEnrollment],
        now: i64,
    ) -> Result<Vec<Enrollment>> {
        let mut out = Vec::with_capacity(new.len());
        for chunk in new.chunks(crate::CHUNK) {
            let inserted: Vec<(i64, String, i64)> = if self.backend() == crate::Backend::Sqlite {
                // This transaction is SQLite's only writer (BEGIN IMMEDIATE): the rows past
                // the largest id before the insert are the ones it inserted.
                let before: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM enrollments")
                    .fetch_one(self.conn())
                    .await?
                    .try_get(0)?;
                self.enrollment_insert(chunk, now, "")
                    .execute(self.conn())
                    .await?;
                self.fetch_packed(
                    sqlx::query(
                        "SELECT json_group_array(json_array(id, campaign_id, contact_id)) FROM enrollments WHERE id > $1",
                    )
                    .bind(before),
                )
                .await?
            } else {
                let q =
                    self.enrollment_insert(chunk, now, " RETURNING id, campaign_id, contact_id");
                let mut rows = Vec::new();
                for row in q.fetch_all(self.conn()).await? {
                    rows.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
                }
                rows
            };
            // One active enrollment per campaign and contact: the pair finds its input.
            let by_pair: std::collections::HashMap<(&str, i64), &NewEnrollment> = chunk
                .iter()
                .map(|e| ((e.campaign_id.as_str(), e.contact_id), e))
                .collect();
            for (id, campaign, contact) in inserted {
                let Some(&e) = by_pair.get(&(campaign.as_str(), contact)) else {
                    continue;
                };
                out.push(Enrollment {
                    id,
                    campaign_id: e.campaign_id.clone(),
                    contact_id: contact,
                    state: EnrollmentState::Active,
                    step_id: Some(e.step_id.clone()),
                    seq: 0,
                    next_run_at: Some(e.next_run_at),
                    trigger_properties: e.trigger_properties.clone(),
                    enrolled_at: now,
                    ended_at: None,
                    exit_reason: None,
                });
            }
        }
        out.sort_by_key(|e| e.id);
        Ok(out)
    }

    /// Inserts an enrollment; `None` if the contact is already active in the campaign (the
    /// partial unique index decides, not a prior read).
    pub async fn insert_enrollment(&mut self, e: &NewEnrollment, now: i64) -> Result<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO enrollments (campaign_id, contact_id, state, step_id, seq, next_run_at, trigger_properties, enrolled_at)
             VALUES ($1, $2, 'active', $3, 0, $4, $5, $6)
             ON CONFLICT DO NOTHING
             RETURNING id",
        )
        .bind(&e.campaign_id)
        .bind(e.contact_id)
        .bind(&e.step_id)
        .bind(e.next_run_at)
        .bind(json_text(&e.trigger_properties))
        .bind(now)
        .fetch_optional(self.conn())
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }
}
