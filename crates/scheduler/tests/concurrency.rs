//! Several workers on one database: no step runs twice, no due step is lost, and work held
//! by a worker that died is taken over once its lease runs out.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Duration, Utc};
use nurture_campaign::{SourceFile, parse_campaign};
use nurture_scheduler::{Courier, Engine, EngineConfig, Failure, Job};
use nurture_store::{MessageState, NewEvent, Store, Upsert};
use serde_json::{Map, Value, json};

#[macro_use]
mod support;

use support::{Backend, World};

/// When mail refused at `t0` is due again: the first backoff (a minute) counts from when
/// the refusal was recorded, which is `t0` plus however long the round took.
const RETRY: Duration = Duration::seconds(90);

/// The lease holder of claims a test makes by hand, as a worker that then dies.
const DEAD_WORKER: i64 = 7;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const DRIP: &str = r#"
from: ana@leadcraft.example
trigger: { event: lead.captured }
steps:
  - id: welcome
    send: welcome
    subject: Welcome
  - id: follow-up
    after: 2d
    send: follow-up
    subject: Later
"#;

/// Records every delivery, per (contact, step), and how messages were rendered.
#[derive(Default)]
struct Counting {
    seen: Mutex<HashMap<(i64, String), u32>>,
    /// Messages rendered...
    prepared: AtomicUsize,
    /// ...and of those, rendered by delivery (the rest were rendered ahead, one by one,
    /// while the engine ran).
    by_delivery: AtomicUsize,
    /// Messages per second, if paced.
    rate: Option<u32>,
}

impl Courier for Counting {
    type Prepared = (i64, String);

