//! Delivery end to end: `nurture tick` rendering the project's templates and sending into a
//! real Postfix smtp-sink; what arrives is asserted byte by byte.

use std::time::Duration;

use nurture_testkit::SmtpSink;

use crate::support::{Done, Project};

const CAMPAIGN: &str = r#"name: Welcome series
from: "Ana from Leadcraft <ana@leadcraft.example>"
reply_to: hello@leadcraft.example
layout: base
trigger: { event: lead.captured }
steps:
  - id: welcome
    send: welcome
    subject: "Welcome, {{default contact.first_name \"friend\"}}"
    preheader: Your guide is inside
"#;

fn project() -> Project {
    let p = Project::new();
    p.file("campaigns/welcome.yaml", CAMPAIGN)
        .file("templates/layouts/base.html.hbs", "<html><head><style>p { color: #222; }</style></head><body>{{{body}}}{{> footer}}</body></html>")
        .file("templates/partials/footer.hbs", "<p>Leadcraft, {{postal_address}} <a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p>")
        .file("templates/welcome.html.hbs", "<p>Hi {{default contact.first_name \"there\"}}, read <a href=\"https://leadcraft.example/guide\">the guide</a>.</p>");
    p
}

/// A `lead.captured` event for `email` at the tests' start time, as a landing page posts it.
fn capture(p: &Project, email: &str) {
    p.nurture(&[
        "event",
        email,
        "lead.captured",
        "--at",
        "2026-11-02T10:00:00Z",
    ])
    .output()
    .success();
}

/// `tick --now` at the tests' start time, delivering through `smtp_url`; must succeed.
fn tick(p: &Project, smtp_url: &str) -> Done {
    p.nurture(&["tick", "--now", "2026-11-02T10:00:00Z"])
        .env("NURTURE_SMTP_URL", smtp_url)
        .output()
        .success()
}

fn show(p: &Project, email: &str, sink: &SmtpSink) -> serde_json::Value {
    let out = p
        .nurture(&["contacts", "show", email, "--json"])
        .env("NURTURE_SMTP_URL", &sink.url())
        .output()
        .success();
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn rendered_message_arrives_with_every_header_and_no_injection() {
    let sink = SmtpSink::start();
    let p = project();
    p.nurture(&[
        "event",
        "eve@x.example",
        "lead.captured",
        "--attr",
        "first_name=Eve\r\nBcc: victim@y.example",
        "--at",
        "2026-11-02T10:00:00Z",
    ])
    .output()
    .success();
    p.nurture(&["tick", "--now", "2026-11-02T10:00:00Z"])
        .env("NURTURE_SMTP_URL", &sink.url())
        .env("NURTURE_POSTAL_ADDRESS", "1 Main St, Springfield")
        .env("NURTURE_BASE_URL", "https://nurture.leadcraft.example")
        .output()
        .success();
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0].message_text();
    let headers = m.split("\n\n").next().unwrap();
    assert!(
        !headers
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
        "{headers}"
    );
    for needle in [
        "From: \"Ana from Leadcraft\" <ana@leadcraft.example>",
        "Reply-To: hello@leadcraft.example",
        "List-Unsubscribe: <https://nurture.leadcraft.example/u/",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "X-Nurture-Campaign: welcome",
        "X-Nurture-Step: welcome",
        "Content-Type: multipart/alternative",
        "Message-ID: <",
    ] {
        assert!(headers.contains(needle), "missing {needle}:\n{headers}");
    }
    assert!(
        headers.contains("Subject: Welcome, Eve Bcc: victim@y.example")
            || headers.contains("Subject: =?utf-8?"),
        "{headers}"
    );
    let body = m.replace("=\n", "");
    assert!(body.contains("Your guide is inside"), "preheader: {body}");
    assert!(body.contains("1 Main St, Springfield"), "{body}");
    assert!(
        body.contains("https://nurture.leadcraft.example/c/"),
        "click tracking: {body}"
    );
    assert!(
        body.contains("https://nurture.leadcraft.example/o/"),
        "open pixel: {body}"
    );
    assert!(
        body.contains("style=3D\"color: #222"),
        "CSS inlined: {body}"
    );
    assert_eq!(
        m.matches("Content-Transfer-Encoding: quoted-printable")
            .count(),
        2
    );
    let doc = show(&p, "eve@x.example", &sink);
    assert_eq!(doc["messages"][0]["status"], "sent");
    assert!(
        doc["messages"][0]["message_id"]
            .as_str()
            .unwrap()
            .starts_with('<')
    );
}

