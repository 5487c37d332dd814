//! Storage for nurture: contacts, events, campaign versions, enrollments, messages.
//!
//! This is the only crate that speaks SQL. One set of queries serves SQLite and PostgreSQL
//! through sqlx's `Any` driver: times are Unix milliseconds, JSON is text, and placeholders
//! are `$N` (which SQLite accepts too). Where the backends must differ — claiming work with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite — the choice is made
//! here and nowhere else. Every state column's values are an enum of `state`, mapped to
//! its SQL `CHECK` list in that one place. The crate knows nothing of YAML, templates or SMTP.

mod campaigns;
mod contacts;
mod dashboard;
mod enrollments;
mod error;
mod events;
mod forms;
mod frequency;
pub mod history;
mod import;
mod messages;
mod metrics;
mod redact;
#[cfg(test)]
mod schema_checks;
mod scores;
mod signals;
mod state;
mod stats;
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

pub use campaigns::{CampaignRow, VersionRow};
pub use contacts::{Contact, ProfileChange, Upsert};
pub use dashboard::{CampaignTotals, ContactHit, Funnel, StepTotals};
pub use enrollments::{Advance, Enrollment, EnrollmentSummary, NewEnrollment, NewStepRun};
pub use error::StoreError;
pub use events::{EventRow, NewEvent};
pub use forms::{Confirmed, Consent, FormCounts, FormMail, MailOutcome, NewSubmission, Submitted};
pub use frequency::VariantCounts;
pub use messages::{MessageRow, MessageSummary, NewMessage, Waiting};
pub use redact::redact;
pub use scores::{ScorePoint, ScoreRow};
pub use signals::{NewSignal, SignalRow};
pub use state::{
    ContactStatus, EnrollmentState, MailState, MessageState, SignalKind, UnknownState, WebhookState,
};
pub use stats::{CampaignStats, StepStats};
pub use webhooks::{NewWebhook, WebhookAttempt, WebhookRow};

