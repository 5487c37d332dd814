//! Public sign-up forms end to end (issue 17): a real headless Chromium fills the hosted form
//! of `nurture run`, the double opt-in email arrives in a real smtp-sink, Chromium follows its
//! link and confirms, and the campaign the form's event triggers sends its first email. Bots
//! (a filled honeypot, a flood from one address, a post faster than a person types) are
//! refused with nothing stored.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use nurture_testkit::{Browser, BrowserOptions, SmtpSink};

use crate::support::{Daemon, Project};

const CAMPAIGN: &str = r#"name: Welcome
from: "Ana <ana@leadcraft.example>"
trigger: { event: lead.captured, when: { property: source, equals: guide } }
steps:
  - id: welcome
    send: welcome
    subject: "Welcome {{default contact.first_name \"there\"}}: {{event.title}}"
"#;

const TEMPLATE: &str = r#"<p>Hi {{default contact.first_name "there"}}, here is the guide.</p>
<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p>"#;

const FORM: &str = r#"title: Get the guide
fields:
  - { name: email, type: email, required: true, label: Work email }
  - { name: first_name, label: First name }
event: lead.captured
properties: { source: guide, title: The Guide }
tags: [guide]
double_opt_in: { send: forms/confirm, subject: "Please confirm your email" }
consent: "Send me the guide and occasional emails. Unsubscribe any time."
after_submit: { message: "Check your inbox to confirm." }
after_confirm: { message: "Confirmed: the guide is on its way." }
record_ip: true
"#;

const CONFIRM: &str = r#"<p>Hi {{default contact.first_name "there"}}, please
<a href="{{confirm_url}}">confirm your email</a> for {{form.title}}.</p>"#;

/// One HTTP/1.1 request; (status, head, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
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
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), rest.to_string())
}

