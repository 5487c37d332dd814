//! A real SMTP server for tests: Postfix's `smtp-sink`, one per test, on a free port.
//!
//! `smtp-sink` accepts mail and, with `-d`, writes each mail transaction to a file of its own;
//! [`ReceivedMessage`] describes that file's format and takes it apart.
//!
//! Other things worth knowing about smtp-sink, which this module deals with:
//!
//! - the file is created when smtp-sink answers `354` to DATA and written while the message
//!   arrives; it is closed before the `250` after the final `.`, and deleted if the client
//!   goes away before that. [`SmtpSink::messages`] therefore leaves out files the smtp-sink
//!   process still holds open (found through `/proc/PID/fd`), so a test never reads half a
//!   message;
//! - file names are the `strftime` template (here `%Y%m%d%H%M%S.`) plus 8 random hex digits,
//!   so sorting by name orders messages by the *second* they arrived in; within one second
//!   the order is random. Find messages by recipient or subject, not by position, when
//!   several arrive together;
//! - as root it refuses to run without `-u USER`; it then writes as that user (`nobody`
//!   here), so the dump folder is made world-writable.
//!
//! | module | what |
//! |---|---|
//! | (this) | [`SmtpSink`] and where to reach it |
//! | builder | [`SmtpSinkBuilder`]: reply and failure injection, and the start |
//! | process | the smtp-sink process: spawning, readiness, stop, restart, its log |
//! | inbox | [`SmtpSink::messages`], [`SmtpSink::wait_for`]: the complete dump files |
//! | dump | [`ReceivedMessage`], [`split_envelope`]: one dump file taken apart |

mod builder;
mod dump;
mod inbox;
mod process;
#[cfg(test)]
mod test_client;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Child;

use tempfile::TempDir;

pub use builder::SmtpSinkBuilder;
pub use dump::{ReceivedMessage, split_envelope};
pub(crate) use process::running_as_root;

/// A running Postfix `smtp-sink` on `127.0.0.1`, dumping every message it receives into a
/// file of its own in a fresh temp folder. Stopped (killed) and the folder removed on drop.
///
/// As root, smtp-sink must drop privileges: it runs with `-u nobody`, and the folder (under
/// the system temp dir, normally `/tmp`) is opened up so `nobody` can write to it.
///
/// ```no_run
/// use std::time::Duration;
/// use nurture_testkit::SmtpSink;
///
/// let sink = SmtpSink::start();
/// // ... point the code under test at sink.url() and let it send one message ...
/// let received = sink.wait_for(1, Duration::from_secs(10));
/// assert_eq!(received[0].rcpt_to(), ["ada@example.com"]);
/// assert!(received[0].message_text().contains("Subject: Welcome"));
///
/// // A server that answers 450 to every RCPT:
/// let busy = SmtpSink::builder().soft_reject("RCPT").start();
/// # drop(busy);
/// ```
#[derive(Debug)]
pub struct SmtpSink {
    /// Holds `smtp-sink.log` (smtp-sink's stdout and stderr) and `messages/`.
    dir: TempDir,
    port: u16,
    binary: PathBuf,
    args: Vec<OsString>,
    child: Option<Child>,
}

impl SmtpSink {
    /// Starts a plain smtp-sink that accepts everything (see [`SmtpSink::builder`] for
    /// failure injection).
    #[track_caller]
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Options for a sink that misbehaves on purpose.
    pub fn builder() -> SmtpSinkBuilder {
        SmtpSinkBuilder::default()
    }

    /// The port it listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:PORT`, for `NURTURE_SMTP_URL` (plain SMTP; smtp-sink offers no TLS).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The folder smtp-sink writes message files into.
    pub fn dump_dir(&self) -> PathBuf {
        self.dir.path().join("messages")
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}