/// Result type of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// How long a caller waits for a connection before the call fails. It bounds every call
/// while the database is away (sqlx keeps retrying a refused connection until then), so a
/// daemon whose PostgreSQL restarts notices within this time and retries on its own
/// schedule, and an HTTP request answers instead of hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a SQLite writer waits for its turn, in this process and in SQLite's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const BUSY_PRAGMA: &str = "PRAGMA busy_timeout = 10000";

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// A connection pool to the database, with migrations applied.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite's one writer, taken in this process before `BEGIN IMMEDIATE` (see
    /// [`Store::begin`]); unused on PostgreSQL.
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// A transaction. SQLite transactions start with `BEGIN IMMEDIATE` so that two processes
/// never both read and then both write.
pub struct Tx {
    inner: sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    /// This process's SQLite write turn, given back when the transaction ends (dropped
    /// after `inner`, so after its commit or rollback).
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Store {
    /// Opens (and for SQLite creates) the database and applies migrations.
    pub async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or(rest);
            if path.is_empty() {
                return Err(StoreError::Config(
                    "the SQLite URL names no file (write sqlite://nurture.db)".into(),
                ));
            }
            (Backend::Sqlite, format!("sqlite://{path}?mode=rwc"))
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
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 });
        if backend == Backend::Sqlite {
            // A SQLite connection is a file handle on a thread of our own: nothing to check
            // before each transaction (sqlx would otherwise ping it, one more hand-off to
            // that thread per transaction).
            pool = pool.test_before_acquire(false).after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute(BUSY_PRAGMA).await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            });
        }
        let pool = pool
            .connect_with(options)
            .await
            .map_err(StoreError::connect)?;
        let store = Self {
            pool,
            backend,
            writer: Arc::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations (also done by [`Store::open`]).
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction.
    ///
    /// On SQLite the writers of this process (the engine's rounds, the HTTP ingest's
    /// batches, the form server) first queue for their turn here, first come first served,
    /// and only then ask SQLite for its write lock. Left to SQLite, a writer that finds the
    /// lock taken sleeps in the busy handler for up to 100 ms at a time and may lose the
    /// lock again to a later one on waking: under a send round that gave HTTP ingest tails
    /// of seconds. Another process still waits in the busy handler, up to its
    /// `busy_timeout`; the turn here is bounded by the same 10 s.
    pub async fn begin(&self) -> Result<Tx> {
        let (inner, turn) = match self.backend {
            Backend::Sqlite => {
                let turn = tokio::time::timeout(BUSY_TIMEOUT, self.writer.clone().lock_owned())
                    .await
                    .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))?;
                (self.pool.begin_with("BEGIN IMMEDIATE").await?, Some(turn))
            }
            Backend::Postgres => (self.pool.begin().await?, None),
        };
        Ok(Tx {
            inner,
            backend: self.backend,
            _turn: turn,
        })
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await.is_ok()
    }

    /// The signing secret: the configured one, else one generated once and kept in `settings`.
    ///
    /// Every process returns the stored value, never its own candidate: two first starts may
    /// both find no secret and both insert one, and only the first insert stays. So the value
    /// is read back after the insert — on PostgreSQL the `ON CONFLICT DO NOTHING` waits for
    /// the other insert to commit, and the read, a statement of its own, then sees it.
    pub async fn secret(&self, generate: impl FnOnce() -> String) -> Result<String> {
        let read = "SELECT value FROM settings WHERE key = 'secret'";
        let mut tx = self.begin().await?;
        let existing: Option<String> = sqlx::query(read)
            .fetch_optional(&mut *tx.inner)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let secret = match existing {
            Some(s) => s,
            None => {
                sqlx::query("INSERT INTO settings (key, value) VALUES ('secret', $1) ON CONFLICT (key) DO NOTHING")
                    .bind(generate())
                    .execute(&mut *tx.inner)
                    .await?;
                sqlx::query(read)
                    .fetch_one(&mut *tx.inner)
                    .await?
                    .try_get(0)?
            }
        };
        tx.commit().await?;
        Ok(secret)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Tx {
    /// Commits.
    pub async fn commit(self) -> Result<()> {
        self.inner.commit().await?;
        Ok(())
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<()> {
        self.inner.rollback().await?;
        Ok(())
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.inner
    }

    /// SQLite only: runs `sql`, a query whose one row holds every result row packed into
    /// one JSON array (`json_group_array(json_array(...))`), and parses the rows into `T`
    /// (a tuple of the columns).
    ///
    /// sqlx hands SQLite's rows from its worker thread through a channel of 50, so a query
    /// of hundreds of rows wakes the two threads in turn for every row, which costs more
    /// than SQLite's own work on the row; one packed row crosses once.
    pub(crate) async fn fetch_packed<T: serde::de::DeserializeOwned>(
        &mut self,
        q: sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<Vec<T>> {
        let packed: Option<String> = q.fetch_one(self.conn()).await?.try_get(0)?;
        match packed {
            Some(json) => {
                serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))
            }
            None => Ok(Vec::new()),
        }
    }

    /// `(?, ?), (?, ?), …`: `rows` rows of `width` placeholders, for a `VALUES` list.
    pub(crate) fn value_rows(&self, rows: usize, width: usize) -> String {
        let mut p = self.placeholders();
        let mut out = String::with_capacity(rows * width * 4);
        for r in 0..rows {
            if r > 0 {
                out.push(',');
            }
            out.push('(');
            for c in 0..width {
                if c > 0 {
                    out.push_str(", ");
                }
                out.push_str(&p.next());
            }
            out.push(')');
        }
        out
    }

    /// `UPDATE table SET column = value, .. WHERE id IN (ids)` (the claims of SQLite, which
    /// read packed rows and then mark them). `table` and the columns are this crate's own
    /// names.
    pub(crate) async fn set_by_id(
        &mut self,
        table: &str,
        columns: &[(&str, i64)],
        ids: &[i64],
    ) -> Result<()> {
        for chunk in ids.chunks(CHUNK) {
            let mut p = self.placeholders();
            let sets: Vec<String> = columns
                .iter()
                .map(|(column, _)| format!("{column} = {}", p.next()))
                .collect();
            let (list, binds) = p.ids(chunk);
            let mut q = batched(format!(
                "UPDATE {table} SET {} WHERE id IN ({list})",
                sets.join(", ")
            ));
            for (_, value) in columns {
                q = q.bind(*value);
            }
            for id in binds {
                q = q.bind(id);
            }
            q.execute(self.conn()).await?;
        }
        Ok(())
    }

    /// A cached statement over one `IN` list of ids: `sql` has `{ids}` where the list goes
    /// and no other placeholder; the ids are bound, padded as [`Placeholders::ids`] says.
    pub(crate) fn by_ids(
        &self,
        sql: &str,
        ids: &[i64],
    ) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let (list, binds) = self.placeholders().ids(ids);
        let mut q = batched(sql.replace("{ids}", &list));
        for id in binds {
            q = q.bind(id);
        }
        q
    }

    /// The placeholder that follows `n` others (`?`, or `$n+1` on PostgreSQL).
    pub(crate) fn placeholders_after(&self, n: usize) -> String {
        let mut p = self.placeholders();
        p.n = n;
        p.next()
    }

    /// Placeholders for a statement built at run time.
    pub(crate) fn placeholders(&self) -> Placeholders {
        Placeholders {
            postgres: self.backend == Backend::Postgres,
            n: 0,
        }
    }

    /// Picks the PostgreSQL or the SQLite text of a statement.
    fn pick(&self, postgres: &'static str, sqlite: &'static str) -> &'static str {
        match self.backend {
            Backend::Postgres => postgres,
            Backend::Sqlite => sqlite,
        }
    }
}

