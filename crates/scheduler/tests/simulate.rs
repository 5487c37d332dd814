//! The simulation as a library: a real engine on a throwaway database, the caller's renderer
//! asked for every email, nothing sent, the timeline read back — and the inputs it is built
//! from (events files, stored leads) refused with positions and typed errors.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use nurture_campaign::{CampaignFile, SourceFile, parse_campaign};
use nurture_scheduler::simulate::{
    EventSource, Lead, Rehearse, Rehearsed, Report, ScriptError, SimulateError, Simulation,
    parse_script, simulate,
};
use nurture_scheduler::{EngineConfig, Failure, Job};

#[macro_use]
mod support;

use support::{Backend, World};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const DRIP: &str = r#"
from: ana@leadcraft.example
trigger: { event: lead.captured }
exit_when: { event: purchase.completed }
steps:
  - id: welcome
    send: welcome
    subject: Welcome
  - id: tag
    tag: nurtured
  - id: follow-up
    after: 2d
    send: follow-up
    subject: Later
"#;

fn drip(status: &str) -> CampaignFile {
    let text = format!("status: {status}\n{DRIP}");
    parse_campaign(SourceFile::new("drip.yaml", text.as_str()), "drip").unwrap()
}

/// Renders by naming the step; fails the steps in `failing`; remembers whom it rendered for.
#[derive(Clone, Default)]
struct Stub {
    failing: Vec<&'static str>,
    rendered: Arc<Mutex<Vec<(String, String)>>>,
}

impl Rehearse for Stub {
    fn rehearse(&self, job: &Job<'_>) -> Result<Rehearsed, Failure> {
        let step = job.step.id.as_str();
        self.rendered
            .lock()
            .unwrap()
            .push((job.contact.email.clone(), step.to_string()));
        if self.failing.contains(&step) {
            return Err(Failure::Render(format!("`{step}` needs contact.company")));
        }
        Ok(Rehearsed {
            message_id: format!("<{}@test>", job.message.id),
            subject: Some(format!("Hello from {step}")),
        })
    }
}

/// (at, step, outcome) of every timeline line.
fn rows(report: &Report) -> Vec<(DateTime<Utc>, String, String)> {
    report
        .timeline
        .iter()
        .map(|l| {
            (
                l.at,
                l.step.clone().unwrap_or_else(|| "-".into()),
                l.outcome.clone(),
            )
        })
        .collect()
}

fn row(t: DateTime<Utc>, step: &str, outcome: &str) -> (DateTime<Utc>, String, String) {
    (t, step.to_string(), outcome.to_string())
}

