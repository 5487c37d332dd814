//! `preview` and `test-send`: a marketer sees and receives exactly what a lead would.

use std::time::Duration;

use nurture_testkit::SmtpSink;

use crate::support::Project;

const CAMPAIGN: &str = r#"name: Trial
from: "Ana <ana@leadcraft.example>"
trigger: { event: trial.started }
steps:
  - id: hello
    send: hello
    subject: "Welcome to {{default event.plan \"the trial\"}}, {{default contact.first_name \"there\"}}"
  - id: mark
    tag: [trial]
  - id: tips
    after: 2d
    send: tips
    subject: Three tips
"#;

fn project() -> Project {
    let p = Project::new();
    p.file("campaigns/trial.yaml", CAMPAIGN)
        .file("templates/hello.html.hbs", "<p>Hi {{default contact.first_name \"there\"}} from {{default contact.company \"your team\"}}</p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a>")
        .file("templates/tips.html.hbs", "<p>Tip one</p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a>");
    p
}

#[test]
fn preview_renders_with_a_data_file_or_a_made_up_lead() {
    let p = project();
    p.file("lead.json", r#"{"contact": {"email": "kim@x.example", "first_name": "Kim", "company": "Acme"}, "event": {"plan": "Pro"}}"#);
    let html = p
        .nurture(&["preview", "trial", "--step", "hello", "--data", "lead.json"])
        .output()
        .success();
    assert!(html.stdout.contains("Hi Kim from Acme"), "{}", html.stdout);
    let eml = p
        .nurture(&[
            "preview",
            "trial",
            "--step",
            "hello",
            "--data",
            "lead.json",
            "--format",
            "eml",
        ])
        .output()
        .success();
    assert!(
        eml.stdout.contains("Subject: Welcome to Pro, Kim"),
        "{}",
        eml.stdout
    );
    assert!(
        eml.stdout.contains("To: Kim <kim@x.example>"),
        "{}",
        eml.stdout
    );
    assert!(
        eml.stdout
            .contains("List-Unsubscribe: <http://127.0.0.1:8080/u/"),
        "{}",
        eml.stdout
    );
    let text = p
        .nurture(&["preview", "trial", "--step", "hello", "--format", "text"])
        .output()
        .success();
    assert!(
        text.stdout.contains("Hi there from your team"),
        "{}",
        text.stdout
    );
    assert!(
        !p.path().join("nurture.db").exists(),
        "preview without --contact needs no database"
    );
}

#[test]
fn preview_refuses_unknown_or_non_email_steps() {
    let p = project();
    let out = p.nurture(&["preview", "trial", "--step", "mark"]).output();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("step `mark` sends no email"),
        "{}",
        out.stderr
    );
    let out = p.nurture(&["preview", "trial", "--step", "nope"]).output();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("has no step `nope` (steps: hello, mark, tips)"),
        "{}",
        out.stderr
    );
    let out = p
        .nurture(&["preview", "nothere", "--step", "hello"])
        .output();
    assert_eq!(out.code, 2);
}

#[test]
fn test_send_delivers_every_email_step_marked_test_and_touches_no_stats() {
    let sink = SmtpSink::start();
    let p = project();
    p.nurture(&[
        "event",
        "kim@x.example",
        "signed.up",
        "--attr",
        "first_name=Kim",
    ])
    .output()
    .success();
    let out = p
        .nurture(&[
            "test-send",
            "trial",
            "--to",
            "marketer@leadcraft.example",
            "--contact",
            "kim@x.example",
        ])
        .env("NURTURE_SMTP_URL", &sink.url())
        .output()
        .success();
    assert!(
        out.stdout
            .contains("sent hello to marketer@leadcraft.example"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("sent tips to marketer@leadcraft.example"),
        "{}",
        out.stdout
    );
    let got = sink.wait_for(2, Duration::from_secs(5));
    let subjects: Vec<String> = got
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    assert!(
        subjects.contains(&"[TEST] Welcome to the trial, Kim".to_string()),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&"[TEST] Three tips".to_string()),
        "{subjects:?}"
    );
    for m in &got {
        assert_eq!(
            m.header("To").as_deref(),
            Some("marketer@leadcraft.example")
        );
        assert!(
            m.header("List-Unsubscribe")
                .is_some_and(|u| u.contains("/u/"))
        );
    }
    let stats = p.nurture(&["stats", "--json"]).output().success();
    let doc: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    assert_eq!(doc["campaigns"][0]["enrolled"], 0, "{doc}");
    let show = p
        .nurture(&["contacts", "show", "kim@x.example", "--json"])
        .output()
        .success();
    let doc: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(doc["enrollments"], serde_json::json!([]));
    assert_eq!(doc["messages"], serde_json::json!([]));
}

#[test]
fn test_send_of_one_step_to_the_outbox() {
    let p = project();
    p.nurture(&[
        "test-send",
        "trial",
        "--to",
        "me@leadcraft.example",
        "--step",
        "tips",
    ])
    .output()
    .success();
    let files: Vec<_> = std::fs::read_dir(p.path().join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("Subject: [TEST] Three tips"), "{text}");
    let bad = p
        .nurture(&["test-send", "trial", "--to", "not-an-address"])
        .output();
    assert_eq!(bad.code, 2);
}
