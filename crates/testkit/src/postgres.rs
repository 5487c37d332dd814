//! Fresh PostgreSQL databases, one per test, on the server `scripts/test` starts.
//!
//! Databases are created and dropped with the `psql` command line, so tests need no Rust
//! PostgreSQL driver of their own. `scripts/test` runs a throwaway cluster with trust
//! authentication on `127.0.0.1` and exports its admin URL as `NURTURE_TEST_POSTGRES_URL`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable holding the admin URL of the test server.
const URL_VAR: &str = "NURTURE_TEST_POSTGRES_URL";

/// The PostgreSQL server the tests run against, known by its admin URL
/// (for example `postgres://postgres@127.0.0.1:5433/postgres`).
#[derive(Debug, Clone)]
pub struct Postgres {
    admin_url: String,
}

impl Postgres {
    /// The server named by `NURTURE_TEST_POSTGRES_URL`.
    ///
    /// Panics when the variable is not set: PostgreSQL tests must fail, not skip, when run
    /// outside `scripts/test`.
    #[track_caller]
    pub fn from_env() -> Self {
        match std::env::var(URL_VAR) {
            Ok(url) if !url.trim().is_empty() => Self::new(url),
            _ => panic!(
                "{URL_VAR} is not set: run the tests through scripts/test, \
                 which starts a throwaway PostgreSQL server and sets it"
            ),
        }
    }

    /// The server at `admin_url`, a URL whose user may create and drop databases.
    pub fn new(admin_url: impl Into<String>) -> Self {
        Self {
            admin_url: admin_url.into(),
        }
    }

    /// The admin URL this server was built from.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Shorthand for `Postgres::from_env().create_database()`.
    #[track_caller]
    pub fn fresh_database() -> TestDatabase {
        Self::from_env().create_database()
    }

    /// Creates an empty database with a unique name (`nurture_test_…`); it is dropped when
    /// the returned [`TestDatabase`] is.
    #[track_caller]
    pub fn create_database(&self) -> TestDatabase {
        let name = unique_name();
        psql(&self.admin_url, &format!("CREATE DATABASE {name}"));
        TestDatabase {
            url: with_database(&self.admin_url, &name),
            name,
            admin_url: self.admin_url.clone(),
        }
    }
}

/// A database of a test's own; dropped (`DROP DATABASE … WITH (FORCE)`, which also ends
/// connections still open) when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// URL of the database, same server and user as the admin URL, e.g.
    /// `postgres://postgres@127.0.0.1:5433/nurture_test_4242_0_9f3a…`.
    pub url: String,
    /// The database's name.
    pub name: String,
    admin_url: String,
}

impl TestDatabase {
    /// The database's URL (same as the `url` field).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs SQL in this database with `psql` and returns what it printed, unaligned and
    /// tuples only (`psql -At`): one row a line, columns separated by `|`. Panics if psql
    /// fails. Handy for a test to look at what the code under test stored.
    #[track_caller]
    pub fn psql(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Never panic here: this runs while unwinding from failed tests too.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        match psql_command(&self.admin_url, &sql).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "nurture-testkit: could not drop test database {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!(
                "nurture-testkit: could not run psql to drop test database {}: {e}",
                self.name
            ),
        }
    }
}

/// `psql` against `url`, ignoring `~/.psqlrc`, stopping at the first error, quiet, and
/// printing rows unaligned without headers.
fn psql_command(url: &str, sql: &str) -> Command {
    let mut command = Command::new("psql");
    command
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        // A password prompt would hang the test; the test server uses trust auth anyway.
        .arg("--no-password");
    command
}

#[track_caller]
pub(crate) fn psql(url: &str, sql: &str) -> String {
    let out = match psql_command(url, sql).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "psql is not installed: install Debian's postgresql-client package \
             (it comes with the postgresql package)"
        ),
        Err(e) => panic!("cannot run psql: {e}"),
    };
    if !out.status.success() {
        panic!(
            "psql failed on {url} running {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A database name no other test in this or another process will pick: process id, a
/// counter, and a per-process random number (process ids get reused; the random part keeps a
/// database leaked by a crashed run from clashing). Lower case, so it needs no quoting.
fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded from the OS once per process (then varied per instance), which
    // is all the randomness needed here, without a dependency and without reading the clock.
    let random = RandomState::new().build_hasher().finish();
    format!(
        "nurture_test_{}_{n}_{:08x}",
        std::process::id(),
        random as u32
    )
}

/// `url` with its database (the path) replaced by `name`, keeping any `?query`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_the_path_only() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5433/postgres",
                "postgres://postgres@127.0.0.1:5433/db1",
            ),
            (
                "postgres://postgres@127.0.0.1:5433",
                "postgres://postgres@127.0.0.1:5433/db1",
            ),
            (
                "postgres://u:p@h/postgres?sslmode=disable",
                "postgres://u:p@h/db1?sslmode=disable",
            ),
            ("postgresql://h:1/x/y", "postgresql://h:1/db1"),
        ];
        for (admin, expected) in cases {
            assert_eq!(with_database(admin, "db1"), expected, "{admin}");
        }
    }

    #[test]
    fn unique_names_differ_and_need_no_quoting() {
        let a = unique_name();
        let b = unique_name();
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }

    // Fails (does not skip) outside scripts/test: the suite must prove PostgreSQL works.
    #[test]
    fn fresh_database_can_be_used_and_is_dropped() {
        let postgres = Postgres::from_env();
        let db = postgres.create_database();
        db.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (41), (1);");
        assert_eq!(db.psql("SELECT sum(x) FROM t").trim(), "42");
        assert_eq!(
            db.psql("SELECT current_database()").trim(),
            db.name,
            "the URL points at the new database"
        );

        let name = db.name.clone();
        let exists = format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'");
        assert_eq!(psql(postgres.admin_url(), &exists).trim(), "1");
        drop(db);
        assert_eq!(psql(postgres.admin_url(), &exists).trim(), "0");
    }

    #[test]
    fn two_fresh_databases_are_separate() {
        let a = Postgres::fresh_database();
        let b = Postgres::fresh_database();
        assert_ne!(a.url, b.url);
        a.psql("CREATE TABLE only_in_a (x int)");
        assert_eq!(
            b.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'")
                .trim(),
            "0"
        );
    }
}
