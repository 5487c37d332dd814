//! Delivering webhook steps (SPEC §11): claiming due deliveries, handing them to a
//! [`Poster`], and recording each outcome with the email retry policy.
//!
//! A delivery is claimed (`sending`, with a lease) and committed before the POST, and its
//! outcome is recorded guarded on that lease, so a step POSTs at most once even with several
//! daemons on one database; one whose process died mid-POST becomes `unknown` when its lease
//! runs out and is never POSTed again blindly. Transient failures (5xx, timeouts, refused
//! connections) retry after 1m, 5m, 15m, 1h, 4h, then every 4h for 3 days; anything else
//! fails the step.

use chrono::{DateTime, Duration, Utc};
use futures_util::future::BoxFuture;
use nurture_campaign::{Action, Campaign, Step, WebhookAction};
use nurture_store::{Contact, WebhookRow};
use serde_json::{Map, Value, json};

use crate::{Engine, Result, from_ms, to_ms};

/// How long a claimed delivery is held: well beyond the 10 s timeout of a POST.
const LEASE: Duration = Duration::minutes(2);
/// Deliveries claimed per transaction: one. A claim marks the delivery `sending` for the
/// lease, and one that outlives its lease while still waiting its turn would be taken for a
/// POST cut short by a crash (`unknown`, never posted again); fifty POSTs of up to 10 s each
/// would outlive a 2-minute lease. Hand-offs are few, so a claim per POST costs nothing that
/// matters, and the window in which a crash loses one is the moment before its POST.
const BATCH: i64 = 1;

/// The answer to one POST, classified once at the HTTP boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// A 2xx: the status line and the start of the reply.
    Delivered(String),
    /// Worth retrying: 5xx, 408, 429, timeout, refused or reset connection.
    Transient(String),
    /// Retrying cannot help: another 4xx, a host not allowed, an unrenderable body.
    Permanent(String),
}

/// Sends one webhook delivery.
pub trait Poster: Send + Sync {
    /// POSTs the delivery `webhook_id` of `hook` with template context `context` (also the
    /// default body), at `now`.
    fn post<'a>(
        &'a self,
        hook: &'a WebhookAction,
        webhook_id: &'a str,
        context: &'a Value,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, PostOutcome>;
}

/// What a round of webhook delivery did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WebhookReport {
    /// Accepted by the receiver.
    pub sent: u64,
    /// To be retried.
    pub deferred: u64,
    /// Given up.
    pub failed: u64,
    /// Found `sending` past their lease.
    pub unknown: u64,
}

/// The context of a webhook body (and the default body): the contact (email, status, tags
/// and every attribute), the campaign, the step, the enrollment and its trigger event, and
/// the score.
pub fn webhook_context(
    contact: &Contact,
    campaign: &Campaign,
    step: &Step,
    enrollment_id: i64,
    event: &Map<String, Value>,
    score: f64,
) -> Value {
    let mut c = contact.attributes.clone();
    c.insert("email".into(), json!(contact.email));
    c.insert("status".into(), json!(contact.status.as_str()));
    c.insert("tags".into(), json!(contact.tags));
    json!({
        "contact": c,
        "campaign": { "id": campaign.id.as_str(), "name": campaign.name },
        "step": { "id": step.id.as_str() },
        "enrollment": { "id": enrollment_id },
        "event": event,
        "score": (score * 100.0).round() / 100.0,
    })
}

impl Engine {
    /// Delivers every webhook due as of `now` through `poster`.
    pub async fn deliver_webhooks(
        &self,
        poster: &dyn Poster,
        now: DateTime<Utc>,
    ) -> Result<WebhookReport> {
        let clock = self.round_clock(now);
        let mut report = WebhookReport::default();
        while !self.is_stopping() {
            let at = clock.now();
            let mut tx = self.store.begin().await?;
            report.unknown += tx.expire_webhooks(to_ms(at)).await?;
            let claimed = tx
                .claim_webhooks(to_ms(at), to_ms(at + LEASE), self.owner, BATCH)
                .await?;
            tx.commit().await?;
            if claimed.is_empty() {
                break;
            }
            for row in claimed {
                // Each delivery records its own outcome, so one that fails to record leaves
                // the rest of the batch unaffected.
                self.deliver_one(poster, &row, &clock, &mut report).await?;
            }
        }
        Ok(report)
    }

    async fn deliver_one(
        &self,
        poster: &dyn Poster,
        row: &WebhookRow,
        clock: &crate::time::RoundClock,
        report: &mut WebhookReport,
    ) -> Result<()> {
        let outcome = match self.prepare(row, clock.now()).await? {
            Ok((hook, context)) => {
                poster
                    .post(&hook, &row.webhook_id(), &context, clock.now())
                    .await
            }
            Err(why) => PostOutcome::Permanent(why),
        };
        let now = clock.now();
        let (to, reply, retry_at) = match &outcome {
            PostOutcome::Delivered(reply) => ("sent", reply.clone(), None),
            PostOutcome::Transient(reply) => {
                match crate::next_attempt(from_ms(row.created_at), row.attempts, now) {
                    Some(next) => ("deferred", reply.clone(), Some(to_ms(next))),
                    None => ("failed", format!("{reply}; gave up after 3 days"), None),
                }
            }
            PostOutcome::Permanent(reply) => ("failed", reply.clone(), None),
        };
        let mut tx = self.store.begin().await?;
        let error = (to != "sent").then_some(reply.as_str());
        if tx
            .finish_webhook(row.id, to, error, retry_at, to_ms(now), self.owner)
            .await?
        {
            tx.insert_webhook_attempt(row.id, to, Some(&reply), to_ms(now))
                .await?;
            match to {
                "sent" => report.sent += 1,
                "deferred" => report.deferred += 1,
                _ => report.failed += 1,
            }
        } else {
            tracing::warn!(
                webhook = row.id,
                "a webhook's lease ran out before its outcome was recorded"
            );
        }
        tx.commit().await?;
        tracing::info!(
            campaign = %row.campaign_id,
            step = %row.step_id,
            outcome = to,
            reply = %reply,
            "webhook delivery"
        );
        Ok(())
    }

    /// The action and body context of a claimed delivery, or why it cannot be sent.
    async fn prepare(
        &self,
        row: &WebhookRow,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<(WebhookAction, Value), String>> {
        let campaign = self.version(row.version_id).await?;
        let Some(step) = campaign.steps.iter().find(|s| s.id.as_str() == row.step_id) else {
            return Ok(Err(format!(
                "step `{}` is no longer in the campaign",
                row.step_id
            )));
        };
        let Action::Webhook(hook) = &step.action else {
            return Ok(Err(format!("step `{}` is not a webhook step", row.step_id)));
        };
        let mut tx = self.store.begin_read().await?;
        let contact = tx.contact(row.contact_id).await?;
        let event = tx
            .trigger_properties(&[row.enrollment_id])
            .await?
            .into_iter()
            .next()
            .map(|(_, p)| p)
            .unwrap_or_default();
        let score = tx
            .scores(&[row.contact_id])
            .await?
            .first()
            .map_or(0.0, |s| crate::score_at(s, to_ms(now)));
        tx.commit().await?;
        let Some(contact) = contact else {
            return Ok(Err("the contact no longer exists".into()));
        };
        let context = webhook_context(&contact, &campaign, step, row.enrollment_id, &event, score);
        Ok(Ok((hook.clone(), context)))
    }
}
