//! Delivery wiring: the configuration handed to `nurture-sender`'s [`Mailer`], its errors
//! mapped to exit codes, and the server's counters as its [`SendObserver`].

use std::sync::Arc;
use std::time::Duration;

use nurture_scheduler::Engine;
use nurture_sender::{CourierSettings, ReplyClass, SendObserver};
pub use nurture_sender::{Mailer, run_and_deliver};

use crate::config::Config;
use crate::exit::invalid;

/// The mailer for `config`; the signing secret comes from the config or the database
/// (generated once).
pub async fn mailer(config: &Config, engine: &Engine) -> anyhow::Result<Mailer> {
    let secret = match &config.secret {
        Some(s) => s.expose().to_string(),
        None => {
            let candidate = nurture_sender::random_secret()?;
            engine.store().secret(move || candidate).await?
        }
    };
    with_secret(config, &secret)
}

/// The mailer for `config` with a given signing secret (no database needed).
pub fn with_secret(config: &Config, secret: &str) -> anyhow::Result<Mailer> {
    let settings = CourierSettings {
        templates_dir: &config.templates_dir,
        smtp_url: config.smtp_url.as_ref().map(|s| s.expose()),
        smtp_timeout: config.smtp_timeout,
        smtp_ca_file: config.smtp_ca_file.as_deref(),
        outbox_dir: &config.outbox_dir,
        base_url: &config.base_url,
        postal_address: config.postal_address.as_deref(),
        rate_per_second: config.rate_per_second,
        dkim_domain: config.dkim_domain.as_deref(),
        dkim_selector: config.dkim_selector.as_deref(),
        dkim_private_key: config.dkim_private_key.as_ref().map(|k| k.expose()),
        dkim_algorithm: config.dkim_algorithm.as_deref(),
        webhook_secret: config.webhook_secret.as_ref().map(|s| s.expose()),
        webhook_hosts: &config.webhook_hosts,
    };
    Mailer::with_secret(&settings, secret).map_err(|e| match e {
        // Bad configuration is exit 2; an unreadable templates folder stays a runtime failure.
        e if e.is_invalid_input() => invalid(e.to_string()),
        e => anyhow::Error::new(e),
    })
}

/// Reloads the mailer's templates from `templates_dir` (after an edit).
pub fn reload_templates(mailer: &mut Mailer, config: &Config) -> anyhow::Result<()> {
    Ok(mailer.reload_templates(&config.templates_dir)?)
}

/// The daemon's `/metrics` counters as the mailer's observer.
pub fn observer(metrics: Arc<nurture_server::Metrics>) -> Arc<dyn SendObserver> {
    Arc::new(Counters(metrics))
}

/// Adapts the server's counters (the server and the sender do not know each other).
struct Counters(Arc<nurture_server::Metrics>);

impl SendObserver for Counters {
    fn observe_send(&self, latency: Duration, reply: ReplyClass) {
        self.0.observe_send(latency, reply.as_str());
    }

    fn observe_lost(&self, n: u64) {
        self.0.observe_lost(n);
    }
}
