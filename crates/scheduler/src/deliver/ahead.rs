//! Render-ahead: claimed batches rendered on blocking threads before their turn to send.
//!
//! Rendering is CPU work and must not hold up the SMTP connections, so batches render on
//! blocking threads (one at a time while the engine runs) and wait, bounded in count,
//! memory and paced seconds, in [`Ahead`]. Nothing here writes a message state: a rendered
//! message is only marked `sending` (and committed) by the send loop right before SMTP, so
//! a batch dropped while rendered ahead simply returns to the queue when its lease runs out.

use super::*;

/// A rendered batch: messages ready for SMTP and messages settled without it, by index.
pub(crate) struct Rendered<P> {
    pub(super) batch: Vec<MessageRow>,
    pub(super) settled: Vec<(usize, Settle)>,
    pub(super) ready: Vec<(usize, String, P)>,
    pub(super) took: std::time::Duration,
    /// The memory the ready messages hold ([`Courier::size`]).
    pub(super) bytes: usize,
}

impl Engine {
    /// Claims the next batch and starts rendering it on a blocking thread (rendering is CPU
    /// work: it must not hold up the connections polled on this one), after the batches
    /// already rendering (`ahead.lane`): on one thread while the engine runs (it needs the
    /// other core), on every core once it is done.
    /// With `unavailable` (the server's refusal), the batch is not rendered: every message is
    /// deferred untried.
    pub(super) async fn claim_and_render<C: Courier + 'static>(
        &self,
        ahead: &Ahead<C>,
        unavailable: Option<String>,
    ) -> Result<Option<Rendering<C::Prepared>>> {
        let Some(claimed) = self.claim_batch(ahead.now, &ahead.leases).await? else {
            return Ok(None);
        };
        let now = ahead.leases.now();
        let (courier, lane) = (ahead.courier.clone(), ahead.lane.clone());
        let (bytes, rendering) = (ahead.bytes.clone(), ahead.rendering.clone());
        let engine_running = ahead.engine_running.clone();
        rendering.fetch_add(1, Ordering::Relaxed);
        Ok(Some(tokio::task::spawn_blocking(move || {
            let r = match unavailable {
                Some(reply) => {
                    let settled = (0..claimed.batch.len())
                        .map(|i| (i, deferred_untried(&claimed.batch[i], &reply, now)))
                        .collect();
                    Rendered {
                        batch: claimed.batch,
                        settled,
                        ready: Vec::new(),
                        took: std::time::Duration::ZERO,
                        bytes: 0,
                    }
                }
                None => {
                    let _lane = lane.lock().unwrap_or_else(|e| e.into_inner());
                    render_batch(&*courier, claimed, || {
                        engine_running.load(Ordering::Relaxed)
                    })
                }
            };
            bytes.fetch_add(r.bytes, Ordering::Relaxed);
            rendering.fetch_sub(1, Ordering::Relaxed);
            r
        })))
    }
}

/// At most this many batches wait claimed and rendered (or rendering) ahead of delivery...
pub(super) const AHEAD_BATCHES: usize = 8;
/// ...holding at most about this much memory (a batch may finish rendering past it)...
pub(super) const AHEAD_BYTES: usize = 32 << 20;
/// ...and no more than a paced courier sends in this many seconds (one batch at least): a
/// message waits rendered, its `Date` set and its lease running, until its turn.
pub(super) const AHEAD_SECONDS: u64 = 30;

/// Batches claimed ahead of delivery and rendering (or rendered) on blocking threads, one
/// batch at a time.
///
/// The engine alternates between this thread and the database's, which leaves a core idle:
/// [`Engine::run_and_deliver`] claims the emails the engine queues as each of its batches
/// commits and renders them on that core, so delivery starts with them ready.
pub(crate) struct Ahead<C: Courier> {
    pub(super) courier: Arc<C>,
    /// What is due as of this time is delivered.
    pub(super) now: DateTime<Utc>,
    /// The messages claimed and not finished yet, and the clock their leases run on.
    pub(crate) leases: Arc<Leases>,
    /// Held while a batch renders: one batch at a time.
    pub(super) lane: Arc<std::sync::Mutex<()>>,
    pub(super) queue: VecDeque<Rendering<C::Prepared>>,
    /// The memory held by the batches rendered and not yet being sent.
    pub(super) bytes: Arc<AtomicUsize>,
    /// Batches claimed, not rendered yet.
    pub(super) rendering: Arc<AtomicUsize>,
    /// While set, batches render on one thread.
    pub(super) engine_running: Arc<AtomicBool>,
    /// Emails the engine queued that are not claimed yet.
    pub(super) waiting: u64,
    /// At most this many batches ahead.
    pub(super) batches: usize,
}

impl<C: Courier> Ahead<C> {
    pub(crate) fn new(engine: &Engine, courier: Arc<C>, now: DateTime<Utc>) -> Self {
        let batch = engine.config.batch;
        let batches = match courier.rate() {
            Some(rate) => {
                let per_batch = batch.max(1) as u64;
                ((u64::from(rate) * AHEAD_SECONDS / per_batch).max(1) as usize).min(AHEAD_BATCHES)
            }
            None => AHEAD_BATCHES,
        };
        Self {
            batches,
            courier,
            now,
            leases: Arc::new(Leases::new(engine.round_clock(now), engine.owner)),
            lane: Arc::default(),
            queue: VecDeque::new(),
            bytes: Arc::default(),
            rendering: Arc::default(),
            engine_running: Arc::default(),
            waiting: 0,
        }
    }

