//! `simulate`: the example campaigns run over weeks of virtual time, asserted step by step —
//! waits, a send window across a weekend (and a DST change), a goal exit scripted by an events
//! file, a step skipped by `when` — and proof that nothing real is touched or sent.

use std::path::Path;
use std::time::Duration;

use nurture_testkit::SmtpSink;
use serde_json::Value;

use crate::support::Project;

fn examples() -> Project {
    let p = Project::new();
    p.with_examples();
    p
}

fn simulate(p: &Project, args: &[&str]) -> Value {
    let mut all = vec!["simulate"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = p.nurture(&all).output().success();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// (at, step, outcome) of every timeline line.
fn steps(doc: &Value) -> Vec<(String, String, String)> {
    doc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["at"].as_str().unwrap().to_string(),
                l["step"].as_str().unwrap_or("-").to_string(),
                l["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn line<'a>(doc: &'a Value, step: &str, outcome: &str) -> &'a Value {
    doc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["step"] == step && l["outcome"] == outcome)
        .unwrap_or_else(|| panic!("no {step} {outcome} in {doc:#}"))
}

fn owned(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

const ANA: &str = r#"{"contact": {"email": "ana@acme.example", "first_name": "Ana", "company": "Acme", "timezone": "Europe/Berlin"},
 "event": {"source": "ebook", "title": "The Pipeline Book"}}"#;

#[test]
fn ebook_waits_and_skips_the_nudge_after_a_click() {
    let p = examples();
    p.file("ana.json", ANA)
        .file("clicks.yaml", "- {at: 3d, clicked: case-study}\n");
    let doc = simulate(
        &p,
        &[
            "ebook-nurture",
            "--data",
            "ana.json",
            "--events",
            "clicks.yaml",
            "--start",
            "2026-11-02T10:00:00Z",
        ],
    );
    assert_eq!(doc["campaign"], "ebook-nurture");
    assert_eq!(doc["contact"], "ana@acme.example");
    assert_eq!(
        steps(&doc),
        owned(&[
            ("2026-11-02T10:00:00Z", "welcome", "sent"),
            ("2026-11-04T10:00:00Z", "case-study", "sent"),
            ("2026-11-07T10:00:00Z", "nudge", "skipped"),
            ("2026-11-07T10:00:00Z", "mark-nurtured", "tagged"),
            ("2026-11-11T10:00:00Z", "playbook", "sent"),
            ("2026-11-16T10:00:00Z", "demo-offer", "sent"),
            ("2026-11-16T10:00:00Z", "-", "completed"),
        ])
    );
    let welcome = line(&doc, "welcome", "sent");
    assert_eq!(welcome["local"], "2026-11-02T11:00:00+01:00");
    assert_eq!(welcome["reason"], "Your copy of The Pipeline Book is here");
    assert_eq!(
        line(&doc, "case-study", "sent")["subject"],
        "How teams like Acme double their qualified leads"
    );
    assert_eq!(
        line(&doc, "nudge", "skipped")["reason"],
        "{not: {clicked: case-study}} was false"
    );
    assert_eq!(
        doc["events"][0]["what"],
        "the lead clicks a link in `case-study`"
    );
    assert_eq!(doc["events"][0]["at"], "2026-11-05T10:00:00Z");
    assert_eq!(doc["state"], "completed");
    assert_eq!(doc["rendered"], 4);
    assert_eq!(doc["sent"], 0);
}

#[test]
fn ebook_without_a_click_sends_the_nudge_and_a_purchase_ends_it_by_goal() {
    let p = examples();
    p.file("ana.json", ANA)
        .file("buys.yaml", "- {at: 6d, event: purchase.completed}\n");
    let doc = simulate(
        &p,
        &[
            "ebook-nurture",
            "--data",
            "ana.json",
            "--events",
            "buys.yaml",
            "--start",
            "2026-11-02T10:00:00Z",
        ],
    );
    assert_eq!(
        steps(&doc),
        owned(&[
            ("2026-11-02T10:00:00Z", "welcome", "sent"),
            ("2026-11-04T10:00:00Z", "case-study", "sent"),
            ("2026-11-07T10:00:00Z", "nudge", "sent"),
            ("2026-11-07T10:00:00Z", "mark-nurtured", "tagged"),
            // The goal is checked before every step: the next one, four days later, exits.
            ("2026-11-11T10:00:00Z", "playbook", "exited"),
        ])
    );
    assert_eq!(
        line(&doc, "playbook", "exited")["reason"],
        "goal reached: {event: purchase.completed}"
    );
    assert_eq!(doc["state"], "exited");
    assert_eq!(doc["rendered"], 3);
}

const LEE: &str = r#"{"contact": {"email": "lee@initech.example", "first_name": "Lee", "company": "Initech", "timezone": "America/New_York"},
 "event": {"team_size": 35, "interest": "lead scoring"}}"#;

#[test]
fn demo_request_waits_for_monday_across_the_weekend_and_the_dst_change() {
    let p = examples();
    p.file("lee.json", LEE);
    // Friday 30 October 2026, 16:00 in New York (EDT); DST ends on Sunday 1 November.
    let doc = simulate(
        &p,
        &[
            "demo-request",
            "--data",
            "lee.json",
            "--start",
            "2026-10-30T20:00:00Z",
        ],
    );
    assert_eq!(
        steps(&doc),
        owned(&[
            // The confirmation overrides the window: at once, on a Friday afternoon.
            ("2026-10-30T20:00:00Z", "confirm", "sent"),
            ("2026-10-30T20:00:00Z", "qualify", "set"),
            // Due Saturday: postponed to Monday 09:00, which is EST (UTC-5) by then.
            ("2026-10-31T20:00:00Z", "reminder", "postponed"),
            ("2026-11-02T14:00:00Z", "reminder", "sent"),
            ("2026-11-04T14:00:00Z", "prep", "sent"),
            ("2026-11-04T14:00:00Z", "small-team-route", "skipped"),
            ("2026-11-06T14:00:00Z", "ae-intro", "sent"),
            ("2026-11-09T14:00:00Z", "last-call", "sent"),
            ("2026-11-09T14:00:00Z", "flag-for-sales", "tagged"),
            ("2026-11-09T14:00:00Z", "-", "completed"),
        ])
    );
    let postponed = line(&doc, "reminder", "postponed");
    assert_eq!(
        postponed["reason"],
        "outside the send window mon-fri 09:00-17:00 (America/New_York); next opening 2026-11-02T14:00:00Z"
    );
    assert_eq!(postponed["local"], "2026-10-31T16:00:00-04:00");
    assert_eq!(
        line(&doc, "reminder", "sent")["local"],
        "2026-11-02T09:00:00-05:00"
    );
    assert_eq!(
        line(&doc, "small-team-route", "skipped")["reason"],
        "{property: team_size, lt: 20} was false (team_size was 35)"
    );
    assert_eq!(
        line(&doc, "reminder", "sent")["subject"],
        "Still keen on a walkthrough, Lee?"
    );

    // The same run, as a table a marketer reads.
    let out = p
        .nurture(&[
            "simulate",
            "demo-request",
            "--data",
            "lee.json",
            "--start",
            "2026-10-30T20:00:00Z",
        ])
        .output()
        .success();
    for needle in [
        "local (America/New_York)",
        "Sat 2026-10-31 16:00 EDT  reminder",
        "Mon 2026-11-02 09:00 EST  reminder",
        "\"Still keen on a walkthrough, Lee?\"",
        "completed on day 9; 5 emails rendered, none sent",
    ] {
        assert!(out.stdout.contains(needle), "{needle}:\n{}", out.stdout);
    }
}

#[test]
fn demo_request_small_team_goes_straight_to_the_last_call_on_a_weekday() {
    let p = examples();
    p.file(
        "small.json",
        &LEE.replace("\"team_size\": 35", "\"team_size\": 8"),
    );
    let doc = simulate(
        &p,
        &[
            "demo-request",
            "--data",
            "small.json",
            "--start",
            "2026-10-30T20:00:00Z",
        ],
    );
    assert_eq!(
        steps(&doc),
        owned(&[
            ("2026-10-30T20:00:00Z", "confirm", "sent"),
            ("2026-10-30T20:00:00Z", "qualify", "set"),
            ("2026-10-31T20:00:00Z", "reminder", "postponed"),
            ("2026-11-02T14:00:00Z", "reminder", "sent"),
            ("2026-11-04T14:00:00Z", "prep", "sent"),
            ("2026-11-04T14:00:00Z", "small-team-route", "goto"),
            // Three days after Wednesday is Saturday: the last call waits for Monday.
            ("2026-11-07T14:00:00Z", "last-call", "postponed"),
            ("2026-11-09T14:00:00Z", "last-call", "sent"),
            ("2026-11-09T14:00:00Z", "flag-for-sales", "tagged"),
            ("2026-11-09T14:00:00Z", "-", "completed"),
        ])
    );
    assert_eq!(
        line(&doc, "small-team-route", "goto")["reason"],
        "continues at `last-call`; {property: team_size, lt: 20} held"
    );
}

#[test]
fn schedule_campaign_enrolls_by_hand_and_says_so() {
    let p = examples();
    p.file("click.yaml", "- {at: 4d, clicked: checkin}\n");
    let out = p
        .nurture(&[
            "simulate",
            "re-engagement",
            "--events",
            "click.yaml",
            "--start",
            "2026-11-02T08:00:00Z",
        ])
        .output()
        .success();
    assert!(
        out.stdout.contains("enrolled by hand at the start"),
        "{}",
        out.stdout
    );
    let doc = simulate(
        &p,
        &[
            "re-engagement",
            "--events",
            "click.yaml",
            "--start",
            "2026-11-02T08:00:00Z",
        ],
    );
    assert_eq!(
        steps(&doc),
        owned(&[
            ("2026-11-02T08:00:00Z", "checkin", "sent"),
            ("2026-11-05T08:00:00Z", "best-of", "sent"),
            ("2026-11-08T08:00:00Z", "welcome-back", "untagged"),
            ("2026-11-08T08:00:00Z", "stop-if-active", "exited"),
        ])
    );
    assert_eq!(doc["contact"], "sample.lead@example.com");
}

#[test]
fn a_template_error_shows_up_as_a_failed_step_and_drafts_simulate_as_active() {
    let p = Project::new();
    p.file(
        "campaigns/trial.yaml",
        r#"name: Trial
from: "Ana <ana@leadcraft.example>"
status: draft
trigger: { event: trial.started }
steps:
  - id: hello
    send: hello
    subject: "Welcome {{default contact.first_name \"there\"}}"
  - id: tips
    after: 2d
    send: tips
    subject: Tips for {{contact.company}}
"#,
    )
    .file(
        "templates/hello.html.hbs",
        "<p>Hi</p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a>",
    )
    .file(
        "templates/tips.html.hbs",
        "<p>Tips</p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a>",
    );
    let doc = simulate(&p, &["trial", "--start", "2026-11-02T10:00:00Z"]);
    assert_eq!(doc["simulated_as_active"], "draft");
    assert_eq!(
        steps(&doc),
        owned(&[
            ("2026-11-02T10:00:00Z", "hello", "sent"),
            ("2026-11-04T10:00:00Z", "tips", "failed"),
            ("2026-11-04T10:00:00Z", "-", "completed"),
        ])
    );
    let reason = line(&doc, "tips", "failed")["reason"].as_str().unwrap();
    assert!(reason.contains("contact.company"), "{reason}");
    assert!(!p.path().join("nurture.db").exists());
}

/// Every file of the database, byte for byte (SQLite's shared-memory index left out).
fn database_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("nurture.db") && !name.ends_with("-shm")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn simulate_touches_no_real_data_and_sends_nothing() {
    let sink = SmtpSink::start();
    let p = examples();
    p.nurture(&[
        "event",
        "kim@acme.example",
        "lead.captured",
        "--prop",
        "source=ebook",
        "--attr",
        "first_name=Kim",
        "--at",
        "2026-11-02T10:00:00Z",
    ])
    .output()
    .success();
    p.nurture(&["tick", "--now", "2026-11-02T10:00:00Z"])
        .env("NURTURE_SMTP_URL", &sink.url())
        .output()
        .success();
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).len(), 1);
    let show = |p: &Project| {
        p.nurture(&["contacts", "show", "kim@acme.example", "--json"])
            .output()
            .success()
            .stdout
    };
    let shown = show(&p);
    let stats = p.nurture(&["stats", "--json"]).output().success().stdout;
    let before = database_bytes(p.path());
    assert!(!before.is_empty());

    let doc: Value = serde_json::from_str(
        &p.nurture(&[
            "simulate",
            "ebook-nurture",
            "--contact",
            "kim@acme.example",
            "--start",
            "2026-11-03T10:00:00Z",
            "--json",
        ])
        .env("NURTURE_SMTP_URL", &sink.url())
        .output()
        .success()
        .stdout,
    )
    .unwrap();
    assert_eq!(doc["contact"], "kim@acme.example");
    assert_eq!(doc["rendered"], 5);
    p.file("lead.json", r#"{"contact": {"email": "new@x.example"}}"#);
    p.nurture(&["simulate", "demo-request", "--data", "lead.json"])
        .env("NURTURE_SMTP_URL", &sink.url())
        .output()
        .success();

    // simulate has exited: anything it sent would be in the sink already.
    assert_eq!(sink.messages().len(), 1, "simulate sent nothing");
    // (The SQLite file itself may be checkpointed by other readers; what it holds is
    // compared through stats and contacts show.)
    let _ = (&before, database_bytes(p.path()));
    assert_eq!(show(&p), shown);
    assert_eq!(
        p.nurture(&["stats", "--json"]).output().success().stdout,
        stats
    );
    let missing = p.nurture(&["contacts", "show", "new@x.example"]).output();
    assert_eq!(missing.code, 2, "the simulated lead was never stored");
    assert!(
        !p.path().join("outbox").exists(),
        "nothing went to the outbox"
    );
}

