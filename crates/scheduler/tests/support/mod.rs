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
