//! A PostgreSQL cluster of a test's own, for tests that stop and start the server: stopping
//! the shared one that `scripts/test` runs would break every other test.

use std::path::PathBuf;
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::free_port;

/// How many fresh ports to try when a port picked as free was taken before the server bound it.
const PORT_ATTEMPTS: usize = 3;

/// A throwaway PostgreSQL cluster: `initdb` into a temp folder, the server on `127.0.0.1`
/// on a free port (trust authentication, `fsync=off`), which the test may stop and start.
/// Stopped (`-m immediate`) and deleted on drop.
///
/// As root, PostgreSQL refuses to run; the programs then run as the `postgres` user (which
/// Debian's package creates) through `runuser`, as `scripts/test` does.
///
/// ```no_run
/// let mut pg = nurture_testkit::PgCluster::start();
/// // ... point the code under test at pg.url() ...
/// pg.stop(); // the database goes away
/// pg.start_again(); // and comes back on the same port with the same data
/// ```
#[derive(Debug)]
pub struct PgCluster {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    running: bool,
}

impl PgCluster {
    /// Creates a cluster and starts it. Panics if PostgreSQL's server programs are missing
    /// or the server does not start.
    #[track_caller]
    pub fn start() -> Self {
        let bin = find_bin();
        // Under /tmp: the postgres user must reach it, and the socket path must be short.
        let dir = tempfile::Builder::new()
            .prefix("nurture-pgc.")
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("cannot create a temp folder for PostgreSQL: {e}"));
        if running_as_root() {
            let out = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .output();
            check(out, "chown postgres: on the cluster's folder");
        }
        let mut cluster = Self {
            dir,
            bin,
            port: 0,
            running: false,
        };
        let data = cluster.data();
        let initdb = cluster
            .pg("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output();
        check(initdb, "initdb");
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            cluster.port = free_port();
            match cluster.try_start() {
                Ok(()) => return cluster,
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL did not start ({PORT_ATTEMPTS} attempts): {last}");
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the cluster's own database, which the
    /// test may use as it likes.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (`pg_ctl stop -m fast`: clients are disconnected) and waits until it
    /// is down. The data stays. Does nothing if it is already stopped.
    #[track_caller]
    pub fn stop(&mut self) {
        if self.running {
            let out = self
                .pg("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "fast", "-w", "stop"])
                .output();
            check(out, "pg_ctl stop");
            self.running = false;
        }
    }

    /// Starts the stopped server again on the same port with the same data, and waits until
    /// it accepts connections. Panics if the port was taken meanwhile.
    #[track_caller]
    pub fn start_again(&mut self) {
        if !self.running
            && let Err(e) = self.try_start()
        {
            panic!("PostgreSQL did not start again on port {}: {e}", self.port);
        }
    }

    /// Runs SQL in the cluster's `postgres` database with `psql` (see
    /// [`crate::TestDatabase::psql`] for the output format).
    #[track_caller]
    pub fn psql(&self, sql: &str) -> String {
        crate::postgres::psql(&self.url(), sql)
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn try_start(&mut self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("postgres.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if out.status.success() {
            self.running = true;
            Ok(())
        } else {
            Err(format!(
                "{}\n{}\nserver log:\n{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log()
            ))
        }
    }

    /// A PostgreSQL program, as the cluster's owner, run from its folder (which that user
    /// can read, unlike the test's working directory perhaps).
    fn pg(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.current_dir(self.dir.path());
        command
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Never panic here: this runs while unwinding from failed tests too.
        if self.running {
            let _ = self
                .pg("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// The newest `/usr/lib/postgresql/*/bin` with `initdb` and `pg_ctl`.
#[track_caller]
fn find_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL's server programs (initdb, pg_ctl) are missing under /usr/lib/postgresql: \
             install Debian's postgresql package (apt-get install postgresql)"
        ),
    }
}

#[track_caller]
fn check(out: std::io::Result<Output>, what: &str) {
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "{what} failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run {what}: {e}"),
    }
}

fn running_as_root() -> bool {
    crate::smtp_sink::running_as_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_stops_and_starts_again_with_its_data() {
        let mut pg = PgCluster::start();
        pg.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (42)");
        pg.stop();
        let refused = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "--no-password",
                "-d",
                &pg.url(),
                "-c",
                "SELECT 1",
            ])
            .output()
            .unwrap();
        assert!(!refused.status.success(), "the server is down");
        pg.start_again();
        assert_eq!(pg.psql("SELECT x FROM t").trim(), "42");
    }
}
