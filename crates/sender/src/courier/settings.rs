//! What a [`Mailer`] is built from: the handful of configuration values it reads, passed in
//! as plain values by the binary (which owns the configuration file and the environment),
//! and the typed [`CourierError`] when they cannot be used.
//!
//! Everything that can be checked is checked here, at start-up: an unreadable DKIM key or CA
//! file stops the command (exit 2) rather than deferring every message later.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::pacer::Pacer;
use super::{Mailer, Transport};
use crate::{
    DkimError, DkimSigner, Hooks, LoadError, Outbox, Signer, SmtpUrl, SmtpUrlError, Templates,
    TlsTrust, TrustError,
};

/// The configuration a [`Mailer`] reads (SPEC §9 names each key).
pub struct CourierSettings<'a> {
    /// `templates_dir`.
    pub templates_dir: &'a Path,
    /// `smtp_url`: SMTP when set, the outbox otherwise.
    pub smtp_url: Option<&'a str>,
    /// `smtp_timeout`: the base of every wait on the server.
    pub smtp_timeout: Duration,
    /// `smtp_ca_file`: certificates trusted beside the system's.
    pub smtp_ca_file: Option<&'a Path>,
    /// `outbox_dir`: where `.eml` files go without `smtp_url`.
    pub outbox_dir: &'a Path,
    /// `base_url`: the start of every link in a message.
    pub base_url: &'a str,
    /// `postal_address`, for the footer.
    pub postal_address: Option<&'a str>,
    /// `rate_per_second`: SMTP sends per second, across all connections.
    pub rate_per_second: u32,
    /// `dkim_domain`.
    pub dkim_domain: Option<&'a str>,
    /// `dkim_selector`.
    pub dkim_selector: Option<&'a str>,
    /// `dkim_private_key`: the PEM itself, or the path of a file holding it.
    pub dkim_private_key: Option<&'a str>,
    /// `dkim_algorithm`: the algorithm the key must be for, when given.
    pub dkim_algorithm: Option<&'a str>,
    /// `webhook_secret`: signs webhook posts.
    pub webhook_secret: Option<&'a str>,
    /// `webhook_hosts`: the hosts webhook steps may post to.
    pub webhook_hosts: &'a [String],
}

/// Why a [`Mailer`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CourierError {
    /// The templates folder could not be read (a runtime failure, not the user's input).
    #[error("cannot load the templates")]
    Templates(#[source] LoadError),
    /// `dkim_private_key` names a file that cannot be read.
    #[error("cannot read the DKIM private key file: {0}")]
    DkimKeyFile(std::io::Error),
    /// The DKIM key or `dkim_algorithm` is unusable.
    #[error("{0}")]
    Dkim(DkimError),
    /// Some but not all of the DKIM keys are set.
    #[error("DKIM needs all three of dkim_domain, dkim_selector and dkim_private_key")]
    DkimIncomplete,
    /// `smtp_url` does not parse.
    #[error("invalid smtp_url: {0}")]
    SmtpUrl(SmtpUrlError),
    /// `smtp_ca_file` cannot be used.
    #[error("{0}")]
    CaFile(TrustError),
}

impl CourierError {
    /// Whether the configuration is at fault (exit 2) rather than the machine (exit 1).
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, Self::Templates(_))
    }
}

impl Mailer {
    /// Builds the mailer from its settings and the link-signing secret.
    pub fn with_secret(settings: &CourierSettings<'_>, secret: &str) -> Result<Self, CourierError> {
        let templates = Templates::load(settings.templates_dir).map_err(CourierError::Templates)?;
        let dkim = match (
            settings.dkim_domain,
            settings.dkim_selector,
            settings.dkim_private_key,
        ) {
            (Some(d), Some(s), Some(k)) => {
                let pem = if k.contains("-----BEGIN") {
                    k.to_string()
                } else {
                    std::fs::read_to_string(k).map_err(CourierError::DkimKeyFile)?
                };
                let signer = DkimSigner::new(d, s, &pem).map_err(CourierError::Dkim)?;
                if let Some(a) = settings.dkim_algorithm {
                    signer.require_algorithm(a).map_err(CourierError::Dkim)?;
                }
                Some(signer)
            }
            (None, None, None) => None,
            _ => return Err(CourierError::DkimIncomplete),
        };
        let transport = match settings.smtp_url {
            Some(url) => Transport::Smtp {
                url: SmtpUrl::parse(url).map_err(CourierError::SmtpUrl)?,
                timeout: settings.smtp_timeout,
                trust: match settings.smtp_ca_file {
                    Some(path) => TlsTrust::with_ca_file(path).map_err(CourierError::CaFile)?,
                    None => TlsTrust::system(),
                },
                idle: Mutex::new(Vec::new()),
            },
            None => Transport::Outbox(Outbox::new(settings.outbox_dir)),
        };
        Ok(Self {
            webhooks: Hooks::new(settings.webhook_secret, settings.webhook_hosts.to_vec()),
            templates: Arc::new(templates),
            signer: Signer::new(secret),
            base_url: settings.base_url.to_string(),
            postal_address: settings.postal_address.map(str::to_string),
            dkim,
            transport,
            pacer: Pacer::new(settings.rate_per_second),
            concurrency: 10,
            metrics: None,
        })
    }
}
