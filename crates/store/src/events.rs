//! Events: what contacts did. New events wait (`processed_at IS NULL`) until the engine has
//! run event triggers for them; claiming them and enrolling happen in one transaction, so a
//! crash loses no event and enrolls nobody twice.

use std::collections::HashSet;

use serde_json::{Map, Value};
use sqlx::Row;

use crate::{Result, StoreError, Tx, json_text};

/// An event to record.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    /// The contact.
    pub contact_id: i64,
    /// Name, e.g. `lead.captured`.
    pub name: String,
    /// Properties.
    pub properties: Map<String, Value>,
    /// When it happened (ms).
    pub occurred_at: i64,
    /// Caller's id: a second event with the same id is ignored.
    pub idempotency_key: Option<String>,
    /// For email events: the enrollment.
    pub enrollment_id: Option<i64>,
    /// For email events: the step.
    pub step_id: Option<String>,
    /// Already handled (email events trigger nothing).
    pub processed: bool,
}

/// A stored event.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Row id.
    pub id: i64,
    /// The contact.
    pub contact_id: i64,
    /// Name.
    pub name: String,
    /// Properties.
    pub properties: Map<String, Value>,
    /// When it happened (ms).
    pub occurred_at: i64,
}

impl Tx {
    /// Records an event; `None` when its idempotency key was seen before.
    pub async fn insert_event(&mut self, e: &NewEvent, now: i64) -> Result<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO events (contact_id, name, properties, occurred_at, idempotency_key, enrollment_id, step_id, processed_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (idempotency_key) DO NOTHING
             RETURNING id",
        )
        .bind(e.contact_id)
        .bind(&e.name)
        .bind(json_text(&e.properties))
        .bind(e.occurred_at)
        .bind(e.idempotency_key.as_deref())
        .bind(e.enrollment_id)
        .bind(e.step_id.as_deref())
        .bind(e.processed.then_some(now))
        .bind(now)
        .fetch_optional(self.conn())
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Records many events (an import batch, the HTTP ingest's group commit) in one
    /// statement per chunk; returns how many were stored. An event whose idempotency key is
    /// already recorded is skipped, so a caller that checked the keys with
    /// [`Tx::recorded_keys`] and gets fewer rows than it passed lost a race to another
    /// writer (PostgreSQL only: SQLite's write transaction excludes the others).
    pub async fn insert_events(&mut self, events: &[NewEvent], now: i64) -> Result<u64> {
        let mut stored = 0;
        for chunk in events.chunks(crate::CHUNK) {
            let mut sql = String::from(
                "INSERT INTO events (contact_id, name, properties, occurred_at, idempotency_key, enrollment_id, step_id, processed_at, created_at) VALUES ",
            );
            let mut p = self.placeholders();
            for (i, e) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                let (name, props, key, step) = (p.next(), p.next(), p.next(), p.next());
                let null = || "CAST(NULL AS BIGINT)".to_string();
                let enrollment = e.enrollment_id.map_or_else(null, |id| id.to_string());
                let processed = if e.processed { now.to_string() } else { null() };
                sql.push_str(&format!(
                    "({}, {name}, {props}, {}, {key}, {enrollment}, {step}, {processed}, {now})",
                    e.contact_id, e.occurred_at
                ));
            }
            sql.push_str(" ON CONFLICT (idempotency_key) DO NOTHING");
            let mut q = crate::dynamic(sql);
            for e in chunk {
                q = q
                    .bind(e.name.as_str())
                    .bind(json_text(&e.properties))
                    .bind(e.idempotency_key.as_deref())
                    .bind(e.step_id.as_deref());
            }
            stored += q.execute(self.conn()).await?.rows_affected();
        }
        Ok(stored)
    }

    /// Which of `keys` are already recorded as events' idempotency keys.
    pub async fn recorded_keys(&mut self, keys: &[&str]) -> Result<HashSet<String>> {
        let mut found = HashSet::new();
        for chunk in keys.chunks(crate::CHUNK) {
            let mut p = self.placeholders();
            let params: Vec<String> = chunk.iter().map(|_| p.next()).collect();
            let sql = format!(
                "SELECT idempotency_key FROM events WHERE idempotency_key IN ({})",
                params.join(",")
            );
            let mut q = crate::dynamic(sql);
            for key in chunk {
                q = q.bind(*key);
            }
            for row in q.fetch_all(self.conn()).await? {
                found.insert(row.try_get(0)?);
            }
        }
        Ok(found)
    }

