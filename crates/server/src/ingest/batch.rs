//! Group commit for `POST /api/events`: one writer task stores every event queued meanwhile
//! in one transaction.
//!
//! One transaction per event queued each request behind the engine's write transactions
//! for SQLite's single writer lock, one at a time (626 events/s, p99 293 ms in
//! docs/performance.md). Here a request pushes its checked event into a bounded queue and
//! waits; the writer takes whatever is queued (up to [`MAX_BATCH`], without waiting for
//! more when the queue is short), writes it in one transaction, commits, and only then
//! answers each request, so a 202 still means the row is durable.
//!
//! A batch is written in a few statements, not a few per event: the ids already recorded
//! are read first (a repeat, or a second event with the same id in the batch, changes
//! nothing, not even the attributes it carries), then the contacts of the new events are
//! upserted together and the events inserted together. If that fails, or a concurrent
//! writer recorded one of the ids in between (PostgreSQL), the batch is rolled back and
//! written again one event per savepoint, so one event whose statement fails is answered
//! 500 alone while its neighbours are kept.
//!
//! The scheduler is woken after a commit that stored something, at most once per
//! [`WAKE_EVERY`]: every wake starts an engine round that takes the same write lock, and a
//! round per batch would halve the batches' share of it. A commit inside the interval is
//! not forgotten: the wake follows when the interval ends.
//!
//! The queue, the writer, its one-by-one fallback and the wake pacing stay one module: they
//! keep one promise (a 202 means the row is durable) that is checked by reading them
//! together, and nearly half the file is the tests that drive them on both stores.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nurture_store::{NewEvent, Store, Upsert};
use tokio::sync::{Notify, mpsc, oneshot};

use super::EventBody;

/// The most events one transaction writes.
pub(crate) const MAX_BATCH: usize = 500;

/// The least time between two wakes of the scheduler.
pub(crate) const WAKE_EVERY: Duration = Duration::from_millis(200);

/// How many events may wait for the writer; beyond that requests are answered 503.
pub(crate) const QUEUE: usize = 4096;

/// What became of one queued event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored and committed.
    Accepted,
    /// Its id was recorded before (or earlier in the same batch): nothing written.
    Duplicate,
    /// Not stored: the database failed (logged).
    Failed,
}

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue is full: the client should retry later (503).
    Full,
    /// The writer stopped; the event was not stored (500).
    Gone,
}

struct Job {
    event: EventBody,
    now: i64,
    reply: oneshot::Sender<Outcome>,
}

/// The handle requests queue into; the writer task starts on first use (inside the
/// runtime) and stops when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct Batcher {
    store: Store,
    wake: Arc<Notify>,
    capacity: usize,
    queue: Arc<OnceLock<mpsc::Sender<Job>>>,
}

impl Batcher {
    /// A batcher writing to `store`, waking the scheduler through `wake` after a commit.
    pub(crate) fn new(store: Store, wake: Arc<Notify>, capacity: usize) -> Self {
        Self {
            store,
            wake,
            capacity,
            queue: Arc::new(OnceLock::new()),
        }
    }

    /// Queues `event` and waits until its batch is committed (or failed).
    pub(crate) async fn record(&self, event: EventBody, now: i64) -> Result<Outcome, Refused> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(self.capacity.max(1));
            let stored = Arc::new(Notify::new());
            tokio::spawn(pace_wakes(stored.clone(), self.wake.clone()));
            tokio::spawn(run(self.store.clone(), stored, rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        queue
            .try_send(Job { event, now, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Refused::Full,
                mpsc::error::TrySendError::Closed(_) => Refused::Gone,
            })?;
        answer.await.map_err(|_| Refused::Gone)
    }
}

/// Passes `stored` on to the scheduler's `wake`, at most once per [`WAKE_EVERY`]. A
/// [`Notify`] keeps one permit, so commits during the pause end in one wake after it. Stops
/// when the writer has stopped (the only other holder of `stored`).
async fn pace_wakes(stored: Arc<Notify>, wake: Arc<Notify>) {
    while Arc::strong_count(&stored) > 1 {
        tokio::select! {
            () = stored.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => continue,
        }
        wake.notify_one();
        tokio::time::sleep(WAKE_EVERY).await;
    }
}

/// The writer: waits for one event, takes whatever else is queued, writes, answers, repeats.
async fn run(store: Store, stored: Arc<Notify>, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let outcomes = match write_together(&store, &jobs).await {
            Ok(Some(outcomes)) => outcomes,
            Ok(None) => one_by_one(&store, &jobs).await,
            Err(e) => {
                tracing::warn!(
                    "HTTP ingest batch of {} events failed ({e}); writing them one by one",
                    jobs.len()
                );
                one_by_one(&store, &jobs).await
            }
        };
        if outcomes.contains(&Outcome::Accepted) {
            stored.notify_one();
        }
        for (job, outcome) in jobs.drain(..).zip(outcomes) {
            // A client that hung up no longer waits for its answer; its row stays stored.
            let _ = job.reply.send(outcome);
        }
    }
}

