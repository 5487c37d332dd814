//! The signals `explain` tells besides steps and mail: consents given on forms, bounces and
//! complaints reported after the fact (and by whom), the lead score with the points that
//! made it, and webhook deliveries with each reply.

use nurture_campaign::Op;
use nurture_store::history::StepRun;
use nurture_store::{MailState, Tx, WebhookRow, WebhookState};
use serde_json::{Map, Value};

use crate::{Result, from_ms, score_at, score_reasons};

fn utc(ms: i64) -> String {
    format!("{} UTC", from_ms(ms).format("%Y-%m-%d %H:%M"))
}

/// `explain`'s lines about what the contact consented to, and where its double opt-in
/// stands.
pub(crate) fn consent_lines(consents: &[nurture_store::Consent]) -> Vec<String> {
    consents
        .iter()
        .map(|c| {
            let at = |ms: i64| from_ms(ms).format("%Y-%m-%d %H:%M UTC").to_string();
            let state = match (c.confirmed_at, c.mail_state) {
                (Some(ms), _) => format!("confirmed {}", at(ms)),
                (None, MailState::None) => {
                    "not confirmed (no confirmation email: a repeat within the hour)".into()
                }
                (None, MailState::Suppressed) => {
                    "not confirmed (no confirmation email: the contact complained)".into()
                }
                (None, MailState::Sent) => format!(
                    "not confirmed; confirmation email sent {}",
                    c.mail_sent_at.map_or_else(|| "-".into(), at)
                ),
                (None, state) => format!(
                    "not confirmed; confirmation email {state}{}",
                    c.mail_error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
            };
            format!(
                "  consent: form {} submitted {}, {state}: \"{}\" (version {})",
                c.form,
                at(c.submitted_at),
                c.text,
                c.version
            )
        })
        .collect()
}

/// One line per bounce, complaint or delivery reported about a contact, naming its source
/// and the message it concerns: for `explain` and `contacts show`.
pub fn signal_lines(
    signals: &[nurture_store::SignalRow],
    messages: &[nurture_store::MessageRow],
) -> Vec<String> {
    signals
        .iter()
        .map(|s| {
            let what = match s.kind.as_str() {
                "hard" => "hard bounce",
                "soft" => "soft bounce",
                "complaint" => "complaint",
                "delivered" => "delivery confirmed",
                other => other,
            };
            let message = s
                .message_id
                .and_then(|id| messages.iter().find(|m| m.id == id))
                .map(|m| {
                    format!(
                        " of {}/{} {}",
                        m.campaign_id,
                        m.step_id,
                        m.message_id.as_deref().unwrap_or("")
                    )
                })
                .unwrap_or_default();
            let reason = s
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            format!(
                "{} UTC  {what}{message} reported by {}{reason}",
                from_ms(s.at).format("%Y-%m-%d %H:%M"),
                source_name(&s.source)
            )
        })
        .collect()
}

/// Where a signal came from, as an operator knows it.
fn source_name(source: &str) -> String {
    match source {
        "ses" => "Amazon SES (SNS webhook)".into(),
        "sendgrid" => "the SendGrid webhook".into(),
        "postmark" => "the Postmark webhook".into(),
        "mailgun" => "the Mailgun webhook".into(),
        "generic" => "the generic bounce webhook".into(),
        "dsn" => "a delivery status notification (bounces ingest)".into(),
        "arf" => "an abuse report (bounces ingest)".into(),
        other => other.to_string(),
    }
}

/// A score for people: two decimals at most.
fn points(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The contact's score at `now` (Unix ms) and what made it (largest first); `None` when never scored.
pub async fn score(
    tx: &mut Tx,
    contact_id: i64,
    now: i64,
) -> Result<Option<(f64, Vec<(String, f64)>)>> {
    let Some(row) = tx.scores(&[contact_id]).await?.into_iter().next() else {
        return Ok(None);
    };
    let signals = tx.score_points(contact_id).await?;
    let reasons = score_reasons(&row, &signals, now)
        .into_iter()
        .map(|(r, p)| (r, points(p)))
        .collect();
    Ok(Some((points(score_at(&row, now)), reasons)))
}

/// `  score: 62.5 (clicked any: 30, ...)` for `explain`.
pub(crate) async fn score_lines(tx: &mut Tx, contact_id: i64, now: i64) -> Result<Vec<String>> {
    Ok(match score(tx, contact_id, now).await? {
        None => Vec::new(),
        Some((total, reasons)) => vec![format!(
            "  score: {total} ({})",
            reasons
                .iter()
                .map(|(r, p)| format!("{r}: {p}"))
                .collect::<Vec<_>>()
                .join(", ")
        )],
    })
}

/// The operand of a score comparison, as written.
pub(crate) fn operand(op: &Op) -> String {
    match op {
        Op::Gt(v) | Op::Gte(v) | Op::Lt(v) | Op::Lte(v) | Op::Equals(v) | Op::NotEquals(v) => {
            v.to_string()
        }
        _ => String::new(),
    }
}

/// How a score trigger enrolled: ` by its score crossing (40 -> 55, on a `email.clicked`)`.
pub(crate) fn crossing_text(props: &Map<String, Value>) -> String {
    match (props.get("previous_score"), props.get("score")) {
        (Some(from), Some(to)) => format!(
            " by its score crossing the trigger ({from} -> {to}{})",
            props
                .get("event")
                .and_then(Value::as_str)
                .map(|e| format!(", on a `{e}` event"))
                .unwrap_or_default()
        ),
        _ => " by its score or by hand".into(),
    }
}

/// A webhook step: the delivery's state and each attempt with the receiver's reply.
pub(crate) async fn webhook_lines(
    tx: &mut Tx,
    run: &StepRun,
    w: &WebhookRow,
    step_w: usize,
) -> Result<Vec<String>> {
    let detail = match w.state {
        WebhookState::Sent => format!("delivered (webhook-id {})", w.webhook_id()),
        WebhookState::Queued => "waiting for delivery".to_string(),
        WebhookState::Deferred => format!(
            "to be retried {}",
            w.next_attempt_at.map_or_else(|| "-".to_string(), utc)
        ),
        WebhookState::Failed => format!(
            "failed: {}",
            w.error.as_deref().unwrap_or("no reason recorded")
        ),
        WebhookState::Unknown => {
            "unknown: the sending process stopped before the reply was recorded; not posted again"
                .into()
        }
        WebhookState::Sending => "sending".to_string(),
    };
    let mut out = vec![format!(
        "  {}  {:<step_w$}  {:<9}  webhook {detail}",
        utc(run.at),
        run.step_id,
        w.state
    )];
    let pad = " ".repeat(2 + 20 + 2 + step_w + 2);
    for a in tx.webhook_attempts(w.id).await? {
        out.push(format!(
            "{pad}attempt {}: {} ({})",
            utc(a.at),
            a.reply.as_deref().unwrap_or("-"),
            a.outcome
        ));
    }
    Ok(out)
}
