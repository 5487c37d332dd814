//! The delivery worker: claims due messages, re-checks suppression, has a [`Courier`] render
//! and send each one, and records the outcome in the message state machine.
//!
//! Order matters for "never twice": a message is marked `sending` and committed before the
//! courier talks SMTP; the outcome is recorded after. A process killed in between leaves the
//! message `sending` with a lease; when the lease runs out it becomes `unknown` (never re-sent
//! blindly). A message claimed but not yet `sending` simply returns to the queue when its
//! lease expires.
//!
//! Split by concept: [`claim`] leases due messages (and gives leases back), [`ahead`]
//! renders claimed batches on blocking threads ahead of sending, [`record`] records each
//! outcome and settles messages that never reach SMTP. This module holds the public types
//! and the send loop that ties them together, in the order that keeps "never twice":
//! claim, render, mark `sending` and commit, SMTP, record.

mod ahead;
mod claim;
mod record;

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

pub(crate) use ahead::Ahead;
use ahead::*;
use claim::*;
use record::*;

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
                match state {
                    MessageState::Suppressed => out.suppressed += 1,
                    // Held: its campaign is paused.
                    MessageState::Queued | MessageState::Deferred => {}
                    other => {
                        tracing::warn!(
                            message = id,
                            state = other.as_str(),
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
