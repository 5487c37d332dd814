//! The delivery promises under real conditions (SPEC §6): a round longer than the lease keeps
//! its messages, suppression is checked when a message is about to go out (not when it was
//! claimed), and mail of a paused, removed or exited campaign is held or settled. Each test
//! drives time with a [`ManualClock`], never by sleeping.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use chrono::{DateTime, Duration, Utc};
use nurture_campaign::{CampaignFile, SourceFile, parse_campaign};
use nurture_scheduler::{Clock, Courier, Delivered, Engine, Failure, Job, ManualClock};
use nurture_store::{ContactStatus, MessageState};

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
  - id: follow-up
    after: 2d
    send: follow-up
    subject: Later
"#;

fn drip(status: &str) -> CampaignFile {
    let text = format!("status: {status}\n{DRIP}");
    parse_campaign(SourceFile::new("drip.yaml", text.as_str()), "drip").unwrap()
}

async fn lead(engine: &Engine, i: usize, event: &str, t: DateTime<Utc>) -> i64 {
    support::capture(engine, &format!("lead{i}@x.example"), event, t).await
}

/// A world running `DRIP` with `n` leads captured at `t0`, their welcome emails queued.
async fn queued(backend: Backend, n: usize, t0: DateTime<Utc>) -> World {
    let w = World::new(backend).await;
    w.engine.sync(&[drip("active")], true, t0).await.unwrap();
    for i in 0..n {
        lead(&w.engine, i, "lead.captured", t0).await;
    }
    let out = w.engine.run_once(t0).await.unwrap();
    assert_eq!(out.queued, n as u64);
    w
}

/// (state, error) of every message, by contact id.
async fn states(engine: &Engine) -> HashMap<i64, Vec<(String, Option<String>)>> {
    let mut tx = engine.store().begin().await.unwrap();
    let mut out: HashMap<i64, Vec<(String, Option<String>)>> = HashMap::new();
    for id in 1..=200 {
        for m in tx.contact_messages(id).await.unwrap() {
            out.entry(id)
                .or_default()
                .push((m.state.to_string(), m.error));
        }
    }
    tx.commit().await.unwrap();
    out
}

/// Sends every message, counting each by (contact, step); each send moves the clock on by
/// ten seconds (a slow server). The `pause_at`-th send waits until the test says go, and
/// with `freeze` it stops the worker's whole thread meanwhile (as a stopped process would).
struct Slow {
    clock: Arc<ManualClock>,
    seen: Mutex<HashMap<(i64, String), u32>>,
    sends: AtomicUsize,
    pause_at: usize,
    paused: Mutex<mpsc::Sender<()>>,
    go: Mutex<mpsc::Receiver<()>>,
    refuse: bool,
    /// Freeze the thread (no renewal can happen), or only this send (the worker goes on).
    freeze: bool,
    /// When freezing: wait until this many messages are `sending` first, so the worker does
    /// not freeze inside a transaction (on SQLite that would hold the only write lock and
    /// stop every other worker, not only take its leases).
    settled: Option<(nurture_store::Store, i64)>,
    go_async: tokio::sync::Notify,
}

/// The test's ends of a [`Slow`] courier's gate: told when it froze, and to let it go on.
struct Gate {
    paused: mpsc::Receiver<()>,
    go: mpsc::Sender<()>,
}

impl Gate {
    async fn frozen(self) -> mpsc::Sender<()> {
        let Gate { paused, go } = self;
        tokio::task::spawn_blocking(move || paused.recv().unwrap())
            .await
            .unwrap();
        go
    }
}

impl Slow {
    fn new(clock: Arc<ManualClock>, pause_at: usize, refuse: bool) -> (Self, Gate) {
        let (paused_tx, paused) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        let courier = Self {
            clock,
            seen: Mutex::default(),
            sends: AtomicUsize::new(0),
            pause_at,
            paused: Mutex::new(paused_tx),
            go: Mutex::new(go_rx),
            refuse,
            freeze: false,
            settled: None,
            go_async: tokio::sync::Notify::new(),
        };
        (courier, Gate { paused, go })
    }
}

