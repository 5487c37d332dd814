//! Lead scores and webhook deliveries as `contacts show` and `explain` tell them.

use nurture_campaign::Op;
use nurture_scheduler::{from_ms, score_at, score_reasons, to_ms};
use nurture_store::history::StepRun;
use nurture_store::{Tx, WebhookRow};
use serde_json::{Map, Value};

use super::common::now_or;

fn utc(ms: i64) -> String {
    format!("{} UTC", from_ms(ms).format("%Y-%m-%d %H:%M"))
}

/// A score for people: two decimals at most.
pub fn points(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The contact's score now and what made it (largest first); `None` when never scored.
pub async fn score(
    tx: &mut Tx,
    contact_id: i64,
) -> anyhow::Result<Option<(f64, Vec<(String, f64)>)>> {
    let now = to_ms(now_or(None)?);
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
pub async fn score_lines(tx: &mut Tx, contact_id: i64) -> anyhow::Result<Vec<String>> {
    Ok(match score(tx, contact_id).await? {
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
pub fn operand(op: &Op) -> String {
    match op {
        Op::Gt(v) | Op::Gte(v) | Op::Lt(v) | Op::Lte(v) | Op::Equals(v) | Op::NotEquals(v) => {
            v.to_string()
        }
        _ => String::new(),
    }
}

/// How a score trigger enrolled: ` by its score crossing (40 -> 55, on a `email.clicked`)`.
pub fn crossing_text(props: &Map<String, Value>) -> String {
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
pub async fn webhook_lines(
    tx: &mut Tx,
    run: &StepRun,
    w: &WebhookRow,
    step_w: usize,
) -> anyhow::Result<Vec<String>> {
    let detail = match w.state.as_str() {
        "sent" => format!("delivered (webhook-id {})", w.webhook_id()),
        "queued" => "waiting for delivery".to_string(),
        "deferred" => format!(
            "to be retried {}",
            w.next_attempt_at.map_or_else(|| "-".to_string(), utc)
        ),
        "failed" => format!(
            "failed: {}",
            w.error.as_deref().unwrap_or("no reason recorded")
        ),
        "unknown" => {
            "unknown: the sending process stopped before the reply was recorded; not posted again"
                .into()
        }
        other => other.to_string(),
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

/// The webhook deliveries of a contact for `contacts show --json`.
pub fn webhooks_json(rows: &[WebhookRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|w| {
                serde_json::json!({
                    "campaign": w.campaign_id,
                    "step": w.step_id,
                    "status": w.state,
                    "webhook_id": w.webhook_id(),
                    "attempts": w.attempts,
                    "sent_at": w.sent_at.map(|t| from_ms(t).to_rfc3339()),
                    "error": w.error,
                })
            })
            .collect(),
    )
}
