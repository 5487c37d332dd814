//! A real SMTP server with TLS and AUTH for tests, and the certificate authority it needs.
//!
//! smtp-sink speaks no TLS, so TLS tests run `scripts/tls_smtp.py`: Python's `aiosmtpd`
//! (installed by `scripts/install-test-deps`) with a certificate from a [`TestCa`] made in the
//! test by the `openssl` command. Nothing about it is trusted anywhere else: a client sees an
//! unknown issuer unless it is told about [`TestCa::ca_file`].
//!
//! The server listens on a port the kernel picks (it writes it to a file once it accepts
//! connections, so there is no race for a free port) and writes each accepted message to a
//! file of its own, with the envelope, the user that authenticated and the TLS version:
//! [`TlsReceived`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long to wait for the server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often to look again while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// The script, found through this crate's source folder.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tls_smtp.py");

/// A certificate authority made for one test, and a server certificate it signed for
/// `localhost` and `127.0.0.1` (ECDSA P-256, valid for two days from now).
#[derive(Debug)]
pub struct TestCa {
    dir: TempDir,
}

/// Runs `openssl` with `args` in `dir`; panics with its output if it fails.
#[track_caller]
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run openssl ({e}): install Debian's openssl package (scripts/install-test-deps does)"
            )
        });
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// Makes the CA (`ca.pem`) and the server's certificate and key (`server.pem`,
    /// `server.key`) in a temp folder of their own.
    #[track_caller]
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nurture-test-ca.")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp folder for a test CA: {e}"));
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509", "-new"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=nurture test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir.path(), &ca);
        let mut csr = vec!["req", "-new"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(dir.path(), &csr);
        let ext = dir.path().join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", ext.display()));
        openssl(
            dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                "2",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        Self { dir }
    }

    /// The CA's certificate (PEM): what `smtp_ca_file` names to trust the server.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server's certificate (PEM), signed by the CA.
    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key (PEM).
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// How the server speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text until STARTTLS; MAIL and AUTH are refused before it (port 587 style).
    StartTls,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

/// One message the [`TlsSmtpServer`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsReceived {
    /// MAIL FROM.
    pub mail_from: String,
    /// RCPT TO, in order.
    pub rcpt_to: Vec<String>,
    /// The user name that authenticated (empty if none did; the server requires AUTH).
    pub auth_user: String,
    /// The TLS protocol of the connection (`TLSv1.3`), `none` without TLS.
    pub tls: String,
    /// The content as received (dots unstuffed).
    pub data: Vec<u8>,
}

impl TlsReceived {
    /// The content as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    #[track_caller]
    fn parse(path: &Path) -> Self {
        let bytes =
            std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let split = bytes
            .windows(2)
            .position(|w| w == b"\n\n")
            .unwrap_or_else(|| panic!("{} has no blank line after its head", path.display()));
        let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
        let mut m = Self {
            mail_from: String::new(),
            rcpt_to: Vec::new(),
            auth_user: String::new(),
            tls: String::new(),
            data: bytes[split + 2..].to_vec(),
        };
        for line in head.lines() {
            let (key, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match key {
                "mail_from" => m.mail_from = value.to_string(),
                "rcpt_to" => m.rcpt_to.push(value.to_string()),
                "auth" => m.auth_user = value.to_string(),
                "tls" => m.tls = value.to_string(),
                _ => panic!("{}: unexpected head line {line:?}", path.display()),
            }
        }
        m
    }
}

/// A running `aiosmtpd` on `127.0.0.1` with TLS ([`TlsMode`]) and required AUTH (user
/// [`TlsSmtpServer::USER`], password [`TlsSmtpServer::PASSWORD`]), using a [`TestCa`]'s server
/// certificate. Killed and its folder removed on drop.
///
/// ```no_run
/// use std::time::Duration;
/// use nurture_testkit::{TestCa, TlsMode, TlsSmtpServer};
///
/// let ca = TestCa::new();
/// let server = TlsSmtpServer::start(TlsMode::StartTls, &ca);
/// // ... send through server.url() (`smtp://…?tls=required`) trusting ca.ca_file() ...
/// let got = server.wait_for(1, Duration::from_secs(10));
/// assert_eq!(got[0].auth_user, TlsSmtpServer::USER);
/// ```
#[derive(Debug)]
pub struct TlsSmtpServer {
    dir: TempDir,
    port: u16,
    mode: TlsMode,
    child: Child,
}

impl TlsSmtpServer {
    /// The user name the server accepts.
    pub const USER: &'static str = "mailer";
    /// The password the server accepts.
    pub const PASSWORD: &'static str = "s3cret";