impl Courier for Slow {
    type Prepared = (i64, String);

    fn prepare(&self, job: &Job<'_>) -> Result<(String, Self::Prepared), Failure> {
        Ok((
            format!("<{}@test>", job.message.id),
            (job.contact.id, job.step.id.to_string()),
        ))
    }

    async fn send(&self, p: Self::Prepared) -> Result<String, Failure> {
        let n = self.sends.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.pause_at {
            if let Some((store, n)) = &self.settled {
                while sending(store).await < *n {
                    tokio::task::yield_now().await;
                }
                // The worker's one other transaction, its (empty) claim of a next batch,
                // runs beside the sends and waits for the write lock like this probe: a few
                // more write transactions here let it through before the thread freezes.
                // (A worker frozen inside a SQLite transaction stops every other worker,
                // which is another failure than the one tested here.)
                for _ in 0..5 {
                    sending(store).await;
                    for _ in 0..20 {
                        tokio::task::yield_now().await;
                    }
                }
            }
            self.paused.lock().unwrap().send(()).unwrap();
            if self.freeze {
                self.go.lock().unwrap().recv().unwrap();
            } else {
                self.go_async.notified().await;
            }
        }
        self.clock.advance(Duration::seconds(10));
        if self.refuse {
            return Err(Failure::Transient("421 try later".into()));
        }
        *self.seen.lock().unwrap().entry(p).or_default() += 1;
        Ok("250 ok".into())
    }
}

async fn sending(store: &nurture_store::Store) -> i64 {
    let mut tx = store.begin().await.unwrap();
    let n = tx
        .count_messages_by_state()
        .await
        .unwrap()
        .into_iter()
        .find(|(s, _)| *s == MessageState::Sending)
        .map_or(0, |(_, n)| n);
    tx.commit().await.unwrap();
    n
}

/// Runs a worker's delivery round on a thread of its own (its own runtime and database
/// pool), as a separate process would.
fn worker(
    url: &str,
    clock: Arc<ManualClock>,
    courier: Arc<Slow>,
    due: DateTime<Utc>,
) -> std::thread::JoinHandle<Delivered> {
    let url = url.to_string();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let store = nurture_store::Store::open(&url).await.unwrap();
                let e = Engine::new(store, Default::default()).with_clock(clock);
                e.refresh().await.unwrap();
                e.deliver(&courier, due, 1).await.unwrap()
            })
    })
}

/// A round that runs for longer than the lease (over eleven minutes of a slow server) keeps
/// its messages: a second worker arriving meanwhile neither marks them `unknown` nor takes
/// them.
async fn a_round_longer_than_the_lease_keeps_its_messages(backend: Backend) {
    let t0 = at("2026-11-02T10:00:00Z");
    let w = queued(backend, 80, t0).await;
    let clock = Arc::new(ManualClock::new(t0));
    let b = w.another().await.with_clock(clock.clone());
    b.refresh().await.unwrap();

    let (slow, gate) = Slow::new(clock.clone(), 70, false);
    let slow = Arc::new(slow);
    let round = worker(&w.url, clock.clone(), slow.clone(), t0);
    let go = gate.frozen().await;
    assert!(clock.now() >= t0 + Duration::minutes(11));
    let other = Arc::new(Slow::new(clock.clone(), 0, false).0);
    let d = b.deliver(&other, clock.now(), 1).await.unwrap();
    assert_eq!(
        (d.sent, d.unknown),
        (0, 0),
        "the second worker took messages still held by the first"
    );
    assert!(other.seen.lock().unwrap().is_empty());
    drop(go);
    slow.go_async.notify_one();
    let d = tokio::task::spawn_blocking(move || round.join().unwrap())
        .await
        .unwrap();
    assert_eq!((d.sent, d.unknown, d.lost), (80, 0, 0));
    assert!(slow.seen.lock().unwrap().values().all(|n| *n == 1));
    let all = states(&w.engine).await;
    assert!(all.values().flatten().all(|(s, _)| s == "sent"), "{all:?}");
}

