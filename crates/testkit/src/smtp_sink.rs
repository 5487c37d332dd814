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

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;

/// How long to wait for a started smtp-sink to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often to look again while waiting for smtp-sink.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How many fresh ports to try when a port picked as free got taken before smtp-sink bound it.
const PORT_ATTEMPTS: usize = 5;

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

    /// What smtp-sink printed (errors, and conversations when started with `-v`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

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

    /// Kills smtp-sink; the port stops accepting connections. Messages received so far stay
    /// readable. Does nothing if it is already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already exited is fine; there is nothing else to do about an error here.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops smtp-sink if it runs and starts it again on the same port with the same
    /// options, keeping the messages received so far: for "server down, then up again"
    /// tests. Panics if the port has been taken meanwhile.
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        // smtp-sink sets SO_REUSEADDR, so connections in TIME_WAIT do not block the port;
        // retry briefly anyway in case the kernel is slow to release it.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!("smtp-sink did not restart on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(POLL_INTERVAL * 10),
            }
        }
    }

    /// Whether the smtp-sink process is running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("smtp-sink.log")
    }

    /// Starts smtp-sink on `self.port` and waits until it accepts connections; on failure
    /// returns why (with its log) and leaves no process behind.
    fn spawn(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open {}: {e}", self.log_path().display()))?;
        let log_len = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log
            .try_clone()
            .map_err(|e| format!("cannot duplicate a file handle: {e}"))?;

        let mut command = Command::new(&self.binary);
        if running_as_root() {
            command.args(["-u", "nobody"]);
        }
        let mut template = self.dump_dir().into_os_string();
        template.push("/%Y%m%d%H%M%S.");
        command
            .args(&self.args)
            .arg("-d")
            .arg(template)
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("256")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;

        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "smtp-sink on port {} exited at start ({status}): {}",
                    self.port,
                    self.log_since(log_len).trim()
                ));
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "smtp-sink did not accept connections on port {} within {START_TIMEOUT:?}: {}",
                    self.port,
                    self.log_since(log_len).trim()
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn log_since(&self, offset: u64) -> String {
        let log = self.log();
        let start = usize::try_from(offset).unwrap_or(0).min(log.len());
        log.get(start..).unwrap_or_default().to_owned()
    }

    /// Files the smtp-sink process holds open right now (Linux `/proc`); empty if it is not
    /// running or `/proc` cannot be read.
    fn open_files(&self) -> Vec<PathBuf> {
        let Some(child) = &self.child else {
            return Vec::new();
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", child.id())) else {
            return Vec::new();
        };
        fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One mail transaction as smtp-sink dumped it.
///
/// What smtp-sink writes into a dump file (checked against Postfix 3.7, see `man smtp-sink`):
///
/// ```text
/// X-Client-Addr: 127.0.0.1
/// X-Client-Proto: ESMTP
/// X-Helo-Args: client.example
/// X-Mail-Args: <from@example.com> BODY=8BITMIME
/// X-Rcpt-Args: <to@example.com>
/// Received: from client.example ([127.0.0.1])
/// <TAB>by smtp-sink (smtp-sink) with ESMTP id 058ea95e;
/// <TAB>Sun, 22 Nov 2026 11:44:07 +0000 (UTC)
/// Subject: hi
/// From: from@example.com
///
/// body
/// <empty line>
/// ```
///
/// - the envelope comes first, written by smtp-sink: `X-Helo-Args` only if the client sent
///   EHLO/HELO, `X-Mail-Args` exactly once, one `X-Rcpt-Args` per RCPT in order,
///   then a three-line `Received:` header whose last two lines start with a tab;
/// - then the message as the client sent it, after dot-unstuffing and with CRLF turned into
///   LF (a lone CR is dropped);
/// - then one empty line that smtp-sink appends.
///
/// [`ReceivedMessage::raw`] is that whole file; [`ReceivedMessage::message`] is the message
/// part alone (from its first header to the end of its body, without the appended empty
/// line), and the envelope is parsed by [`ReceivedMessage::mail_from`] and
/// [`ReceivedMessage::rcpt_to`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The dump file's name, e.g. `20261122114407.058ea95e`.
    pub file_name: String,
    /// The whole dump file: smtp-sink's envelope lines, the message, one empty line.
    pub raw: Vec<u8>,
}

