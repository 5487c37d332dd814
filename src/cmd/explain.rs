//! `nurture explain EMAIL [CAMPAIGN]`: why a contact got, or did not get, each step — told
//! from what the engine recorded when it decided: step runs with the condition that was
//! false or the goal that was reached, send-window postponements, every SMTP attempt with its
//! reply, opens and clicks, and the suppression that stopped the mail.
//!
//! The reasoning lives in `nurture_scheduler::explain` (the dashboard's contact page shows
//! the same lines); this command prints them.

use std::process::ExitCode;

use nurture_scheduler::EngineError;

use super::common::{email_arg, now_or, open_engine};
use crate::config::Config;
use crate::exit::invalid;

/// `nurture explain EMAIL [CAMPAIGN]`.
pub async fn explain(
    config: &Config,
    email: &str,
    campaign: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let email = email_arg(email)?;
    let now = now_or(None)?.timestamp_millis();
    let engine = open_engine(config).await?;
    let mut tx = engine.store().begin_read().await?;
    let lines = nurture_scheduler::explain(&mut tx, &email, campaign, now).await;
    tx.commit().await?;
    match lines {
        Ok(lines) => {
            for line in lines {
                outln!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(EngineError::UnknownContact(_)) => Err(invalid(format!("there is no contact {email}"))),
        Err(EngineError::UnknownCampaign(id)) => Err(invalid(format!(
            "there is no campaign `{id}` in use (campaigns become in use at the first tick or run)"
        ))),
        Err(e) => Err(e.into()),
    }
}
