//! Test worlds: an engine over a fresh SQLite file or a fresh PostgreSQL database.

#![allow(dead_code, clippy::unwrap_used)]

use nurture_scheduler::{Engine, EngineConfig};
use nurture_store::Store;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An engine and what keeps its database alive.
pub struct World {
    pub engine: Engine,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<nurture_testkit::TestDatabase>,
}

impl World {
    pub async fn new(backend: Backend) -> Self {
        let (url, dir, pg) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                (
                    format!("sqlite://{}", dir.path().join("test.db").display()),
                    Some(dir),
                    None,
                )
            }
            Backend::Postgres => {
                let db = nurture_testkit::Postgres::fresh_database();
                (db.url().to_string(), None, Some(db))
            }
        };
        let store = Store::open(&url).await.unwrap();
        Self {
            engine: Engine::new(store, EngineConfig::default()),
            url,
            _dir: dir,
            _pg: pg,
        }
    }

    /// Another engine (another "process") on the same database.
    pub async fn another(&self) -> Engine {
        Engine::new(
            Store::open(&self.url).await.unwrap(),
            EngineConfig::default(),
        )
    }
}

/// Records `event` for the contact `email` (created if new) at `t`, as a landing page would;
/// returns the contact's id.
pub async fn capture(
    engine: &Engine,
    email: &str,
    event: &str,
    t: chrono::DateTime<chrono::Utc>,
) -> i64 {
    let mut tx = engine.store().begin().await.unwrap();
    let (c, _) = tx
        .upsert_contact(
            &nurture_store::Upsert {
                email: email.to_string(),
                ..Default::default()
            },
            t.timestamp_millis(),
        )
        .await
        .unwrap();
    tx.insert_event(
        &nurture_store::NewEvent {
            contact_id: c.id,
            name: event.into(),
            properties: serde_json::Map::new(),
            occurred_at: t.timestamp_millis(),
            ..Default::default()
        },
        t.timestamp_millis(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    c.id
}

/// Runs each named `async fn name(backend: Backend)` as two tests, `sqlite::name` and
/// `postgres::name`.
#[allow(unused_macros)]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Sqlite).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Postgres).await;
            })*
        }
    };
}