/// A worker frozen for longer than its lease loses its messages to another worker; what it
/// records afterwards misses its guard, is counted, and does not overwrite the other's.
async fn a_worker_that_lost_its_lease_is_counted_not_obeyed(backend: Backend) {
    let t0 = at("2026-11-02T10:00:00Z");
    let w = queued(backend, 10, t0).await;
    let clock = Arc::new(ManualClock::new(t0));
    let b = w.another().await.with_clock(clock.clone());
    b.refresh().await.unwrap();

    let (mut stalled, gate) = Slow::new(clock.clone(), 1, true);
    // One connection marks eight messages ahead of it, in two transactions.
    stalled.freeze = true;
    stalled.settled = Some((w.engine.store().clone(), 8));
    let stalled = Arc::new(stalled);
    let round = worker(&w.url, clock.clone(), stalled.clone(), t0);
    let go = gate.frozen().await;
    // Frozen in its first send for an hour: its lease ran out long ago.
    clock.advance(Duration::hours(1));
    let other = Arc::new(Slow::new(clock.clone(), 0, false).0);
    let d = b.deliver(&other, clock.now(), 1).await.unwrap();
    // The marked ones (sent to SMTP, or about to be) are `unknown`; the rest go out once.
    assert!(d.unknown >= 1, "{d:?}");
    assert_eq!(d.sent + d.unknown, 10, "{d:?}");
    go.send(()).unwrap();
    let late = tokio::task::spawn_blocking(move || round.join().unwrap())
        .await
        .unwrap();
    // The stalled worker's attempts were refused; its records of them miss their guard (the
    // messages are `unknown` now) and are counted. It tries no more than it had marked
    // `sending` before it stalled (eight at most with one connection): the rest were
    // taken over.
    assert_eq!(late.sent, 0, "{late:?}");
    assert!(late.lost >= 1, "{late:?}");
    assert!(stalled.sends.load(Ordering::SeqCst) as u64 <= d.unknown);
    let all = states(&w.engine).await;
    let sent = all.values().flatten().filter(|(s, _)| s == "sent").count();
    let unknown = all
        .values()
        .flatten()
        .filter(|(s, _)| s == "unknown")
        .count();
    assert_eq!(
        (sent as u64, unknown as u64),
        (d.sent, d.unknown),
        "{all:?}"
    );
}

/// Unsubscribes (or bounces) a contact while its message is being rendered: after the claim,
/// before it is marked `sending`.
struct Unsubscribing {
    store: nurture_store::Store,
    victim: i64,
    /// Only the status changes (another process recorded a bounce), or a full unsubscribe.
    status_only: bool,
    seen: Mutex<Vec<i64>>,
}

impl Courier for Unsubscribing {
    type Prepared = i64;

    fn prepare(&self, job: &Job<'_>) -> Result<(String, Self::Prepared), Failure> {
        if job.contact.id == self.victim {
            let store = self.store.clone();
            let (victim, status_only) = (self.victim, self.status_only);
            // Rendering runs on a blocking thread: wait there for the other writer.
            tokio::runtime::Handle::current().block_on(async move {
                let mut tx = store.begin().await.unwrap();
                let now = at("2026-11-02T10:00:01Z").timestamp_millis();
                if status_only {
                    tx.set_contact_status(victim, ContactStatus::Bounced, "550 elsewhere", now)
                        .await
                        .unwrap();
                } else {
                    tx.set_contact_status(victim, ContactStatus::Unsubscribed, "link", now)
                        .await
                        .unwrap();
                    tx.exit_contact_enrollments(victim, "unsubscribed", now)
                        .await
                        .unwrap();
                }
                tx.commit().await.unwrap();
            });
        }
        Ok((format!("<{}@test>", job.message.id), job.contact.id))
    }

