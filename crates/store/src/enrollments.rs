//! Enrollments: a contact walking a campaign. `next_run_at` is indexed for active rows only,
//! so finding due work costs the same with ten or a million enrollments waiting.

use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::state::{self, EnrollmentState};
use crate::{Result, StoreError, Tx, json_text};

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

/// An enrollment's last state for the re-entry rules.
#[derive(Debug, Clone)]
pub struct EnrollmentSummary {
    /// State.
    pub state: EnrollmentState,
    /// When it ended (ms).
    pub ended_at: Option<i64>,
}

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

    /// Records one step run; the primary key (enrollment, seq) makes it happen once.
    pub async fn insert_step_run(
        &mut self,
        enrollment_id: i64,
        seq: i64,
        step_id: &str,
        outcome: &str,
        reason: Option<&str>,
        at: i64,
    ) -> Result<bool> {
        let n = sqlx::query(
            "INSERT INTO step_runs (enrollment_id, seq, step_id, outcome, reason, at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (enrollment_id, seq) DO NOTHING",
        )
        .bind(enrollment_id)
        .bind(seq)
        .bind(step_id)
        .bind(outcome)
        .bind(reason)
        .bind(at)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

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
