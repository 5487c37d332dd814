//! `nurture bounces ingest`: delivery status notifications and abuse reports from a mailbox
//! (a Postfix `pipe` transport, a fetcher), and the bounce webhooks' settings for `run`.
//! Parsing and policy live in `nurture_server::bounces`; this only reads files and prints.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use nurture_server::bounces::{self, Applied, SendgridKey, Webhooks, report};
use nurture_store::Store;

use super::common::now_or;
use crate::cli::BouncesCommand;
use crate::config::Config;
use crate::exit::invalid;

pub async fn run(config: &Config, command: BouncesCommand) -> anyhow::Result<ExitCode> {
    match command {
        BouncesCommand::Ingest { files, at } => ingest(config, &files, at.as_deref()).await,
    }
}

/// The bounce webhooks as configured (keys, SNS topics, soft-bounce limit).
pub fn webhooks(config: &Config) -> anyhow::Result<Webhooks> {
    let mut hooks = Webhooks::new(Arc::new(bounces::HttpsFetch::default()));
    hooks.soft_bounce_limit = config.soft_bounce_limit;
    hooks.sendgrid_key = config
        .sendgrid_webhook_key
        .as_deref()
        .map(SendgridKey::from_base64)
        .transpose()
        .map_err(invalid)?;
    hooks.postmark_auth = match (&config.webhook_user, &config.webhook_password) {
        (Some(u), Some(p)) => Some((u.clone(), p.expose().to_string())),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "webhook_user and webhook_password go together: set both or neither",
            ));
        }
    };
    hooks.mailgun_key = config
        .mailgun_signing_key
        .as_ref()
        .map(|k| k.expose().to_string());
    hooks.ses_topics = config.ses_topic_arns.clone();
    Ok(hooks)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut raw = Vec::new();
        std::io::stdin()
            .read_to_end(&mut raw)
            .context("cannot read standard input")?;
        Ok(raw)
    } else {
        std::fs::read(path).map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))
    }
}

async fn ingest(config: &Config, files: &[PathBuf], at: Option<&str>) -> anyhow::Result<ExitCode> {
    let now = now_or(at)?.timestamp_millis();
    let stdin = [PathBuf::from("-")];
    let files = if files.is_empty() { &stdin[..] } else { files };
    // Read every file first: a missing one is bad input, before anything is recorded.
    let mut inputs = Vec::with_capacity(files.len());
    for f in files {
        inputs.push((f, read(f)?));
    }
    let store = Store::open(config.database_url.expose())
        .await
        .context("cannot open the database")?;
    let mut totals = (0u64, 0u64);
    for (path, raw) in &inputs {
        let name = if path.as_os_str() == "-" {
            "standard input".to_string()
        } else {
            path.display().to_string()
        };
        let report = match report::parse(raw) {
            Ok(r) => r,
            Err(why) => {
                outln!("{name}: ignored: {why}");
                totals.1 += 1;
                continue;
            }
        };
        let source = report.format.source();
        for note in &report.notes {
            outln!("{name}: {note}");
        }
        for signal in &report.signals {
            let who = signal
                .email
                .clone()
                .or_else(|| signal.message_id.clone())
                .unwrap_or_else(|| "an unnamed recipient".into());
            let kind = signal.kind.as_str();
            match bounces::apply(&store, source, signal, config.soft_bounce_limit, now).await? {
                Applied::Recorded {
                    email,
                    status,
                    matched_message,
                    soft_run,
                    exited,
                } => {
                    totals.0 += 1;
                    let mut line = format!("{name}: {} {kind} for {email}", source.to_uppercase());
                    if matched_message {
                        line.push_str(" (message matched by Message-ID)");
                    }
                    if let Some(s) = status {
                        line.push_str(&format!(
                            "; now {}, {exited} enrollment(s) exited",
                            s.as_str()
                        ));
                    } else if signal.kind == nurture_store::SignalKind::Soft {
                        line.push_str(&format!(
                            "; {soft_run} of {} soft bounces in a row",
                            config.soft_bounce_limit
                        ));
                    }
                    outln!("{line}");
                }
                Applied::Duplicate => {
                    totals.1 += 1;
                    outln!("{name}: {kind} for {who} was recorded before; nothing changed");
                }
                Applied::Unknown => {
                    totals.1 += 1;
                    outln!("{name}: {kind} for {who}: no such contact; ignored");
                }
            }
        }
    }
    store.close().await;
    outln!("{} recorded, {} ignored", totals.0, totals.1);
    Ok(ExitCode::SUCCESS)
}

/// `contacts show --json`'s `signals`.
pub fn signals_json(signals: &[nurture_store::SignalRow]) -> serde_json::Value {
    signals
        .iter()
        .map(|s| {
            serde_json::json!({
                "kind": s.kind,
                "source": s.source,
                "reason": s.reason,
                "at": nurture_scheduler::from_ms(s.at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })
        })
        .collect()
}
