//! Webhook deliveries as `contacts show --json` tells them (scores and `explain`'s lines are
//! told by `nurture_scheduler`).

use nurture_scheduler::from_ms;
use nurture_store::WebhookRow;
use serde_json::Value;

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
