//! Test worlds: an engine over a fresh SQLite file or a fresh PostgreSQL database.

#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_methods)]

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
    _pg: Option<PgDatabase>,
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
                let db = PgDatabase::create();
                (db.url.clone(), None, Some(db))
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

/// A database of its own on the server `scripts/test` starts.
pub struct PgDatabase {
    pub url: String,
    admin: String,
    name: String,
}

impl PgDatabase {
    pub fn create() -> Self {
        let admin = std::env::var("NURTURE_TEST_POSTGRES_URL")
            .expect("NURTURE_TEST_POSTGRES_URL is not set: run the tests with scripts/test, which starts PostgreSQL");
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Self {
            url: format!("{base}/{name}"),
            admin,
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                &self.admin,
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

fn psql(url: &str, sql: &str) {
    let out = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql is not installed (Debian package postgresql-client)");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