impl ReceivedMessage {
    /// The message as the client sent it, headers first, without smtp-sink's envelope lines
    /// and the empty line it appends. Lines end in LF (smtp-sink turns CRLF into LF).
    pub fn message(&self) -> &[u8] {
        let (_, message) = split_envelope(&self.raw);
        message.strip_suffix(b"\n").unwrap_or(message)
    }

    /// [`ReceivedMessage::message`] as text (invalid UTF-8 replaced).
    pub fn message_text(&self) -> String {
        String::from_utf8_lossy(self.message()).into_owned()
    }

    /// The message's body: what follows the first empty line of [`ReceivedMessage::message`]
    /// (still transfer-encoded, e.g. quoted-printable or base64, if the client encoded it).
    pub fn body(&self) -> &[u8] {
        let message = self.message();
        match find(message, b"\n\n") {
            Some(i) => &message[i + 2..],
            None => &[],
        }
    }

    /// The value of the message's first header called `name` (case-insensitive), unfolded,
    /// undecoded (an encoded word like `=?utf-8?b?…?=` stays as it is).
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.message_text();
        let head = text.split("\n\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.lines() {
            if let Some(found) = &mut value {
                if line.starts_with([' ', '\t']) {
                    found.push(' ');
                    found.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((key, rest)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                value = Some(rest.trim().to_owned());
            }
        }
        value
    }

    /// The envelope sender from `MAIL FROM:<…>` (without the angle brackets; empty for the
    /// null sender `<>`). `None` only if the file has no `X-Mail-Args` line.
    pub fn mail_from(&self) -> Option<String> {
        self.envelope_values("X-Mail-Args:")
            .first()
            .map(|args| address(args))
    }

    /// The envelope recipients from each accepted `RCPT TO:<…>`, in order, without the
    /// angle brackets.
    pub fn rcpt_to(&self) -> Vec<String> {
        self.envelope_values("X-Rcpt-Args:")
            .iter()
            .map(|args| address(args))
            .collect()
    }

    /// Values of the envelope lines starting with `prefix`.
    fn envelope_values(&self, prefix: &str) -> Vec<String> {
        let (envelope, _) = split_envelope(&self.raw);
        String::from_utf8_lossy(envelope)
            .lines()
            .filter_map(|line| line.strip_prefix(prefix))
            .map(|value| value.trim().to_owned())
            .collect()
    }
}

/// Splits a dump file into smtp-sink's envelope (the `X-Client-Addr` … `X-Rcpt-Args` lines
/// and its three-line `Received:` header) and the rest (the message plus the appended empty
/// line). A file that does not start like an smtp-sink dump is returned whole as the rest.
pub fn split_envelope(raw: &[u8]) -> (&[u8], &[u8]) {
    const ENVELOPE_LINES: [&[u8]; 5] = [
        b"X-Client-Addr:",
        b"X-Client-Proto:",
        b"X-Helo-Args:",
        b"X-Mail-Args:",
        b"X-Rcpt-Args:",
    ];
    /// The line starting at `pos` (with its newline) and where the next one starts.
    fn line(raw: &[u8], pos: usize) -> (usize, &[u8]) {
        let end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        (end, &raw[pos..end])
    }
    let mut pos = 0;
    loop {
        let (next, text) = line(raw, pos);
        if ENVELOPE_LINES.iter().any(|prefix| text.starts_with(prefix)) {
            pos = next;
            continue;
        }
        if pos == 0 || !text.starts_with(b"Received: ") {
            return (&[], raw);
        }
        pos = next;
        break;
    }
    // The Received header smtp-sink writes has exactly two continuation lines.
    for _ in 0..2 {
        let (next, text) = line(raw, pos);
        if !text.starts_with(b"\t") {
            break;
        }
        pos = next;
    }
    raw.split_at(pos)
}

/// The address inside `<…>` at the start of MAIL/RCPT arguments (`<a@b> BODY=8BITMIME`).
fn address(args: &str) -> String {
    let args = args.trim();
    match args.strip_prefix('<').and_then(|rest| rest.split_once('>')) {
        Some((address, _)) => address.to_owned(),
        None => args
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The smtp-sink program: on `PATH`, or in `/usr/sbin` (not on a normal user's PATH).
#[track_caller]
fn find_smtp_sink() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("smtp-sink"))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| {
            panic!(
                "smtp-sink was not found on PATH or in /usr/sbin: install Debian's postfix package \
                 (sudo DEBIAN_FRONTEND=noninteractive apt-get install postfix); \
                 the SMTP tests need a real server and do not skip"
            )
        })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether this process runs as root (effective uid 0), from `/proc/self/status`, falling
/// back to `$USER`.
pub(crate) fn running_as_root() -> bool {
    let mut status = String::new();
    let read = File::open("/proc/self/status").and_then(|mut f| f.read_to_string(&mut status));
    if read.is_ok() {
        // "Uid:\treal\teffective\tsaved\tfs"
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            return line.split_whitespace().nth(2) == Some("0");
        }
    }
    std::env::var("USER").is_ok_and(|user| user == "root")
}

#[track_caller]
fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};

    use super::*;

    /// A hand-driven SMTP client: enough protocol to prove what the sink does.
    struct Client {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    }

    impl Client {
        fn connect(sink: &SmtpSink) -> (Self, String) {
            let stream = TcpStream::connect(("127.0.0.1", sink.port())).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut client = Client {
                reader: BufReader::new(stream.try_clone().unwrap()),
                writer: stream,
            };
            let greeting = client.reply();
            (client, greeting)
        }

        /// Reads one (possibly multi-line) reply; empty if the server hung up.
        fn reply(&mut self) -> String {
            let mut reply = String::new();
            loop {
                let mut line = String::new();
                if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return reply;
                }
                reply.push_str(&line);
                if line.as_bytes().get(3) != Some(&b'-') {
                    return reply;
                }
            }
        }

        fn send(&mut self, line: &str) -> String {
            self.writer.write_all(line.as_bytes()).unwrap();
            self.writer.write_all(b"\r\n").unwrap();
            self.reply()
        }
    }

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
    fn stopped_sink_refuses_connections_and_restart_keeps_messages() {
        let mut sink = SmtpSink::start();
        let port = sink.port();
        let (mut c, _) = Client::connect(&sink);
        c.send("HELO client.example");
        c.send("MAIL FROM:<>");
        c.send("RCPT TO:<b@y.example>");
        c.send("DATA");
        assert!(c.send("Subject: before\r\n\r\nx\r\n.").starts_with("250"));
        drop(c);

        sink.stop();
        assert!(!sink.is_running());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        assert_eq!(sink.messages().len(), 1, "messages survive a stop");

        sink.restart();
        assert_eq!(sink.port(), port);
        assert_eq!(sink.url(), format!("smtp://127.0.0.1:{port}"));
        let (_c, greeting) = Client::connect(&sink);
        assert!(greeting.starts_with("220"));
        let messages = sink.messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].mail_from().as_deref(), Some(""));
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

    #[test]
    fn split_envelope_handles_files_without_envelope() {
        let raw = b"Subject: x\n\nbody\n\n";
        assert_eq!(split_envelope(raw), (&b""[..], &raw[..]));
        let message = ReceivedMessage {
            file_name: "f".into(),
            raw: raw.to_vec(),
        };
        assert_eq!(message.message(), b"Subject: x\n\nbody\n");
        assert!(message.rcpt_to().is_empty());
    }

    #[test]
    fn header_unfolds_continuation_lines() {
        let message = ReceivedMessage {
            file_name: "f".into(),
            raw: b"Subject: a\n very long\n\tsubject\nTo: b\n\nSubject: not a header\n\n".to_vec(),
        };
        assert_eq!(
            message.header("SUBJECT").as_deref(),
            Some("a very long subject")
        );
        assert_eq!(message.header("to").as_deref(), Some("b"));
        assert_eq!(message.header("cc"), None);
    }
}
