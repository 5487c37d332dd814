//! A temp project folder and a way to run the binary in it with a clean environment.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A folder with `campaigns/` and `templates/`, like a user's checkout
/// ([`nurture_testkit::TempProject`]), and the binary run in it.
pub struct Project {
    dir: nurture_testkit::TempProject,
}

impl Project {
    pub fn new() -> Self {
        Self {
            dir: nurture_testkit::TempProject::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating folders).
    pub fn file(&self, rel: &str, contents: &str) -> &Self {
        self.dir.file(rel, contents);
        self
    }

    /// Copies the repository's example campaigns and templates in.
    pub fn with_examples(&self) -> &Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        copy_dir(&root.join("campaigns"), &self.path().join("campaigns"));
        copy_dir(&root.join("templates"), &self.path().join("templates"));
        self
    }

    /// The binary, run in this folder, with every `NURTURE_*` variable removed.
    pub fn nurture(&self, args: &[&str]) -> Run {
        let mut cmd = self.dir.command(Path::new(env!("CARGO_BIN_EXE_nurture")));
        cmd.args(args).env("NO_COLOR", "1");
        Run { cmd }
    }
}

/// A command about to run.
pub struct Run {
    cmd: Command,
}

impl Run {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.cmd.env(k, v);
        self
    }

    /// Starts it in the background.
    pub fn spawn(mut self) -> std::process::Child {
        self.cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        self.cmd.spawn().unwrap()
    }

    /// Runs it with `input` on standard input.
    pub fn input(mut self, input: &[u8]) -> Done {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        Done {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn output(mut self) -> Done {
        let out: Output = self.cmd.output().unwrap();
        Done {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// What a run printed and returned.
#[derive(Debug)]
pub struct Done {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Done {
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let mut stack: Vec<PathBuf> = vec![from.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(from).unwrap();
            if p.is_dir() {
                std::fs::create_dir_all(to.join(rel)).unwrap();
                stack.push(p);
            } else {
                std::fs::create_dir_all(to.join(rel).parent().unwrap()).unwrap();
                std::fs::copy(&p, to.join(rel)).unwrap();
            }
        }
    }
}

/// Whether `nurture run` on `port` answers `GET /healthz` with 200.
pub fn healthy(port: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(format!("127.0.0.1:{port}")) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200")
}

/// Polls `done` every 50 ms until it holds, failing the test with `what` after `secs`
/// seconds (a generous deadline: the wait ends as soon as the state is reached).
pub fn wait_until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {secs} s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The daemon; killed when dropped, so a failed assertion never leaves it running.
pub struct Daemon {
    pub child: std::process::Child,
    /// The port it listens on.
    pub port: u16,
    /// Where its stderr goes (`-v`: info and up), for failure messages.
    pub log: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// `nurture -v run` in `p`, delivering into `sink`, with this API key (or none); returns
    /// once `/healthz` answers 200.
    pub fn start(p: &Project, sink: &nurture_testkit::SmtpSink, api_key: Option<&str>) -> Self {
        Self::start_with(p, sink, api_key, &[])
    }

    /// [`Daemon::start`] with more environment variables.
    pub fn start_with(
        p: &Project,
        sink: &nurture_testkit::SmtpSink,
        api_key: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        // The key first, so that `env` may still override it, as before.
        let mut all: Vec<(&str, &str)> = api_key
            .map(|k| ("NURTURE_API_KEY", k))
            .into_iter()
            .collect();
        all.extend_from_slice(env);
        let url = sink.url();
        Self::spawn(p, nurture_testkit::free_port(), Some(&url), &all)
    }

    /// `nurture -v run` in `p` on `port` with these environment variables and no SMTP URL
    /// (mail goes to the project's outbox), for tests whose CLI runs must make links to the
    /// same port; returns once `/healthz` answers 200.
    pub fn start_on(p: &Project, port: u16, env: &[(&str, &str)]) -> Self {
        Self::spawn(p, port, None, env)
    }

    fn spawn(p: &Project, port: u16, smtp_url: Option<&str>, env: &[(&str, &str)]) -> Self {
        let log = p.path().join(format!("daemon-{port}.log"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nurture"));
        cmd.current_dir(p.path()).args(["-v", "run"]);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("NURTURE_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("NO_COLOR", "1")
            .env("NURTURE_LISTEN", format!("127.0.0.1:{port}"))
            .env("NURTURE_BASE_URL", format!("http://127.0.0.1:{port}"))
            .env(
                "NURTURE_SECRET",
                "a-test-signing-secret-that-is-long-enough",
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(url) = smtp_url {
            cmd.env("NURTURE_SMTP_URL", url);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut daemon = Self {
            child: cmd.spawn().unwrap(),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if healthy(&port.to_string()) {
                return daemon;
            }
            assert!(daemon.alive(), "nurture run exited:\n{}", daemon.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nurture run did not answer /healthz within 20 s:\n{}",
            daemon.log()
        );
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for the process to exit (panics after `timeout`) and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "nurture run still runs {timeout:?} after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}
