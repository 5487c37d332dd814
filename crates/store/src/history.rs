//! What happened, and why: the records `nurture explain` tells a contact's story from, and the
//! read-only access `nurture plan` and `nurture simulate --contact` use to look at a database
//! without changing it.
//!
//! Step runs (with the reason of a skip or an exit) and SMTP attempts are written by the
//! engine elsewhere; this module adds the decisions that run no step — a send-window
//! postponement — and the queries that read all of it back, oldest first.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use crate::{Backend, EventRow, Result, Store, StoreError, Tx};

/// One step an enrollment ran, as recorded in `step_runs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRun {
    /// The enrollment's step counter after this step (1 for the first step run).
    pub seq: i64,
    /// The step.
    pub step_id: String,
    /// `queued` (an email), `skipped`, `exited`, `tagged`, `untagged`, `set`, `goto`, `waited`.
    pub outcome: String,
    /// Why, for skips and exits: "`{clicked: case-study}` was false", "goal reached: ...".
    pub reason: Option<String>,
    /// When it ran (ms).
    pub at: i64,
}

/// A decision that ran no step (today: a send-window postponement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Steps the enrollment had run when the decision was made.
    pub seq: i64,
    /// The step it concerns.
    pub step_id: String,
    /// `postponed`.
    pub kind: String,
    /// What was decided and why, in a sentence.
    pub detail: String,
    /// When (ms).
    pub at: i64,
}

/// One delivery attempt of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When (ms).
    pub at: i64,
    /// `sent`, `deferred`, `bounced` or `failed`.
    pub outcome: String,
    /// The SMTP reply, or the local reason.
    pub reply: Option<String>,
}

/// An `email.opened` / `email.clicked` / `email.unsubscribed` event of an enrollment.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailEvent {
    /// Event name.
    pub name: String,
    /// The step whose email it concerns.
    pub step_id: Option<String>,
    /// When (ms).
    pub occurred_at: i64,
    /// Properties (`url` for clicks).
    pub properties: Map<String, Value>,
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    Some(rest.split('?').next().unwrap_or(rest))
}

impl Store {
    /// Opens the database for reading only: no migrations, no file created, no write
    /// possible. `None` when the SQLite file does not exist (nothing has run yet).
    pub async fn open_read_only(url: &str) -> Result<Option<Self>> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(path) = sqlite_path(url) {
            if path.is_empty() {
                return Err(StoreError::Config(
                    "the SQLite URL names no file (write sqlite://nurture.db)".into(),
                ));
            }
            if !std::path::Path::new(path).exists() {
                return Ok(None);
            }
            (Backend::Sqlite, format!("sqlite://{path}?mode=ro"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::Config(
                "database_url must start with sqlite:// or postgres://".into(),
            ));
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Config(format!("invalid database_url: {e}")))?;
        let mut pool = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(30))
            .max_connections(2);
        if backend == Backend::Sqlite {
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    Ok(())
                })
            });
        }
        let pool = pool
            .connect_with(options)
            .await
            .map_err(StoreError::connect)?;
        Ok(Some(Self {
            pool,
            backend,
            writer: Arc::default(),
        }))
    }

    /// Starts a transaction that only reads (PostgreSQL refuses any write in it; a SQLite
    /// store opened with [`Store::open_read_only`] cannot write at all). Use the usual
    /// [`Tx`] queries on it.
    pub async fn begin_read(&self) -> Result<Tx> {
        let inner = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN").await?,
            Backend::Postgres => self.pool.begin_with("BEGIN READ ONLY").await?,
        };
        Ok(Tx {
            inner,
            backend: self.backend,
            _turn: None,
        })
    }
}

impl Tx {
    /// Records a decision that runs no step (a postponement). History only: the step's
    /// at-most-once key is the `(enrollment, seq)` of `step_runs`, untouched here.
    pub async fn insert_decision(
        &mut self,
        enrollment_id: i64,
        seq: i64,
        step_id: &str,
        kind: &str,
        detail: &str,
        at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO decisions (enrollment_id, seq, step_id, kind, detail, at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(enrollment_id)
        .bind(seq)
        .bind(step_id)
        .bind(kind)
        .bind(detail)
        .bind(at)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Every step an enrollment ran, in order.
    pub async fn step_runs(&mut self, enrollment_id: i64) -> Result<Vec<StepRun>> {
        let rows = sqlx::query(
            "SELECT seq, step_id, outcome, reason, at FROM step_runs WHERE enrollment_id = $1 ORDER BY seq",
        )
        .bind(enrollment_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StepRun {
                    seq: r.try_get("seq")?,
                    step_id: r.try_get("step_id")?,
                    outcome: r.try_get("outcome")?,
                    reason: r.try_get("reason")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    /// Every decision about an enrollment, in order.
    pub async fn decisions(&mut self, enrollment_id: i64) -> Result<Vec<Decision>> {
        let rows = sqlx::query(
            "SELECT seq, step_id, kind, detail, at FROM decisions WHERE enrollment_id = $1 ORDER BY at, id",
        )
        .bind(enrollment_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Decision {
                    seq: r.try_get("seq")?,
                    step_id: r.try_get("step_id")?,
                    kind: r.try_get("kind")?,
                    detail: r.try_get("detail")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    /// Every delivery attempt of a message, in order.
    pub async fn attempts(&mut self, message_id: i64) -> Result<Vec<Attempt>> {
        // The table has no id column: `at` orders attempts (one per delivery round).
        let rows = sqlx::query(
            "SELECT at, outcome, reply FROM message_attempts WHERE message_id = $1 ORDER BY at",
        )
        .bind(message_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Attempt {
                    at: r.try_get("at")?,
                    outcome: r.try_get("outcome")?,
                    reply: r.try_get("reply")?,
                })
            })
            .collect()
    }

    /// Opens, clicks and unsubscribes recorded for an enrollment's emails, in order.
    pub async fn email_events(&mut self, enrollment_id: i64) -> Result<Vec<EmailEvent>> {
        let rows = sqlx::query(
            "SELECT name, step_id, occurred_at, properties FROM events WHERE enrollment_id = $1 ORDER BY occurred_at, id",
        )
        .bind(enrollment_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|r| {
                let props: String = r.try_get("properties")?;
                Ok(EmailEvent {
                    name: r.try_get("name")?,
                    step_id: r.try_get("step_id")?,
                    occurred_at: r.try_get("occurred_at")?,
                    properties: serde_json::from_str(&props)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }

    /// Every event of a contact, oldest first.
    pub async fn contact_events(&mut self, contact_id: i64) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(
            "SELECT id, contact_id, name, properties, occurred_at FROM events WHERE contact_id = $1 ORDER BY occurred_at, id",
        )
        .bind(contact_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|r| {
                let props: String = r.try_get("properties")?;
                Ok(EventRow {
                    id: r.try_get("id")?,
                    contact_id: r.try_get("contact_id")?,
                    name: r.try_get("name")?,
                    properties: serde_json::from_str(&props)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    occurred_at: r.try_get("occurred_at")?,
                })
            })
            .collect()
    }
}