/// Writes `jobs` in one transaction of a few statements; `None` (rolled back) when another
/// writer recorded one of their ids meanwhile. The outcomes hold only once committed.
async fn write_together(
    store: &Store,
    jobs: &[Job],
) -> nurture_store::Result<Option<Vec<Outcome>>> {
    let mut tx = store.begin().await?;
    let keys: Vec<&str> = jobs.iter().filter_map(|j| j.event.id.as_deref()).collect();
    let recorded = if keys.is_empty() {
        HashSet::new()
    } else {
        tx.recorded_keys(&keys).await?
    };
    let mut seen: HashSet<&str> = HashSet::new();
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut fresh = Vec::with_capacity(jobs.len());
    for job in jobs {
        let repeat = job
            .event
            .id
            .as_deref()
            .is_some_and(|id| recorded.contains(id) || !seen.insert(id));
        if repeat {
            outcomes.push(Outcome::Duplicate);
        } else {
            outcomes.push(Outcome::Accepted);
            fresh.push(job);
        }
    }
    if fresh.is_empty() {
        tx.rollback().await?;
        return Ok(Some(outcomes));
    }
    let upserts: Vec<Upsert> = fresh.iter().map(|j| upsert(&j.event)).collect();
    // All of a batch share one clock reading: the first request's.
    let now = fresh[0].now;
    let contacts = tx.upsert_contacts(&upserts, now).await?;
    let events: Vec<NewEvent> = fresh
        .iter()
        .zip(&contacts)
        .map(|(job, (contact, _))| new_event(&job.event, contact.id, job.now))
        .collect();
    if tx.insert_events(&events, now).await? != events.len() as u64 {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(outcomes))
}

/// [`write`], or every event failed when even that cannot run (logged).
async fn one_by_one(store: &Store, jobs: &[Job]) -> Vec<Outcome> {
    match write(store, jobs).await {
        Ok(outcomes) => outcomes,
        Err(e) => {
            tracing::error!("HTTP ingest batch of {} events failed: {e}", jobs.len());
            vec![Outcome::Failed; jobs.len()]
        }
    }
}

