//! `nurture bounces ingest`: real-world-shaped delivery status notifications and abuse
//! reports (tests/fixtures/bounces) read by the real binary change the contact, name the
//! message they are about by its Message-ID, and show in `contacts show` and `explain`
//! with their source; other mail is ignored with a note.

use std::path::Path;

use serde_json::Value;

use crate::support::Project;

const DRIP: &str = r#"name: Drip
from: "Ana <ana@leadcraft.example>"
trigger: { event: lead.captured }
steps:
  - id: welcome
    send: welcome
    subject: Welcome
  - id: later
    after: 2d
    send: later
    subject: Two days later
"#;

/// The Message-IDs the fixtures name as the original message.
const POSTFIX_ORIGINAL: &str = "<5f0c2a9e7b41d8360e1fa2c4b9d7e853@leadcraft.example>";

fn project() -> Project {
    let p = Project::new();
    p.file("campaigns/drip.yaml", DRIP)
        .file(
            "templates/welcome.html.hbs",
            "<p>Hi</p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a>",
        )
        .file(
            "templates/later.html.hbs",
            "<p>Later</p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a>",
        );
    p
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bounces")
        .join(name);
    std::fs::read_to_string(&path).unwrap()
}

/// Enrolls `email` and delivers its first step to the outbox; returns its Message-ID.
fn enrolled_and_sent(p: &Project, email: &str) -> String {
    p.nurture(&[
        "event",
        email,
        "lead.captured",
        "--at",
        "2026-11-02T09:00:00Z",
    ])
    .output()
    .success();
    p.nurture(&["tick", "--now", "2026-11-02T09:00:00Z"])
        .output()
        .success();
    let show = contact(p, email);
    let messages = show["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{show}");
    assert_eq!(messages[0]["status"], "sent", "{show}");
    messages[0]["message_id"].as_str().unwrap().to_string()
}

