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
//! Each event runs inside its own savepoint: a repeated id rolls back its contact upsert
//! (a repeat changes nothing, as before), and one event whose statement fails is rolled
//! back alone and answered 500 while its neighbours are kept.

use std::sync::{Arc, OnceLock};

use nurture_store::{NewEvent, Store, Upsert};
use tokio::sync::{Notify, mpsc, oneshot};

use super::EventBody;

/// The most events one transaction writes.
pub(crate) const MAX_BATCH: usize = 500;

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
            tokio::spawn(run(self.store.clone(), self.wake.clone(), rx));
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

/// The writer: waits for one event, takes whatever else is queued, writes, answers, repeats.
async fn run(store: Store, wake: Arc<Notify>, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let outcomes = match write(&store, &jobs).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::error!("HTTP ingest batch of {} events failed: {e}", jobs.len());
                vec![Outcome::Failed; jobs.len()]
            }
        };
        if outcomes.contains(&Outcome::Accepted) {
            wake.notify_one();
        }
        for (job, outcome) in jobs.drain(..).zip(outcomes) {
            // A client that hung up no longer waits for its answer; its row stays stored.
            let _ = job.reply.send(outcome);
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
    let (contact, _) = tx
        .upsert_contact(
            &Upsert {
                email: event.email.clone(),
                attributes: event.attributes.clone(),
                consent_source: Some("api".into()),
                ..Upsert::default()
            },
            now,
        )
        .await?;
    let inserted = tx
        .insert_event(
            &NewEvent {
                contact_id: contact.id,
                name: event.name.clone(),
                properties: event.properties.clone(),
                occurred_at: event.occurred_at.unwrap_or(now),
                idempotency_key: event.id.clone(),
                ..NewEvent::default()
            },
            now,
        )
        .await?;
    Ok(inserted.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

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