    /// Says whether the engine is running (batches then render on one thread).
    pub(crate) fn engine_running(&self, running: bool) {
        self.engine_running.store(running, Ordering::Relaxed);
    }

    /// Whether another batch may be claimed ahead: within the budget, and not while two
    /// batches already wait for the renderer (claiming more would gain nothing yet).
    pub(super) fn has_room(&self) -> bool {
        self.queue.len() < self.batches
            && self.bytes.load(Ordering::Relaxed) < AHEAD_BYTES
            && self.rendering.load(Ordering::Relaxed) < 2
    }
}

impl<C: Courier + 'static> crate::AfterBatch for Ahead<C> {
    fn committed<'a>(
        &'a mut self,
        engine: &'a Engine,
        queued: u64,
    ) -> futures_util::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // The batches waiting ahead keep their leases while the engine runs on.
            if self.leases.renewal_due() {
                let mut tx = engine.store.begin().await?;
                self.leases.renew(&mut tx, &[]).await?;
                tx.commit().await?;
            }
            self.waiting += queued;
            let full = engine.config.batch.max(1) as u64;
            // Only full batches: the rest is claimed by delivery as usual.
            while self.waiting >= full && self.has_room() {
                match engine.claim_and_render(self, None).await? {
                    Some(r) => {
                        self.waiting -= full;
                        self.queue.push_back(r);
                    }
                    None => self.waiting = 0,
                }
            }
            Ok(())
        })
    }
}

/// A batch being rendered on a blocking thread.
pub(crate) type Rendering<P> = tokio::task::JoinHandle<Rendered<P>>;

/// Waits for a batch being rendered.
pub(super) async fn rendered<P>(r: Rendering<P>) -> Result<Rendered<P>> {
    match r.await {
        Ok(rendered) => Ok(rendered),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(crate::EngineError::Interrupted(e.to_string())),
    }
}

/// Renders a claimed batch (blocking): one message at a time while `one_thread()` holds,
/// the rest through [`Courier::prepare_all`] (which may use several threads) once it does not.
pub(super) fn render_batch<C: Courier>(
    courier: &C,
    c: Claimed,
    one_thread: impl Fn() -> bool,
) -> Rendered<C::Prepared> {
    let started = std::time::Instant::now();
    let mut settled = Vec::new();
    let (mut at, mut jobs) = (Vec::new(), Vec::with_capacity(c.batch.len()));
    let no_event = Map::new();
    for (i, m) in c.batch.iter().enumerate() {
        let event = c.events.get(&m.enrollment_id).unwrap_or(&no_event);
        let campaign = &c.versions[&m.version_id];
        match job(m, campaign, c.contacts.get(&m.contact_id), event) {
            Ok(job) => {
                at.push(i);
                jobs.push(job);
            }
            Err(s) => settled.push((i, s)),
        }
    }
    let mut results = Vec::with_capacity(jobs.len());
    while let Some(job) = jobs.get(results.len()) {
        if !one_thread() {
            results.extend(courier.prepare_all(&jobs[results.len()..]));
            break;
        }
        results.push(courier.prepare(job));
    }
    let mut ready = Vec::with_capacity(jobs.len());
    for ((i, job), result) in at.into_iter().zip(&jobs).zip(results) {
        match result {
            Ok((message_id, prepared)) => ready.push((i, message_id, prepared)),
            Err(f) => settled.push((i, render_failed(job, f))),
        }
    }
    drop(jobs);
    let bytes = ready.iter().map(|(_, _, p)| courier.size(p)).sum();
    Rendered {
        batch: c.batch,
        settled,
        ready,
        took: started.elapsed(),
        bytes,
    }
}

/// The job of rendering one message, or why it is settled without SMTP.
pub(super) fn job<'a>(
    m: &'a MessageRow,
    campaign: &'a Campaign,
    contact: Option<&'a Contact>,
    event: &'a Map<String, Value>,
) -> std::result::Result<Job<'a>, Settle> {
    let settled = |to, reason: &str| Settle {
        to,
        reason: reason.to_string(),
        attempt: None,
        retry_at: None,
    };
    let Some(contact) = contact.filter(|c| c.status == ContactStatus::Subscribed) else {
        let why = match contact {
            Some(c) => format!("not sent: the contact is {}", c.status.as_str()),
            None => "not sent: the contact no longer exists".to_string(),
        };
        return Err(settled(MessageState::Suppressed, &why));
    };
    let step = campaign.steps.iter().find(|s| s.id.as_str() == m.step_id);
    let Some((step, send)) = step.and_then(|s| match &s.action {
        Action::Send(send) => Some((s, send.variant(m.variant.as_deref()))),
        _ => None,
    }) else {
        return Err(settled(
            MessageState::Failed,
            "the step no longer exists in its campaign version",
        ));
    };
    Ok(Job {
        message: m,
        campaign,
        step,
        send,
        contact,
        event,
    })
}
