//! The delivery worker: claims due messages, re-checks suppression, has a [`Courier`] render
//! and send each one, and records the outcome in the message state machine.
//!
//! Order matters for "never twice": a message is marked `sending` and committed before the
//! courier talks SMTP; the outcome is recorded after. A process killed in between leaves the
//! message `sending` with a lease; when the lease runs out it becomes `unknown` (never re-sent
//! blindly). A message claimed but not yet `sending` simply returns to the queue when its
//! lease expires.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chrono::{DateTime, Duration, Utc};
use futures_util::future::{Either, select};
use futures_util::stream::{FuturesUnordered, StreamExt};
use nurture_campaign::{Action, Campaign, SendAction, Step};
use nurture_store::{Contact, ContactStatus, MessageRow, MessageState, Tx};
use serde_json::{Map, Value};

use crate::{Engine, Result, to_ms};

/// Everything needed to render and address one email.
pub struct Job<'a> {
    /// The queued message.
    pub message: &'a MessageRow,
    /// The campaign version it was queued from.
    pub campaign: &'a Campaign,
    /// The step.
    pub step: &'a Step,
    /// The step's email.
    pub send: &'a SendAction,
    /// The recipient.
    pub contact: &'a Contact,
    /// The trigger event's properties.
    pub event: &'a Map<String, Value>,
}

/// Why a delivery did not succeed, decided once at the sender's boundary.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The template could not be rendered (missing variable, ...): the step fails.
    Render(String),
    /// Try again later: 4xx, timeout, refused connection.
    Transient(String),
    /// Never again: 5xx on RCPT or DATA; the contact bounces.
    Permanent(String),
    /// The message may have been accepted (no reply after the content): never re-sent blindly.
    Unknown(String),
}

