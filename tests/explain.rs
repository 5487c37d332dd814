//! `explain`: a contact's story from what the engine recorded — the condition that was false
//! and the value it saw, the send-window postponement, each SMTP attempt with its reply, the
//! suppression that stopped the mail.

use std::time::Duration;

use nurture_testkit::SmtpSink;

use crate::support::Project;

fn tick(p: &Project, now: &str, smtp: &str) {
    p.nurture(&["tick", "--now", now])
        .env("NURTURE_SMTP_URL", smtp)
        .output()
        .success();
}

#[test]
fn explain_names_the_false_condition_the_postponement_and_the_smtp_reply() {
    let sink = SmtpSink::start();
    let p = Project::new();
    p.with_examples();
    // Friday 16:00 in New York; the reminder falls on Saturday.
    p.nurture(&[
        "event",
        "lee@initech.example",
        "demo.requested",
        "--prop",
        "team_size=35",
        "--attr",
        "first_name=Lee",
        "--attr",
        "timezone=America/New_York",
        "--at",
        "2026-10-30T20:00:00Z",
    ])
    .output()
    .success();
    for now in [
        "2026-10-30T20:00:00Z",
        "2026-10-31T20:00:00Z",
        "2026-11-02T14:00:00Z",
        "2026-11-04T14:00:00Z",
    ] {
        tick(&p, now, &sink.url());
    }
    // Three from this campaign (the Monday schedule of re-engagement sends a fourth).
    assert!(sink.wait_for(3, Duration::from_secs(5)).len() >= 3);
    let out = p
        .nurture(&["explain", "lee@initech.example", "demo-request"])
        .output()
        .success();
    let text = out.stdout;
    for needle in [
        "lee@initech.example: subscribed",
        "demo-request: enrolled 2026-10-30 20:00 UTC by a `demo.requested` event (team_size: 35)",
        "now: active; next step `ae-intro` due 2026-11-06 14:00 UTC",
        "2026-10-31 20:00 UTC  reminder          postponed  outside the send window mon-fri 09:00-17:00 (America/New_York); next opening 2026-11-02T14:00:00Z",
        "2026-11-02 14:00 UTC  reminder          sent       message <",
        "attempt 1 at 2026-11-02 14:00 UTC: sent (250",
        "2026-11-04 14:00 UTC  small-team-route  skipped    {property: team_size, lt: 20} was false (team_size was 35)",
        "2026-10-30 20:00 UTC  qualify           set        set lifecycle_stage = sales_qualified",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    // In time order: the postponement sits between the confirmation and the reminder.
    let pos = |s: &str| text.find(s).unwrap();
    assert!(pos("confirm ") < pos("postponed") && pos("postponed") < pos("reminder          sent"));
}

#[test]
fn explain_shows_retries_with_their_replies_and_suppression_since_when() {
    let soft = SmtpSink::builder().soft_reject("rcpt").start();
    let p = Project::new();
    p.with_examples();
    p.nurture(&[
        "event",
        "sam@globex.example",
        "lead.captured",
        "--prop",
        "source=ebook",
        "--at",
        "2026-11-02T10:00:00Z",
    ])
    .output()
    .success();
    tick(&p, "2026-11-02T10:00:00Z", &soft.url());
    tick(&p, "2026-11-02T10:01:00Z", &soft.url());
    let out = p
        .nurture(&["explain", "sam@globex.example"])
        .output()
        .success();
    for needle in [
        "welcome  deferred   retrying 2026-11-02 10:06 UTC; last reply: RCPT TO failed: transient error (450)",
        "attempt 1 at 2026-11-02 10:00 UTC: deferred (",
        "attempt 2 at 2026-11-02 10:01 UTC: deferred (",
    ] {
        assert!(
            out.stdout.contains(needle),
            "missing {needle}:\n{}",
            out.stdout
        );
    }

    p.nurture(&["contacts", "unsubscribe", "sam@globex.example"])
        .output()
        .success();
    tick(&p, "2026-11-02T10:10:00Z", &soft.url());
    let out = p
        .nurture(&["explain", "sam@globex.example", "ebook-nurture"])
        .output()
        .success();
    for needle in [
        "sam@globex.example: unsubscribed since ",
        "(unsubscribed from the command line); gets no more email from any campaign",
        "exited ",
        ": the contact unsubscribed; it was waiting for `case-study`",
        "welcome  suppressed  not sent: the contact was no longer mailable (unsubscribed since ",
    ] {
        assert!(
            out.stdout.contains(needle),
            "missing {needle}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn explain_says_why_a_contact_never_entered_a_campaign() {
    let p = Project::new();
    p.with_examples();
    p.nurture(&[
        "event",
        "kim@acme.example",
        "lead.captured",
        "--prop",
        "source=webinar",
        "--at",
        "2026-11-02T10:00:00Z",
    ])
    .output()
    .success();
    p.nurture(&["tick", "--now", "2026-11-02T10:00:00Z"])
        .output()
        .success();
    let out = p
        .nurture(&["explain", "kim@acme.example", "ebook-nurture"])
        .output()
        .success();
    for needle in [
        "never enrolled in ebook-nurture",
        "`lead.captured` was recorded 1 time (last 2026-11-02 10:00 UTC with source: webinar), and enrolled nobody:",
        "the trigger's `when` must hold: {property: source, equals: \"ebook\"}",
    ] {
        assert!(
            out.stdout.contains(needle),
            "missing {needle}:\n{}",
            out.stdout
        );
    }
    let out = p
        .nurture(&["explain", "kim@acme.example", "webinar-follow-up"])
        .output()
        .success();
    assert!(
        out.stdout
            .contains("no `webinar.attended` event was recorded for this contact"),
        "{}",
        out.stdout
    );
    let out = p.nurture(&["explain", "nobody@x.example"]).output();
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("there is no contact nobody@x.example"));
    let out = p.nurture(&["explain", "kim@acme.example", "nope"]).output();
    assert_eq!(out.code, 2);
}
