//! Outcome recording and settling: the message state machine after a claim.
//!
//! [`Engine::record`] writes what SMTP answered (sent, deferred with backoff, failed,
//! bounced); [`Engine::settle`] writes messages that never reach SMTP (contact gone, step
//! vanished, render failed, server refusing the window: [`deferred_untried`]). Recording
//! happens after SMTP and in the same transaction that marks the next chunk `sending`, so
//! a crash between SMTP and the record leaves `sending`, which expires to `unknown`,
//! never to a second send.

use super::*;

/// How a message is settled before any SMTP: its contact is gone or unmailable, its step
/// vanished, it cannot be rendered, or the server refused the messages before it.
pub(super) struct Settle {
    pub(super) to: MessageState,
    pub(super) reason: String,
    /// Recorded as an attempt too (render errors, for `explain`).
    pub(super) attempt: Option<&'static str>,
    /// When to try again (`to` is `Deferred`).
    pub(super) retry_at: Option<i64>,
}

impl Engine {
    /// Records the messages settled without SMTP, those alike in one statement.
    pub(super) async fn settle(
        &self,
        tx: &mut Tx,
        settled: Vec<(&MessageRow, Settle)>,
        now_ms: i64,
        out: &mut Delivered,
    ) -> Result<()> {
        let mut groups: Vec<(MessageState, &Settle, Vec<i64>)> = Vec::new();
        let mut attempts: Vec<(i64, &str, Option<&str>)> = Vec::new();
        for (m, s) in &settled {
            let from = if m.state == MessageState::Deferred {
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
    pub(super) async fn missed(
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
    pub(super) async fn finish(
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
    pub(super) async fn record(
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
pub(super) fn deferred_untried(m: &MessageRow, reply: &str, now: DateTime<Utc>) -> Settle {
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

/// A message that could not be rendered: the step fails, with the reason kept.
pub(super) fn render_failed(job: &Job<'_>, f: Failure) -> Settle {
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