fn contact(p: &Project, email: &str) -> Value {
    let out = p
        .nurture(&["contacts", "show", email, "--json"])
        .output()
        .success();
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn a_postfix_dsn_on_stdin_bounces_the_contact_and_explain_names_the_source_and_the_message() {
    let p = project();
    let id = enrolled_and_sent(&p, "jordan.lee@globex.example");
    // The fixture as Postfix would have sent it for the message nurture really sent.
    let dsn = fixture("postfix-hard.eml").replace(POSTFIX_ORIGINAL, &id);
    let out = p
        .nurture(&["bounces", "ingest", "--at", "2026-11-02T09:05:00Z"])
        .input(dsn.as_bytes());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "standard input: DSN hard for jordan.lee@globex.example (message matched by Message-ID); now bounced, 1 enrollment(s) exited"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("1 recorded, 0 ignored"),
        "{}",
        out.stdout
    );

    let show = contact(&p, "jordan.lee@globex.example");
    assert_eq!(show["status"], "bounced", "{show}");
    assert_eq!(show["enrollments"][0]["state"], "exited");
    assert_eq!(show["enrollments"][0]["exit_reason"], "bounced");
    assert_eq!(show["messages"][0]["status"], "bounced");
    assert_eq!(show["signals"][0]["kind"], "hard");
    assert_eq!(show["signals"][0]["source"], "dsn");
    assert!(
        show["status_reason"]
            .as_str()
            .unwrap()
            .starts_with("hard bounce reported by dsn: 5.1.1 smtp; 550 5.1.1 <jordan.lee@globex.example>: Recipient address rejected: User unknown"),
        "{show}"
    );

    let explain = p
        .nurture(&["explain", "jordan.lee@globex.example"])
        .output()
        .success()
        .stdout;
    for needle in [
        "jordan.lee@globex.example: bounced since 2026-11-02 09:05 UTC (hard bounce reported by dsn",
        &format!(
            "2026-11-02 09:05 UTC  hard bounce of drip/welcome {id} reported by a delivery status notification (bounces ingest): 5.1.1 smtp; 550 5.1.1"
        ),
        "exited 2026-11-02 09:05 UTC: a hard bounce; it was waiting for `later`",
    ] {
        assert!(explain.contains(needle), "missing {needle}:\n{explain}");
    }

    // The same report again (a fetcher run twice) changes nothing.
    let again = p.nurture(&["bounces", "ingest"]).input(dsn.as_bytes());
    assert!(
        again.stdout.contains("was recorded before"),
        "{}",
        again.stdout
    );
    assert_eq!(
        contact(&p, "jordan.lee@globex.example")["signals"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn every_fixture_is_recognised_and_a_plain_reply_is_ignored_with_a_note() {
    let p = project();
    for email in [
        "pat.smith@initech.example",
        "riley.chen@hooli.example",
        "sam.ortiz@umbrella.example",
    ] {
        p.nurture(&[
            "event",
            email,
            "lead.captured",
            "--at",
            "2026-11-02T09:00:00Z",
        ])
        .output()
        .success();
    }
    p.nurture(&["tick", "--now", "2026-11-02T09:00:00Z"])
        .output()
        .success();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces");
    let files: Vec<String> = [
        "exchange-hard.eml",
        "arf-abuse.eml",
        "postfix-soft.eml",
        "not-a-report.eml",
    ]
    .iter()
    .map(|f| dir.join(f).display().to_string())
    .collect();
    let mut args = vec!["bounces", "ingest"];
    args.extend(files.iter().map(String::as_str));
    let out = p.nurture(&args).output();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for needle in [
        "exchange-hard.eml: DSN hard for pat.smith@initech.example; now bounced, 1 enrollment(s) exited",
        "arf-abuse.eml: ARF complaint for riley.chen@hooli.example; now complained, 1 enrollment(s) exited",
        "postfix-soft.eml: DSN soft for sam.ortiz@umbrella.example; 1 of 3 soft bounces in a row",
        "not-a-report.eml: ignored: not a delivery status notification or an abuse report (subject: Automatic reply: Your ebook: The B2B Lead Generation Playbook)",
        "3 recorded, 1 ignored",
    ] {
        assert!(
            out.stdout.contains(needle),
            "missing {needle}:\n{}",
            out.stdout
        );
    }
    assert_eq!(
        contact(&p, "pat.smith@initech.example")["status"],
        "bounced"
    );
    let riley = contact(&p, "riley.chen@hooli.example");
    assert_eq!(riley["status"], "complained");
    assert_eq!(riley["signals"][0]["source"], "arf");
    assert_eq!(riley["enrollments"][0]["exit_reason"], "complained");
    let sam = contact(&p, "sam.ortiz@umbrella.example");
    assert_eq!(sam["status"], "subscribed");
    assert_eq!(sam["enrollments"][0]["state"], "active");
    assert_eq!(sam["signals"][0]["kind"], "soft");
}

#[test]
fn soft_bounce_dsns_in_a_row_bounce_the_contact_at_soft_bounce_limit() {
    let p = project();
    enrolled_and_sent(&p, "sam.ortiz@umbrella.example");
    let soft = fixture("postfix-soft.eml");
    // Each notice its own report (its own Message-Id), as Postfix sends one per message.
    let notice = |n: u32| {
        soft.replace(
            "<20261105090011.7Yq1mR3dKz2w8@mail.leadcraft.example>",
            &format!("<2026110509001{n}.7Yq1mR3dKz2w8@mail.leadcraft.example>"),
        )
    };
    let ingest = |n: u32| {
        p.nurture(&["bounces", "ingest", "-"])
            .env("NURTURE_SOFT_BOUNCE_LIMIT", "2")
            .input(notice(n).as_bytes())
    };
    let first = ingest(1);
    assert!(
        first.stdout.contains("1 of 2 soft bounces in a row"),
        "{}",
        first.stdout
    );
    assert_eq!(
        contact(&p, "sam.ortiz@umbrella.example")["status"],
        "subscribed"
    );
    let second = ingest(2);
    assert!(
        second
            .stdout
            .contains("now bounced, 1 enrollment(s) exited"),
        "{}",
        second.stdout
    );
    let sam = contact(&p, "sam.ortiz@umbrella.example");
    assert_eq!(sam["status"], "bounced");
    assert!(
        sam["status_reason"]
            .as_str()
            .unwrap()
            .starts_with("2 soft bounces in a row; the last soft bounce reported by dsn: 4.2.2"),
        "{sam}"
    );
}

#[test]
fn a_missing_file_is_bad_input_and_records_nothing() {
    let p = project();
    let out = p.nurture(&["bounces", "ingest", "nowhere.eml"]).output();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot read nowhere.eml"),
        "{}",
        out.stderr
    );
}

/// `nurture run`, killed when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Mailgun's signature of `timestamp` + `token`, computed by openssl.
fn mailgun_signature(key: &str, timestamp: &str, token: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run openssl: install Debian's openssl package");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{timestamp}{token}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.rsplit("= ").next().unwrap().trim().to_string()
}

fn post(port: u16, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn the_daemon_takes_a_mailgun_webhook_signed_with_the_configured_key() {
    let p = project();
    let id = enrolled_and_sent(&p, "kim@hooli.example");
    let key = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
    let port = nurture_testkit::free_port();
    let _daemon = Running(
        p.nurture(&["run"])
            .env("NURTURE_LISTEN", &format!("127.0.0.1:{port}"))
            .env("NURTURE_MAILGUN_SIGNING_KEY", key)
            .spawn(),
    );
    crate::support::wait_until(30, "the daemon answers", || {
        crate::support::healthy(&port.to_string())
    });
    let (timestamp, token) = (
        "1793610000",
        "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
    );
    let body = |signature: &str| {
        serde_json::json!({
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": {
                "id": "G9Bn5sl1TC6nu79C8C0bwg", "event": "failed", "severity": "permanent",
                "reason": "bounce", "recipient": "kim@hooli.example",
                "message": {"headers": {"message-id": id.trim_matches(|c| c == '<' || c == '>')}},
                "delivery-status": {"code": 550, "message": "5.1.1 mailbox does not exist"}
            }
        })
        .to_string()
    };
    let forged = post(port, "/webhooks/bounces/mailgun", &body(&"0".repeat(64)));
    assert!(forged.starts_with("HTTP/1.1 403"), "{forged}");
    assert_eq!(contact(&p, "kim@hooli.example")["status"], "subscribed");

    let reply = post(
        port,
        "/webhooks/bounces/mailgun",
        &body(&mailgun_signature(key, timestamp, token)),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let show = contact(&p, "kim@hooli.example");
    assert_eq!(show["status"], "bounced", "{show}");
    assert_eq!(show["messages"][0]["status"], "bounced", "{show}");
    let explain = p
        .nurture(&["explain", "kim@hooli.example"])
        .output()
        .success()
        .stdout;
    let needle = format!(
        "hard bounce of drip/welcome {id} reported by the Mailgun webhook: 550 5.1.1 mailbox does not exist"
    );
    assert!(explain.contains(&needle), "missing {needle}:\n{explain}");
}

#[test]
fn an_unreadable_sendgrid_key_stops_the_daemon_with_exit_2() {
    let p = project();
    let out = p
        .nurture(&["run"])
        .env(
            "NURTURE_LISTEN",
            &format!("127.0.0.1:{}", nurture_testkit::free_port()),
        )
        .env("NURTURE_SENDGRID_WEBHOOK_KEY", "not a key!")
        .output();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("sendgrid_webhook_key is not base64"),
        "{}",
        out.stderr
    );
}