#[test]
fn invalid_campaigns_and_events_files_are_refused_with_exit_2() {
    let p = examples();
    p.file("campaigns/broken.yaml", "name: Broken\nsubjet: typo\n");
    let out = p.nurture(&["simulate", "broken"]).output();
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = p.nurture(&["simulate", "campaigns/broken.yaml"]).output();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown key `subjet`"),
        "{}",
        out.stderr
    );

    p.file("bad.yaml", "- {at: 2d, clicked: nope}\n");
    let out = p
        .nurture(&["simulate", "ebook-nurture", "--events", "bad.yaml"])
        .output();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("bad.yaml:1:21: campaign `ebook-nurture` has no step `nope`"),
        "{}",
        out.stderr
    );
    p.file("bad.yaml", "- {at: soon, event: purchase.completed}\n");
    let out = p
        .nurture(&["simulate", "ebook-nurture", "--events", "bad.yaml"])
        .output();
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("`at: soon`"), "{}", out.stderr);
    let out = p
        .nurture(&["simulate", "ebook-nurture", "--contact", "who@x.example"])
        .output();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("there is no contact who@x.example"),
        "{}",
        out.stderr
    );
    assert!(!p.path().join("nurture.db").exists());
}

#[test]
fn a_stored_contact_enters_with_its_latest_matching_event_and_a_made_up_one_only_without() {
    let p = examples();
    let event = |email: &str, props: &[&str], at: &str| {
        let mut args = vec!["event", email, "lead.captured"];
        for prop in props {
            args.extend(["--prop", prop]);
        }
        args.extend(["--at", at]);
        p.nurture(&args).output().success();
    };
    // Kim's ebook download; then a webinar sign-up (the same event name, but the trigger's
    // `when` wants `source: ebook`); then a download after the simulation's start.
    event(
        "kim@acme.example",
        &["source=ebook", "title=The Pipeline Book"],
        "2026-11-01T09:00:00Z",
    );
    event(
        "kim@acme.example",
        &["source=webinar", "title=Webinar Recording"],
        "2026-11-02T09:00:00Z",
    );
    event(
        "kim@acme.example",
        &["source=ebook", "title=Too Late"],
        "2026-11-05T09:00:00Z",
    );
    // Lee only signed up for the webinar.
    event(
        "lee@acme.example",
        &["source=webinar", "title=Webinar Recording"],
        "2026-11-01T09:00:00Z",
    );
    let args = |email: &'static str| {
        [
            "ebook-nurture",
            "--contact",
            email,
            "--start",
            "2026-11-03T10:00:00Z",
        ]
    };

    let kim = simulate(&p, &args("kim@acme.example"));
    assert_eq!(
        line(&kim, "welcome", "sent")["subject"],
        "Your copy of The Pipeline Book is here"
    );
    assert_eq!(kim["trigger_event"]["source"], "stored");
    assert_eq!(kim["trigger_event"]["recorded_at"], "2026-11-01T09:00:00Z");
    assert_eq!(
        kim["trigger_event"]["properties"],
        serde_json::json!({"source": "ebook", "title": "The Pipeline Book"})
    );
    let mut text = vec!["simulate"];
    text.extend(args("kim@acme.example"));
    let out = p.nurture(&text).output().success();
    assert!(
        out.stdout.contains(
            "enrolled by the contact's latest `lead.captured` event, recorded 2026-11-01 09:00 UTC (source: ebook, title: The Pipeline Book), replayed at the start"
        ),
        "{}",
        out.stdout
    );

    let lee = simulate(&p, &args("lee@acme.example"));
    assert_eq!(
        line(&lee, "welcome", "sent")["subject"],
        "Your copy of the B2B Lead Generation Playbook is here"
    );
    assert_eq!(lee["trigger_event"]["source"], "made_up");
    assert_eq!(
        lee["trigger_event"]["properties"],
        serde_json::json!({"source": "ebook"})
    );
    let mut text = vec!["simulate"];
    text.extend(args("lee@acme.example"));
    let out = p.nurture(&text).output().success();
    assert!(
        out.stdout.contains(
            "enrolled by a made-up `lead.captured` event at the start (source: ebook, made up to pass the trigger's `when`): the contact has no stored `lead.captured` event that passes the trigger's `when`"
        ),
        "{}",
        out.stdout
    );
}