/// `1,2,3`: integer ids written into a statement's text (integers cannot inject SQL), for
/// `IN (...)` lists of any length without one placeholder per id.
pub(crate) fn id_list(ids: &[i64]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(ids.len() * 8);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{id}");
    }
    out
}

/// Numbered placeholders for a statement built at run time, in the order they are bound:
/// `$1, $2, ...` on PostgreSQL, anonymous `?` on SQLite (which otherwise looks each `$N` name
/// up in a list: quadratic in a statement with a thousand of them).
pub(crate) struct Placeholders {
    postgres: bool,
    n: usize,
}

impl Placeholders {
    /// Placeholders for an `IN (…)` list of `ids` (at most [`CHUNK`]) and the values to bind
    /// to them in order: the list is padded with repeats of its first id (`IN` ignores
    /// repeats) to one of a few lengths, so that the statement's text — and the statement
    /// prepared from it, kept in the cache — comes back batch after batch: parsing a list of
    /// 500 literals anew each time would cost more than running the statement.
    pub(crate) fn ids(&mut self, ids: &[i64]) -> (String, Vec<i64>) {
        let len = ID_LIST_LENGTHS
            .into_iter()
            .find(|&n| n >= ids.len())
            .unwrap_or(ids.len());
        let mut binds = ids.to_vec();
        if let Some(&first) = ids.first() {
            binds.resize(len, first);
        }
        let list: Vec<String> = binds.iter().map(|_| self.next()).collect();
        (list.join(","), binds)
    }

    /// The next placeholder.
    pub(crate) fn next(&mut self) -> String {
        self.n += 1;
        if self.postgres {
            format!("${}", self.n)
        } else {
            "?".to_string()
        }
    }
}

/// The lengths [`Placeholders::ids`] pads an id list to.
const ID_LIST_LENGTHS: [usize; 4] = [8, 32, 128, CHUNK];

/// A statement built at run time (batched `IN` lists, multi-row inserts): kept out of the
/// prepared-statement cache, where each distinct text would only evict the fixed statements.
pub(crate) fn dynamic(
    sql: String,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false)
}

/// A batched statement whose text depends only on how many rows it has (every value a
/// placeholder): prepared once per connection and size, then taken from the statement cache.
/// Parsing a multi-row statement costs more than running it.
pub(crate) fn batched(
    sql: String,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(true)
}

/// How many rows one batched statement touches at most (keeps statements and parameter
/// counts well inside both backends' limits).
pub(crate) const CHUNK: usize = 500;

pub(crate) fn json_text(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists_are_padded_to_a_few_lengths_with_the_first_id() {
        let mut p = Placeholders {
            postgres: false,
            n: 0,
        };
        let (list, binds) = p.ids(&[5, 6, 7]);
        assert_eq!(list, "?,?,?,?,?,?,?,?");
        assert_eq!(binds, [5, 6, 7, 5, 5, 5, 5, 5]);
        for (n, len) in [
            (1, 8),
            (8, 8),
            (9, 32),
            (128, 128),
            (129, CHUNK),
            (CHUNK, CHUNK),
        ] {
            let ids: Vec<i64> = (1..=n as i64).collect();
            let (list, binds) = p.ids(&ids);
            assert_eq!(
                (list.split(',').count(), binds.len()),
                (len, len),
                "{n} ids"
            );
            assert_eq!(&binds[..n], &ids[..], "the ids come first, in order");
        }
        // PostgreSQL numbers them after the placeholders before.
        let mut p = Placeholders {
            postgres: true,
            n: 1,
        };
        let (list, binds) = p.ids(&[9, 10]);
        assert_eq!(list, "$2,$3,$4,$5,$6,$7,$8,$9");
        assert_eq!(binds, [9, 10, 9, 9, 9, 9, 9, 9]);
        assert_eq!(p.next(), "$10");
    }
}
