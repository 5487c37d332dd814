//! `nurture explain EMAIL [CAMPAIGN]`: why a contact got, or did not get, each step. The
//! reasoning lives in `nurture_scheduler::explain` (the dashboard shows the same lines); this
//! command opens the database, prints the lines and maps unknown names to exit code 2.

use std::process::ExitCode;

use nurture_scheduler::EngineError;

use super::common::{email_arg, open_engine};
use crate::config::Config;
use crate::exit::invalid;

pub async fn explain(
    config: &Config,
    email: &str,
    campaign: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let email = email_arg(email)?;
    let engine = open_engine(config).await?;
    let mut tx = engine.store().begin_read().await?;
    let told = nurture_scheduler::explain(&mut tx, &email, campaign).await;
    tx.commit().await?;
    let lines = match told {
        Ok(lines) => lines,
        Err(EngineError::UnknownContact(email)) => {
            return Err(invalid(format!("there is no contact {email}")));
        }
        Err(EngineError::UnknownCampaign(id)) => {
            return Err(invalid(format!(
                "there is no campaign `{id}` in use (campaigns become in use at the first tick or run)"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    for line in lines {
        outln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