#[test]
fn soft_failure_is_retried_and_delivered_exactly_once() {
    let soft = SmtpSink::builder().soft_reject("rcpt").start();
    let p = project();
    capture(&p, "soft@x.example");
    let out = tick(&p, &soft.url());
    assert!(out.stdout.contains("1 deferred"), "{}", out.stdout);
    let doc = show(&p, "soft@x.example", &soft);
    assert_eq!(doc["messages"][0]["status"], "deferred");
    assert_eq!(
        doc["messages"][0]["next_attempt_at"],
        "2026-11-02T10:01:00+00:00"
    );
    // The server recovers (here: the operator points nurture at a healthy one).
    drop(soft);
    let sink = SmtpSink::start();
    // Not due yet: nothing is sent.
    p.nurture(&["tick", "--now", "2026-11-02T10:00:30Z"])
        .env("NURTURE_SMTP_URL", &sink.url())
        .output()
        .success();
    assert!(sink.messages().is_empty());
    p.nurture(&["tick", "--now", "2026-11-02T10:01:00Z"])
        .env("NURTURE_SMTP_URL", &sink.url())
        .output()
        .success();
    p.nurture(&["tick", "--now", "2026-11-02T10:30:00Z"])
        .env("NURTURE_SMTP_URL", &sink.url())
        .output()
        .success();
    // Both ticks have exited: whatever they sent was accepted, and dumped, before that.
    assert_eq!(sink.messages().len(), 1, "delivered exactly once");
    assert_eq!(
        show(&p, "soft@x.example", &sink)["messages"][0]["status"],
        "sent"
    );
}

#[test]
fn server_down_then_up_delivers_after_backoff() {
    let mut sink = SmtpSink::start();
    sink.stop();
    let p = project();
    capture(&p, "down@x.example");
    let out = tick(&p, &sink.url());
    assert!(out.stdout.contains("1 deferred"), "{}", out.stdout);
    sink.restart();
    p.nurture(&["tick", "--now", "2026-11-02T10:01:00Z"])
        .env("NURTURE_SMTP_URL", &sink.url())
        .output()
        .success();
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).len(), 1);
}

#[test]
fn hard_bounce_bounces_the_contact_and_ends_its_campaigns() {
    let sink = SmtpSink::builder().hard_reject("rcpt").start();
    let p = project();
    capture(&p, "gone@x.example");
    let out = tick(&p, &sink.url());
    assert!(out.stdout.contains("1 bounced"), "{}", out.stdout);
    let doc = show(&p, "gone@x.example", &sink);
    assert_eq!(doc["status"], "bounced");
    assert_eq!(doc["messages"][0]["status"], "bounced");
    assert!(
        doc["messages"][0]["error"].as_str().unwrap().contains("5"),
        "{doc}"
    );
}

#[test]
fn render_error_fails_the_step_and_names_campaign_step_contact_and_variable() {
    let sink = SmtpSink::start();
    let p = project();
    p.file(
        "templates/welcome.html.hbs",
        "<p>Hi {{contact.first_name}}</p>",
    );
    capture(&p, "nameless@x.example");
    let out = tick(&p, &sink.url());
    assert!(out.stdout.contains("1 failed"), "{}", out.stdout);
    let doc = show(&p, "nameless@x.example", &sink);
    let err = doc["messages"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("campaign welcome")
            && err.contains("step welcome")
            && err.contains("nameless@x.example")
            && err.contains("contact.first_name"),
        "{err}"
    );
    // The tick has exited: anything it sent would be in the sink already.
    assert!(sink.messages().is_empty(), "nothing half-rendered is sent");
}

