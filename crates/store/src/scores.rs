//! Lead scores: one row per scored contact holding the score as last computed (points, the
//! time, the half-life then in force, the attribute/tag points), and the points of each
//! signal, for `explain` and `contacts show`. The decay itself is the caller's arithmetic.

use sqlx::Row;

use crate::{Result, StoreError, Tx, json_text};

/// A contact's score as last computed.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRow {
    /// The contact.
    pub contact_id: i64,
    /// Signal points (events, opens, clicks), decayed to `computed_at`.
    pub points: f64,
    /// Attribute/tag points at `computed_at` (these do not decay).
    pub profile: f64,
    /// The attribute/tag rules that held, with their points.
    pub profile_reasons: Vec<(String, f64)>,
    /// The half-life in force (ms); `None`: no decay.
    pub half_life_ms: Option<i64>,
    /// When computed (ms).
    pub computed_at: i64,
}

/// The points one signal earned.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorePoint {
    /// The contact.
    pub contact_id: i64,
    /// The event that earned them.
    pub event_id: Option<i64>,
    /// When the signal happened (ms).
    pub at: i64,
    /// Points at `at`.
    pub points: f64,
    /// The rule, in words (`event pricing.viewed`).
    pub reason: String,
}

impl Tx {
    /// The stored scores of these contacts (contacts never scored have none).
    pub async fn scores(&mut self, contact_ids: &[i64]) -> Result<Vec<ScoreRow>> {
        let mut out = Vec::new();
        for chunk in contact_ids.chunks(crate::CHUNK) {
            let sql = format!(
                "SELECT contact_id, points, profile, profile_reasons, half_life_ms, computed_at FROM scores WHERE contact_id IN ({})",
                crate::id_list(chunk)
            );
            for r in crate::dynamic(sql).fetch_all(self.conn()).await? {
                let reasons: String = r.try_get("profile_reasons")?;
                out.push(ScoreRow {
                    contact_id: r.try_get("contact_id")?,
                    points: r.try_get("points")?,
                    profile: r.try_get("profile")?,
                    profile_reasons: serde_json::from_str(&reasons)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    half_life_ms: r.try_get("half_life_ms")?,
                    computed_at: r.try_get("computed_at")?,
                });
            }
        }
        out.sort_by_key(|s| s.contact_id);
        out.dedup_by_key(|s| s.contact_id);
        Ok(out)
    }

    /// Writes a contact's score.
    pub async fn put_score(&mut self, s: &ScoreRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO scores (contact_id, points, profile, profile_reasons, half_life_ms, computed_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (contact_id) DO UPDATE SET points = excluded.points, profile = excluded.profile,
                 profile_reasons = excluded.profile_reasons, half_life_ms = excluded.half_life_ms,
                 computed_at = excluded.computed_at",
        )
        .bind(s.contact_id)
        .bind(s.points)
        .bind(s.profile)
        .bind(json_text(&s.profile_reasons))
        .bind(s.half_life_ms)
        .bind(s.computed_at)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Records the points signals earned.
    pub async fn insert_score_points(&mut self, points: &[ScorePoint]) -> Result<()> {
        for p in points {
            sqlx::query(
                "INSERT INTO score_points (contact_id, event_id, at, points, reason) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(p.contact_id)
            .bind(p.event_id)
            .bind(p.at)
            .bind(p.points)
            .bind(&p.reason)
            .execute(self.conn())
            .await?;
        }
        Ok(())
    }

    /// Every signal's points for a contact, oldest first.
    pub async fn score_points(&mut self, contact_id: i64) -> Result<Vec<ScorePoint>> {
        let rows = sqlx::query(
            "SELECT contact_id, event_id, at, points, reason FROM score_points WHERE contact_id = $1 ORDER BY at, event_id",
        )
        .bind(contact_id)
        .fetch_all(self.conn())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(ScorePoint {
                contact_id: r.try_get("contact_id")?,
                event_id: r.try_get("event_id")?,
                at: r.try_get("at")?,
                points: r.try_get("points")?,
                reason: r.try_get("reason")?,
            });
        }
        Ok(out)
    }
}