/// Writes `jobs` in one transaction, each in a savepoint; the outcomes hold only once the
/// commit succeeded (an error here fails the whole batch and nothing is kept).
async fn write(store: &Store, jobs: &[Job]) -> nurture_store::Result<Vec<Outcome>> {
    let mut tx = store.begin().await?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        tx.savepoint().await?;
        match one(&mut tx, &job.event, job.now).await {
            Ok(true) => {
                tx.release().await?;
                outcomes.push(Outcome::Accepted);
            }
            Ok(false) => {
                // A repeat changes nothing, not even the attributes it carries.
                tx.rollback_to().await?;
                outcomes.push(Outcome::Duplicate);
            }
            Err(e) => {
                tracing::error!("HTTP event for {} not stored: {e}", job.event.email);
                tx.rollback_to().await?;
                outcomes.push(Outcome::Failed);
            }
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Upserts the contact and inserts the event; false when the event's id was seen before.
async fn one(
    tx: &mut nurture_store::Tx,
    event: &EventBody,
    now: i64,
) -> nurture_store::Result<bool> {
    let (contact, _) = tx.upsert_contact(&upsert(event), now).await?;
    let inserted = tx
        .insert_event(&new_event(event, contact.id, now), now)
        .await?;
    Ok(inserted.is_some())
}

/// The contact half of an event: its address and the attributes it carries.
fn upsert(event: &EventBody) -> Upsert {
    Upsert {
        email: event.email.clone(),
        attributes: event.attributes.clone(),
        consent_source: Some("api".into()),
        ..Upsert::default()
    }
}

/// The event half, for the contact upserted.
fn new_event(event: &EventBody, contact_id: i64, now: i64) -> NewEvent {
    NewEvent {
        contact_id,
        name: event.name.clone(),
        properties: event.properties.clone(),
        occurred_at: event.occurred_at.unwrap_or(now),
        idempotency_key: event.id.clone(),
        ..NewEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    /// A SQLite store in a temp folder, or a fresh PostgreSQL database.
    async fn store(postgres: bool) -> (Store, Backing) {
        if postgres {
            let db = nurture_testkit::Postgres::fresh_database();
            (Store::open(db.url()).await.unwrap(), Backing::Postgres(db))
        } else {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("nurture.db").display());
            (
                Store::open(&url).await.unwrap(),
                Backing::Sqlite { _dir: dir, url },
            )
        }
    }

    enum Backing {
        Sqlite {
            _dir: tempfile::TempDir,
            url: String,
        },
        Postgres(nurture_testkit::TestDatabase),
    }

    impl Backing {
        /// Makes every insert of an event named `poison` fail, as a broken row would.
        async fn poison(&self) {
            match self {
                Backing::Sqlite { url, .. } => {
                    use sqlx::Connection;
                    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
                    sqlx::query(
                        "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.name = 'poison'
                         BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
                    )
                    .execute(&mut conn)
                    .await
                    .unwrap();
                    conn.close().await.unwrap();
                }
                Backing::Postgres(db) => {
                    db.psql(
                        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
                         BEGIN IF NEW.name = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF;
                         RETURN NEW; END $$;
                         CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW
                         EXECUTE FUNCTION poison();",
                    );
                }
            }
        }
    }

    /// Queues every event at once (so they share batches) and returns each one's outcome.
    async fn record_all(batcher: &Batcher, events: Vec<EventBody>) -> Vec<Outcome> {
        let tasks: Vec<_> = events
            .into_iter()
            .map(|e| {
                let b = batcher.clone();
                tokio::spawn(async move { b.record(e, 1_000).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap().unwrap());
        }
        outcomes
    }

    /// Every event of a batch is stored once with its contact; an id recorded before, or
    /// twice in the batch, is a duplicate whose attributes change nothing.
    async fn batch_stores_each_id_once(postgres: bool) {
        let (store, _backing) = store(postgres).await;
        let batcher = Batcher::new(store.clone(), Arc::new(Notify::new()), QUEUE);
        let mut first = event(0);
        first.attributes.insert("copy".into(), "before".into());
        assert_eq!(record_all(&batcher, vec![first]).await, [Outcome::Accepted]);

        let mut events = Vec::new();
        for copy in 0..2 {
            for i in 0..20 {
                let mut e = event(i);
                e.attributes.insert("copy".into(), copy.to_string().into());
                events.push(e);
            }
        }
        let outcomes = record_all(&batcher, events).await;

        let mut expected = vec![Outcome::Duplicate];
        expected.extend([Outcome::Accepted; 19]);
        expected.extend([Outcome::Duplicate; 20]);
        assert_eq!(outcomes, expected);
        let mut tx = store.begin().await.unwrap();
        let stored = tx.claim_new_events(i64::MAX, 1000).await.unwrap();
        assert_eq!(stored.len(), 20, "one row per id");
        for i in 0..20 {
            let c = tx
                .contact_by_email(&format!("lead{i}@example.com"))
                .await
                .unwrap()
                .unwrap();
            let copy = if i == 0 { "before" } else { "0" };
            assert_eq!(
                c.attributes["copy"], copy,
                "lead{i}: only the stored event's attributes"
            );
            assert!(
                stored.iter().any(|e| e.contact_id == c.id),
                "lead{i}'s event"
            );
        }
        tx.rollback().await.unwrap();
    }

    #[tokio::test]
    async fn a_batch_stores_each_id_once_on_sqlite() {
        batch_stores_each_id_once(false).await;
    }

    #[tokio::test]
    async fn a_batch_stores_each_id_once_on_postgres() {
        batch_stores_each_id_once(true).await;
    }

    /// An event whose insert fails is answered `Failed` alone: the batch is written again
    /// one by one and its neighbours are stored.
    async fn a_failing_event_spares_its_neighbours(postgres: bool) {
        let (store, backing) = store(postgres).await;
        backing.poison().await;
        let batcher = Batcher::new(store.clone(), Arc::new(Notify::new()), QUEUE);
        let mut events: Vec<EventBody> = (0..5).map(event).collect();
        events[2].name = "poison".into();

        let outcomes = record_all(&batcher, events).await;

        assert_eq!(
            outcomes,
            [
                Outcome::Accepted,
                Outcome::Accepted,
                Outcome::Failed,
                Outcome::Accepted,
                Outcome::Accepted
            ]
        );
        let mut tx = store.begin().await.unwrap();
        let stored = tx.claim_new_events(i64::MAX, 100).await.unwrap();
        assert_eq!(stored.len(), 4);
        assert!(stored.iter().all(|e| e.name == "lead.captured"));
        tx.rollback().await.unwrap();
    }

    #[tokio::test]
    async fn a_failing_event_spares_its_neighbours_on_sqlite() {
        a_failing_event_spares_its_neighbours(false).await;
    }

    #[tokio::test]
    async fn a_failing_event_spares_its_neighbours_on_postgres() {
        a_failing_event_spares_its_neighbours(true).await;
    }

    fn event(i: usize) -> EventBody {
        EventBody {
            email: format!("lead{i}@example.com"),
            name: "lead.captured".into(),
            properties: Map::new(),
            attributes: Map::new(),
            occurred_at: None,
            id: Some(format!("ev-{i}")),
        }
    }

    /// While the writer cannot commit, a queue of one takes one event and refuses the rest
    /// at once (503 upstream) instead of piling them up; once the lock goes, everything
    /// queued is stored and nothing refused is.
    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_stores_only_what_it_took() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("nurture.db").display());
        let store = Store::open(&url).await.unwrap();
        // SQLite's one write lock, held elsewhere: the writer's BEGIN waits for it.
        let blocker = store.begin().await.unwrap();
        let batcher = Batcher::new(store.clone(), Arc::new(Notify::new()), 1);
        let mut tasks: Vec<_> = (0..4)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.record(event(i), 0).await })
            })
            .collect();
        // The queue holds one and the writer's batch in hand at most one more (it can take only
        // what the queue held), so at least two of four are refused, and a refusal is
        // immediate: waiting for two cannot hang on the held lock.
        let mut refused = 0;
        let mut waiting = Vec::new();
        for t in tasks.drain(..) {
            if t.is_finished() {
                assert_eq!(t.await.unwrap(), Err(Refused::Full));
                refused += 1;
            } else {
                waiting.push(t);
            }
        }
        while refused < 2 {
            let mut still = Vec::new();
            for t in waiting.drain(..) {
                if t.is_finished() {
                    assert_eq!(t.await.unwrap(), Err(Refused::Full));
                    refused += 1;
                } else {
                    still.push(t);
                }
            }
            waiting = still;
            tokio::task::yield_now().await;
        }
        blocker.commit().await.unwrap();
        let mut accepted = 0;
        for t in waiting {
            match t.await.unwrap() {
                Ok(Outcome::Accepted) => accepted += 1,
                Err(Refused::Full) => {}
                other => panic!("a queued event ended {other:?}"),
            }
        }
        let mut tx = store.begin().await.unwrap();
        // Every stored event is still new (no engine runs here): claiming shows them all.
        let stored = tx.claim_new_events(0, 100).await.unwrap().len();
        tx.rollback().await.unwrap();
        assert!(accepted >= 1, "the event the writer took is stored");
        assert_eq!(stored, accepted, "only the events answered 202 are stored");
    }
}