#[test]
fn sigkill_in_the_middle_of_thousands_of_sends_loses_nothing_and_doubles_nothing() {
    const LEADS: usize = 2000;
    let sink = SmtpSink::start();
    let p = project();
    let mut csv = String::from("email,first_name\n");
    for i in 0..LEADS {
        csv.push_str(&format!("lead{i}@x.example,Lead{i}\n"));
    }
    p.file("leads.csv", &csv);
    p.nurture(&[
        "contacts",
        "import",
        "leads.csv",
        "--event",
        "lead.captured",
    ])
    .output()
    .success();

    let mut child = p
        .nurture(&["tick"])
        .env("NURTURE_SMTP_URL", &sink.url())
        .env("NURTURE_RATE_PER_SECOND", "100000")
        .spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let n = sink.messages().len();
        if n >= 200 || std::time::Instant::now() > deadline {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("tick finished before it could be killed ({status}); {n} received");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = sink.messages().len();
    assert!(at_kill < LEADS, "the kill came too late to prove anything");

    // Later (leases expired), another run finishes the job.
    let later = (chrono_now() + chrono::Duration::minutes(10)).to_rfc3339();
    p.nurture(&["tick", "--now", &later])
        .env("NURTURE_SMTP_URL", &sink.url())
        .env("NURTURE_RATE_PER_SECOND", "100000")
        .output()
        .success();

    let received = sink.messages();
    let mut recipients: Vec<String> = received.iter().flat_map(|m| m.rcpt_to()).collect();
    let total = recipients.len();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), total, "a contact received the step twice");

    let stats = p.nurture(&["stats", "--json"]).output().success();
    let doc: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    let step = &doc["campaigns"][0]["steps"][0];
    let (sent, unknown) = (
        step["sent"].as_u64().unwrap() as usize,
        step["unknown"].as_u64().unwrap() as usize,
    );
    assert_eq!(
        sent + unknown,
        LEADS,
        "every due step was attempted: {step}"
    );
    assert!(
        sent <= total && total <= sent + unknown,
        "sent {sent}, unknown {unknown}, received {total}"
    );
    // At most 80 messages (8 × the 10 connections) are `sending` at any moment.
    assert!(
        unknown <= 80,
        "only the messages in flight at the kill can be unknown: {unknown}"
    );
}

#[allow(clippy::disallowed_methods)]
fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

#[test]
fn a_server_that_accepts_and_never_answers_defers_the_message_and_a_later_tick_delivers_it_once() {
    // A listener nobody accepts from: the kernel completes the TCP handshake, then the
    // connection waits for a greeting that never comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!(
        "smtp://127.0.0.1:{}?tls=none",
        silent.local_addr().unwrap().port()
    );
    let p = project();
    capture(&p, "mute@x.example");
    let out = p
        .nurture(&["tick", "--now", "2026-11-02T10:00:00Z"])
        .env("NURTURE_SMTP_URL", &silent_url)
        .env("NURTURE_SMTP_TIMEOUT", "1")
        .output()
        .success();
    assert!(out.stdout.contains("1 deferred"), "{}", out.stdout);
    let sink = SmtpSink::start();
    let doc = show(&p, "mute@x.example", &sink);
    let message = &doc["messages"][0];
    assert_eq!(message["status"], "deferred", "{doc}");
    assert_eq!(message["next_attempt_at"], "2026-11-02T10:01:00+00:00");
    // The configured timeout is the one that ran out.
    let error = message["error"].as_str().unwrap();
    assert!(
        error.contains("did not answer in time") && error.contains("waited 1s for the greeting"),
        "{doc}"
    );
    drop(silent);

    p.nurture(&["tick", "--now", "2026-11-02T10:01:00Z"])
        .env("NURTURE_SMTP_URL", &sink.url())
        .output()
        .success();
    p.nurture(&["tick", "--now", "2026-11-02T10:30:00Z"])
        .env("NURTURE_SMTP_URL", &sink.url())
        .output()
        .success();
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got[0].rcpt_to(), ["mute@x.example"]);
    assert_eq!(
        show(&p, "mute@x.example", &sink)["messages"][0]["status"],
        "sent"
    );
    // Both ticks are done: whatever the sink has now is all it will get.
    assert_eq!(sink.messages().len(), 1, "delivered exactly once");
}

#[test]
fn smtp_timeout_must_be_a_positive_number_of_seconds() {
    let p = project();
    for bad in ["0", "soon", "-3"] {
        let out = p
            .nurture(&["tick", "--now", "2026-11-02T10:00:00Z"])
            .env("NURTURE_SMTP_URL", "smtp://127.0.0.1:2525")
            .env("NURTURE_SMTP_TIMEOUT", bad)
            .output();
        assert_eq!(out.code, 2, "{bad}: {out:?}");
        assert!(
            out.stderr.contains("NURTURE_SMTP_TIMEOUT"),
            "{bad}: {}",
            out.stderr
        );
    }
}

/// The one sentence a relay whose CA nurture does not trust gets, for `port`.
fn untrusted(port: u16) -> String {
    format!(
        "cannot deliver through 127.0.0.1:{port}: the server's certificate is not trusted (unknown issuer); add its CA to the system store or set smtp_ca_file"
    )
}