    #[allow(clippy::type_complexity)]
    fn prepare_all(&self, jobs: &[Job<'_>]) -> Vec<Result<(String, Self::Prepared), Failure>> {
        self.by_delivery.fetch_add(jobs.len(), Ordering::Relaxed);
        jobs.iter().map(|j| self.prepare(j)).collect()
    }

    fn rate(&self) -> Option<u32> {
        self.rate
    }

    fn prepare(&self, job: &Job<'_>) -> Result<(String, Self::Prepared), Failure> {
        self.prepared.fetch_add(1, Ordering::Relaxed);
        Ok((
            format!("<{}@test>", job.message.id),
            (job.contact.id, job.step.id.to_string()),
        ))
    }

    async fn send(&self, p: Self::Prepared) -> Result<String, Failure> {
        tokio::task::yield_now().await;
        *self.seen.lock().unwrap().entry(p).or_default() += 1;
        Ok("250 ok".into())
    }
}

/// A fresh database running the `DRIP` campaign, and the time it starts at.
async fn drip_world(backend: Backend) -> (World, DateTime<Utc>) {
    let t0 = at("2026-11-02T10:00:00Z");
    let w = World::new(backend).await;
    let file = parse_campaign(SourceFile::new("drip.yaml", DRIP), "drip").unwrap();
    w.engine.sync(&[file], true, t0).await.unwrap();
    (w, t0)
}

async fn leads(engine: &Engine, n: usize, t: DateTime<Utc>) {
    leads_from(engine, 0, n, t).await;
}

/// Leads `lead{from}` to `lead{from + n - 1}`, each with a `lead.captured` event.
async fn leads_from(engine: &Engine, from: usize, n: usize, t: DateTime<Utc>) {
    let mut tx = engine.store().begin().await.unwrap();
    for i in from..from + n {
        let (c, _) = tx
            .upsert_contact(
                &Upsert {
                    email: format!("lead{i}@x.example"),
                    ..Default::default()
                },
                t.timestamp_millis(),
            )
            .await
            .unwrap();
        tx.insert_event(
            &NewEvent {
                contact_id: c.id,
                name: "lead.captured".into(),
                properties: Map::new(),
                occurred_at: t.timestamp_millis(),
                ..Default::default()
            },
            t.timestamp_millis(),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

async fn three_workers(backend: Backend) {
    let (w, t0) = drip_world(backend).await;
    leads(&w.engine, 300, t0).await;
    let workers = [w.engine.clone(), w.another().await, w.another().await];
    for e in &workers[1..] {
        e.refresh().await.unwrap();
    }
    let courier = std::sync::Arc::new(Counting::default());
    for now in [t0, t0 + Duration::days(2)] {
        // Each worker its own task, as each daemon is its own process: a worker's delivery
        // blocks its thread while it renders, which must not stall the others.
        let runs = workers.iter().map(|e| {
            let (e, courier) = (e.clone(), courier.clone());
            tokio::spawn(async move {
                e.run_once(now).await.unwrap();
                e.deliver(&courier, now, 4).await.unwrap()
            })
        });
        let delivered: Vec<_> = futures_util::future::try_join_all(runs).await.unwrap();
        let total: u64 = delivered.iter().map(|d| d.sent).sum();
        assert_eq!(total, 300, "every due email delivered once at {now}");
    }
    let seen = courier.seen.lock().unwrap();
    assert_eq!(seen.len(), 600, "300 contacts × 2 steps");
    assert!(seen.values().all(|n| *n == 1), "an email went out twice");
}

async fn dead_workers_claims_are_taken_over(backend: Backend) {
    let (w, t0) = drip_world(backend).await;
    leads(&w.engine, 20, t0).await;
    w.engine.run_once(t0).await.unwrap();

    // A worker leases every message and dies before sending anything.
    let mut tx = w.engine.store().begin().await.unwrap();
    let claimed = tx
        .claim_messages(
            t0.timestamp_millis(),
            (t0 + Duration::minutes(5)).timestamp_millis(),
            100,
            DEAD_WORKER,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(claimed.len(), 20);
    // Another worker with the first one's enrollment transaction open and abandoned.
    let survivor = w.another().await;
    survivor.refresh().await.unwrap();
    let courier = std::sync::Arc::new(Counting::default());
    let early = survivor
        .deliver(&courier, t0 + Duration::minutes(1), 4)
        .await
        .unwrap();
    assert_eq!(early.sent, 0, "the lease still holds");
    let later = survivor
        .deliver(&courier, t0 + Duration::minutes(6), 4)
        .await
        .unwrap();
    assert_eq!(later.sent, 20, "the lease ran out; the survivor delivers");
    assert!(courier.seen.lock().unwrap().values().all(|n| *n == 1));
}

async fn crash_during_smtp_leaves_unknown_never_resent(backend: Backend) {
    let (w, t0) = drip_world(backend).await;
    leads(&w.engine, 1, t0).await;
    w.engine.run_once(t0).await.unwrap();
    // The worker marked the message `sending` (committed before SMTP) and was killed.
    let mut tx = w.engine.store().begin().await.unwrap();
    let m = tx
        .claim_messages(
            t0.timestamp_millis(),
            (t0 + Duration::minutes(5)).timestamp_millis(),
            10,
            DEAD_WORKER,
        )
        .await
        .unwrap();
    assert!(
        tx.mark_sending(
            m[0].id,
            "<x@test>",
            (t0 + Duration::minutes(5)).timestamp_millis(),
            t0.timestamp_millis(),
            DEAD_WORKER,
        )
        .await
        .unwrap()
    );
    tx.commit().await.unwrap();
    let courier = std::sync::Arc::new(Counting::default());
    let d = w
        .engine
        .deliver(&courier, t0 + Duration::minutes(10), 4)
        .await
        .unwrap();
    assert_eq!((d.sent, d.unknown), (0, 1));
    assert!(courier.seen.lock().unwrap().is_empty());
    let mut tx = w.engine.store().begin().await.unwrap();
    assert_eq!(
        tx.message(m[0].id).await.unwrap().unwrap().state,
        MessageState::Unknown
    );
    tx.commit().await.unwrap();
}

/// Refuses every message (a server that is down), counting the attempts.
#[derive(Default)]
struct Refusing {
    tried: Mutex<u32>,
    prepared: Mutex<u32>,
}

impl Courier for Refusing {
    type Prepared = ();

    fn prepare(&self, job: &Job<'_>) -> Result<(String, Self::Prepared), Failure> {
        *self.prepared.lock().unwrap() += 1;
        Ok((format!("<{}@test>", job.message.id), ()))
    }

    async fn send(&self, _: ()) -> Result<String, Failure> {
        *self.tried.lock().unwrap() += 1;
        Err(Failure::Transient("connection refused".into()))
    }
}

async fn a_refusing_server_is_tried_once_per_round_not_once_per_message(backend: Backend) {
    let (w, t0) = drip_world(backend).await;
    leads(&w.engine, 100, t0).await;
    w.engine.run_once(t0).await.unwrap();
    let down = std::sync::Arc::new(Refusing::default());
    let d = w.engine.deliver(&down, t0, 2).await.unwrap();
    // Concurrency 2 (at most 16 messages `sending`): after 8 refusals in a row no new one is
    // tried (the one still in flight may be); the other 91 or 92 are deferred untried.
    assert_eq!((d.sent, d.deferred, d.failed), (0, 100, 0));
    let tried = *down.tried.lock().unwrap();
    assert!((8..=9).contains(&tried), "tried {tried}");
    // Nothing is due again before the one-minute backoff...
    let up = std::sync::Arc::new(Counting::default());
    let early = w
        .engine
        .deliver(&up, t0 + Duration::seconds(59), 2)
        .await
        .unwrap();
    assert_eq!(early.sent, 0);
    // ...and then every message goes out once.
    let later = w.engine.deliver(&up, t0 + RETRY, 2).await.unwrap();
    assert_eq!(later.sent, 100);
    assert_eq!(up.seen.lock().unwrap().len(), 100);
}

/// At every send, counts the messages the database holds `sending`: all a crash at that
/// moment could leave `unknown`.
struct Watching {
    store: nurture_store::Store,
    most_sending: Mutex<i64>,
    sent: Mutex<u32>,
}

impl Courier for Watching {
    type Prepared = ();

    fn prepare(&self, job: &Job<'_>) -> Result<(String, Self::Prepared), Failure> {
        Ok((format!("<{}@test>", job.message.id), ()))
    }

    async fn send(&self, _: ()) -> Result<String, Failure> {
        let mut tx = self.store.begin_read().await.unwrap();
        let sending = tx
            .count_messages_by_state()
            .await
            .unwrap()
            .into_iter()
            .find(|(state, _)| *state == MessageState::Sending)
            .map_or(0, |(_, n)| n);
        tx.commit().await.unwrap();
        let mut most = self.most_sending.lock().unwrap();
        *most = (*most).max(sending);
        *self.sent.lock().unwrap() += 1;
        Ok("250 ok".into())
    }
}

async fn never_more_than_eight_per_connection_are_sending(backend: Backend) {
    let (w, t0) = drip_world(backend).await;
    leads(&w.engine, 300, t0).await;
    w.engine.run_once(t0).await.unwrap();
    let courier = std::sync::Arc::new(Watching {
        store: w.engine.store().clone(),
        most_sending: Mutex::new(0),
        sent: Mutex::new(0),
    });
    let d = w.engine.deliver(&courier, t0, 3).await.unwrap();
    assert_eq!((d.sent, d.unknown), (300, 0));
    assert_eq!(*courier.sent.lock().unwrap(), 300);
    let most = *courier.most_sending.lock().unwrap();
    // 3 connections: at most 24 marked `sending` at once (and marking runs ahead of SMTP).
    assert!(
        (4..=24).contains(&most),
        "{most} messages were sending at once"
    );
}

/// The import path: a batch of upserts (one address twice, in two cases) and its events in
/// multi-row statements, then one round enrolls each contact once.
async fn batched_import_upserts_merge_and_enroll_once(backend: Backend) {
    let (w, t0) = drip_world(backend).await;
    let attrs = |v: serde_json::Value| -> Map<String, serde_json::Value> {
        serde_json::from_value(v).unwrap()
    };
    let upserts = vec![
        Upsert {
            email: "ann@x.example".into(),
            attributes: attrs(serde_json::json!({"first_name": "Ann", "plan": "free"})),
            tags: vec!["vip".into()],
            ..Default::default()
        },
        Upsert {
            email: "bo@x.example".into(),
            ..Default::default()
        },
        Upsert {
            email: "ANN@x.example".into(),
            attributes: attrs(serde_json::json!({"first_name": "Annie"})),
            tags: vec!["beta".into()],
            ..Default::default()
        },
    ];
    let now = t0.timestamp_millis();
    let mut tx = w.engine.store().begin().await.unwrap();
    let saved = tx.upsert_contacts(&upserts, now).await.unwrap();
    let created: Vec<bool> = saved.iter().map(|(_, c)| *c).collect();
    assert_eq!(created, [true, true, false]);
    assert_eq!(
        saved[0].0.id, saved[2].0.id,
        "one contact per address, any case"
    );
    let events: Vec<NewEvent> = saved
        .iter()
        .map(|(c, _)| NewEvent {
            contact_id: c.id,
            name: "lead.captured".into(),
            occurred_at: now,
            ..Default::default()
        })
        .collect();
    tx.insert_events(&events, now).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = w.engine.store().begin().await.unwrap();
    let ann = tx.contact_by_email("ann@x.example").await.unwrap().unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ann.attributes["first_name"], "Annie");
    assert_eq!(ann.attributes["plan"], "free");
    assert_eq!(ann.tags, ["beta", "vip"]);
    let out = w.engine.run_once(t0).await.unwrap();
    assert_eq!((out.events, out.enrolled, out.queued), (3, 2, 2));
}

async fn abandoned_transaction_loses_no_step(backend: Backend) {
    let (w, t0) = drip_world(backend).await;
    leads(&w.engine, 5, t0).await;
    // A worker claims the new events and dies before committing.
    {
        let mut tx = w.engine.store().begin().await.unwrap();
        assert_eq!(
            tx.claim_new_events(t0.timestamp_millis(), 100)
                .await
                .unwrap()
                .len(),
            5
        );
        tx.rollback().await.unwrap();
    }
    let out = w.engine.run_once(t0).await.unwrap();
    assert_eq!((out.events, out.enrolled, out.queued), (5, 5, 5));
}

/// Rows read many at a time (SQLite packs them into one JSON row on the way out of the
/// database) come back exactly as written, and as the same row read on its own: quotes,
/// backslashes, control characters, non-ASCII text, nested values, large integers, nulls.
async fn rows_read_in_bulk_are_the_rows_written(backend: Backend) {
    let (w, t0) = drip_world(backend).await;
    let ms = t0.timestamp_millis();
    let attributes: Map<String, Value> = serde_json::from_value(json!({
        "first_name": "Zoë \"Z\" O'Neil\\ \n\t</script>",
        "nested": {"list": [1, 2.5, null, true, "ü"], "empty": {}},
        "big": 9_007_199_254_740_993_i64,
        "emoji": "🎉"
    }))
    .unwrap();
    let props: Map<String, Value> =
        serde_json::from_value(json!({"source": "ebook", "quote": "a\"b\\c\u{1}", "n": -3}))
            .unwrap();
    let email = "zoë.o'neil@x.example";
    let mut tx = w.engine.store().begin().await.unwrap();
    let (c, _) = tx
        .upsert_contact(
            &Upsert {
                email: email.into(),
                attributes: attributes.clone(),
                tags: vec!["vip".into(), "ünï \"q\"".into()],
                ..Default::default()
            },
            ms,
        )
        .await
        .unwrap();
    tx.insert_event(
        &NewEvent {
            contact_id: c.id,
            name: "lead.captured".into(),
            properties: props.clone(),
            occurred_at: ms,
            ..Default::default()
        },
        ms,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = w.engine.store().begin().await.unwrap();
    let one = tx.contact_by_email(email).await.unwrap().unwrap();
    assert_eq!(one.attributes, attributes);
    let bulk = tx.contacts(&[c.id, c.id + 1000]).await.unwrap();
    assert_eq!(format!("{bulk:?}"), format!("{:?}", [one]));
    let events = tx.claim_new_events(ms, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.contact_id, e.name.as_str(), &e.properties, e.occurred_at),
        (c.id, "lead.captured", &props, ms)
    );
    assert!(tx.claim_new_events(ms, 10).await.unwrap().is_empty());
    // Rolled back: the event is new again for the engine.
    tx.rollback().await.unwrap();
    let out = w.engine.run_once(t0).await.unwrap();
    assert_eq!((out.events, out.enrolled, out.queued), (1, 1, 1));
    let mut tx = w.engine.store().begin().await.unwrap();
    let claimed = tx
        .claim_messages(ms, ms + 60_000, 10, DEAD_WORKER)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let m = &claimed[0];
    assert_eq!(
        (
            m.contact_id,
            m.step_id.as_str(),
            m.state.as_str(),
            m.attempts,
            m.message_id.as_deref(),
            m.error.as_deref(),
            m.sent_at,
            m.next_attempt_at
        ),
        (c.id, "welcome", "queued", 0, None, None, None, Some(ms))
    );
    let back = tx.trigger_properties(&[m.enrollment_id]).await.unwrap();
    assert_eq!(back.get(&m.enrollment_id), Some(&props));
    // The lease holds until it runs out.
    assert!(
        tx.claim_messages(ms, ms + 60_000, 10, DEAD_WORKER)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        tx.claim_messages(ms + 60_001, ms + 120_000, 10, DEAD_WORKER)
            .await
            .unwrap()
            .len(),
        1
    );
    tx.commit().await.unwrap();
}

/// Batches after the one where the server turned out to be down are deferred untried and not
/// even rendered: one window of attempts per round, however many batches it has.
async fn a_refusing_server_is_tried_once_per_round_across_batches(backend: Backend) {
    let (w, t0) = drip_world(backend).await;
    leads(&w.engine, 100, t0).await;
    w.engine.run_once(t0).await.unwrap();
    let small = Engine::new(
        w.engine.store().clone(),
        EngineConfig {
            batch: 20,
            ..Default::default()
        },
    );
    let down = std::sync::Arc::new(Refusing::default());
    let d = small.deliver(&down, t0, 2).await.unwrap();
    assert_eq!((d.sent, d.deferred, d.failed), (0, 100, 0));
    let tried = *down.tried.lock().unwrap();
    assert!((8..=9).contains(&tried), "tried {tried}");
    // The first batch, and the second (rendered while the first was sent); no more.
    let prepared = *down.prepared.lock().unwrap();
    assert!(prepared <= 40, "rendered {prepared}");
    // Every one of them is due again after the backoff, none lost.
    let up = std::sync::Arc::new(Counting::default());
    let later = small.deliver(&up, t0 + RETRY, 2).await.unwrap();
    assert_eq!(later.sent, 100);
}

/// `run_and_deliver` claims the engine's emails batch by batch as it queues them and renders
/// them while it goes on; with three such workers on one database every email still goes out
/// exactly once, and so does a round with the SMTP server down.
async fn emails_rendered_ahead_go_out_once(backend: Backend) {
    let (w, t0) = drip_world(backend).await;
    leads(&w.engine, 300, t0).await;
    let small = EngineConfig {
        batch: 20,
        ..Default::default()
    };
    let mut workers = Vec::new();
    for _ in 0..3 {
        let e = Engine::new(Store::open(&w.url).await.unwrap(), small.clone());
        e.refresh().await.unwrap();
        workers.push(e);
    }
    let courier = std::sync::Arc::new(Counting::default());
    for now in [t0, t0 + Duration::days(2)] {
        let runs = workers.iter().map(|e| {
            let (e, courier) = (e.clone(), courier.clone());
            tokio::spawn(async move { e.run_and_deliver(&courier, now, 4).await.unwrap() })
        });
        let done: Vec<_> = futures_util::future::try_join_all(runs).await.unwrap();
        let queued: u64 = done.iter().map(|(o, _)| o.queued).sum();
        let sent: u64 = done.iter().map(|(_, d)| d.sent).sum();
        assert_eq!((queued, sent), (300, 300), "at {now}");
    }
    {
        let seen = courier.seen.lock().unwrap();
        assert_eq!(seen.len(), 600, "300 contacts × 2 steps");
        assert!(seen.values().all(|n| *n == 1), "an email went out twice");
    }
    // How many of them were rendered while the engine ran depends on the threads' timing;
    // that render-ahead happens, and is bounded, is checked below with one paced worker.
    assert_eq!(
        courier.prepared.load(Ordering::Relaxed),
        600,
        "each email rendered once"
    );

    // The server down: everything rendered ahead is deferred like the rest, none lost.
    leads_from(&w.engine, 300, 100, t0 + Duration::days(3)).await;
    let down = std::sync::Arc::new(Refusing::default());
    let (out, d) = workers[0]
        .run_and_deliver(&down, t0 + Duration::days(3), 2)
        .await
        .unwrap();
    assert_eq!(out.queued, 100);
    assert_eq!((d.sent, d.deferred, d.failed), (0, 100, 0));
    let tried = *down.tried.lock().unwrap();
    assert!(tried <= 9, "tried {tried}");
    let up = std::sync::Arc::new(Counting::default());
    let later = workers[1]
        .deliver(&up, t0 + Duration::days(3) + RETRY, 2)
        .await
        .unwrap();
    assert_eq!(later.sent, 100);

    // A courier paced at 1 message/s gets no more rendered ahead than it sends in 30 s: one
    // batch (of 20), however many the engine queues.
    let t4 = t0 + Duration::days(4);
    leads_from(&w.engine, 400, 200, t4).await;
    let paced = std::sync::Arc::new(Counting {
        rate: Some(1),
        ..Counting::default()
    });
    let (out, d) = workers[2].run_and_deliver(&paced, t4, 4).await.unwrap();
    assert_eq!((out.queued, d.sent), (200, 200));
    let ahead = paced.prepared.load(Ordering::Relaxed) - paced.by_delivery.load(Ordering::Relaxed);
    assert_eq!(ahead, 20, "one batch rendered ahead");
}

/// Two processes resume the same unfinished firing at once, three contacts a batch, on a
/// campaign whose one step ends the enrollment at once and that may be entered again: were
/// a batch enrolled by both, or the cursor lost, someone would be enrolled twice.
async fn two_workers_resuming_one_firing_enroll_each_contact_once(backend: Backend) {
    let yaml = r#"
from: ana@leadcraft.example
trigger: { schedule: "0 9 * * *", timezone: UTC }
reentry: after_exit
steps:
  - id: digest
    tag: [digested]
"#;
    let t0 = at("2026-11-02T06:00:00Z");
    let w = World::new(backend).await;
    let file = parse_campaign(SourceFile::new("daily.yaml", yaml), "daily").unwrap();
    w.engine.sync(&[file], true, t0).await.unwrap();
    let mut tx = w.engine.store().begin().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..40 {
        let (c, _) = tx
            .upsert_contact(
                &Upsert {
                    email: format!("c{i}@x.example"),
                    ..Default::default()
                },
                t0.timestamp_millis(),
            )
            .await
            .unwrap();
        ids.push(c.id);
    }
    tx.commit().await.unwrap();
    let small = || async {
        Engine::new(
            Store::open(&w.url).await.unwrap(),
            EngineConfig {
                batch: 3,
                ..EngineConfig::default()
            },
        )
    };
    let workers = [small().await, small().await];
    for day in 0..3 {
        // The firing of 09:00 that day, claimed by a process that then stopped.
        let fire_at = at("2026-11-02T09:00:00Z") + Duration::days(day);
        let mut tx = w.engine.store().begin().await.unwrap();
        let ms = fire_at.timestamp_millis();
        assert!(tx.claim_firing("daily", ms, ms).await.unwrap());
        tx.commit().await.unwrap();
        let now = fire_at + Duration::minutes(5);
        let runs = workers.iter().map(|e| {
            let e = e.clone();
            tokio::spawn(async move { e.run_once(now).await.unwrap() })
        });
        let outs: Vec<_> = futures_util::future::try_join_all(runs).await.unwrap();
        assert_eq!(outs.iter().map(|o| o.firings).sum::<u64>(), 0, "day {day}");
        assert_eq!(
            outs.iter().map(|o| o.enrolled).sum::<u64>(),
            40,
            "day {day}"
        );
        let mut tx = w.engine.store().begin().await.unwrap();
        for id in &ids {
            let n = tx.contact_enrollments(*id).await.unwrap().len();
            assert_eq!(n as i64, day + 1, "contact {id} on day {day}");
        }
        tx.commit().await.unwrap();
    }
}

/// The signing secret is generated once: four processes starting together on a fresh database
/// (each with its own pool and its own generated candidate) both return the one stored, and
/// so does every later call.
async fn first_starts_agree_on_one_signing_secret(backend: Backend) {
    for round in 0..6 {
        let w = World::new(backend).await;
        let mut stores = vec![w.engine.store().clone()];
        for _ in 0..3 {
            stores.push(Store::open(&w.url).await.unwrap());
        }
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(stores.len()));
        let calls = stores.iter().enumerate().map(|(i, store)| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .secret(move || format!("candidate-{i}"))
                    .await
                    .unwrap()
            })
        });
        let got: Vec<String> = futures_util::future::try_join_all(calls).await.unwrap();
        assert!(got.iter().all(|g| *g == got[0]), "round {round}: {got:?}");
        for store in &stores {
            assert_eq!(
                store.secret(|| "another".into()).await.unwrap(),
                got[0],
                "round {round}"
            );
        }
    }
}

both!(
    never_more_than_eight_per_connection_are_sending,
    three_workers,
    dead_workers_claims_are_taken_over,
    crash_during_smtp_leaves_unknown_never_resent,
    abandoned_transaction_loses_no_step,
    a_refusing_server_is_tried_once_per_round_not_once_per_message,
    a_refusing_server_is_tried_once_per_round_across_batches,
    batched_import_upserts_merge_and_enroll_once,
    rows_read_in_bulk_are_the_rows_written,
    emails_rendered_ahead_go_out_once,
    two_workers_resuming_one_firing_enroll_each_contact_once,
    first_starts_agree_on_one_signing_secret,
);
