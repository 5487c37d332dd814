//! [`SmtpSinkBuilder`]: how a test asks for a sink that misbehaves (smtp-sink's `-r`, `-f`,
//! `-q` and raw arguments), and the start itself, which prepares the folder and retries on a
//! fresh port when the one picked was taken.

use std::ffi::OsString;

use super::SmtpSink;
use super::process::{PORT_ATTEMPTS, find_smtp_sink, running_as_root, set_mode};
use crate::free_port;

/// Options for an [`SmtpSink`], mostly failure injection. Made by [`SmtpSink::builder`].
///
/// Command names are smtp-sink's: `CONNECT`, `HELO`, `EHLO`, `MAIL`, `RCPT`, `DATA`, `.`
/// (end of message data), `RSET`, `NOOP`, `QUIT`. Several calls of the same option add up
/// (`soft_reject("RCPT").soft_reject("DATA")` becomes `-r RCPT,DATA`).
#[derive(Debug, Clone, Default)]
pub struct SmtpSinkBuilder {
    soft_reject: Vec<String>,
    hard_reject: Vec<String>,
    hang_up: Vec<String>,
    extra: Vec<OsString>,
}

impl SmtpSinkBuilder {
    /// Answers `command` with a soft (4xx, "450 4.3.0 Error: command failed") error
    /// (`smtp-sink -r`). Also stops announcing PIPELINING.
    pub fn soft_reject(mut self, command: &str) -> Self {
        self.soft_reject.push(command.to_owned());
        self
    }

    /// Answers `command` with a hard (5xx, "500 5.3.0 Error: command failed") error
    /// (`smtp-sink -f`). Also stops announcing PIPELINING.
    pub fn hard_reject(mut self, command: &str) -> Self {
        self.hard_reject.push(command.to_owned());
        self
    }

    /// Hangs up without a reply when the client sends `command` (`smtp-sink -q`); with
    /// `"DATA"`, the client sees the connection drop where it expects `354`.
    pub fn hang_up_on(mut self, command: &str) -> Self {
        self.hang_up.push(command.to_owned());
        self
    }

    /// Passes `arg` to smtp-sink as is, before the `-d` option and the address, e.g.
    /// `.arg("-w").arg("5")` to wait 5 s before answering DATA. Options that change the dump
    /// file's format (`-S`) or make smtp-sink exit (`-M`, `-n`; the readiness probe counts as
    /// one session) will confuse this helper.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra.push(arg.into());
        self
    }

    /// Starts smtp-sink with these options on a free port and waits until it accepts
    /// connections. Panics if smtp-sink is not installed or does not start.
    #[track_caller]
    pub fn start(self) -> SmtpSink {
        let binary = find_smtp_sink();
        let mut args = Vec::new();
        for (flag, commands) in [
            ("-r", &self.soft_reject),
            ("-f", &self.hard_reject),
            ("-q", &self.hang_up),
        ] {
            if !commands.is_empty() {
                args.push(OsString::from(flag));
                args.push(OsString::from(commands.join(",")));
            }
        }
        args.extend(self.extra);

        let dir = tempfile::Builder::new()
            .prefix("nurture-smtp-sink.")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp folder for smtp-sink: {e}"));
        let messages = dir.path().join("messages");
        std::fs::create_dir(&messages)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", messages.display()));
        if running_as_root() {
            // smtp-sink drops to `nobody` (-u) before writing: let it into the folder.
            set_mode(dir.path(), 0o755);
            set_mode(&messages, 0o777);
        }

        let mut sink = SmtpSink {
            dir,
            port: 0,
            binary,
            args,
            child: None,
        };
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            sink.port = free_port();
            match sink.spawn() {
                Ok(()) => return sink,
                // Most likely someone took the port between free_port() and smtp-sink's bind.
                Err(e) => last_error = e,
            }
        }
        panic!("smtp-sink did not start ({PORT_ATTEMPTS} attempts): {last_error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp_sink::test_client::Client;

    #[test]
    fn hard_reject_rcpt_answers_5xx() {
        let sink = SmtpSink::builder().hard_reject("RCPT").start();
        let (mut c, _) = Client::connect(&sink);
        c.send("EHLO client.example");
        assert!(c.send("MAIL FROM:<a@x.example>").starts_with("250"));
        let reply = c.send("RCPT TO:<b@y.example>");
        assert!(reply.starts_with('5'), "{reply}");
    }

    #[test]
    fn soft_reject_rcpt_answers_4xx() {
        let sink = SmtpSink::builder().soft_reject("RCPT").start();
        let (mut c, _) = Client::connect(&sink);
        c.send("EHLO client.example");
        c.send("MAIL FROM:<a@x.example>");
        let reply = c.send("RCPT TO:<b@y.example>");
        assert!(reply.starts_with('4'), "{reply}");
    }

    #[test]
    fn hang_up_on_data_drops_the_connection_and_keeps_nothing() {
        let sink = SmtpSink::builder().hang_up_on("DATA").start();
        let (mut c, _) = Client::connect(&sink);
        c.send("EHLO client.example");
        c.send("MAIL FROM:<a@x.example>");
        c.send("RCPT TO:<b@y.example>");
        assert_eq!(c.send("DATA"), "", "no reply, connection closed");
        assert!(sink.messages().is_empty());
    }
}