/// Quoted-printable undone (soft breaks and `=XX`).
fn unqp(message: &str) -> String {
    let unfolded = message.replace("=\r\n", "").replace("=\n", "");
    let bytes = unfolded.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&unfolded[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The confirmation link in a message.
fn confirm_link(message: &str, port: u16) -> String {
    let text = unqp(message);
    let prefix = format!("http://127.0.0.1:{port}/f/confirm/");
    let start = text
        .find(&prefix)
        .unwrap_or_else(|| panic!("no confirmation link in:\n{text}"));
    let token: String = text[start + prefix.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    format!("{prefix}{token}")
}

fn show(p: &Project, email: &str) -> Option<serde_json::Value> {
    let out = p.nurture(&["contacts", "show", email, "--json"]).output();
    (out.code == 0).then(|| serde_json::from_str(&out.stdout).unwrap())
}

fn project() -> Project {
    let p = Project::new();
    p.file("campaigns/welcome.yaml", CAMPAIGN)
        .file("templates/welcome.html.hbs", TEMPLATE)
        .file("templates/forms/confirm.html.hbs", CONFIRM)
        .file("forms/guide.yaml", FORM);
    p
}

/// The signed time stamp in a page served now.
fn stamp_of(page: &str) -> String {
    let at = page
        .find("name=\"nurture_ts\" value=\"")
        .expect("a stamp in the page")
        + 25;
    page[at..].chars().take_while(|c| *c != '"').collect()
}

#[test]
fn a_lead_signs_up_in_chromium_confirms_by_email_and_gets_the_campaigns_first_email() {
    // Arrange: no minimum fill time, so the browser need not wait (the defence has its own test).
    let p = project();
    let sink = SmtpSink::start();
    let d = Daemon::start_with(
        &p,
        &sink,
        None,
        &[
            ("NURTURE_FORM_MIN_FILL_SECONDS", "0"),
            ("NURTURE_DASHBOARD_PASSWORD", "dash-pass"),
        ],
    );
    let mut browser = Browser::launch();

    // Act: a person fills the hosted form.
    assert_eq!(browser.goto(&d.url("/f/guide")), 200);
    assert_eq!(browser.title(), "Get the guide");
    assert_eq!(browser.attribute("html", "lang").as_deref(), Some("en"));
    assert_eq!(browser.count("label[for=f-email]"), 1);
    // The page's script solves the proof of work; the server checks it with the post.
    browser.wait_for("form[data-solved]");
    browser.fill("#f-email", "ana@acme.example");
    browser.fill("#f-first_name", "Ana");
    assert_eq!(browser.click("button[type=submit]"), Some(200));
    assert!(
        browser
            .text("main")
            .contains("Check your inbox to confirm."),
        "{}",
        browser.content()
    );

    // Assert: pending, with a consent record, and the confirmation email in the sink.
    let got = sink.wait_for(1, Duration::from_secs(30));
    let confirmation = got[0].message_text();
    assert!(
        got[0]
            .rcpt_to()
            .iter()
            .any(|r| r.contains("ana@acme.example"))
    );
    assert_eq!(
        got[0].header("Subject").as_deref(),
        Some("Please confirm your email")
    );
    let unsubscribe = got[0].header("List-Unsubscribe").unwrap_or_default();
    assert!(unsubscribe.contains("/f/confirm/"), "{unsubscribe}");
    assert!(got[0].header("List-Unsubscribe-Post").is_some());
    let contact = show(&p, "ana@acme.example").expect("the contact is stored");
    assert_eq!(contact["status"], "pending");
    assert_eq!(contact["consents"][0]["form"], "guide");
    assert_eq!(
        contact["consents"][0]["text"],
        "Send me the guide and occasional emails. Unsubscribe any time."
    );
    assert!(contact["consents"][0]["confirmed_at"].is_null());
    assert_eq!(contact["consents"][0]["ip"], "127.0.0.1");

    // Act: Chromium follows the link; the page alone confirms nothing.
    let link = confirm_link(&confirmation, d.port);
    assert_eq!(browser.goto(&link), 200);
    assert_eq!(show(&p, "ana@acme.example").unwrap()["status"], "pending");
    assert_eq!(browser.click("#confirm"), Some(200));
    assert!(
        browser
            .text("main")
            .contains("Confirmed: the guide is on its way.")
    );

    // Assert: subscribed, consent confirmed, and the campaign's first email sent.
    let got = sink.wait_for(2, Duration::from_secs(30));
    let welcome = got
        .iter()
        .find(|m| m.header("X-Nurture-Campaign").as_deref() == Some("welcome"));
    let welcome = welcome.unwrap_or_else(|| panic!("no campaign email:\n{}", d.log()));
    assert_eq!(
        welcome.header("Subject").as_deref(),
        Some("Welcome Ana: The Guide")
    );
    let contact = show(&p, "ana@acme.example").unwrap();
    assert_eq!(contact["status"], "subscribed");
    assert!(contact["consents"][0]["confirmed_at"].is_string());
    assert!(
        contact["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "guide")
    );

    // A second confirmation changes nothing and sends nothing.
    assert_eq!(browser.goto(&link), 200);
    let metrics = http(d.port, "GET", "/metrics", &[], b"").2;
    assert!(
        metrics.contains("nurture_form_submissions_total{form=\"guide\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nurture_form_confirmations_total{form=\"guide\"} 1"),
        "{metrics}"
    );
    assert_eq!(sink.messages().len(), 2);

    // The dashboard's forms page counts the submission, its confirmation and its email.
    browser.goto(&format!("http://127.0.0.1:{}/dashboard/forms", d.port));
    browser.fill("#password", "dash-pass");
    browser.click("button[type=submit]");
    let row = browser.text("#forms tbody tr");
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["guide", "1", "1", "100.0%", "1", "none"],
        "{row}"
    );
    browser.screenshot("dashboard-forms");
}

#[test]
fn bots_are_refused_with_nothing_stored() {
    // Arrange: the default 3 s fill time, and at most 5 posts a minute from one address.
    let p = project();
    let sink = SmtpSink::start();
    let d = Daemon::start_with(
        &p,
        &sink,
        None,
        &[("NURTURE_FORM_IP_LIMIT_PER_MINUTE", "5")],
    );
    let page = http(d.port, "GET", "/f/guide", &[], b"").2;
    let stamp = stamp_of(&page);
    let form = [("Content-Type", "application/x-www-form-urlencoded")];

    // A post sooner than a person could type is refused.
    let body = format!("email=fast%40bot.example&nurture_ts={stamp}");
    let (status, _, text) = http(d.port, "POST", "/f/guide", &form, body.as_bytes());
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("too quickly"), "{text}");

    // A filled honeypot is refused.
    let body =
        format!("email=honey%40bot.example&website=http%3A%2F%2Fspam.example&nurture_ts={stamp}");
    let (status, _, _) = http(d.port, "POST", "/f/guide", &form, body.as_bytes());
    assert_eq!(status, 400);

    // A flood: 50 posts in a row from one address; past the limit every one is 429.
    let mut codes = Vec::new();
    for i in 0..50 {
        let body = format!("email=flood{i}%40bot.example");
        codes.push(http(d.port, "POST", "/f/guide", &form, body.as_bytes()).0);
    }
    assert!(codes[3..].iter().all(|c| *c == 429), "{codes:?}");

    // Nothing stored, nothing sent; every refusal counted per reason.
    for email in [
        "fast@bot.example",
        "honey@bot.example",
        "flood0@bot.example",
        "flood49@bot.example",
    ] {
        assert!(show(&p, email).is_none(), "{email} was stored");
    }
    let metrics = http(d.port, "GET", "/metrics", &[], b"").2;
    for reason in ["too_fast", "honeypot", "rate_limited"] {
        assert!(
            metrics.contains(&format!(
                "nurture_form_rejections_total{{form=\"guide\",reason=\"{reason}\"}}"
            )),
            "{reason}: {metrics}"
        );
    }
    assert!(
        !d.log().contains("bot.example"),
        "an address in clear in the log:\n{}",
        d.log()
    );
    assert!(sink.messages().is_empty());
}

#[test]
fn a_pending_contact_gets_no_campaign_mail_until_it_confirms() {
    // Arrange: a lead submits the form; the confirmation goes out.
    let p = project();
    let sink = SmtpSink::start();
    {
        let mut d = Daemon::start_with(&p, &sink, None, &[("NURTURE_FORM_MIN_FILL_SECONDS", "0")]);
        let stamp = stamp_of(&http(d.port, "GET", "/f/guide", &[], b"").2);
        let body = format!("email=ana%40acme.example&nurture_ts={stamp}");
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        assert_eq!(
            http(d.port, "POST", "/f/guide", &form, body.as_bytes()).0,
            200
        );
        sink.wait_for(1, Duration::from_secs(30));
        // Stopped, not killed: the sink can hold the message before the daemon has recorded
        // it as sent, and a stop lets it finish that.
        d.terminate();
        assert_eq!(d.wait_exit(Duration::from_secs(30)), Some(0), "{}", d.log());
    }

    // Act: the campaign's event arrives by another way while the contact is pending.
    p.nurture(&[
        "event",
        "ana@acme.example",
        "lead.captured",
        "--prop",
        "source=guide",
        "--prop",
        "title=T",
    ])
    .env("NURTURE_SMTP_URL", &sink.url())
    .output()
    .success();
    p.nurture(&["tick"])
        .env("NURTURE_SMTP_URL", &sink.url())
        .output()
        .success();

    // Assert: nothing but the confirmation; explain and stats tell the story.
    let contact = show(&p, "ana@acme.example").unwrap();
    assert_eq!(contact["status"], "pending");
    assert_eq!(
        contact["messages"].as_array().unwrap().len(),
        0,
        "{contact}"
    );
    assert_eq!(sink.messages().len(), 1);
    let explain = p
        .nurture(&["explain", "ana@acme.example"])
        .output()
        .success()
        .stdout;
    assert!(explain.contains("consent: form guide"), "{explain}");
    assert!(explain.contains("confirmation email sent"), "{explain}");
    let stats = p.nurture(&["stats", "--json"]).output().success().stdout;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["forms"][0]["id"], "guide");
    assert_eq!(stats["forms"][0]["submissions"], 1);
    assert_eq!(stats["forms"][0]["confirmations"], 0);
}

#[test]
fn validate_checks_forms_with_file_line_col_and_snippet_prints_embeddable_html() {
    let p = project();
    p.nurture(&["validate"]).output().success();
    let out = p
        .nurture(&["forms", "snippet", "guide"])
        .output()
        .success()
        .stdout;
    assert!(
        out.contains("action=\"http://127.0.0.1:8080/f/guide\""),
        "{out}"
    );
    assert!(out.contains("name=\"website\""));
    p.file("forms/typo.yaml", &FORM.replace("consent:", "consnet:"));
    let bad = p.nurture(&["validate"]).output();
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("forms/typo.yaml:9:1"), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("did you mean `consent`?"),
        "{}",
        bad.stderr
    );
    let schema = p.nurture(&["schema", "--forms"]).output().success().stdout;
    assert!(schema.contains("\"double_opt_in\""));
}

#[test]
fn a_person_without_javascript_signs_up_too() {
    let p = project();
    let sink = SmtpSink::start();
    let d = Daemon::start_with(&p, &sink, None, &[("NURTURE_FORM_MIN_FILL_SECONDS", "0")]);
    let mut browser = Browser::launch_with(BrowserOptions {
        javascript: false,
        ..BrowserOptions::default()
    });
    assert_eq!(browser.goto(&d.url("/f/guide")), 200);
    browser.fill("#f-email", "bo@acme.example");
    assert_eq!(browser.click("button[type=submit]"), Some(200));
    assert!(
        browser
            .text("main")
            .contains("Check your inbox to confirm."),
        "{}",
        browser.content()
    );
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(
        got[0].header("Subject").as_deref(),
        Some("Please confirm your email")
    );
    assert_eq!(show(&p, "bo@acme.example").unwrap()["status"], "pending");
}