async fn run(
    file: &CampaignFile,
    lead: Lead,
    script: &[nurture_scheduler::simulate::Scripted],
    start: DateTime<Utc>,
    stub: Stub,
) -> Report {
    simulate(
        Simulation {
            file,
            lead,
            script,
            start,
            days: 30,
            config: EngineConfig::default(),
        },
        stub,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_draft_drip_runs_as_active_and_every_email_goes_through_the_renderer_only() {
    let file = drip("draft");
    let stub = Stub::default();
    // A fraction of a second: the simulation starts on the whole second.
    let start = at("2026-11-02T10:00:00.750Z");
    let t0 = at("2026-11-02T10:00:00Z");
    let report = run(&file, Lead::made_up(), &[], start, stub.clone()).await;

    assert_eq!(report.start, t0);
    assert_eq!(report.end, t0 + Duration::days(30));
    assert_eq!(report.inactive, Some("draft"));
    assert_eq!(
        report.entry.as_deref(),
        Ok("enrolled by a `lead.captured` event at the start")
    );
    assert_eq!(
        rows(&report),
        vec![
            row(t0, "welcome", "sent"),
            row(t0, "tag", "tagged"),
            row(t0 + Duration::days(2), "follow-up", "sent"),
            row(t0 + Duration::days(2), "-", "completed"),
        ]
    );
    assert_eq!(
        report.timeline[0].subject.as_deref(),
        Some("Hello from welcome")
    );
    assert_eq!(report.timeline[1].reason, "adds the tag nurtured");
    assert_eq!(report.rendered, 2);
    assert_eq!(report.failed, 0);
    assert_eq!(
        *stub.rendered.lock().unwrap(),
        vec![
            ("sample.lead@example.com".to_string(), "welcome".to_string()),
            (
                "sample.lead@example.com".to_string(),
                "follow-up".to_string()
            ),
        ]
    );
    assert_eq!(report.ending().0, "completed");
    let json = serde_json::to_value(report.json()).unwrap();
    assert_eq!(json["sent"], 0);
    assert_eq!(json["simulated_as_active"], "draft");
    let text = report.to_string();
    assert!(
        text.ends_with("completed on day 2; 2 emails rendered, none sent\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_render_failure_fails_its_step_and_is_counted() {
    let file = drip("active");
    let stub = Stub {
        failing: vec!["follow-up"],
        ..Stub::default()
    };
    let t0 = at("2026-11-02T10:00:00Z");
    let report = run(&file, Lead::made_up(), &[], t0, stub).await;
    let failed = report
        .timeline
        .iter()
        .find(|l| l.step.as_deref() == Some("follow-up"))
        .unwrap();
    assert_eq!(failed.outcome, "failed");
    assert!(
        failed.reason.contains("contact.company"),
        "{}",
        failed.reason
    );
    assert_eq!((report.rendered, report.failed), (1, 1));
    assert_eq!(report.inactive, None);
}

#[tokio::test]
async fn a_scripted_purchase_ends_the_drip_by_its_goal_and_late_actions_are_not_applied() {
    let file = drip("active");
    let t0 = at("2026-11-02T10:00:00Z");
    let script = parse_script(
        &SourceFile::new(
            "events.yaml",
            "- {at: 40d, tag: late}\n\
             - {at: 1d, event: purchase.completed, properties: {amount: 3}}\n\
             - {at: 12h, clicked: follow-up}\n",
        ),
        &file.campaign,
        t0,
    )
    .unwrap();
    let report = run(&file, Lead::made_up(), &script, t0, Stub::default()).await;

    // The goal is checked when the follow-up comes due: the lead leaves instead of getting it.
    assert_eq!(
        rows(&report),
        vec![
            row(t0, "welcome", "sent"),
            row(t0, "tag", "tagged"),
            row(t0 + Duration::days(2), "follow-up", "exited"),
        ]
    );
    assert_eq!(report.rendered, 1);
    assert_eq!(report.ending().0, "exited");
    let actions: Vec<_> = report
        .lead_actions
        .iter()
        .map(|l| (l.at, l.what.as_str(), l.note.as_deref()))
        .collect();
    assert_eq!(
        actions,
        vec![
            (
                t0 + Duration::hours(12),
                "the lead clicks a link in `follow-up`",
                Some("no effect: `follow-up` has not been sent to the lead by then"),
            ),
            (
                t0 + Duration::days(1),
                "the lead has a `purchase.completed` event (amount: 3)",
                None,
            ),
            (
                t0 + Duration::days(40),
                "the lead is tagged late",
                Some("after the simulated period; not applied"),
            ),
        ]
    );
}

#[test]
fn events_file_problems_point_at_their_line_and_column() {
    let file = drip("active");
    let t0 = at("2026-11-02T10:00:00Z");
    let cases = [
        (
            "- {at: 2d, clicked: nope}\n",
            "events.yaml:1:21: campaign `drip` has no step `nope` (steps: welcome, tag, follow-up)",
        ),
        (
            "- {at: 2d, opened: tag}\n",
            "events.yaml:1:20: step `tag` sends no email, so it cannot be opened",
        ),
        (
            "- {at: 1d}\n",
            "events.yaml:1:3: the item does nothing: add one of event, clicked, opened, attribute, tag, untag",
        ),
        (
            "- {at: 1d, tag: a, untag: b}\n",
            "events.yaml:1:20: one action per item: `untag` comes after another one",
        ),
        (
            "a: 1\n",
            "events.yaml:1:1: the events file must be a list, such as `- {at: 2d, clicked: case-study}`",
        ),
    ];
    for (text, expected) in cases {
        let err =
            parse_script(&SourceFile::new("events.yaml", text), &file.campaign, t0).unwrap_err();
        assert!(matches!(err, ScriptError::At { .. }), "{text}");
        assert_eq!(err.to_string(), expected, "{text}");
    }
    let err = parse_script(
        &SourceFile::new("events.yaml", "- {at: soon, event: x}\n"),
        &file.campaign,
        t0,
    )
    .unwrap_err();
    assert!(err.to_string().contains("`at: soon` is neither"), "{err}");
    let err = parse_script(
        &SourceFile::new("events.yaml", "- [unclosed\n"),
        &file.campaign,
        t0,
    )
    .unwrap_err();
    assert!(matches!(err, ScriptError::Yaml { .. }));
    assert_eq!(err.to_string(), "events.yaml is not a valid events file");
}

#[tokio::test]
async fn a_lead_from_a_missing_database_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nothing.db").display());
    let file = drip("active");
    let err = Lead::stored(
        &url,
        "who@x.example",
        &file.campaign,
        at("2026-11-02T10:00:00Z"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SimulateError::NoDatabase(_)), "{err}");
    assert!(err.is_invalid_input());
    assert_eq!(
        err.to_string(),
        "there is no contact who@x.example (the database does not exist yet)"
    );
    assert!(!dir.path().join("nothing.db").exists());
}

/// A stored contact enters with its latest trigger event before the start, replayed; its
/// real database is only read.
async fn a_stored_lead_replays_its_latest_trigger_event(backend: Backend) {
    let w = World::new(backend).await;
    let file = drip("active");
    let t0 = at("2026-11-02T10:00:00Z");
    support::capture(
        &w.engine,
        "kim@x.example",
        "lead.captured",
        t0 - Duration::days(1),
    )
    .await;
    // After the start: not part of the lead's history.
    support::capture(
        &w.engine,
        "kim@x.example",
        "lead.captured",
        t0 + Duration::days(1),
    )
    .await;

    let err = Lead::stored(&w.url, "who@x.example", &file.campaign, t0)
        .await
        .unwrap_err();
    assert!(matches!(err, SimulateError::NoContact(_)), "{err}");
    assert!(err.is_invalid_input());

    let lead = Lead::stored(&w.url, "kim@x.example", &file.campaign, t0)
        .await
        .unwrap();
    assert_eq!(lead.origin, "a stored contact");
    assert_eq!(lead.history.len(), 1);
    assert_eq!(
        lead.event_source,
        EventSource::Stored(t0 - Duration::days(1))
    );
    let report = run(&file, lead, &[], t0, Stub::default()).await;
    assert_eq!(
        report.entry.as_deref(),
        Ok(
            "enrolled by the contact's latest `lead.captured` event, recorded 2026-11-01 10:00 UTC, replayed at the start"
        )
    );
    assert_eq!(report.rendered, 2);
    // The real database is only read: the simulated sends are not in it.
    let mut tx = w.engine.store().begin().await.unwrap();
    let kim = tx.contact_by_email("kim@x.example").await.unwrap().unwrap();
    assert!(tx.contact_messages(kim.id).await.unwrap().is_empty());
    assert!(tx.contact_enrollments(kim.id).await.unwrap().is_empty());
    tx.commit().await.unwrap();
}

both!(a_stored_lead_replays_its_latest_trigger_event);
