//! `nurture run` over real HTTP (issue 5): a lead posted by a web form gets its first email
//! through a real SMTP server within a second; the links in that email (one-click
//! unsubscribe, tracked click, open pixel) work and cannot be forged; ingest refuses what it
//! must; `/metrics` counts what happened.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nurture_testkit::SmtpSink;

use crate::support::{Daemon, Project};

const CAMPAIGN: &str = r#"name: Welcome
from: "Ana <ana@leadcraft.example>"
trigger: { event: lead.captured }
tracking: { opens: true, clicks: true }
steps:
  - id: welcome
    send: welcome
    subject: "Welcome {{default contact.first_name \"there\"}}"
"#;

const TEMPLATE: &str = r#"<p>Hi {{default contact.first_name "there"}}, here is
<a href="https://leadcraft.example/guide?utm=mail&amp;x=1">the guide</a>.</p>
<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p>"#;

const KEY: &str = "test-api-key-0123456789";

impl Daemon {
    /// GET /healthz until it answers `status` (checking all along that the daemon runs);
    /// panics after `timeout`.
    fn wait_for_health(&mut self, status: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            assert!(self.alive(), "nurture run exited:\n{}", self.log());
            let got = http(self.port, "GET", "/healthz", &[], b"").status;
            if got == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/healthz answered {got}, not {status}, for {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

fn post_json(port: u16, path: &str, key: Option<&str>, json: &str) -> Response {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    http(port, "POST", path, &headers, json.as_bytes())
}

/// The HTML part with quoted-printable undone (soft breaks and `=XX`).
fn html_of(message: &str) -> String {
    let unfolded = message.replace("=\n", "");
    let mut out = String::with_capacity(unfolded.len());
    let bytes = unfolded.as_bytes();
    let mut i = 0;
    let mut decoded = Vec::new();
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&unfolded[i + 1..i + 3], 16)
        {
            decoded.push(b);
            i += 3;
            continue;
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    out.push_str(&String::from_utf8_lossy(&decoded));
    out
}

/// The first `BASE/KIND/TOKEN` link in `text`, as a path.
fn link(text: &str, port: u16, kind: &str) -> String {
    let prefix = format!("http://127.0.0.1:{port}/{kind}/");
    let start = text
        .find(&prefix)
        .unwrap_or_else(|| panic!("no /{kind}/ link in:\n{text}"));
    let token: String = text[start + prefix.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.')
        .collect();
    format!("/{kind}/{token}")
}

fn contact_status(p: &Project, email: &str) -> String {
    let show = p
        .nurture(&["contacts", "show", email, "--json"])
        .output()
        .success();
    let doc: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    doc["status"].as_str().unwrap_or_default().to_string()
}

fn project() -> Project {
    let p = Project::new();
    p.file("campaigns/welcome.yaml", CAMPAIGN)
        .file("templates/welcome.html.hbs", TEMPLATE);
    p
}

#[test]
fn a_posted_lead_gets_its_email_and_its_links_work() {
    let p = project();
    let sink = SmtpSink::start();
    let d = Daemon::start(&p, &sink, Some(KEY));

    let posted = Instant::now();
    let r = post_json(
        d.port,
        "/api/events",
        Some(KEY),
        r#"{"email": "lead@x.example", "name": "lead.captured", "attributes": {"first_name": "Lee"}, "id": "form-1"}"#,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    // How soon is a speed figure, not a test's business: a generous deadline, and the
    // latency printed for whoever reads the log.
    let got = sink.wait_for(1, Duration::from_secs(30));
    eprintln!("posted lead → email in smtp-sink: {:?}", posted.elapsed());
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.rcpt_to(), ["lead@x.example"]);
    assert_eq!(m.header("Subject").as_deref(), Some("Welcome Lee"));
    assert_eq!(
        m.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );

    // The same event id again changes nothing: still one email, one event.
    let again = post_json(
        d.port,
        "/api/events",
        Some(KEY),
        r#"{"email": "lead@x.example", "name": "lead.captured", "id": "form-1"}"#,
    );
    assert_eq!(again.status, 202, "{}", again.body);

    let html = html_of(&m.message_text());
    // Tracking: the guide link is rewritten, the pixel added, the unsubscribe link kept.
    assert!(
        !html.contains("href=\"https://leadcraft.example/guide"),
        "{html}"
    );
    let click = link(&html, d.port, "c");
    let open = link(&html, d.port, "o");
    let unsubscribe = link(
        &m.header("List-Unsubscribe").unwrap_or_default(),
        d.port,
        "u",
    );

    let r = http(d.port, "GET", &click, &[], b"");
    assert!(
        matches!(r.status, 302 | 303 | 307),
        "{} {}",
        r.status,
        r.body
    );
    assert_eq!(
        r.header("Location"),
        Some("https://leadcraft.example/guide?utm=mail&x=1"),
        "exactly the original link"
    );
    let r = http(d.port, "GET", &open, &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("image/gif"));

    // Tampered and truncated tokens: 404, and no redirect anywhere.
    let mut tampered = click.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [tampered.as_str(), &click[..click.len() - 6]] {
        let r = http(d.port, "GET", bad, &[], b"");
        assert_eq!(r.status, 404, "{bad}");
        assert_eq!(r.header("Location"), None, "{bad}");
    }
    let forged = http(
        d.port,
        "POST",
        &format!("{}x", unsubscribe),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"List-Unsubscribe=One-Click",
    );
    assert_eq!(forged.status, 404);
    assert_eq!(contact_status(&p, "lead@x.example"), "subscribed");

    // A mail scanner's GET shows the page and unsubscribes nobody.
    let page = http(d.port, "GET", &unsubscribe, &[], b"");
    assert_eq!(page.status, 200);
    assert!(page.body.to_lowercase().contains("<form"), "{}", page.body);
    assert_eq!(contact_status(&p, "lead@x.example"), "subscribed");
    // Gmail's one-click POST: 200, no redirect, effective at once; repeating is harmless.
    for _ in 0..2 {
        let r = http(
            d.port,
            "POST",
            &unsubscribe,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"List-Unsubscribe=One-Click",
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("Location"), None);
    }
    assert_eq!(contact_status(&p, "lead@x.example"), "unsubscribed");

    // Stats count the open and the click; /metrics the message and the SMTP reply.
    let stats = p.nurture(&["stats", "--json"]).output().success();
    let doc: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    let step = &doc["campaigns"][0]["steps"][0];
    assert_eq!(
        (
            step["sent"].as_u64(),
            step["opened"].as_u64(),
            step["clicked"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{step}"
    );
    let metrics = http(d.port, "GET", "/metrics", &[], b"").body;
    for line in [
        "nurture_messages{state=\"sent\"} 1",
        "nurture_send_latency_seconds_count 1",
        "nurture_smtp_replies_total{class=\"2xx\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}

#[test]
fn ingest_refuses_without_the_key_bad_json_and_oversized_bodies() {
    let p = project();
    let sink = SmtpSink::start();
    let d = Daemon::start(&p, &sink, Some(KEY));
    let event = r#"{"email": "a@x.example", "name": "lead.captured"}"#;
    assert_eq!(post_json(d.port, "/api/events", None, event).status, 401);
    assert_eq!(
        post_json(d.port, "/api/events", Some("wrong-key"), event).status,
        401
    );
    let bad = post_json(
        d.port,
        "/api/events",
        Some(KEY),
        r#"{"email": "not an address", "name": "lead.captured"}"#,
    );
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("email"), "{}", bad.body);
    let broken = post_json(d.port, "/api/events", Some(KEY), r#"{"email": "#);
    assert_eq!(broken.status, 400, "{}", broken.body);
    let huge = format!(
        r#"{{"email": "a@x.example", "name": "lead.captured", "properties": {{"x": "{}"}}}}"#,
        "y".repeat(70 * 1024)
    );
    assert_eq!(
        post_json(d.port, "/api/events", Some(KEY), &huge).status,
        413
    );
    let contact = post_json(
        d.port,
        "/api/contacts",
        Some(KEY),
        r#"{"email": "c@x.example", "attributes": {"company": "Acme"}, "tags": ["vip"]}"#,
    );
    assert!((200..=202).contains(&contact.status), "{}", contact.body);
    drop(d);
    // Nothing refused was stored; the contact was.
    let show = p.nurture(&["contacts", "show", "a@x.example"]).output();
    assert_ne!(show.code, 0, "a refused event stores no contact");
    let show = p
        .nurture(&["contacts", "show", "c@x.example", "--json"])
        .output()
        .success();
    let doc: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(doc["attributes"]["company"], "Acme");
    assert!(sink.messages().is_empty());

    // Without an API key configured, every ingest call is refused.
    let d = Daemon::start(&p, &sink, None);
    let r = post_json(d.port, "/api/events", Some(KEY), event);
    assert!(matches!(r.status, 401 | 403), "{} {}", r.status, r.body);
}

fn lead(i: usize) -> String {
    format!(r#"{{"email": "lead{i}@x.example", "name": "lead.captured", "id": "form-{i}"}}"#)
}

/// The recipients of every message the sink holds, sorted.
fn recipients(sink: &SmtpSink) -> Vec<String> {
    let mut all: Vec<String> = sink
        .messages()
        .iter()
        .flat_map(|m| m.rcpt_to())
        .map(|r| r.to_string())
        .collect();
    all.sort();
    all
}

/// Messages per state in the cluster's database, as `state|count` lines.
fn states(pg: &nurture_testkit::PgCluster) -> String {
    pg.psql("SELECT state, count(*) FROM messages GROUP BY state ORDER BY state")
}

#[test]
fn a_postgres_outage_leaves_the_daemon_running_and_it_resumes_with_nothing_lost_or_doubled() {
    let mut pg = nurture_testkit::PgCluster::start();
    let p = project();
    let sink = SmtpSink::start();
    let url = pg.url();
    let mut d = Daemon::start_with(&p, &sink, Some(KEY), &[("NURTURE_DATABASE_URL", &url)]);
    assert_eq!(
        post_json(d.port, "/api/events", Some(KEY), &lead(0)).status,
        202
    );
    sink.wait_for(1, Duration::from_secs(20));

    pg.stop();
    d.wait_for_health(503, Duration::from_secs(60));
    // Twenty seconds without a database: the daemon stays up and says it is unhealthy; an
    // event posted now is refused (not lost silently), promptly.
    let outage = Instant::now() + Duration::from_secs(20);
    let refused = post_json(d.port, "/api/events", Some(KEY), &lead(1));
    assert!(refused.status >= 500, "{} {}", refused.status, refused.body);
    while Instant::now() < outage {
        assert!(d.alive(), "nurture run exited:\n{}", d.log());
        assert_eq!(http(d.port, "GET", "/healthz", &[], b"").status, 503);
        std::thread::sleep(Duration::from_millis(500));
    }

    pg.start_again();
    d.wait_for_health(200, Duration::from_secs(60));
    for i in 1..=2 {
        let r = post_json(d.port, "/api/events", Some(KEY), &lead(i));
        assert_eq!(r.status, 202, "{}", r.body);
    }
    sink.wait_for(3, Duration::from_secs(30));
    // Exactly once each: once the database says all three were sent, the sink has three.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg
        .psql("SELECT count(*) FROM messages WHERE state = 'sent'")
        .trim()
        != "3"
    {
        assert!(Instant::now() < deadline, "{}", states(&pg));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(states(&pg).trim(), "sent|3");
    assert_eq!(
        recipients(&sink),
        ["lead0@x.example", "lead1@x.example", "lead2@x.example"]
    );
    // The outage was logged once per kind of failure, not once per retry, and the
    // recovery once.
    let log = d.log();
    let failures = log.matches("round failed;").count();
    assert!(
        (1..=3).contains(&failures),
        "{failures} failure lines:\n{log}"
    );
    assert_eq!(log.matches("rounds work again").count(), 1, "{log}");
}

#[test]
fn sigterm_mid_round_stops_at_once_gives_back_what_was_not_sent_and_exits_0() {
    let db = nurture_testkit::Postgres::fresh_database();
    let p = project();
    let sink = SmtpSink::start();
    // The 200 leads are recorded before the daemon starts, so that its first round has them
    // all queued when the stop comes (posted one by one, the first round could start with the
    // first few and send each of them before the stop, leaving nothing to give back).
    let mut csv = String::from("email\n");
    for i in 0..200 {
        csv.push_str(&format!("lead{i}@x.example\n"));
    }
    p.file("leads.csv", &csv);
    p.nurture(&[
        "contacts",
        "import",
        "leads.csv",
        "--event",
        "lead.captured",
    ])
    .env("NURTURE_DATABASE_URL", db.url())
    .output()
    .success();
    // Five a second: the 200 emails would take 40 s.
    let mut d = Daemon::start_with(
        &p,
        &sink,
        Some(KEY),
        &[
            ("NURTURE_DATABASE_URL", db.url()),
            ("NURTURE_RATE_PER_SECOND", "5"),
        ],
    );
    sink.wait_for(5, Duration::from_secs(60));

    d.terminate();
    let code = d.wait_exit(Duration::from_secs(60));

    assert_eq!(code, Some(0), "{}", d.log());
    let sent = sink.messages().len();
    assert!(
        sent < 200,
        "the whole queue went out before the daemon stopped"
    );
    // What was sent is recorded as sent; nothing is left `sending` (or `unknown`), and what
    // was not sent is back in the queue without a lease, for any process to take at once.
    let by_state = db.psql("SELECT state, count(*) FROM messages GROUP BY state ORDER BY state");
    let count = |state: &str| {
        by_state
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{state}|")))
            .map_or(0, |n| n.trim().parse::<usize>().unwrap())
    };
    assert_eq!(count("sent"), sent, "{by_state}");
    assert_eq!(count("sending") + count("unknown"), 0, "{by_state}");
    assert_eq!(
        db.psql("SELECT count(*) FROM messages WHERE state <> 'sent' AND lease_until IS NOT NULL")
            .trim(),
        "0",
        "leases given back"
    );
    assert!(d.log().contains("go back to the queue"), "{}", d.log());

    // A later tick sends the rest (and enrolls any event not processed yet): each lead gets
    // exactly one email.
    p.nurture(&["tick"])
        .env("NURTURE_DATABASE_URL", db.url())
        .env("NURTURE_SMTP_URL", &sink.url())
        .env(
            "NURTURE_SECRET",
            "a-test-signing-secret-that-is-long-enough",
        )
        .output()
        .success();
    let mut expected: Vec<String> = (0..200).map(|i| format!("lead{i}@x.example")).collect();
    expected.sort();
    assert_eq!(recipients(&sink), expected);
    assert_eq!(
        db.psql("SELECT state, count(*) FROM messages GROUP BY state")
            .trim(),
        "sent|200"
    );
    // One attempt each: those marked `sending` and given back did not count one.
    assert_eq!(
        db.psql("SELECT count(*) FROM messages WHERE attempts <> 1")
            .trim(),
        "0"
    );
}

#[test]
fn healthz_answers_while_a_send_round_is_busy() {
    let p = project();
    let sink = SmtpSink::start();
    let d = Daemon::start_with(&p, &sink, Some(KEY), &[("NURTURE_RATE_PER_SECOND", "5")]);
    for i in 0..100 {
        assert_eq!(
            post_json(d.port, "/api/events", Some(KEY), &lead(i)).status,
            202
        );
    }
    sink.wait_for(1, Duration::from_secs(30));
    // While the round sends (20 s at five a second), /healthz answers each time.
    let mut polls = 0;
    while sink.messages().len() < 60 {
        let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let read = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(
            read.is_ok() && text.starts_with("HTTP/1.1 200"),
            "poll {polls}: {read:?} {text}\n{}",
            d.log()
        );
        polls += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(polls > 5, "{polls}");
}

/// Holds the write lock of a SQLite file (a transaction begun and left open, through python's
/// sqlite3 module, as another program would) until dropped. In WAL mode readers go on;
/// every writer waits.
struct SqliteLock {
    child: std::process::Child,
}

impl SqliteLock {
    fn hold(path: &std::path::Path) -> Self {
        use std::io::BufRead;
        let script = "import sqlite3, sys\n\
            c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
            c.execute('BEGIN IMMEDIATE')\n\
            print('locked', flush=True)\n\
            sys.stdin.read()\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        Self { child }
    }
}

impl Drop for SqliteLock {
    fn drop(&mut self) {
        // Closing stdin lets the script end, which releases the lock.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[test]
fn a_locked_sqlite_file_leaves_the_daemon_running_and_it_resumes_when_released() {
    let p = project();
    let sink = SmtpSink::start();
    let mut d = Daemon::start(&p, &sink, Some(KEY));
    assert_eq!(
        post_json(d.port, "/api/events", Some(KEY), &lead(0)).status,
        202
    );
    sink.wait_for(1, Duration::from_secs(20));

    let lock = SqliteLock::hold(&p.path().join("nurture.db"));
    // The database file answers nobody: a round fails (after SQLite's busy timeout), and
    // /healthz says so although the connection itself is fine.
    d.wait_for_health(503, Duration::from_secs(60));
    assert!(d.alive(), "nurture run exited:\n{}", d.log());
    drop(lock);

    d.wait_for_health(200, Duration::from_secs(60));
    for i in 1..=2 {
        let r = post_json(d.port, "/api/events", Some(KEY), &lead(i));
        assert_eq!(r.status, 202, "{}", r.body);
    }
    sink.wait_for(3, Duration::from_secs(30));
    drop(d);
    assert_eq!(
        recipients(&sink),
        ["lead0@x.example", "lead1@x.example", "lead2@x.example"]
    );
}
