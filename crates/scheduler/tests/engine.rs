//! The engine against real databases: a SQLite file per test, and (through `scripts/test`)
//! a fresh PostgreSQL database per test. Time is driven by the `now` passed in; no sleeps.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, Utc};
use nurture_campaign::{CampaignFile, SourceFile, parse_campaign};
use nurture_scheduler::{Engine, EngineConfig};
use nurture_store::{NewEnrollment, NewEvent, Upsert};
use serde_json::{Map, Value, json};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn campaign(id: &str, yaml: &str) -> CampaignFile {
    parse_campaign(SourceFile::new(format!("{id}.yaml"), yaml), id)
        .unwrap_or_else(|d| panic!("{d:#?}"))
}

mod support;

use support::{Backend, World};

async fn world(backend: Backend, files: &[CampaignFile], t0: DateTime<Utc>) -> World {
    let w = World::new(backend).await;
    w.engine.sync(files, true, t0).await.unwrap();
    w
}

async fn event(
    engine: &Engine,
    email: &str,
    name: &str,
    props: Value,
    attrs: Value,
    t: DateTime<Utc>,
) -> i64 {
    let mut tx = engine.store().begin().await.unwrap();
    let (contact, _) = tx
        .upsert_contact(
            &Upsert {
                email: email.into(),
                attributes: attrs.as_object().cloned().unwrap_or_default(),
                ..Default::default()
            },
            t.timestamp_millis(),
        )
        .await
        .unwrap();
    tx.insert_event(
        &NewEvent {
            contact_id: contact.id,
            name: name.into(),
            properties: props.as_object().cloned().unwrap_or_else(Map::new),
            occurred_at: t.timestamp_millis(),
            ..Default::default()
        },
        t.timestamp_millis(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    contact.id
}

/// (step id, state) of every message of a contact, oldest first.
async fn messages(engine: &Engine, email: &str) -> Vec<String> {
    let mut tx = engine.store().begin().await.unwrap();
    let c = tx.contact_by_email(email).await.unwrap().unwrap();
    let m = tx.contact_messages(c.id).await.unwrap();
    tx.commit().await.unwrap();
    m.into_iter().map(|m| m.step_id).collect()
}

async fn enrollment_state(
    engine: &Engine,
    email: &str,
) -> (
    String,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<String>,
) {
    let mut tx = engine.store().begin().await.unwrap();
    let c = tx.contact_by_email(email).await.unwrap().unwrap();
    let e = tx.contact_enrollments(c.id).await.unwrap().pop().unwrap();
    tx.commit().await.unwrap();
    (
        e.state.to_string(),
        e.step_id,
        e.next_run_at.map(nurture_scheduler::from_ms),
        e.exit_reason,
    )
}

const DRIP: &str = r#"
from: "Ana <ana@leadcraft.example>"
trigger: { event: lead.captured, when: { property: source, equals: ebook } }
exit_when: { event: purchase.completed }
steps:
  - id: welcome
    send: ebook/welcome
    subject: Welcome
  - id: follow-up
    after: 2d
    send: ebook/follow-up
    subject: Two days later
  - id: nudge
    after: 1d
    when: { not: { clicked: follow-up } }
    send: ebook/nudge
    subject: Nudge
  - id: mark
    tag: [nurtured]
"#;

async fn wait_of_two_days_does_not_send_early(backend: Backend) {
    let t0 = at("2026-11-02T10:00:00Z");
    let w = world(backend, &[campaign("drip", DRIP)], t0).await;
    event(
        &w.engine,
        "lead@x.example",
        "lead.captured",
        json!({"source": "ebook"}),
        json!({}),
        t0,
    )
    .await;
    let out = w.engine.run_once(t0).await.unwrap();
    assert_eq!((out.events, out.enrolled, out.queued), (1, 1, 1));
    assert_eq!(messages(&w.engine, "lead@x.example").await, ["welcome"]);

    w.engine
        .run_once(t0 + Duration::days(2) - Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(messages(&w.engine, "lead@x.example").await, ["welcome"]);

    w.engine.run_once(t0 + Duration::days(2)).await.unwrap();
    assert_eq!(
        messages(&w.engine, "lead@x.example").await,
        ["welcome", "follow-up"]
    );
    // Running the same moment again changes nothing.
    let again = w.engine.run_once(t0 + Duration::days(2)).await.unwrap();
    assert_eq!(again.steps, 0);
    assert_eq!(
        messages(&w.engine, "lead@x.example").await,
        ["welcome", "follow-up"]
    );
}

async fn trigger_filter_and_completion_with_tag(backend: Backend) {
    let t0 = at("2026-11-02T10:00:00Z");
    let w = world(backend, &[campaign("drip", DRIP)], t0).await;
    event(
        &w.engine,
        "webinar@x.example",
        "lead.captured",
        json!({"source": "webinar"}),
        json!({}),
        t0,
    )
    .await;
    event(
        &w.engine,
        "ebook@x.example",
        "lead.captured",
        json!({"source": "ebook"}),
        json!({}),
        t0,
    )
    .await;
    w.engine.run_once(t0).await.unwrap();
    assert!(messages(&w.engine, "webinar@x.example").await.is_empty());
    // Each wait counts from when the previous step ran.
    w.engine.run_once(t0 + Duration::days(2)).await.unwrap();
    w.engine.run_once(t0 + Duration::days(3)).await.unwrap();
    assert_eq!(
        messages(&w.engine, "ebook@x.example").await,
        ["welcome", "follow-up", "nudge"]
    );
    let (state, ..) = enrollment_state(&w.engine, "ebook@x.example").await;
    assert_eq!(state, "completed");
    let mut tx = w.engine.store().begin().await.unwrap();
    let c = tx
        .contact_by_email("ebook@x.example")
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(c.tags, ["nurtured"]);
}

async fn goal_event_exits_before_the_next_step(backend: Backend) {
    let t0 = at("2026-11-02T10:00:00Z");
    let w = world(backend, &[campaign("drip", DRIP)], t0).await;
    event(
        &w.engine,
        "buyer@x.example",
        "lead.captured",
        json!({"source": "ebook"}),
        json!({}),
        t0,
    )
    .await;
    w.engine.run_once(t0).await.unwrap();
    event(
        &w.engine,
        "buyer@x.example",
        "purchase.completed",
        json!({}),
        json!({}),
        t0 + Duration::days(1),
    )
    .await;
    w.engine.run_once(t0 + Duration::days(2)).await.unwrap();
    assert_eq!(messages(&w.engine, "buyer@x.example").await, ["welcome"]);
    let (state, _, _, reason) = enrollment_state(&w.engine, "buyer@x.example").await;
    assert_eq!(
        (state.as_str(), reason.as_deref()),
        ("exited", Some("goal"))
    );
}

async fn reentry_never_enrolls_once(backend: Backend) {
    let t0 = at("2026-11-02T10:00:00Z");
    let w = world(backend, &[campaign("drip", DRIP)], t0).await;
    for i in 0..3 {
        event(
            &w.engine,
            "again@x.example",
            "lead.captured",
            json!({"source": "ebook"}),
            json!({}),
            t0 + Duration::days(i * 10),
        )
        .await;
        w.engine
            .run_once(t0 + Duration::days(i * 10))
            .await
            .unwrap();
    }
    assert_eq!(
        messages(&w.engine, "again@x.example").await,
        ["welcome", "follow-up", "nudge"]
    );
}

async fn weekend_window_in_new_york_across_the_dst_change(backend: Backend) {
    let yaml = r#"
from: ana@leadcraft.example
trigger: { event: demo.requested }
send_window: { days: [mon, tue, wed, thu, fri], hours: "09:00-17:00", timezone: contact }
steps:
  - id: confirm
    send: demo/confirm
    subject: Your demo
"#;
    // Saturday 31 October 2026, 12:00 in New York (EDT, UTC-4). DST ends Sunday 1 November.
    let t0 = at("2026-10-31T16:00:00Z");
    let w = world(backend, &[campaign("demo", yaml)], t0).await;
    event(
        &w.engine,
        "ny@x.example",
        "demo.requested",
        json!({}),
        json!({"timezone": "America/New_York"}),
        t0,
    )
    .await;
    w.engine.run_once(t0).await.unwrap();
    assert!(messages(&w.engine, "ny@x.example").await.is_empty());
    let (_, step, next, _) = enrollment_state(&w.engine, "ny@x.example").await;
    // Monday 2 November, 09:00 EST = 14:00 UTC.
    assert_eq!(
        (step.as_deref(), next),
        (Some("confirm"), Some(at("2026-11-02T14:00:00Z")))
    );
    w.engine.run_once(at("2026-11-02T13:59:00Z")).await.unwrap();
    assert!(messages(&w.engine, "ny@x.example").await.is_empty());
    w.engine.run_once(at("2026-11-02T14:00:00Z")).await.unwrap();
    assert_eq!(messages(&w.engine, "ny@x.example").await, ["confirm"]);
}

async fn removed_step_moves_waiting_enrollments_to_the_next_surviving_step(backend: Backend) {
    let t0 = at("2026-11-02T10:00:00Z");
    let w = world(backend, &[campaign("drip", DRIP)], t0).await;
    event(
        &w.engine,
        "edit@x.example",
        "lead.captured",
        json!({"source": "ebook"}),
        json!({}),
        t0,
    )
    .await;
    w.engine.run_once(t0).await.unwrap();
    assert_eq!(
        enrollment_state(&w.engine, "edit@x.example")
            .await
            .1
            .as_deref(),
        Some("follow-up")
    );
    let edited = DRIP.replace("  - id: follow-up\n    after: 2d\n    send: ebook/follow-up\n    subject: Two days later\n", "");
    let edited = edited.replace(
        "when: { not: { clicked: follow-up } }",
        "when: { not: { clicked: welcome } }",
    );
    let report = w
        .engine
        .sync(&[campaign("drip", &edited)], true, t0 + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(
        report.remapped,
        [(
            "drip".to_string(),
            "follow-up".to_string(),
            "nudge".to_string(),
            1
        )]
    );
    assert_eq!(
        enrollment_state(&w.engine, "edit@x.example")
            .await
            .1
            .as_deref(),
        Some("nudge")
    );
    // A removed file stops the campaign.
    let report = w
        .engine
        .sync(&[], true, t0 + Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(report.removed, ["drip"]);
    let (state, _, _, reason) = enrollment_state(&w.engine, "edit@x.example").await;
    assert_eq!(
        (state.as_str(), reason.as_deref()),
        ("exited", Some("campaign_removed"))
    );
}

async fn paused_campaign_holds_and_resumes(backend: Backend) {
    let t0 = at("2026-11-02T10:00:00Z");
    let w = world(backend, &[campaign("drip", DRIP)], t0).await;
    event(
        &w.engine,
        "p@x.example",
        "lead.captured",
        json!({"source": "ebook"}),
        json!({}),
        t0,
    )
    .await;
    w.engine.run_once(t0).await.unwrap();
    let paused = DRIP.replace("from:", "status: paused\nfrom:");
    w.engine
        .sync(&[campaign("drip", &paused)], true, t0)
        .await
        .unwrap();
    w.engine.run_once(t0 + Duration::days(5)).await.unwrap();
    assert_eq!(messages(&w.engine, "p@x.example").await, ["welcome"]);
    w.engine
        .sync(&[campaign("drip", DRIP)], true, t0)
        .await
        .unwrap();
    w.engine.run_once(t0 + Duration::days(5)).await.unwrap();
    assert_eq!(
        messages(&w.engine, "p@x.example").await,
        ["welcome", "follow-up"]
    );
}

async fn missed_schedule_firings_fire_once(backend: Backend) {
    let yaml = r#"
from: ana@leadcraft.example
trigger: { schedule: "0 9 * * *", timezone: Europe/Berlin }
audience: { not: { tag: customer } }
reentry: after_exit
steps:
  - id: digest
    send: digest
    subject: Digest
"#;
    let t0 = at("2026-11-02T06:00:00Z");
    let w = world(backend, &[campaign("daily", yaml)], t0).await;
    event(
        &w.engine,
        "a@x.example",
        "signed.up",
        json!({}),
        json!({}),
        t0,
    )
    .await;
    // Down for three days: 3 firings missed, one fires.
    let out = w.engine.run_once(at("2026-11-05T12:00:00Z")).await.unwrap();
    assert_eq!((out.firings, out.enrolled), (1, 1));
    assert_eq!(messages(&w.engine, "a@x.example").await, ["digest"]);
    let again = w.engine.run_once(at("2026-11-05T12:30:00Z")).await.unwrap();
    assert_eq!(again.firings, 0);
    let next = w.engine.run_once(at("2026-11-06T08:00:00Z")).await.unwrap();
    assert_eq!(next.firings, 1);
    assert_eq!(
        messages(&w.engine, "a@x.example").await,
        ["digest", "digest"]
    );
}

const DAILY_TAG: &str = r#"
from: ana@leadcraft.example
trigger: { schedule: "0 9 * * *", timezone: Europe/Berlin }
audience: { not: { tag: customer } }
reentry: after_exit
steps:
  - id: digest
    tag: [digested]
"#;

/// Contacts `c0@x.example` .. `c{n-1}`, then one customer (outside the audience); their ids.
async fn audience(engine: &Engine, n: usize, t: DateTime<Utc>) -> Vec<i64> {
    let mut tx = engine.store().begin().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..=n {
        let (c, _) = tx
            .upsert_contact(
                &Upsert {
                    email: format!("c{i}@x.example"),
                    tags: if i == n {
                        vec!["customer".into()]
                    } else {
                        vec![]
                    },
                    ..Default::default()
                },
                t.timestamp_millis(),
            )
            .await
            .unwrap();
        ids.push(c.id);
    }
    tx.commit().await.unwrap();
    ids
}

/// How many times each contact was enrolled, in the order of `ids`.
async fn enrollments_per_contact(engine: &Engine, ids: &[i64]) -> Vec<usize> {
    let mut tx = engine.store().begin().await.unwrap();
    let mut out = Vec::new();
    for id in ids {
        out.push(tx.contact_enrollments(*id).await.unwrap().len());
    }
    tx.commit().await.unwrap();
    out
}

/// An engine that enrolls 3 contacts per transaction, so a firing spans several batches.
async fn small_batches(w: &World) -> Engine {
    Engine::new(
        nurture_store::Store::open(&w.url).await.unwrap(),
        EngineConfig {
            batch: 3,
            ..EngineConfig::default()
        },
    )
}

/// What a process that stopped right after claiming a firing leaves behind: the firing
/// recorded, nobody enrolled. The next tick enrolls the whole audience, once.
async fn firing_interrupted_before_any_batch_is_resumed(backend: Backend) {
    let t0 = at("2026-11-02T06:00:00Z");
    let w = world(backend, &[campaign("daily", DAILY_TAG)], t0).await;
    let ids = audience(&w.engine, 10, t0).await;
    let fire_at = at("2026-11-02T08:00:00Z").timestamp_millis();
    let mut tx = w.engine.store().begin().await.unwrap();
    assert!(tx.claim_firing("daily", fire_at, fire_at).await.unwrap());
    tx.commit().await.unwrap();

    let engine = small_batches(&w).await;
    let out = engine.run_once(at("2026-11-02T08:05:00Z")).await.unwrap();
    assert_eq!(
        (out.firings, out.enrolled),
        (0, 10),
        "resumed, not fired anew"
    );
    let mut want = vec![1; 10];
    want.push(0);
    assert_eq!(enrollments_per_contact(&engine, &ids).await, want);

    // Finished: a later tick the same day enrolls nobody, the next day's firing everybody.
    let again = engine.run_once(at("2026-11-02T08:30:00Z")).await.unwrap();
    assert_eq!((again.firings, again.enrolled), (0, 0));
    let next = engine.run_once(at("2026-11-03T08:00:00Z")).await.unwrap();
    assert_eq!((next.firings, next.enrolled), (1, 10));
    let mut want = vec![2; 10];
    want.push(0);
    assert_eq!(enrollments_per_contact(&engine, &ids).await, want);
}

/// What a process that stopped after its first batch leaves behind: the firing, the first
/// three contacts enrolled (and since finished: they may enter again) and the cursor past
/// them. The next tick enrolls the other seven and leaves the first three alone.
async fn firing_interrupted_after_a_batch_resumes_at_its_cursor(backend: Backend) {
    let t0 = at("2026-11-02T06:00:00Z");
    let w = world(backend, &[campaign("daily", DAILY_TAG)], t0).await;
    let ids = audience(&w.engine, 10, t0).await;
    let fire_at = at("2026-11-02T08:00:00Z").timestamp_millis();
    let mut tx = w.engine.store().begin().await.unwrap();
    assert!(tx.claim_firing("daily", fire_at, fire_at).await.unwrap());
    let first: Vec<NewEnrollment> = ids[..3]
        .iter()
        .map(|&contact_id| NewEnrollment {
            campaign_id: "daily".into(),
            contact_id,
            step_id: "digest".into(),
            next_run_at: fire_at,
            trigger_properties: Map::new(),
        })
        .collect();
    assert_eq!(tx.insert_enrollments(&first, fire_at).await.unwrap(), 3);
    assert!(
        tx.advance_firing("daily", fire_at, 0, ids[2], false, fire_at)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let mut tx = w.engine.store().begin().await.unwrap();
    for &id in &ids[..3] {
        tx.exit_contact_enrollments(id, "goal", fire_at + 1000)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let engine = small_batches(&w).await;
    let out = engine.run_once(at("2026-11-02T08:05:00Z")).await.unwrap();
    assert_eq!((out.firings, out.enrolled), (0, 7));
    let mut want = vec![1; 10];
    want.push(0);
    assert_eq!(enrollments_per_contact(&engine, &ids).await, want);
    let again = engine.run_once(at("2026-11-02T08:30:00Z")).await.unwrap();
    assert_eq!(again.enrolled, 0);
}

/// The firing's cursor is compare-and-set: a process that read a cursor another has moved
/// since cannot move it (it rolls its batch back), and a completed firing is not reopened.
async fn firing_cursor_moves_only_from_where_it_stands(backend: Backend) {
    let t0 = at("2026-11-02T06:00:00Z");
    let w = world(backend, &[campaign("daily", DAILY_TAG)], t0).await;
    let fire_at = at("2026-11-02T08:00:00Z").timestamp_millis();
    let mut tx = w.engine.store().begin().await.unwrap();
    assert!(tx.claim_firing("daily", fire_at, fire_at).await.unwrap());
    assert!(!tx.claim_firing("daily", fire_at, fire_at).await.unwrap());
    assert_eq!(tx.open_firings("daily").await.unwrap(), [fire_at]);
    assert_eq!(
        tx.lock_open_firing("daily", fire_at).await.unwrap(),
        Some(0)
    );
    assert!(
        tx.advance_firing("daily", fire_at, 0, 5, false, fire_at)
            .await
            .unwrap()
    );
    // Stale: read 0 before the move to 5.
    assert!(
        !tx.advance_firing("daily", fire_at, 0, 9, false, fire_at)
            .await
            .unwrap()
    );
    assert_eq!(
        tx.lock_open_firing("daily", fire_at).await.unwrap(),
        Some(5)
    );
    assert!(
        tx.advance_firing("daily", fire_at, 5, 9, true, fire_at)
            .await
            .unwrap()
    );
    assert_eq!(tx.open_firings("daily").await.unwrap(), Vec::<i64>::new());
    assert_eq!(tx.lock_open_firing("daily", fire_at).await.unwrap(), None);
    assert!(
        !tx.advance_firing("daily", fire_at, 9, 12, true, fire_at)
            .await
            .unwrap()
    );
    assert_eq!(tx.last_firing("daily").await.unwrap(), Some(fire_at));
    tx.commit().await.unwrap();
}

/// Runs each scenario on a SQLite file and on a fresh PostgreSQL database.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::Sqlite).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::Postgres).await;
            })*
        }
    };
}

both!(
    wait_of_two_days_does_not_send_early,
    trigger_filter_and_completion_with_tag,
    goal_event_exits_before_the_next_step,
    reentry_never_enrolls_once,
    weekend_window_in_new_york_across_the_dst_change,
    removed_step_moves_waiting_enrollments_to_the_next_surviving_step,
    paused_campaign_holds_and_resumes,
    missed_schedule_firings_fire_once,
    firing_interrupted_before_any_batch_is_resumed,
    firing_interrupted_after_a_batch_resumes_at_its_cursor,
    firing_cursor_moves_only_from_where_it_stands,
);
