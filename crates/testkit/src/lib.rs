//! Test support shared by the crates' integration tests: a real Postfix `smtp-sink` per test,
//! on its own port, dumping each received message into its own folder.
//!
//! Tests fail (they do not skip) when `smtp-sink` is missing: install Debian's `postfix`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn smtp_sink_binary() -> PathBuf {
    for candidate in ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "smtp-sink not found: install Debian's postfix package (DEBIAN_FRONTEND=noninteractive apt-get install postfix)"
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A running `smtp-sink`; killed when dropped.
pub struct SmtpSink {
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
}

impl SmtpSink {
    /// Starts a sink that accepts everything.
    pub fn start() -> Self {
        Self::with_args(&[])
    }

    /// Starts a sink with extra smtp-sink options, e.g. `["-r", "rcpt"]` (4xx to every RCPT),
    /// `["-f", "rcpt"]` (5xx), `["-q", "data"]` (hang up at DATA).
    pub fn with_args(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = Self {
            port: free_port(),
            dir,
            args: args.iter().map(ToString::to_string).collect(),
            child: None,
        };
        sink.spawn();
        sink
    }

    fn spawn(&mut self) {
        let dump = self.dir.path().join("msg");
        std::fs::create_dir_all(&dump).unwrap();
        let mut cmd = Command::new(smtp_sink_binary());
        if is_root() {
            // smtp-sink refuses to run as root; nobody must be able to write the dumps.
            Command::new("chmod")
                .arg("0777")
                .arg(&dump)
                .status()
                .unwrap();
            cmd.args(["-u", "nobody"]);
        }
        cmd.arg("-d").arg(dump.join("%Y%m%d%H%M%S."));
        cmd.args(&self.args);
        cmd.arg(format!("127.0.0.1:{}", self.port)).arg("256");
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("cannot start smtp-sink"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "smtp-sink did not start listening on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:PORT?tls=none`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    /// Stops the sink (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Every received message (the RFC 5322 part of each dump file), in arrival order.
    pub fn messages(&self) -> Vec<String> {
        let dump = self.dir.path().join("msg");
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&dump)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| {
                        (
                            e.metadata()
                                .and_then(|m| m.modified())
                                .unwrap_or(std::time::UNIX_EPOCH),
                            e.path(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| std::fs::read(p).ok())
            .map(|bytes| message_part(&String::from_utf8_lossy(&bytes)))
            .collect()
    }

    /// Waits until at least `n` messages arrived (or `timeout` passes) and returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// smtp-sink's dump starts with the envelope (`X-Client-Addr:`, `X-Mail-From:`,
/// `X-Rcpt-Args:` … lines) and a `Received:` header of its own; the message proper starts
/// after that header. Line ends are LF in the dump.
fn message_part(dump: &str) -> String {
    let Some(at) = dump
        .find("\nReceived: ")
        .map(|i| i + 1)
        .or_else(|| dump.starts_with("Received: ").then_some(0))
    else {
        return dump.to_string();
    };
    let mut rest = &dump[at..];
    // Skip the Received line and its folded continuation lines.
    loop {
        match rest.find('\n') {
            Some(nl) => {
                rest = &rest[nl + 1..];
                if !(rest.starts_with('\t') || rest.starts_with(' ')) {
                    break;
                }
            }
            None => return String::new(),
        }
    }
    rest.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    fn talk(port: u16, lines: &[&str]) -> Vec<String> {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let mut replies = Vec::new();
        let read = |r: &mut BufReader<TcpStream>| loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return l;
            }
        };
        replies.push(read(&mut r));
        for l in lines {
            w.write_all(format!("{l}\r\n").as_bytes()).unwrap();
            if !l.starts_with("Subject") && !l.is_empty() && *l != "body" {
                replies.push(read(&mut r));
            }
        }
        replies
    }

    #[test]
    fn sink_receives_a_message_into_its_folder() {
        let sink = SmtpSink::start();
        let r = talk(
            sink.port(),
            &[
                "EHLO t",
                "MAIL FROM:<a@x.example>",
                "RCPT TO:<b@x.example>",
                "DATA",
                "Subject: hi",
                "",
                "body",
                ".",
                "QUIT",
            ],
        );
        assert!(r[3].starts_with("250"), "{r:?}");
        let m = sink.wait_for(1, Duration::from_secs(5));
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with("Subject: hi"), "{:?}", m[0]);
    }

    #[test]
    fn sink_refuses_recipients_with_5xx_when_asked() {
        let sink = SmtpSink::with_args(&["-f", "rcpt"]);
        let r = talk(
            sink.port(),
            &[
                "EHLO t",
                "MAIL FROM:<a@x.example>",
                "RCPT TO:<b@x.example>",
                "QUIT",
            ],
        );
        assert!(r[3].starts_with('5'), "{r:?}");
    }
}