/// Renders and sends emails. The binary provides one backed by `nurture-sender`.
pub trait Courier: Send + Sync {
    /// A rendered, addressed message ready to go.
    type Prepared: Send;
    /// Renders and builds the message; returns its Message-ID and the prepared message.
    fn prepare(&self, job: &Job<'_>) -> std::result::Result<(String, Self::Prepared), Failure>;
    /// Prepares many messages, in order. The default renders one after the other; a courier
    /// may spread the work over several threads.
    #[allow(clippy::type_complexity)]
    fn prepare_all(
        &self,
        jobs: &[Job<'_>],
    ) -> Vec<std::result::Result<(String, Self::Prepared), Failure>> {
        jobs.iter().map(|j| self.prepare(j)).collect()
    }
    /// The most messages per second it sends, if it is paced (bounds how much is rendered
    /// ahead: no more than it sends in 30 seconds).
    fn rate(&self) -> Option<u32> {
        None
    }
    /// The memory a prepared message holds (bounds how much is rendered ahead).
    fn size(&self, _prepared: &Self::Prepared) -> usize {
        std::mem::size_of::<Self::Prepared>()
    }
    /// Sends a prepared message; returns the server's reply.
    fn send(
        &self,
        prepared: Self::Prepared,
    ) -> impl Future<Output = std::result::Result<String, Failure>> + Send;
}

/// What a delivery round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Accepted by the server.
    pub sent: u64,
    /// Will be retried.
    pub deferred: u64,
    /// Given up (render errors, retries exhausted).
    pub failed: u64,
    /// Hard bounces.
    pub bounced: u64,
    /// Not sent: the contact is no longer mailable.
    pub suppressed: u64,
    /// Left `sending` by a dead process, now `unknown`.
    pub unknown: u64,
    /// Outcomes this worker could not record because the message was no longer its own: its
    /// lease ran out and another worker took the message over (logged as a warning).
    pub lost: u64,
}

impl Delivered {
    /// Adds another round's counts.
    fn add(&mut self, o: Delivered) {
        self.sent += o.sent;
        self.deferred += o.deferred;
        self.failed += o.failed;
        self.bounced += o.bounced;
        self.suppressed += o.suppressed;
        self.unknown += o.unknown;
        self.lost += o.lost;
    }
}

/// Retries stop this long after the first attempt.
pub const GIVE_UP_AFTER: Duration = Duration::days(3);
/// How long a claim holds a message without being renewed.
pub const LEASE: Duration = Duration::minutes(5);
/// A worker renews the leases it holds this often while it works (so a lease runs out only
/// when its worker has stopped for at least two thirds of [`LEASE`]).
const RENEW_EVERY: Duration = Duration::seconds(100);

/// The wait before retry number `attempts` (1-based): 1m, 5m, 15m, 1h, 4h, then every 4h.
pub fn backoff(attempts: i64) -> Duration {
    match attempts {
        ..=1 => Duration::minutes(1),
        2 => Duration::minutes(5),
        3 => Duration::minutes(15),
        4 => Duration::hours(1),
        _ => Duration::hours(4),
    }
}

/// When to try again after a transient failure, or `None` to give up.
pub fn next_attempt(
    first_queued: DateTime<Utc>,
    attempts: i64,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let next = now + backoff(attempts);
    (next <= first_queued + GIVE_UP_AFTER).then_some(next)
}

/// How a message is settled before any SMTP: its contact is gone or unmailable, its step
/// vanished, it cannot be rendered, or the server refused the messages before it.
struct Settle {
    to: MessageState,
    reason: String,
    /// Recorded as an attempt too (render errors, for `explain`).
    attempt: Option<&'static str>,
    /// When to try again (`to` is `Deferred`).
    retry_at: Option<i64>,
}

/// A claimed batch with what rendering it needs.
struct Claimed {
    batch: Vec<MessageRow>,
    contacts: HashMap<i64, Contact>,
    events: HashMap<i64, Map<String, Value>>,
    versions: HashMap<i64, Arc<Campaign>>,
}

/// A rendered batch: messages ready for SMTP and messages settled without it, by index.
pub(crate) struct Rendered<P> {
    batch: Vec<MessageRow>,
    settled: Vec<(usize, Settle)>,
    ready: Vec<(usize, String, P)>,
    took: std::time::Duration,
    /// The memory the ready messages hold ([`Courier::size`]).
    bytes: usize,
}

impl Engine {
    /// Delivers every message due at `now`, `concurrency` at a time, until none is due.
    ///
    /// Per claimed batch the database sees a handful of statements, not a few per message:
    /// one claim, one read of the contacts and one of the trigger events; then, per chunk of
    /// messages, one transaction that records the outcomes so far and marks the chunk
    /// `sending` before any of it goes to SMTP. While one batch is being sent, the next is
    /// claimed (on this task) and rendered (on a blocking thread, through `courier`).
    ///
    /// Works on either runtime flavour. On a current-thread runtime the SMTP connections are
    /// polled by the thread that waits for their sockets, which saves two thread wake-ups
    /// per message over a multi-threaded runtime (where the I/O driver runs on a worker and
    /// wakes this task's thread for every reply).
    pub async fn deliver<C: Courier + 'static>(
        &self,
        courier: &Arc<C>,
        now: DateTime<Utc>,
        concurrency: usize,
    ) -> Result<Delivered> {
        self.deliver_ahead(Ahead::new(self, courier.clone(), now), concurrency)
            .await
    }

