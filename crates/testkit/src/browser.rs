//! A real headless Chromium for tests of web pages (forms, the dashboard).
//!
//! [`Browser::launch`] starts Debian's `chromium` through Playwright's Python package
//! (`scripts/browser.py`, which speaks the DevTools protocol) and gives the test one page to
//! drive: go to a URL, fill fields, click, read text, take screenshots. Each call blocks until
//! the browser has done it (a click that submits a form waits for the next page), so tests
//! never sleep. A failed step panics with what the browser said.
//!
//! Screenshots go to [`artifacts_dir`] (`target/test-artifacts/`, or `NURTURE_TEST_ARTIFACTS`),
//! where a developer or CI can look at them after the run.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/browser.py");

/// How to start the browser.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// Whether pages may run JavaScript (default: yes).
    pub javascript: bool,
    /// The IANA time zone the browser reports to pages (default `UTC`).
    pub timezone: String,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        Self {
            javascript: true,
            timezone: "UTC".into(),
        }
    }
}

/// One headless Chromium with one page; closed when dropped.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Browser {
    /// Starts Chromium with JavaScript on. Panics, naming `scripts/install-test-deps`, when
    /// chromium or Playwright is missing.
    #[track_caller]
    pub fn launch() -> Self {
        Self::launch_with(BrowserOptions::default())
    }

    /// Starts Chromium with `options`.
    #[track_caller]
    pub fn launch_with(options: BrowserOptions) -> Self {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!(
                    "chromium is not installed: run scripts/install-test-deps (scripts/test does)"
                )
            });
        let mut cmd = Command::new("python3");
        cmd.arg(SCRIPT)
            .args(["--chromium", chromium, "--timezone", &options.timezone]);
        if !options.javascript {
            cmd.arg("--no-javascript");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run python3 ({e}): run scripts/install-test-deps (scripts/test does)"
                )
            });
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut browser = Self {
            child,
            stdin,
            stdout,
        };
        match browser.read_reply() {
            Ok(_) => browser,
            Err(e) => panic!(
                "headless chromium did not start ({e}); is Playwright installed? run scripts/install-test-deps"
            ),
        }
    }

    fn read_reply(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => return Err("the browser script exited".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("cannot read from the browser script: {e}")),
        }
        let reply: Value = serde_json::from_str(&line)
            .map_err(|e| format!("the browser script printed {line:?}: {e}"))?;
        if reply["ok"] == Value::Bool(true) {
            Ok(reply["value"].clone())
        } else {
            Err(reply["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string())
        }
    }

    /// Sends one command and returns its value; panics with the browser's error.
    #[track_caller]
    fn call(&mut self, cmd: Value) -> Value {
        let line = format!("{cmd}\n");
        if let Err(e) = self
            .stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
        {
            panic!("cannot talk to the browser: {e}");
        }
        match self.read_reply() {
            Ok(v) => v,
            Err(e) => panic!("browser command {cmd} failed: {e}"),
        }
    }

    /// Opens `url` and returns the HTTP status of the page.
    #[track_caller]
    pub fn goto(&mut self, url: &str) -> u16 {
        let v = self.call(json!({"cmd": "goto", "url": url}));
        v.as_u64().map_or(0, |s| s as u16)
    }

    /// Types `value` into the field that `selector` finds (a CSS selector).
    #[track_caller]
    pub fn fill(&mut self, selector: &str, value: &str) {
        self.call(json!({"cmd": "fill", "selector": selector, "value": value}));
    }

    /// Ticks the checkbox that `selector` finds.
    #[track_caller]
    pub fn check(&mut self, selector: &str) {
        self.call(json!({"cmd": "check", "selector": selector}));
    }

    /// Clicks what `selector` finds and waits for the page it leads to; returns that page's
    /// HTTP status (`None` when no document was loaded, e.g. a script handled the click).
    #[track_caller]
    pub fn click(&mut self, selector: &str) -> Option<u16> {
        let v = self.call(json!({"cmd": "click", "selector": selector, "navigates": true}));
        v.as_u64().map(|s| s as u16)
    }

    /// Clicks what `selector` finds without waiting for a new page (a script handles it).
    #[track_caller]
    pub fn click_in_place(&mut self, selector: &str) {
        self.call(json!({"cmd": "click", "selector": selector, "navigates": false}));
    }

    /// The visible text of the first element `selector` finds.
    #[track_caller]
    pub fn text(&mut self, selector: &str) -> String {
        let v = self.call(json!({"cmd": "text", "selector": selector}));
        v.as_str().unwrap_or_default().to_string()
    }

    /// How many elements `selector` finds.
    #[track_caller]
    pub fn count(&mut self, selector: &str) -> usize {
        let v = self.call(json!({"cmd": "count", "selector": selector}));
        v.as_u64().unwrap_or(0) as usize
    }

    /// The attribute `name` of the first element `selector` finds.
    #[track_caller]
    pub fn attribute(&mut self, selector: &str, name: &str) -> Option<String> {
        let v = self.call(json!({"cmd": "attribute", "selector": selector, "name": name}));
        v.as_str().map(str::to_string)
    }

    /// The page's HTML as the browser sees it now.
    #[track_caller]
    pub fn content(&mut self) -> String {
        let v = self.call(json!({"cmd": "content"}));
        v.as_str().unwrap_or_default().to_string()
    }

    /// The page's URL.
    #[track_caller]
    pub fn url(&mut self) -> String {
        let v = self.call(json!({"cmd": "url"}));
        v.as_str().unwrap_or_default().to_string()
    }

    /// The page's `<title>`.
    #[track_caller]
    pub fn title(&mut self) -> String {
        let v = self.call(json!({"cmd": "title"}));
        v.as_str().unwrap_or_default().to_string()
    }

    /// Runs a JavaScript expression (or function source) in the page and returns its value.
    #[track_caller]
    pub fn evaluate(&mut self, script: &str) -> Value {
        self.call(json!({"cmd": "evaluate", "script": script}))
    }

    /// Waits until `selector` finds a visible element.
    #[track_caller]
    pub fn wait_for(&mut self, selector: &str) {
        self.call(json!({"cmd": "wait_for", "selector": selector}));
    }

    /// Saves a full-page screenshot as `NAME.png` in [`artifacts_dir`] and returns its path.
    #[track_caller]
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        let dir = artifacts_dir();
        let path = dir.join(format!("{name}.png"));
        self.call(json!({"cmd": "screenshot", "path": path.to_string_lossy()}));
        path
    }

    /// The cookies the browser holds (Playwright's objects: name, value, httpOnly, sameSite, ...).
    #[track_caller]
    pub fn cookies(&mut self) -> Vec<Value> {
        match self.call(json!({"cmd": "cookies"})) {
            Value::Array(v) => v,
            _ => Vec::new(),
        }
    }

    /// Forgets every cookie.
    #[track_caller]
    pub fn clear_cookies(&mut self) {
        self.call(json!({"cmd": "clear_cookies"}));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The folder where tests leave files for people to look at (screenshots): the variable
/// `NURTURE_TEST_ARTIFACTS`, or `target/test-artifacts` in the workspace. Created if missing.
#[track_caller]
pub fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("NURTURE_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/test-artifacts"
            ))
        });
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_url(html: &str) -> String {
        let mut s = String::from("data:text/html,");
        for b in html.bytes() {
            if b.is_ascii_alphanumeric() {
                s.push(b as char);
            } else {
                s.push_str(&format!("%{b:02X}"));
            }
        }
        s
    }

    #[test]
    fn fills_and_reads_a_page() {
        let mut b = Browser::launch();
        b.goto(&data_url(
            "<title>T</title><input id=a><p id=p>hello</p><script>document.getElementById('p').textContent='scripted'</script>",
        ));
        b.fill("#a", "typed");
        assert_eq!(
            b.evaluate("document.getElementById('a').value"),
            json!("typed")
        );
        assert_eq!(b.text("#p"), "scripted");
        assert_eq!(b.title(), "T");
        assert_eq!(b.count("input"), 1);
    }

    #[test]
    fn javascript_can_be_off() {
        let mut b = Browser::launch_with(BrowserOptions {
            javascript: false,
            ..BrowserOptions::default()
        });
        b.goto(&data_url(
            "<p id=p>plain</p><script>document.getElementById('p').textContent='scripted'</script>",
        ));
        assert_eq!(b.text("#p"), "plain");
    }
}
