//! One module per command; each turns parsed arguments into calls on the library crates.

mod ab;
mod bounces;
mod common;
mod contacts;
mod engine;
mod explain;
pub mod forms;
mod plan;
mod scores;
mod send;
mod simulate;
mod stats;
mod templates;
mod validate;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::Config;

/// Runs the command and returns the exit code for a normal finish.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(&cli.global)?;
    match cli.command {
        Command::Validate { paths } => validate::validate(&config, &paths),
        Command::Schema { forms: false } => {
            outln!("{}", nurture_campaign::schema::json_schema());
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema { forms: true } => {
            outln!("{}", nurture_campaign::form::form_json_schema());
            Ok(ExitCode::SUCCESS)
        }
        Command::Forms(crate::cli::FormsCommand::Snippet { id }) => forms::snippet(&config, &id),
        command => {
            // One thread polls every socket (SMTP, HTTP, the database's replies): no thread
            // hand-off per SMTP reply. CPU work (rendering) runs on blocking threads.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(run_async(config, command))
        }
    }
}

async fn run_async(config: Config, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Migrate => engine::migrate(&config).await,
        Command::Tick { now } => engine::tick(&config, now.as_deref()).await,
        Command::Run => engine::run(&config).await,
        Command::Event {
            email,
            name,
            props,
            attrs,
            at,
            id,
        } => engine::event(&config, &email, &name, &props, &attrs, at.as_deref(), id).await,
        Command::Enroll {
            campaign,
            email,
            at,
        } => engine::enroll(&config, &campaign, &email, at.as_deref()).await,
        Command::Contacts(c) => contacts::run(&config, c).await,
        Command::Bounces(c) => bounces::run(&config, c).await,
        Command::TestSend {
            campaign,
            to,
            step,
            contact,
            data,
        } => {
            send::test_send(
                &config,
                &campaign,
                &to,
                step.as_deref(),
                contact.as_deref(),
                data.as_deref(),
            )
            .await
        }
        Command::Preview {
            campaign,
            step,
            contact,
            data,
            format,
        } => {
            send::preview(
                &config,
                &campaign,
                &step,
                contact.as_deref(),
                data.as_deref(),
                format,
            )
            .await
        }
        Command::Stats { campaign, json } => stats::stats(&config, campaign.as_deref(), json).await,
        Command::Simulate {
            campaign,
            contact,
            data,
            events,
            start,
            days,
            json,
        } => {
            simulate::simulate(
                &config,
                &simulate::Args {
                    campaign: &campaign,
                    contact: contact.as_deref(),
                    data: data.as_deref(),
                    events: events.as_deref(),
                    start: start.as_deref(),
                    days,
                    json,
                },
            )
            .await
        }
        Command::Explain { email, campaign } => {
            explain::explain(&config, &email, campaign.as_deref()).await
        }
        Command::Plan { paths } => plan::plan(&config, &paths).await,
        Command::Validate { .. } | Command::Schema { .. } | Command::Forms(_) => {
            Ok(ExitCode::SUCCESS)
        }
    }
}
