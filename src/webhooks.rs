//! Wiring of the webhook step: the sender's HTTP client as the engine's [`Poster`].

use chrono::{DateTime, Utc};
use nurture_campaign::WebhookAction;
use nurture_scheduler::{PostOutcome, Poster};
use nurture_sender::{TlsTrust, WebhookClient, WebhookReply};
use serde_json::Value;

use crate::config::Config;

/// The webhook client built from `webhook_secret` and `webhook_hosts`.
#[derive(Clone, Debug)]
pub struct Hooks(WebhookClient);

impl Hooks {
    pub fn new(config: &Config) -> Self {
        Self(WebhookClient::new(
            config.webhook_secret.as_ref().map(|s| s.expose()),
            config.webhook_hosts.clone(),
            TlsTrust::system(),
        ))
    }
}

impl Poster for Hooks {
    fn post<'a>(
        &'a self,
        hook: &'a WebhookAction,
        webhook_id: &'a str,
        context: &'a Value,
        now: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = PostOutcome> + Send + 'a>> {
        Box::pin(async move {
            match self
                .0
                .post(hook, webhook_id, context, now.timestamp())
                .await
            {
                WebhookReply::Delivered(r) => PostOutcome::Delivered(r),
                WebhookReply::Transient(r) => PostOutcome::Transient(r),
                WebhookReply::Permanent(r) => PostOutcome::Permanent(r),
            }
        })
    }
}
