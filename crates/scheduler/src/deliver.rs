//! The delivery worker: claims due messages, re-checks suppression, has a [`Courier`] render
//! and send each one, and records the outcome in the message state machine.
//!
//! Order matters for "never twice": a message is marked `sending` and committed before the
//! courier talks SMTP; the outcome is recorded after. A process killed in between leaves the
//! message `sending` with a lease; when the lease runs out it becomes `unknown` (never re-sent
//! blindly). A message claimed but not yet `sending` simply returns to the queue when its
//! lease expires.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures_util::future::join_all;
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
}

/// Retries stop this long after the first attempt.
pub const GIVE_UP_AFTER: Duration = Duration::days(3);
/// How long a claim holds a message.
pub const LEASE: Duration = Duration::minutes(5);

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
    pub async fn deliver<C: Courier>(
        &self,
        courier: &C,
        now: DateTime<Utc>,
        concurrency: usize,
    ) -> Result<Delivered> {
        let mut out = Delivered::default();
        {
            let mut tx = self.store.begin().await?;
            out.unknown += tx.expire_sending(to_ms(now)).await?;
            tx.commit().await?;
        }
        loop {
            let mut tx = self.store.begin().await?;
            let batch = tx
                .claim_messages(to_ms(now), to_ms(now + LEASE), self.config.batch)
                .await?;
            tx.commit().await?;
            if batch.is_empty() {
                return Ok(out);
            }
            let mut prepared = Vec::with_capacity(batch.len());
            for m in &batch {
                if let Some(p) = self.prepare_one(courier, m, now, &mut out).await? {
                    prepared.push((m, p));
                }
            }
            // A window of `concurrency` messages at a time: marked `sending` and committed
            // before any SMTP (so a crash leaves at most one window `unknown`, never a
            // resend), sent concurrently, and their outcomes recorded in one transaction.
            let now_ms = to_ms(now);
            let mut pending = prepared.into_iter().peekable();
            while pending.peek().is_some() {
                let window: Vec<_> = pending.by_ref().take(concurrency.max(1)).collect();
                let mut tx = self.store.begin().await?;
                let mut go = Vec::with_capacity(window.len());
                for (m, (message_id, p)) in window {
                    if tx
                        .mark_sending(m.id, &message_id, to_ms(now + LEASE), now_ms)
                        .await?
                    {
                        go.push((m, p));
                    }
                }
                tx.commit().await?;
                let results = join_all(
                    go.into_iter()
                        .map(|(m, p)| async move { (m, courier.send(p).await) }),
                )
                .await;
                let mut tx = self.store.begin().await?;
                for (m, result) in results {
                    self.record(&mut tx, m, result, now, &mut out).await?;
                }
                tx.commit().await?;
            }
        }
    }

    async fn prepare_one<C: Courier>(
        &self,
        courier: &C,
        m: &MessageRow,
        now: DateTime<Utc>,
        out: &mut Delivered,
    ) -> Result<Option<(String, C::Prepared)>> {
        let now_ms = to_ms(now);
        let campaign: Arc<Campaign> = self.version(m.version_id).await?;
        let mut tx = self.store.begin().await?;
        let contact = tx.contact(m.contact_id).await?;
        let enrollment = tx.enrollment(m.enrollment_id).await?;
        let from = if m.state == "deferred" {
            MessageState::Deferred
        } else {
            MessageState::Queued
        };
        let Some(contact) = contact.filter(|c| c.status == ContactStatus::Subscribed) else {
            tx.finish_message(
                m.id,
                from,
                MessageState::Suppressed,
                Some("the contact is no longer mailable"),
                None,
                now_ms,
            )
            .await?;
            tx.commit().await?;
            out.suppressed += 1;
            return Ok(None);
        };
        let step = campaign.steps.iter().find(|s| s.id.as_str() == m.step_id);
        let Some((step, send)) = step.and_then(|s| match &s.action {
            Action::Send(send) => Some((s, send)),
            _ => None,
        }) else {
            tx.finish_message(
                m.id,
                from,
                MessageState::Failed,
                Some("the step no longer exists in its campaign version"),
                None,
                now_ms,
            )
            .await?;
            tx.commit().await?;
            out.failed += 1;
            return Ok(None);
        };
        let event = enrollment.map(|e| e.trigger_properties).unwrap_or_default();
        let job = Job {
            message: m,
            campaign: &campaign,
            step,
            send,
            contact: &contact,
            event: &event,
        };
        match courier.prepare(&job) {
            Ok(ready) => {
                tx.commit().await?;
                Ok(Some(ready))
            }
            Err(f) => {
                let reason = match f {
                    Failure::Render(r)
                    | Failure::Transient(r)
                    | Failure::Permanent(r)
                    | Failure::Unknown(r) => r,
                };
                tracing::error!(campaign = %m.campaign_id, step = %m.step_id, contact = %contact.email, error = %reason, "cannot render the email; the step fails");
                tx.finish_message(
                    m.id,
                    from,
                    MessageState::Failed,
                    Some(&reason),
                    None,
                    now_ms,
                )
                .await?;
                tx.insert_attempt(m.id, "failed", Some(&reason), now_ms)
                    .await?;
                tx.commit().await?;
                out.failed += 1;
                Ok(None)
            }
        }
    }

    async fn record(
        &self,
        tx: &mut Tx,
        m: &MessageRow,
        result: std::result::Result<String, Failure>,
        now: DateTime<Utc>,
        out: &mut Delivered,
    ) -> Result<()> {
        let now_ms = to_ms(now);
        let sending = MessageState::Sending;
        match result {
            Ok(reply) => {
                tx.finish_message(m.id, sending, MessageState::Sent, None, None, now_ms)
                    .await?;
                tx.insert_attempt(m.id, "sent", Some(&reply), now_ms)
                    .await?;
                out.sent += 1;
            }
            Err(Failure::Transient(reply)) => {
                let attempts = m.attempts + 1;
                match next_attempt(crate::from_ms(m.created_at), attempts, now) {
                    Some(at) => {
                        tx.finish_message(
                            m.id,
                            sending,
                            MessageState::Deferred,
                            Some(&reply),
                            Some(to_ms(at)),
                            now_ms,
                        )
                        .await?;
                        out.deferred += 1;
                    }
                    None => {
                        let why = format!("gave up after 3 days of retries; last reply: {reply}");
                        tx.finish_message(
                            m.id,
                            sending,
                            MessageState::Failed,
                            Some(&why),
                            None,
                            now_ms,
                        )
                        .await?;
                        out.failed += 1;
                    }
                }
                tx.insert_attempt(m.id, "deferred", Some(&reply), now_ms)
                    .await?;
                tracing::warn!(message = m.id, reply = %reply, "delivery deferred");
            }
            Err(Failure::Permanent(reply)) => {
                tx.finish_message(
                    m.id,
                    sending,
                    MessageState::Bounced,
                    Some(&reply),
                    None,
                    now_ms,
                )
                .await?;
                tx.insert_attempt(m.id, "bounced", Some(&reply), now_ms)
                    .await?;
                tx.set_contact_status(m.contact_id, ContactStatus::Bounced, &reply, now_ms)
                    .await?;
                tx.exit_contact_enrollments(m.contact_id, "bounced", now_ms)
                    .await?;
                tracing::warn!(message = m.id, reply = %reply, "hard bounce; the contact leaves every campaign");
                out.bounced += 1;
            }
            Err(Failure::Unknown(reply)) => {
                tx.finish_message(
                    m.id,
                    sending,
                    MessageState::Unknown,
                    Some(&reply),
                    None,
                    now_ms,
                )
                .await?;
                tx.insert_attempt(m.id, "unknown", Some(&reply), now_ms)
                    .await?;
                tracing::warn!(message = m.id, reply = %reply, "outcome unknown; not re-sent");
                out.unknown += 1;
            }
            Err(Failure::Render(reason)) => {
                tx.finish_message(
                    m.id,
                    sending,
                    MessageState::Failed,
                    Some(&reason),
                    None,
                    now_ms,
                )
                .await?;
                out.failed += 1;
            }
        }
        Ok(())
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