    /// Starts the server and waits until it accepts connections. Panics, naming
    /// `scripts/install-test-deps`, if python3 or aiosmtpd is missing.
    #[track_caller]
    pub fn start(mode: TlsMode, ca: &TestCa) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nurture-tls-smtp.")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp folder for the TLS SMTP server: {e}"));
        let log = std::fs::File::create(dir.path().join("server.log"))
            .unwrap_or_else(|e| panic!("cannot create the server's log: {e}"));
        let log2 = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot share the server's log: {e}"));
        let child = Command::new("python3")
            .arg(SCRIPT)
            .arg("--mode")
            .arg(match mode {
                TlsMode::StartTls => "starttls",
                TlsMode::Implicit => "implicit",
            })
            .arg("--cert")
            .arg(ca.cert_file())
            .arg("--key")
            .arg(ca.key_file())
            .args(["--user", Self::USER, "--password", Self::PASSWORD, "--dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run python3 ({e}): run scripts/install-test-deps (scripts/test does)"
                )
            });
        let mut server = Self {
            dir,
            port: 0,
            mode,
            child,
        };
        let port_file = server.dir.path().join("port");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Ok(port) = text.trim().parse()
            {
                server.port = port;
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "the TLS SMTP server ({SCRIPT}) exited ({status}) before listening: {}",
                    server.log().trim()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the TLS SMTP server did not listen within {START_TIMEOUT:?}: {}",
                server.log()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The port it listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `smtp_url` with the right credentials: `smtp://mailer:s3cret@127.0.0.1:PORT?tls=required`
    /// for STARTTLS, `smtps://mailer:s3cret@127.0.0.1:PORT` for implicit TLS.
    pub fn url(&self) -> String {
        let (user, pass, port) = (Self::USER, Self::PASSWORD, self.port);
        match self.mode {
            TlsMode::StartTls => format!("smtp://{user}:{pass}@127.0.0.1:{port}?tls=required"),
            TlsMode::Implicit => format!("smtps://{user}:{pass}@127.0.0.1:{port}"),
        }
    }

    /// What the server printed (Python's errors, aiosmtpd's warnings).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Every message accepted so far, in order of arrival.
    #[track_caller]
    pub fn messages(&self) -> Vec<TlsReceived> {
        let folder = self.dir.path().join("messages");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&folder)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "msg"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.iter().map(|p| TlsReceived::parse(p)).collect()
    }

    /// Waits until at least `n` messages arrived; panics after `timeout` with the log.
    #[track_caller]
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<TlsReceived> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} messages, got {} within {timeout:?}; server log: {}",
                got.len(),
                self.log()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for TlsSmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;

    #[test]
    fn the_starttls_server_refuses_mail_before_starttls() {
        let ca = TestCa::new();
        let server = TlsSmtpServer::start(TlsMode::StartTls, &ca);
        let stream = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("220"), "{line}");
        let mut w = stream;
        w.write_all(b"EHLO test\r\n").unwrap();
        let mut ehlo = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            ehlo.push_str(&line);
            if line.starts_with("250 ") || line.is_empty() {
                break;
            }
        }
        assert!(ehlo.contains("STARTTLS"), "{ehlo}");
        assert!(!ehlo.contains("AUTH"), "AUTH offered before TLS: {ehlo}");
        w.write_all(b"MAIL FROM:<a@x.example>\r\n").unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("530"), "{line}");
        assert!(server.messages().is_empty());
    }
}
