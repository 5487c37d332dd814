//! The sales hand-off end to end (issue 18, SPEC §11): a lead's clicks, through the real
//! daemon's `/c/TOKEN`, raise its score over a campaign's threshold; the campaign's webhook
//! step POSTs to a real local HTTP server that checks the Standard Webhooks signature with an
//! independent implementation (Python's hmac), answers 503 first, and gets the hand-off
//! exactly once after the retry.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nurture_testkit::SmtpSink;

use crate::support::{Project, wait_until};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the receiver got: its headers (lower-case names), body, and whether the
/// signature verified.
#[derive(Debug, Clone)]
struct Got {
    headers: Vec<(String, String)>,
    body: String,
    verified: bool,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Checks a Standard Webhooks signature the way a receiver would, outside Rust.
fn python_verifies(id: &str, ts: &str, body: &str, header: &str) -> bool {
    let script = r#"
import base64, hashlib, hmac, sys
secret, id, ts, header = sys.argv[1:5]
body = sys.stdin.buffer.read()
key = base64.b64decode(secret[len("whsec_"):])
want = base64.b64encode(hmac.new(key, id.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256).digest()).decode()
ok = any(s.startswith("v1,") and hmac.compare_digest(s[3:], want) for s in header.split(" "))
sys.exit(0 if ok else 1)
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, SECRET, id, ts, header])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

/// A receiver on a free port that answers `statuses` in turn (then 200), recording each
/// request.
fn receiver(statuses: Vec<u16>) -> (u16, Arc<Mutex<Vec<Got>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let mut g = Got {
                headers,
                body,
                verified: false,
            };
            g.verified = python_verifies(
                g.header("webhook-id"),
                g.header("webhook-timestamp"),
                &g.body,
                g.header("webhook-signature"),
            );
            let status = if g.verified {
                statuses.next().unwrap_or(200)
            } else {
                401
            };
            seen.lock().unwrap().push(g);
            let reason = if status == 200 { "OK" } else { "Busy" };
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                )
                .as_bytes(),
            );
        }
    });
    (port, got)
}

fn project(hook_port: u16) -> Project {
    let p = Project::new();
    p.file(
        "campaigns/welcome.yaml",
        r#"name: Welcome
from: "Ana <ana@leadcraft.example>"
trigger: { event: lead.captured }
steps:
  - { id: welcome, send: welcome, subject: "Your guide" }
"#,
    )
    .file(
        "templates/welcome.html.hbs",
        r#"<p><a href="https://leadcraft.example/guide">the guide</a></p>
<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p>"#,
    )
    .file(
        "campaigns/hot.yaml",
        &format!(
            r#"name: Hand-off to sales
trigger: {{ score: {{ gte: 50 }} }}
steps:
  - id: crm
    webhook:
      url: "http://127.0.0.1:{hook_port}/hooks/lead"
      body: {{ text: "{{{{contact.email}}}} is ready (score {{{{score}}}})", email: "{{{{contact.email}}}}" }}
"#
        ),
    )
    .file(
        "scoring.yaml",
        "decay: { half_life: 30d }\nrules:\n  - { event: lead.captured, points: 10 }\n  - { clicked: any, points: 20 }\n",
    );
    p
}

