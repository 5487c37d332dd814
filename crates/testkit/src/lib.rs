//! Test support for nurture's integration and end-to-end tests: real servers, no mocks.
//!
//! Each helper gives one test a world of its own, in line with the house rule that no test
//! shares a database, a port or a folder with another:
//!
//! | helper | what the test gets | needs |
//! |---|---|---|
//! | [`SmtpSink`] | Postfix's `smtp-sink` on `127.0.0.1` on a free port, one file per received message, failure injection | Debian package `postfix` |
//! | [`Postgres`] / [`TestDatabase`] | a freshly created database, dropped when the test ends | the server `scripts/test` starts (`NURTURE_TEST_POSTGRES_URL`) and `psql` |
//! | [`PgCluster`] | a PostgreSQL cluster of its own on a free port, to stop and start (outage tests) | Debian package `postgresql` |
//! | [`TlsSmtpServer`] / [`TestCa`] | Python's aiosmtpd with STARTTLS or implicit TLS and required AUTH, its certificate from a CA made for the test | `python3` with `aiosmtpd`, the `openssl` command |
//! | [`Browser`] | a headless Chromium with one page to drive (forms, the dashboard), screenshots in [`artifacts_dir`] | Debian package `chromium`, python3 with `playwright` |
//! | [`TempProject`] | a temp folder with `campaigns/` and `templates/`, and a clean [`std::process::Command`] to run the binary in it | nothing |
//! | [`free_port`] | a TCP port nobody listens on right now | nothing |
//!
//! Missing tools make tests *fail* with a message naming the package to install; they never
//! skip silently. Run the whole suite with `scripts/test`, which installs them first
//! (`scripts/install-test-deps`).
//!
//! This crate is for tests only (`publish = false`): it panics instead of returning errors,
//! because a broken test environment should stop the test with a clear message.

mod browser;
mod pg_cluster;
mod postgres;
mod project;
mod smtp_sink;
mod tls_smtp;

pub use browser::{Browser, BrowserOptions, artifacts_dir};
pub use pg_cluster::PgCluster;
pub use postgres::{Postgres, TestDatabase};
pub use project::TempProject;
pub use smtp_sink::{ReceivedMessage, SmtpSink, SmtpSinkBuilder, split_envelope};
pub use tls_smtp::{TestCa, TlsMode, TlsReceived, TlsSmtpServer};

use std::net::TcpListener;

/// A TCP port on `127.0.0.1` that was free a moment ago, and never returned before in this
/// process.
///
/// Binds port 0 (the kernel picks an unused port), reads the port and closes the listener.
/// The kernel may hand the same port to two calls close together; tests run on parallel
/// threads, and a second server failing to bind a port the first one holds would look
/// started to a caller that only checks the port answers (it reaches the other server). So
/// each port is handed out once per process. Another process could still take it before the
/// caller binds it: callers that start a server should notice a failed bind and try again,
/// as [`SmtpSink`] does.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("cannot bind a TCP port on 127.0.0.1: {e}"));
        let port = match listener.local_addr() {
            Ok(addr) => addr.port(),
            Err(e) => panic!("cannot read the address of a bound TCP listener: {e}"),
        };
        let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if seen.insert(port) {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_can_be_bound() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