    async fn send(&self, p: i64) -> Result<String, Failure> {
        self.seen.lock().unwrap().push(p);
        Ok("250 ok".into())
    }
}

async fn suppression_is_checked_when_the_message_goes_out(backend: Backend) {
    for status_only in [false, true] {
        let t0 = at("2026-11-02T10:00:00Z");
        let w = queued(backend, 5, t0).await;
        let victim = 3;
        let courier = Arc::new(Unsubscribing {
            store: w.engine.store().clone(),
            victim,
            status_only,
            seen: Mutex::default(),
        });
        let d = w.engine.deliver(&courier, t0, 2).await.unwrap();
        assert!(
            !courier.seen.lock().unwrap().contains(&victim),
            "mailed a contact who had left (status only: {status_only})"
        );
        assert_eq!((d.sent, d.suppressed), (4, 1), "{d:?}");
        let all = states(&w.engine).await;
        let (state, error) = &all[&victim][0];
        assert_eq!(state, "suppressed");
        let error = error.as_deref().unwrap_or_default();
        assert!(
            error.contains(if status_only {
                "bounced"
            } else {
                "unsubscribed"
            }),
            "{error}"
        );
    }
}

/// Refuses every message.
struct Down;

impl Courier for Down {
    type Prepared = ();

    fn prepare(&self, job: &Job<'_>) -> Result<(String, Self::Prepared), Failure> {
        Ok((format!("<{}@test>", job.message.id), ()))
    }

    async fn send(&self, _: ()) -> Result<String, Failure> {
        Err(Failure::Transient("421 down".into()))
    }
}

/// Accepts every message, counting them.
#[derive(Default)]
struct Up(AtomicUsize);

impl Courier for Up {
    type Prepared = ();

    fn prepare(&self, job: &Job<'_>) -> Result<(String, Self::Prepared), Failure> {
        Ok((format!("<{}@test>", job.message.id), ()))
    }

    async fn send(&self, _: ()) -> Result<String, Failure> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok("250 ok".into())
    }
}

/// A paused campaign's deferred mail waits (and is not due), and goes when it resumes; a
/// removed campaign's is suppressed at once instead of retrying for three days.
async fn paused_campaigns_hold_their_mail_and_removed_ones_settle_it(backend: Backend) {
    let t0 = at("2026-11-02T10:00:00Z");
    let w = queued(backend, 3, t0).await;
    let d = w.engine.deliver(&Arc::new(Down), t0, 1).await.unwrap();
    assert_eq!(d.deferred, 3);

    let t1 = t0 + Duration::hours(1);
    w.engine.sync(&[drip("paused")], true, t1).await.unwrap();
    let up = Arc::new(Up::default());
    let d = w.engine.deliver(&up, t1, 1).await.unwrap();
    assert_eq!(d.sent, 0, "a paused campaign sent mail");
    let all = states(&w.engine).await;
    assert!(
        all.values().flatten().all(|(s, _)| s == "deferred"),
        "{all:?}"
    );
    let next = w.engine.next_due().await.unwrap();
    assert!(
        next.is_none_or(|t| t > t1 + Duration::days(1)),
        "held mail is still due at {next:?}"
    );

    let t2 = t1 + Duration::hours(1);
    w.engine.sync(&[drip("active")], true, t2).await.unwrap();
    let d = w.engine.deliver(&up, t2, 1).await.unwrap();
    assert_eq!(d.sent, 3, "resuming did not resume the held mail");

    // Three more leads whose mail is deferred, then the campaign file goes.
    for i in 10..13 {
        lead(&w.engine, i, "lead.captured", t2).await;
    }
    w.engine.run_once(t2).await.unwrap();
    let d = w.engine.deliver(&Arc::new(Down), t2, 1).await.unwrap();
    assert_eq!(d.deferred, 3);
    let t3 = t2 + Duration::hours(1);
    w.engine.sync(&[], true, t3).await.unwrap();
    let all = states(&w.engine).await;
    let settled: Vec<_> = all
        .values()
        .flatten()
        .filter(|(s, _)| s != "sent")
        .collect();
    assert_eq!(settled.len(), 3);
    for (state, error) in settled {
        assert_eq!(state, "suppressed");
        assert!(error.as_deref().unwrap_or_default().contains("removed"));
    }
    assert_eq!(
        w.engine
            .deliver(&up, t3 + Duration::days(1), 1)
            .await
            .unwrap(),
        Default::default()
    );
}