    /// [`Engine::deliver`], starting with the batches `ahead` already claimed.
    pub(crate) async fn deliver_ahead<C: Courier + 'static>(
        &self,
        mut ahead: Ahead<C>,
        concurrency: usize,
    ) -> Result<Delivered> {
        let mut out = Delivered::default();
        {
            let mut tx = self.store.begin().await?;
            out.unknown += tx.expire_sending(to_ms(ahead.leases.now())).await?;
            tx.commit().await?;
        }
        let concurrency = concurrency.max(1);
        // Once the server has refused a window of messages in a row, the rest of the round
        // is deferred untried (and no longer rendered).
        let mut unavailable: Option<String> = None;
        // Whether a claim may still find messages (the last one found some).
        let mut more = true;
        loop {
            let next = match ahead.queue.pop_front() {
                Some(next) => next,
                None if more => match self.claim_and_render(&ahead, unavailable.clone()).await? {
                    Some(next) => next,
                    None => return Ok(out),
                },
                None => return Ok(out),
            };
            let ready = rendered(next).await?;
            ahead.bytes.fetch_sub(ready.bytes, Ordering::Relaxed);
            // While the oldest batch is sent, the next one is claimed and rendered — once
            // those rendered ahead are used up: holding more would only cost memory.
            let top_up = more && ahead.queue.is_empty();
            let down = unavailable.clone();
            let claim = async {
                if top_up {
                    self.claim_and_render(&ahead, down).await
                } else {
                    Ok(None)
                }
            };
            let (sent, claimed) = futures_util::future::join(
                self.send_batch(
                    &*ahead.courier,
                    ready,
                    &ahead.leases,
                    concurrency,
                    &mut out,
                    &mut unavailable,
                ),
                claim,
            )
            .await;
            sent?;
            match claimed? {
                Some(r) => ahead.queue.push_back(r),
                None => more &= !top_up,
            }
        }
    }

    /// Claims the next batch and starts rendering it on a blocking thread (rendering is CPU
    /// work: it must not hold up the connections polled on this one), after the batches
    /// already rendering (`ahead.lane`): on one thread while the engine runs (it needs the
    /// other core), on every core once it is done.
    /// With `unavailable` (the server's refusal), the batch is not rendered: every message is
    /// deferred untried.
    async fn claim_and_render<C: Courier + 'static>(
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

    /// Leases the next batch of messages due at `due` and reads what rendering them needs.
    /// The lease runs from the clock's time now, not from the round's start.
    async fn claim_batch(&self, due: DateTime<Utc>, leases: &Leases) -> Result<Option<Claimed>> {
        if self.is_stopping() {
            return Ok(None);
        }
        let mut tx = self.store.begin().await?;
        let batch = tx
            .claim_messages(
                to_ms(due),
                to_ms(leases.now() + LEASE),
                self.config.batch,
                self.owner,
            )
            .await?;
        if batch.is_empty() {
            tx.commit().await?;
            return Ok(None);
        }
        leases.hold(batch.iter().map(|m| m.id));
        let mut ids: Vec<i64> = batch.iter().map(|m| m.contact_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let contacts: HashMap<i64, Contact> = tx
            .contacts(&ids)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let mut ids: Vec<i64> = batch.iter().map(|m| m.enrollment_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let events = tx.trigger_properties(&ids).await?;
        tx.commit().await?;
        let mut versions: HashMap<i64, Arc<Campaign>> = HashMap::new();
        for m in &batch {
            if let std::collections::hash_map::Entry::Vacant(v) = versions.entry(m.version_id) {
                v.insert(self.version(m.version_id).await?);
            }
        }
        Ok(Some(Claimed {
            batch,
            contacts,
            events,
            versions,
        }))
    }

    /// Sends a rendered batch and records every outcome.
    ///
    /// The SMTP connections never wait for the database: while messages go out, one
    /// transaction at a time records the outcomes so far and marks the next chunk `sending`.
    /// A chunk is marked only when at most `limit` messages would then be `sending`, so a
    /// crash leaves at most `limit` messages `unknown`.
    async fn send_batch<C: Courier>(
        &self,
        courier: &C,
        r: Rendered<C::Prepared>,
        leases: &Leases,
        concurrency: usize,
        out: &mut Delivered,
        unavailable: &mut Option<String>,
    ) -> Result<()> {
        // Eight messages per connection keep every connection busy between two commits.
        let limit = (concurrency * 8).min(256);
        let chunk = (limit / 2).max(1);
        let started = std::time::Instant::now();
        let mut db_time = std::time::Duration::ZERO;
        let batch = &r.batch;
        let mut settled: Vec<(&MessageRow, Settle)> =
            r.settled.into_iter().map(|(i, s)| (&batch[i], s)).collect();
        let mut todo: VecDeque<(&MessageRow, String, C::Prepared)> = r
            .ready
            .into_iter()
            .map(|(i, id, p)| (&batch[i], id, p))
            .collect();
        // Marked `sending`, not handed to SMTP yet.
        let mut marked: VecDeque<(&MessageRow, C::Prepared)> = VecDeque::new();
        let mut inflight = FuturesUnordered::new();
        // Sent (or refused), not recorded yet.
        let mut finished: Vec<(&MessageRow, std::result::Result<String, Failure>)> = Vec::new();
        let mut round = None;
        // A round is due to renew the leases although nothing else is to be recorded.
        let mut renew = false;
        // The server refused this many messages in a row: it is down or throttling us.
        let mut refused_in_a_row = 0;
        // Stopping: never handed to SMTP, given back at the end.
        let mut released: Vec<&MessageRow> = Vec::new();
        loop {
            if self.is_stopping() {
                released.extend(marked.drain(..).map(|(m, _)| m));
                released.extend(todo.drain(..).map(|(m, _, _)| m));
            }
            if let Some(reply) = unavailable.as_deref() {
                // Instead of knocking on a closed door for every message: the marked ones
                // are recorded as refused, the rest deferred untried.
                let why =
                    format!("not tried: the SMTP server refused the messages before it ({reply})");
                finished.extend(
                    marked
                        .drain(..)
                        .map(|(m, _)| (m, Err(Failure::Transient(why.clone())))),
                );
                let now = leases.now();
                settled.extend(
                    todo.drain(..)
                        .map(|(m, _, _)| (m, deferred_untried(m, reply, now))),
                );
            }
            while inflight.len() < concurrency
                && let Some((m, p)) = marked.pop_front()
            {
                inflight.push(async move { (m, courier.send(p).await) });
            }
            let pending = marked.len() + inflight.len();
            if round.is_none() {
                let mark = !todo.is_empty() && pending + chunk <= limit;
                let record = finished.len() >= chunk
                    || (pending == 0 && !(finished.is_empty() && settled.is_empty()));
                if mark || record || std::mem::take(&mut renew) || leases.renewal_due() {
                    let marks: Vec<_> = if mark {
                        let n = chunk.min(todo.len());
                        todo.drain(..n).collect()
                    } else {
                        Vec::new()
                    };
                    round = Some(Box::pin(self.round(
                        std::mem::take(&mut settled),
                        std::mem::take(&mut finished),
                        marks,
                        leases,
                    )));
                }
            }
            let outcome = match (round.as_mut(), inflight.is_empty()) {
                (None, true) => break,
                (Some(db), true) => Either::Left(db.await),
                // A send that takes long (a slow server, a timeout) does not let the leases
                // run out meanwhile.
                (None, false) => {
                    let wait = tokio::time::sleep(
                        RENEW_EVERY
                            .to_std()
                            .unwrap_or(std::time::Duration::from_secs(100)),
                    );
                    match select(inflight.next(), Box::pin(wait)).await {
                        Either::Left((sent, _)) => Either::Right(sent),
                        Either::Right(((), _)) => {
                            renew = true;
                            continue;
                        }
                    }
                }
                (Some(db), false) => match select(db, inflight.next()).await {
                    Either::Left((done, _)) => Either::Left(done),
                    Either::Right((sent, _)) => Either::Right(sent),
                },
            };
            match outcome {
                Either::Left(done) => {
                    round = None;
                    let (newly_marked, delivered, took) = done?;
                    db_time += took;
                    out.add(delivered);
                    marked.extend(newly_marked);
                }
                Either::Right(Some((m, result))) => {
                    match &result {
                        Err(Failure::Transient(reply)) => {
                            refused_in_a_row += 1;
                            if refused_in_a_row >= chunk && unavailable.is_none() {
                                tracing::warn!(
                                    refused = refused_in_a_row,
                                    reply = %reply,
                                    "the SMTP server refused every message lately; the rest of this round is deferred untried"
                                );
                                *unavailable = Some(reply.clone());
                            }
                        }
                        _ => refused_in_a_row = 0,
                    }
                    finished.push((m, result));
                }
                Either::Right(None) => {}
            }
        }
        if !released.is_empty() {
            self.release(&released, leases).await?;
        }
        tracing::debug!(
            messages = batch.len(),
            render_ms = r.took.as_millis() as u64,
            db_ms = db_time.as_millis() as u64,
            send_ms = started.elapsed().as_millis() as u64,
            "delivered a batch"
        );
        Ok(())
    }

    /// One transaction of a batch's delivery: records what was settled and sent so far,
    /// renews the worker's leases when due, and marks the next messages `sending`. Returns
    /// those marked, what was recorded, and the time it took.
    ///
    /// Marking is the send-time check: a message whose contact left, whose campaign was
    /// paused or removed, or that another worker took over since the claim is not marked;
    /// it is suppressed, held, or counted as lost here, and never reaches SMTP.
    #[allow(clippy::type_complexity)]
    async fn round<'a, P>(
        &self,
        settled: Vec<(&'a MessageRow, Settle)>,
        finished: Vec<(&'a MessageRow, std::result::Result<String, Failure>)>,
        marks: Vec<(&'a MessageRow, String, P)>,
        leases: &Leases,
    ) -> Result<(Vec<(&'a MessageRow, P)>, Delivered, std::time::Duration)> {
        let started = std::time::Instant::now();
        let now = leases.now();
        let now_ms = to_ms(now);
        let mut out = Delivered::default();
        let mut tx = self.store.begin().await?;
        let done: Vec<i64> = settled
            .iter()
            .map(|(m, _)| m.id)
            .chain(finished.iter().map(|(m, _)| m.id))
            .collect();
        self.settle(&mut tx, settled, now_ms, &mut out).await?;
        self.record(&mut tx, finished, now, &mut out).await?;
        if leases.renewal_due() {
            leases.renew(&mut tx, &done).await?;
        }
        // Frequency caps (SPEC §13): decided here, under the contacts' locks, so they hold
        // across campaigns and daemons; a message that does not fit goes back to the queue.
        let (marks, capped, postponed) = crate::frequency::admit(self, &mut tx, marks, now).await?;
        let mut marked = Vec::with_capacity(marks.len());
        let mut dropped = Vec::new();
        if !marks.is_empty() {
            let ids: Vec<(i64, &str)> = marks
                .iter()
                .map(|(m, message_id, _)| (m.id, message_id.as_str()))
                .collect();
            let ok: HashSet<i64> = tx
                .mark_sending_many(&ids, to_ms(now + LEASE), now_ms, self.owner)
                .await?
                .into_iter()
                .collect();
            let stamp: Vec<i64> = capped.into_iter().filter(|id| ok.contains(id)).collect();
            if !stamp.is_empty() {
                tx.stamp_capped(&stamp, now_ms).await?;
            }
            for (m, _, p) in marks {
                if ok.contains(&m.id) {
                    marked.push((m, p));
                } else {
                    dropped.push(m.id);
                }
            }
        }
        if !dropped.is_empty() {
            for (id, state) in tx.settle_unmarked(&dropped, self.owner, now_ms).await? {
                match state.as_str() {
                    "suppressed" => out.suppressed += 1,
                    // Held: its campaign is paused.
                    "queued" | "deferred" => {}
                    other => {
                        tracing::warn!(
                            message = id,
                            state = other,
                            "a message claimed by this worker was taken over by another before it was sent (its lease ran out); not sent here"
                        );
                        out.lost += 1;
                    }
                }
            }
        }
        tx.commit().await?;
        leases.release(done.into_iter().chain(dropped).chain(postponed));
        Ok((marked, out, started.elapsed()))
    }

    /// Gives back the lease of messages claimed and never handed to SMTP (see
    /// [`Engine::stop`]), each to the state it was claimed in.
    async fn release(&self, messages: &[&MessageRow], leases: &Leases) -> Result<()> {
        let now = leases.now();
        let mut tx = self.store.begin().await?;
        for back_to in [MessageState::Queued, MessageState::Deferred] {
            let ids: Vec<i64> = messages
                .iter()
                .filter(|m| m.state == back_to.as_str())
                .map(|m| m.id)
                .collect();
            if !ids.is_empty() {
                tx.release_messages(&ids, back_to, to_ms(now), self.owner)
                    .await?;
            }
        }
        tx.commit().await?;
        leases.release(messages.iter().map(|m| m.id));
        tracing::info!(
            messages = messages.len(),
            "stopping: messages not sent yet go back to the queue"
        );
        Ok(())
    }

    /// Records the messages settled without SMTP, those alike in one statement.
    async fn settle(
        &self,
        tx: &mut Tx,
        settled: Vec<(&MessageRow, Settle)>,
        now_ms: i64,
        out: &mut Delivered,
    ) -> Result<()> {
        let mut groups: Vec<(MessageState, &Settle, Vec<i64>)> = Vec::new();
        let mut attempts: Vec<(i64, &str, Option<&str>)> = Vec::new();
        for (m, s) in &settled {
            let from = if m.state == "deferred" {
                MessageState::Deferred
            } else {
                MessageState::Queued
            };
            match groups.iter_mut().find(|(f, g, _)| {
                *f == from && g.to == s.to && g.reason == s.reason && g.retry_at == s.retry_at
            }) {
                Some((_, _, ids)) => ids.push(m.id),
                None => groups.push((from, s, vec![m.id])),
            }
            if let Some(outcome) = s.attempt {
                attempts.push((m.id, outcome, Some(&s.reason)));
            }
        }
        for (from, s, ids) in groups {
            let n = tx
                .finish_messages(
                    &ids,
                    from,
                    s.to,
                    Some(&s.reason),
                    s.retry_at,
                    now_ms,
                    self.owner,
                )
                .await?;
            match s.to {
                MessageState::Suppressed => out.suppressed += n,
                MessageState::Deferred => out.deferred += n,
                _ => out.failed += n,
            }
            if n < ids.len() as u64 {
                self.missed(tx, &ids, s.to, out).await?;
            }
        }
        tx.insert_attempts(&attempts, now_ms).await?;
        Ok(())
    }

    /// Accounts for outcomes among `ids` whose update missed its guard: a message suppressed
    /// meanwhile (its contact left) is counted as suppressed; any other was taken over by
    /// another worker after this one's lease ran out, and is counted as lost and logged.
    async fn missed(
        &self,
        tx: &mut Tx,
        ids: &[i64],
        outcome: MessageState,
        out: &mut Delivered,
    ) -> Result<()> {
        for (id, state, owner) in tx.message_states(ids).await? {
            if owner == Some(self.owner) && state == outcome.as_str() {
                continue;
            }
            if state == "suppressed" {
                out.suppressed += 1;
                continue;
            }
            tracing::warn!(
                message = id,
                state = %state,
                outcome = outcome.as_str(),
                "outcome not recorded: another worker took the message over after this one's lease ran out"
            );
            out.lost += 1;
        }
        Ok(())
    }

    /// Records the outcome of one message this worker had `sending`; when its lease ran out
    /// meanwhile and another worker marked it `unknown`, the outcome is recorded after all
    /// (it is the truth) and the miss is counted; anything else is counted and left alone.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        tx: &mut Tx,
        m: &MessageRow,
        to: MessageState,
        error: Option<&str>,
        retry_at: Option<i64>,
        now_ms: i64,
        out: &mut Delivered,
    ) -> Result<bool> {
        if tx
            .finish_message(
                m.id,
                MessageState::Sending,
                to,
                error,
                retry_at,
                now_ms,
                self.owner,
            )
            .await?
        {
            return Ok(true);
        }
        // A late outcome for a message given up as `unknown`: deferred mail is not retried
        // (it may be delivered twice otherwise), so only final outcomes replace `unknown`.
        if to != MessageState::Deferred
            && tx
                .finish_unknown(m.id, self.owner, to, error, now_ms)
                .await?
        {
            tracing::warn!(
                message = m.id,
                outcome = to.as_str(),
                "outcome recorded late: the message had been marked unknown after this worker's lease ran out"
            );
            out.lost += 1;
            return Ok(true);
        }
        self.missed(tx, std::slice::from_ref(&m.id), to, out)
            .await?;
        Ok(false)
    }

    /// Records the outcomes of a window: the accepted ones in two statements, the rest (rare)
    /// one by one.
    async fn record(
        &self,
        tx: &mut Tx,
        results: Vec<(&MessageRow, std::result::Result<String, Failure>)>,
        now: DateTime<Utc>,
        out: &mut Delivered,
    ) -> Result<()> {
        let now_ms = to_ms(now);
        let mut sent = Vec::new();
        let mut attempts: Vec<(i64, &str, Option<&str>)> = Vec::with_capacity(results.len());
        // How many were deferred in this window, and the first reply.
        let mut deferred: Option<(u64, &str)> = None;
        for (m, result) in &results {
            match result {
                Ok(reply) => {
                    sent.push(*m);
                    attempts.push((m.id, "sent", Some(reply)));
                }
                Err(Failure::Transient(reply)) => {
                    let attempts_so_far = m.attempts + 1;
                    let (to, why, at) =
                        match next_attempt(crate::from_ms(m.created_at), attempts_so_far, now) {
                            Some(at) => (MessageState::Deferred, reply.clone(), Some(to_ms(at))),
                            None => (
                                MessageState::Failed,
                                format!("gave up after 3 days of retries; last reply: {reply}"),
                                None,
                            ),
                        };
                    if self.finish(tx, m, to, Some(&why), at, now_ms, out).await? {
                        match to {
                            MessageState::Deferred => out.deferred += 1,
                            _ => out.failed += 1,
                        }
                    }
                    attempts.push((m.id, "deferred", Some(reply)));
                    tracing::debug!(message = m.id, reply = %reply, "delivery deferred");
                    deferred.get_or_insert((0, reply.as_str())).0 += 1;
                }
                Err(Failure::Permanent(reply)) => {
                    if self
                        .finish(tx, m, MessageState::Bounced, Some(reply), None, now_ms, out)
                        .await?
                    {
                        out.bounced += 1;
                    }
                    attempts.push((m.id, "bounced", Some(reply)));
                    // The server's answer stands whoever holds the message now.
                    tx.set_contact_status(m.contact_id, ContactStatus::Bounced, reply, now_ms)
                        .await?;
                    tx.exit_contact_enrollments(m.contact_id, "bounced", now_ms)
                        .await?;
                    tracing::warn!(message = m.id, reply = %reply, "hard bounce; the contact leaves every campaign");
                }
                Err(Failure::Unknown(reply)) => {
                    if self
                        .finish(tx, m, MessageState::Unknown, Some(reply), None, now_ms, out)
                        .await?
                    {
                        out.unknown += 1;
                    }
                    attempts.push((m.id, "unknown", Some(reply)));
                    tracing::warn!(message = m.id, reply = %reply, "outcome unknown; not re-sent");
                }
                Err(Failure::Render(reason)) => {
                    if self
                        .finish(tx, m, MessageState::Failed, Some(reason), None, now_ms, out)
                        .await?
                    {
                        out.failed += 1;
                    }
                }
            }
        }
        let ids: Vec<i64> = sent.iter().map(|m| m.id).collect();
        let moved = tx.finish_sent(&ids, now_ms, self.owner).await?;
        out.sent += moved.len() as u64;
        if moved.len() < sent.len() {
            let moved: HashSet<i64> = moved.into_iter().collect();
            for m in sent.into_iter().filter(|m| !moved.contains(&m.id)) {
                if tx
                    .finish_unknown(m.id, self.owner, MessageState::Sent, None, now_ms)
                    .await?
                {
                    tracing::warn!(
                        message = m.id,
                        "outcome recorded late: the message had been marked unknown after this worker's lease ran out"
                    );
                    out.sent += 1;
                    out.lost += 1;
                } else {
                    self.missed(tx, &[m.id], MessageState::Sent, out).await?;
                }
            }
        }
        tx.insert_attempts(&attempts, now_ms).await?;
        if let Some((n, reply)) = deferred {
            // One line per window, not per message: a server that is down refuses them all.
            tracing::warn!(messages = n, reply = %reply, "deliveries deferred (first reply shown)");
        }
        Ok(())
    }
}

/// A message not tried because the server refused the whole previous window: deferred (or
/// failed after 3 days) exactly as if it had been refused itself.
fn deferred_untried(m: &MessageRow, reply: &str, now: DateTime<Utc>) -> Settle {
    let reason = format!("not tried: the SMTP server refused the messages before it ({reply})");
    match next_attempt(crate::from_ms(m.created_at), m.attempts + 1, now) {
        Some(at) => Settle {
            to: MessageState::Deferred,
            reason,
            attempt: Some("deferred"),
            retry_at: Some(to_ms(at)),
        },
        None => Settle {
            to: MessageState::Failed,
            reason: format!("gave up after 3 days of retries; {reason}"),
            attempt: Some("deferred"),
            retry_at: None,
        },
    }
}

/// At most this many batches wait claimed and rendered (or rendering) ahead of delivery...
const AHEAD_BATCHES: usize = 8;
/// ...holding at most about this much memory (a batch may finish rendering past it)...
const AHEAD_BYTES: usize = 32 << 20;
/// ...and no more than a paced courier sends in this many seconds (one batch at least): a
/// message waits rendered, its `Date` set and its lease running, until its turn.
const AHEAD_SECONDS: u64 = 30;

/// Batches claimed ahead of delivery and rendering (or rendered) on blocking threads, one
/// batch at a time.
///
/// The engine alternates between this thread and the database's, which leaves a core idle:
/// [`Engine::run_and_deliver`] claims the emails the engine queues as each of its batches
/// commits and renders them on that core, so delivery starts with them ready.
pub(crate) struct Ahead<C: Courier> {
    courier: Arc<C>,
    /// What is due as of this time is delivered.
    now: DateTime<Utc>,
    /// The messages claimed and not finished yet, and the clock their leases run on.
    pub(crate) leases: Arc<Leases>,
    /// Held while a batch renders: one batch at a time.
    lane: Arc<std::sync::Mutex<()>>,
    queue: VecDeque<Rendering<C::Prepared>>,
    /// The memory held by the batches rendered and not yet being sent.
    bytes: Arc<AtomicUsize>,
    /// Batches claimed, not rendered yet.
    rendering: Arc<AtomicUsize>,
    /// While set, batches render on one thread.
    engine_running: Arc<AtomicBool>,
    /// Emails the engine queued that are not claimed yet.
    waiting: u64,
    /// At most this many batches ahead.
    batches: usize,
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
    fn has_room(&self) -> bool {
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

/// The messages one worker holds during a round (claimed and not finished), and the clock
/// their leases run on. Every transaction of the round renews them when [`RENEW_EVERY`] has
/// passed, so a long round (a slow server, a paced daemon, a long engine phase while batches
/// wait rendered ahead) keeps what it claimed.
pub(crate) struct Leases {
    clock: crate::time::RoundClock,
    owner: i64,
    held: std::sync::Mutex<HashSet<i64>>,
    renew_at: std::sync::Mutex<DateTime<Utc>>,
}

impl Leases {
    fn new(clock: crate::time::RoundClock, owner: i64) -> Self {
        let renew_at = clock.now() + RENEW_EVERY;
        Self {
            clock,
            owner,
            held: Default::default(),
            renew_at: std::sync::Mutex::new(renew_at),
        }
    }

    /// The current time.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn hold(&self, ids: impl IntoIterator<Item = i64>) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ids);
    }

    fn release(&self, ids: impl IntoIterator<Item = i64>) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            held.remove(&id);
        }
    }

    fn renewal_due(&self) -> bool {
        self.now() >= *self.renew_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renews the lease on every message still held (but those in `finished`, recorded in
    /// this same transaction).
    async fn renew(&self, tx: &mut Tx, finished: &[i64]) -> Result<()> {
        let now = self.now();
        let ids: Vec<i64> = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.iter()
                .copied()
                .filter(|id| !finished.contains(id))
                .collect()
        };
        let n = tx
            .renew_leases(&ids, to_ms(now + LEASE), self.owner)
            .await?;
        tracing::debug!(held = ids.len(), renewed = n, "leases renewed");
        *self.renew_at.lock().unwrap_or_else(|e| e.into_inner()) = now + RENEW_EVERY;
        Ok(())
    }
}

/// A batch being rendered on a blocking thread.
pub(crate) type Rendering<P> = tokio::task::JoinHandle<Rendered<P>>;

/// Waits for a batch being rendered.
async fn rendered<P>(r: Rendering<P>) -> Result<Rendered<P>> {
    match r.await {
        Ok(rendered) => Ok(rendered),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(crate::EngineError::Interrupted(e.to_string())),
    }
}

/// Renders a claimed batch (blocking): one message at a time while `one_thread()` holds,
/// the rest through [`Courier::prepare_all`] (which may use several threads) once it does not.
fn render_batch<C: Courier>(
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
fn job<'a>(
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

/// A message that could not be rendered: the step fails, with the reason kept.
fn render_failed(job: &Job<'_>, f: Failure) -> Settle {
    let m = job.message;
    let reason = match f {
        Failure::Render(r)
        | Failure::Transient(r)
        | Failure::Permanent(r)
        | Failure::Unknown(r) => r,
    };
    tracing::error!(campaign = %m.campaign_id, step = %m.step_id, contact = %job.contact.email, error = %reason, "cannot render the email; the step fails");
    Settle {
        to: MessageState::Failed,
        reason,
        attempt: Some("failed"),
        retry_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_schedule() {
        let mins: Vec<i64> = (1..=7).map(|a| backoff(a).num_minutes()).collect();
        assert_eq!(mins, [1, 5, 15, 60, 240, 240, 240]);
    }

    #[test]
    fn gives_up_after_three_days() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(next_attempt(t0, 1, t0), Some(t0 + Duration::minutes(1)));
        let late = t0 + Duration::days(3) - Duration::hours(1);
        assert_eq!(next_attempt(t0, 9, late), None);
    }
}
