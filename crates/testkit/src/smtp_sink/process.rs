//! The smtp-sink process: finding the program, spawning it with the dump folder and waiting
//! until it accepts connections, stopping and restarting it on the same port, and what it
//! printed. Everything that depends on Postfix being installed or on running as root is here.

use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::SmtpSink;

/// How long to wait for a started smtp-sink to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often to look again while waiting for smtp-sink.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How many fresh ports to try when a port picked as free got taken before smtp-sink bound it.
pub(super) const PORT_ATTEMPTS: usize = 5;

impl SmtpSink {
    /// What smtp-sink printed (errors, and conversations when started with `-v`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
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
    pub(super) fn spawn(&mut self) -> Result<(), String> {
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
    pub(super) fn open_files(&self) -> Vec<PathBuf> {
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

/// The smtp-sink program: on `PATH`, or in `/usr/sbin` (not on a normal user's PATH).
#[track_caller]
pub(super) fn find_smtp_sink() -> PathBuf {
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
pub(super) fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp_sink::test_client::Client;

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
}
