//! Reading what the sink received: the dump files that are complete (smtp-sink no longer holds
//! them open), and polling until enough have arrived. Kept apart from the file format so the
//! "never half a message" rule is in one place.

use std::time::{Duration, Instant};

use super::process::POLL_INTERVAL;
use super::{ReceivedMessage, SmtpSink};

impl SmtpSink {
    /// Every completely received message so far, sorted by file name (that is, by the second
    /// of arrival; random within a second). Messages still being transmitted are left out.
    #[track_caller]
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        let dump_dir = self.dump_dir();
        // List the folder before looking at open files: a file closed in between counts as
        // complete (right), a file created in between is not listed (fine, next poll).
        let mut names: Vec<String> = match std::fs::read_dir(&dump_dir) {
            Ok(entries) => entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) => panic!("cannot list {}: {e}", dump_dir.display()),
        };
        // /proc shows resolved paths; the temp folder may sit behind a symlink.
        let real_dir = std::fs::canonicalize(&dump_dir).unwrap_or_else(|_| dump_dir.clone());
        let open = self.open_files();
        names.retain(|name| !open.contains(&real_dir.join(name)));
        names.sort();

        let mut messages = Vec::with_capacity(names.len());
        for file_name in names {
            let path = dump_dir.join(&file_name);
            match std::fs::read(&path) {
                Ok(raw) => messages.push(ReceivedMessage { file_name, raw }),
                // Deleted by smtp-sink: a transaction the client abandoned.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("cannot read {}: {e}", path.display()),
            }
        }
        messages
    }

    /// Polls until at least `n` messages have arrived and returns them all (see
    /// [`SmtpSink::messages`]). Panics after `timeout`, listing what did arrive and
    /// smtp-sink's log.
    #[track_caller]
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() >= deadline {
                let got: Vec<String> = messages
                    .iter()
                    .map(|m| format!("  {} to {:?}", m.file_name, m.rcpt_to()))
                    .collect();
                panic!(
                    "smtp-sink on port {} received {} message(s) within {timeout:?}, expected {n}:\n{}\nsmtp-sink log:\n{}",
                    self.port,
                    messages.len(),
                    got.join("\n"),
                    self.log()
                );
            }
            std::thread::sleep(POLL_INTERVAL * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::smtp_sink::test_client::Client;

    #[test]
    fn sink_receives_one_message_per_file() {
        let sink = SmtpSink::start();
        let (mut c, greeting) = Client::connect(&sink);
        assert!(greeting.starts_with("220"), "{greeting}");
        assert!(c.send("EHLO client.example").starts_with("250"));
        for (from, to) in [
            ("a@x.example", "b@y.example"),
            ("c@x.example", "d@y.example"),
        ] {
            assert!(c.send(&format!("MAIL FROM:<{from}>")).starts_with("250"));
            assert!(c.send(&format!("RCPT TO:<{to}>")).starts_with("250"));
            assert!(c.send("DATA").starts_with("354"));
            let reply = c.send(&format!(
                "Subject: to {to}\r\nFrom: {from}\r\n\r\nHello\r\n..starts with a dot\r\n."
            ));
            assert!(reply.starts_with("250"), "{reply}");
        }
        assert!(c.send("QUIT").starts_with("221"));

        // Arrange / Act done: both messages are complete once the 250s came back.
        let messages = sink.messages();
        assert_eq!(messages.len(), 2);
        let first = messages
            .iter()
            .find(|m| m.rcpt_to() == ["b@y.example"])
            .unwrap();
        assert_eq!(first.mail_from().as_deref(), Some("a@x.example"));
        assert_eq!(
            first.message_text(),
            "Subject: to b@y.example\nFrom: a@x.example\n\nHello\n.starts with a dot\n"
        );
        assert_eq!(first.header("subject").as_deref(), Some("to b@y.example"));
        assert_eq!(first.body(), b"Hello\n.starts with a dot\n");
        assert!(first.raw.starts_with(b"X-Client-Addr: 127.0.0.1\n"));
        assert_eq!(sink.wait_for(2, Duration::from_secs(1)).len(), 2);
    }

    #[test]
    fn message_in_transit_is_not_listed_until_complete() {
        let sink = SmtpSink::start();
        let (mut c, _) = Client::connect(&sink);
        c.send("EHLO client.example");
        c.send("MAIL FROM:<a@x.example>");
        c.send("RCPT TO:<b@y.example>");
        assert!(c.send("DATA").starts_with("354"));
        // More than smtp-sink buffers, so part of it is on disk already.
        let line = format!("{}\r\n", "x".repeat(70));
        c.writer
            .write_all(format!("Subject: big\r\n\r\n{}", line.repeat(2000)).as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(std::fs::read_dir(sink.dump_dir()).unwrap().count(), 1);
        assert!(
            sink.messages().is_empty(),
            "half a message is not a message"
        );

        assert!(c.send(".").starts_with("250"));
        let messages = sink.messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].body().len(), 71 * 2000);
    }

    #[test]
    fn wait_for_panics_with_what_arrived() {
        let sink = SmtpSink::start();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sink.wait_for(1, Duration::from_millis(50))
        }));
        let panic = result.unwrap_err();
        let text = panic.downcast_ref::<String>().unwrap();
        assert!(text.contains("received 0 message(s)"), "{text}");
    }
}