#[test]
fn a_relay_with_a_private_ca_defers_until_smtp_ca_file_names_the_ca_then_delivers_over_starttls_once()
 {
    let ca = nurture_testkit::TestCa::new();
    let relay = nurture_testkit::TlsSmtpServer::start(nurture_testkit::TlsMode::StartTls, &ca);
    let p = project();
    capture(&p, "tls@x.example");
    let out = tick(&p, &relay.url());
    assert!(out.stdout.contains("1 deferred"), "{}", out.stdout);
    // The operator sees why without raising the log level.
    assert!(
        out.stderr.contains(&untrusted(relay.port())),
        "{}",
        out.stderr
    );
    let sink = SmtpSink::start(); // `show` wants an SMTP URL; nothing is sent to it
    let doc = show(&p, "tls@x.example", &sink);
    let message = &doc["messages"][0];
    assert_eq!(message["status"], "deferred", "{doc}");
    assert_eq!(message["error"], untrusted(relay.port()).as_str(), "{doc}");
    assert!(relay.messages().is_empty());

    let ca_file = ca.ca_file();
    p.nurture(&["tick", "--now", "2026-11-02T10:01:00Z"])
        .env("NURTURE_SMTP_URL", &relay.url())
        .env("NURTURE_SMTP_CA_FILE", ca_file.to_str().unwrap())
        .output()
        .success();
    let got = relay.wait_for(1, Duration::from_secs(10));
    assert_eq!(got[0].rcpt_to, ["tls@x.example"]);
    assert_eq!(got[0].mail_from, "ana@leadcraft.example");
    assert_eq!(got[0].auth_user, nurture_testkit::TlsSmtpServer::USER);
    assert!(got[0].tls.starts_with("TLSv1."), "{}", got[0].tls);
    assert!(
        got[0].text().contains("Subject: Welcome, friend\r\n"),
        "{}",
        got[0].text()
    );
    assert_eq!(
        show(&p, "tls@x.example", &sink)["messages"][0]["status"],
        "sent"
    );
    // The tick is over: what the relay has is all it gets.
    assert_eq!(relay.messages().len(), 1, "delivered exactly once");
}

#[test]
fn test_send_over_implicit_tls_trusts_a_ca_in_the_system_store() {
    let ca = nurture_testkit::TestCa::new();
    let relay = nurture_testkit::TlsSmtpServer::start(nurture_testkit::TlsMode::Implicit, &ca);
    let p = project();
    let send = |p: &Project| {
        p.nurture(&[
            "test-send",
            "welcome",
            "--to",
            "marketer@leadcraft.example",
            "--step",
            "welcome",
        ])
        .env("NURTURE_SMTP_URL", &relay.url())
    };
    // Without the CA anywhere: refused in one sentence.
    let out = send(&p).output();
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr,
        format!("error: step welcome: {}\n", untrusted(relay.port()))
    );
    assert!(relay.messages().is_empty());
    // SSL_CERT_FILE stands for the system store here: it is where OpenSSL and every client
    // on the machine read trusted CAs from, as update-ca-certificates leaves them.
    let out = send(&p)
        .env("SSL_CERT_FILE", ca.ca_file().to_str().unwrap())
        .output()
        .success();
    assert!(
        out.stdout
            .contains("sent welcome to marketer@leadcraft.example"),
        "{}",
        out.stdout
    );
    let got = relay.wait_for(1, Duration::from_secs(10));
    assert_eq!(got[0].rcpt_to, ["marketer@leadcraft.example"]);
    assert_eq!(got[0].auth_user, nurture_testkit::TlsSmtpServer::USER);
    assert!(
        got[0].text().contains("Subject: [TEST] Welcome, "),
        "{}",
        got[0].text()
    );
}

#[test]
fn an_unusable_smtp_ca_file_stops_the_command_with_exit_2_naming_it() {
    let p = project();
    p.file("not-a-ca.pem", "hello\n");
    for (file, why) in [
        ("missing.pem", "cannot read smtp_ca_file"),
        ("not-a-ca.pem", "holds no certificate"),
    ] {
        let out = p
            .nurture(&["tick", "--now", "2026-11-02T10:00:00Z"])
            .env("NURTURE_SMTP_URL", "smtp://127.0.0.1:2525")
            .env("NURTURE_SMTP_CA_FILE", file)
            .output();
        assert_eq!(out.code, 2, "{file}: {out:?}");
        assert!(
            out.stderr.contains(why) && out.stderr.contains(file),
            "{file}: {}",
            out.stderr
        );
    }
    // The same key from nurture.toml.
    p.file(
        "nurture.toml",
        "smtp_url = \"smtp://127.0.0.1:2525\"\nsmtp_ca_file = \"missing.pem\"\n",
    );
    let out = p
        .nurture(&["tick", "--now", "2026-11-02T10:00:00Z"])
        .output();
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("missing.pem"), "{}", out.stderr);
}