/// An enrollment that exits by its goal, or whose contact unsubscribes, settles the mail it
/// still had waiting for a retry.
async fn exits_settle_waiting_mail(backend: Backend) {
    let t0 = at("2026-11-02T10:00:00Z");
    let w = queued(backend, 2, t0).await;
    let d = w.engine.deliver(&Arc::new(Down), t0, 1).await.unwrap();
    assert_eq!(d.deferred, 2);
    // Lead 1 buys; lead 2 unsubscribes.
    let t1 = t0 + Duration::minutes(2);
    lead(&w.engine, 0, "purchase.completed", t1).await;
    let mut tx = w.engine.store().begin().await.unwrap();
    tx.set_contact_status(
        2,
        ContactStatus::Unsubscribed,
        "link",
        t1.timestamp_millis(),
    )
    .await
    .unwrap();
    tx.exit_contact_enrollments(2, "unsubscribed", t1.timestamp_millis())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // The goal is checked before the next step, two days on.
    let t2 = t0 + Duration::days(2);
    w.engine.run_once(t2).await.unwrap();
    let all = states(&w.engine).await;
    let (s1, e1) = &all[&1][0];
    let (s2, e2) = &all[&2][0];
    assert_eq!(
        (s1.as_str(), s2.as_str()),
        ("suppressed", "suppressed"),
        "{all:?}"
    );
    assert!(e1.as_deref().unwrap_or_default().contains("goal"), "{e1:?}");
    assert!(
        e2.as_deref().unwrap_or_default().contains("unsubscribed"),
        "{e2:?}"
    );
    let up = Arc::new(Up::default());
    w.engine.deliver(&up, t2, 1).await.unwrap();
    assert_eq!(up.0.load(Ordering::SeqCst), 0);
}

/// A confirmation email waiting for its (next) attempt is what the daemon wakes for when
/// nothing else is due: a double opt-in sign-up is mailed at once, not at the next poll.
async fn a_queued_confirmation_email_is_due(backend: Backend) {
    let t0 = at("2026-11-02T10:00:00Z");
    let w = World::new(backend).await;
    assert_eq!(w.engine.next_due().await.unwrap(), None);
    let mut tx = w.engine.store().begin().await.unwrap();
    let submitted = tx
        .submit_form(
            &nurture_store::NewSubmission {
                form_id: "guide".into(),
                email: "ana@x.example".into(),
                attributes: Default::default(),
                tags: Vec::new(),
                consent_text: "Send me the guide".into(),
                consent_version: "v1".into(),
                ip: None,
                user_agent: None,
                double_opt_in: true,
                resend_after_ms: 3_600_000,
                event: "form.submitted".into(),
                properties: Default::default(),
            },
            t0.timestamp_millis(),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        matches!(
            submitted,
            nurture_store::Submitted::Pending { mailed: true, .. }
        ),
        "{submitted:?}"
    );
    assert_eq!(w.engine.next_due().await.unwrap(), Some(t0));
}

both!(
    a_round_longer_than_the_lease_keeps_its_messages,
    a_queued_confirmation_email_is_due,
    a_worker_that_lost_its_lease_is_counted_not_obeyed,
    suppression_is_checked_when_the_message_goes_out,
    paused_campaigns_hold_their_mail_and_removed_ones_settle_it,
    exits_settle_waiting_mail,
);