    /// Claims up to `limit` events that triggers have not seen yet, marking them seen. The
    /// caller enrolls in the same transaction.
    pub async fn claim_new_events(&mut self, now: i64, limit: i64) -> Result<Vec<EventRow>> {
        if self.backend() == crate::Backend::Sqlite {
            // The transaction began IMMEDIATE: nobody else is writing between the read and
            // the update. Read packed (one row), then mark by id.
            let mut out: Vec<EventRow> = self
                .fetch_packed::<(i64, i64, String, Map<String, Value>, i64)>(
                    sqlx::query(
                        "SELECT json_group_array(json_array(id, contact_id, name, json(properties), occurred_at))
                         FROM (SELECT id, contact_id, name, properties, occurred_at FROM events
                               WHERE processed_at IS NULL ORDER BY id LIMIT $1)",
                    )
                    .bind(limit),
                )
                .await?
                .into_iter()
                .map(|(id, contact_id, name, properties, occurred_at)| EventRow {
                    id,
                    contact_id,
                    name,
                    properties,
                    occurred_at,
                })
                .collect();
            out.sort_by_key(|e| e.id);
            let ids: Vec<i64> = out.iter().map(|e| e.id).collect();
            self.set_by_id("events", &[("processed_at", now)], &ids)
                .await?;
            return Ok(out);
        }
        // PostgreSQL: SKIP LOCKED lets several workers take disjoint batches. SQLite: the
        // transaction began IMMEDIATE, so nobody else is writing.
        let sql = self.pick(
            "UPDATE events SET processed_at = $1 WHERE id IN (
                 SELECT id FROM events WHERE processed_at IS NULL ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING id, contact_id, name, properties, occurred_at",
            "UPDATE events SET processed_at = $1 WHERE id IN (
                 SELECT id FROM events WHERE processed_at IS NULL ORDER BY id LIMIT $2)
             RETURNING id, contact_id, name, properties, occurred_at",
        );
        let rows = sqlx::query(sql)
            .bind(now)
            .bind(limit)
            .fetch_all(self.conn())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let props: String = r.try_get("properties")?;
            out.push(EventRow {
                id: r.try_get("id")?,
                contact_id: r.try_get("contact_id")?,
                name: r.try_get("name")?,
                properties: serde_json::from_str(&props)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                occurred_at: r.try_get("occurred_at")?,
            });
        }
        out.sort_by_key(|e| e.id);
        Ok(out)
    }

    /// The latest time (ms, at most `until`) of each named event for each contact:
    /// `(contact, name, at)`, one row per pair that has one.
    pub async fn latest_events(
        &mut self,
        contact_ids: &[i64],
        names: &[&str],
        until: i64,
    ) -> Result<Vec<(i64, String, i64)>> {
        let mut out = Vec::new();
        if names.is_empty() {
            return Ok(out);
        }
        for chunk in contact_ids.chunks(crate::CHUNK) {
            // Placeholders and values in the order of the text (SQLite's `?` are positional).
            let mut p = self.placeholders();
            let (list, binds) = p.ids(chunk);
            let params: Vec<String> = names.iter().map(|_| p.next()).collect();
            let at = p.next();
            let sql = format!(
                "SELECT contact_id, name, MAX(occurred_at) AS at FROM events
                 WHERE contact_id IN ({list}) AND name IN ({}) AND occurred_at <= {at}
                 GROUP BY contact_id, name",
                params.join(",")
            );
            let mut q = crate::batched(sql);
            for id in binds {
                q = q.bind(id);
            }
            for n in names {
                q = q.bind(*n);
            }
            for row in q.bind(until).fetch_all(self.conn()).await? {
                out.push((
                    row.try_get("contact_id")?,
                    row.try_get("name")?,
                    row.try_get("at")?,
                ));
            }
        }
        Ok(out)
    }

    /// The opens and clicks recorded for enrollments: `(enrollment, event name, step)`.
    pub async fn opens_and_clicks(
        &mut self,
        enrollment_ids: &[i64],
    ) -> Result<Vec<(i64, String, String)>> {
        let mut out = Vec::new();
        for chunk in enrollment_ids.chunks(crate::CHUNK) {
            let q = self.by_ids(
                "SELECT DISTINCT enrollment_id, name, step_id FROM events
                 WHERE enrollment_id IN ({ids}) AND name IN ('email.opened', 'email.clicked') AND step_id IS NOT NULL",
                chunk,
            );
            for row in q.fetch_all(self.conn()).await? {
                out.push((
                    row.try_get("enrollment_id")?,
                    row.try_get("name")?,
                    row.try_get("step_id")?,
                ));
            }
        }
        Ok(out)
    }

    /// Whether the contact had an event of this name at or after `since` (ms), up to `until`.
    pub async fn had_event(
        &mut self,
        contact_id: i64,
        name: &str,
        since: Option<i64>,
        until: i64,
    ) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM events WHERE contact_id = $1 AND name = $2 AND occurred_at >= $3 AND occurred_at <= $4 LIMIT 1",
        )
        .bind(contact_id)
        .bind(name)
        .bind(since.unwrap_or(i64::MIN))
        .bind(until)
        .fetch_optional(self.conn())
        .await?;
        Ok(row.is_some())
    }

    /// Whether an email event (`email.opened`, `email.clicked`) exists for a step of an enrollment.
    pub async fn had_email_event(
        &mut self,
        enrollment_id: i64,
        name: &str,
        step_id: &str,
    ) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM events WHERE enrollment_id = $1 AND name = $2 AND step_id = $3 LIMIT 1",
        )
        .bind(enrollment_id)
        .bind(name)
        .bind(step_id)
        .fetch_optional(self.conn())
        .await?;
        Ok(row.is_some())
    }
}

impl Tx {
    /// Opens savepoint `sp` inside the transaction: a batch of writes (the HTTP ingest's
    /// group commit) undoes one member with [`Tx::rollback_to`] and keeps the rest.
    pub async fn savepoint(&mut self) -> Result<()> {
        sqlx::query("SAVEPOINT sp").execute(self.conn()).await?;
        Ok(())
    }

    /// Undoes everything since [`Tx::savepoint`] and closes it; the transaction goes on
    /// (on PostgreSQL this also clears the aborted state a failed statement leaves).
    pub async fn rollback_to(&mut self) -> Result<()> {
        sqlx::query("ROLLBACK TO SAVEPOINT sp")
            .execute(self.conn())
            .await?;
        sqlx::query("RELEASE SAVEPOINT sp")
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Keeps everything since [`Tx::savepoint`] and closes it.
    pub async fn release(&mut self) -> Result<()> {
        sqlx::query("RELEASE SAVEPOINT sp")
            .execute(self.conn())
            .await?;
        Ok(())
    }
}