/// The `/c/TOKEN` path of the first tracked link in a message.
fn click_path(message: &str, port: u16) -> String {
    let unfolded = message.replace("=\n", "").replace("=3D", "=");
    let prefix = format!("http://127.0.0.1:{port}/c/");
    let start = unfolded
        .find(&prefix)
        .unwrap_or_else(|| panic!("no click link in:\n{unfolded}"));
    let token: String = unfolded[start + prefix.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    format!("/c/{token}")
}

fn get(port: u16, path: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn show(p: &Project, env: &[(&str, &str)]) -> serde_json::Value {
    let mut run = p.nurture(&["contacts", "show", "lead@x.example", "--json"]);
    for (k, v) in env {
        run = run.env(k, v);
    }
    serde_json::from_str(&run.output().success().stdout).unwrap()
}

#[test]
fn clicks_over_the_threshold_hand_the_lead_to_sales_once_after_a_503() {
    let sink = SmtpSink::start();
    let (hook_port, got) = receiver(vec![503]);
    let p = project(hook_port);
    let port = nurture_testkit::free_port();
    let hosts = "127.0.0.1";
    let env = [
        ("NURTURE_SMTP_URL", sink.url()),
        ("NURTURE_LISTEN", format!("127.0.0.1:{port}")),
        ("NURTURE_BASE_URL", format!("http://127.0.0.1:{port}")),
        (
            "NURTURE_SECRET",
            "a-test-signing-secret-that-is-long-enough".into(),
        ),
        ("NURTURE_WEBHOOK_SECRET", SECRET.into()),
        ("NURTURE_WEBHOOK_HOSTS", hosts.into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let with = |args: &[&str]| {
        let mut run = p.nurture(args);
        for (k, v) in &env {
            run = run.env(k, v);
        }
        run
    };
    with(&["validate"]).output().success();

    // Arrange: the daemon, and a lead whose welcome email arrives.
    let mut daemon = with(&["run"]).spawn();
    wait_until(20, "the daemon answers", || {
        crate::support::healthy(&port.to_string())
    });
    with(&["event", "lead@x.example", "lead.captured"])
        .output()
        .success();
    let mail = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(mail.len(), 1);
    let click = click_path(&mail[0].message_text(), port);

    // Act: two clicks (10 + 20 + 20 = 50) cross the threshold.
    assert_eq!(get(port, &click), 302);
    wait_until(20, "the first click is scored", || {
        show(&p, &env)["score"].as_f64() == Some(30.0)
    });
    assert!(got.lock().unwrap().is_empty(), "30 is below the threshold");
    assert_eq!(get(port, &click), 302);
    wait_until(20, "the hand-off is tried", || {
        !got.lock().unwrap().is_empty()
    });
    wait_until(20, "the 503 is recorded", || {
        show(&p, &env)["webhooks"][0]["status"] == "deferred"
    });
    let _ = daemon.kill();
    let _ = daemon.wait();

    // The retry is due a minute later: a tick ten minutes on makes it.
    // The daemon ran on the wall clock, so the tick's time is read from it too.
    #[allow(clippy::disallowed_methods)]
    let later = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    with(&["tick", "--now", &later]).output().success();
    with(&["tick", "--now", &later]).output().success();

    // Assert: two signed attempts of one delivery, the second accepted; nothing more.
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got.iter().all(|g| g.verified), "{got:#?}");
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(got[1].header("content-type"), "application/json");
    let body: serde_json::Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(body["email"], "lead@x.example");
    // The retry went out ten minutes on: the 50 points have decayed a little since.
    let text = body["text"].as_str().unwrap();
    let score: f64 = text
        .strip_prefix("lead@x.example is ready (score ")
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text}"))
        .parse()
        .unwrap();
    assert!((49.9..=50.0).contains(&score), "{text}");
    let doc = show(&p, &env);
    assert_eq!(doc["webhooks"][0]["status"], "sent");
    assert_eq!(doc["webhooks"].as_array().unwrap().len(), 1);
    let reasons = doc["score_reasons"].as_array().unwrap();
    assert_eq!(reasons[0]["reason"], "clicked any");
    let explain = with(&["explain", "lead@x.example", "hot"])
        .output()
        .success()
        .stdout;
    assert!(explain.contains("HTTP 503"), "{explain}");
    assert!(explain.contains("delivered"), "{explain}");
    assert!(explain.contains("score: "), "{explain}");
}

#[test]
fn validate_refuses_a_webhook_host_not_allowed_and_a_bad_scoring_file() {
    let p = project(9);
    p.file("scoring.yaml", "rules:\n  - { event: a, point: 3 }\n");
    let out = p
        .nurture(&["validate"])
        .env("NURTURE_WEBHOOK_HOSTS", "hooks.example.com")
        .output();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the webhook host `127.0.0.1` is not in webhook_hosts"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hot.yaml:6:"), "{}", out.stderr);
    assert!(out.stderr.contains("unknown key `point`"), "{}", out.stderr);
    assert!(out.stderr.contains("scoring.yaml:2:"), "{}", out.stderr);
}
