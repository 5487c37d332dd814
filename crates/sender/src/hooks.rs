//! The webhook step wired to the engine: the sender's HTTP client ([`WebhookClient`]) as the
//! scheduler's [`Poster`], its three answers mapped one to one onto the engine's outcomes.

use chrono::{DateTime, Utc};
use nurture_campaign::WebhookAction;
use nurture_scheduler::{PostOutcome, Poster};
use serde_json::Value;

use crate::{TlsTrust, WebhookClient, WebhookReply};

/// The webhook client built from `webhook_secret` and `webhook_hosts`.
#[derive(Clone, Debug)]
pub struct Hooks(WebhookClient);

impl Hooks {
    /// A client signing with `secret` (when set) and posting only to `hosts`.
    pub fn new(secret: Option<&str>, hosts: Vec<String>) -> Self {
        Self(WebhookClient::new(secret, hosts, TlsTrust::system()))
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
