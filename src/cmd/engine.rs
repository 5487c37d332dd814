//! `migrate`, `tick`, `run`, `event`, `enroll`: the commands that drive the engine.

use std::process::ExitCode;
use std::time::Duration;

use nurture_scheduler::{EnrollOutcome, Outcome};
use nurture_store::{NewEvent, Upsert};

use super::common::{email_arg, key_values, now_or, open_engine, sync_campaigns};
use crate::config::Config;
use crate::exit::invalid;

pub async fn migrate(config: &Config) -> anyhow::Result<ExitCode> {
    let engine = open_engine(config).await?;
    engine.store().migrate().await?;
    eprintln!("migrations applied");
    Ok(ExitCode::SUCCESS)
}

fn summary(out: &Outcome, delivered: &nurture_scheduler::Delivered) -> String {
    let lost = match delivered.lost {
        0 => String::new(),
        n => format!(", {n} outcomes lost to another worker (lease ran out)"),
    };
    format!(
        "{} events, {} enrolled, {} steps run, {} emails queued, {} sent, {} deferred, {} failed, {} bounced, {} suppressed",
        out.events,
        out.enrolled,
        out.steps,
        out.queued,
        delivered.sent,
        delivered.deferred,
        delivered.failed,
        delivered.bounced,
        delivered.suppressed,
    ) + &lost
}

pub async fn tick(config: &Config, now: Option<&str>) -> anyhow::Result<ExitCode> {
    let given = now.is_some();
    let now = now_or(now)?;
    let mut engine = open_engine(config).await?;
    if given {
        // `--now T` is the current time everywhere, retry times included.
        engine = engine.with_time_standing_still();
    }
    sync_campaigns(&engine, config, now).await?;
    let mailer = std::sync::Arc::new(crate::delivery::Mailer::new(config, &engine).await?);
    let started = std::time::Instant::now();
    let (out, delivered) = crate::delivery::run_and_deliver(&mailer, &engine, now).await?;
    mailer.close().await;
    tracing::info!(took_ms = started.elapsed().as_millis() as u64, "tick done");
    outln!(
        "tick at {}: {}",
        now.to_rfc3339(),
        summary(&out, &delivered)
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let engine = open_engine(config).await?;
    let shutdown = tokio_util_shutdown();
    let mut last_files = campaign_stamp(config);
    sync_campaigns(&engine, config, now_or(None)?).await?;
    let mut mailer = crate::delivery::Mailer::new(config, &engine).await?;
    let metrics = std::sync::Arc::new(nurture_server::Metrics::new());
    mailer.metrics = Some(metrics.clone());
    let lost = metrics.clone();
    let mut mailer = std::sync::Arc::new(mailer);
    // The HTTP server (ingest, unsubscribe, tracking, health, metrics) beside the loop; a
    // posted event wakes the loop at once.
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let state = nurture_server::AppState {
        store: engine.store().clone(),
        signer: mailer.signer.clone(),
        api_key: config.api_key.as_ref().map(|k| k.expose().to_string()),
        wake: wake.clone(),
        metrics,
    };
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(nurture_server::serve(listener, state, async move {
        let _ = stop_rx.await;
    }));
    tracing::info!(database = %redact(config.database_url.expose()), "nurture is running");
    eprintln!("nurture is running; stop with Ctrl-C");
    loop {
        let now = now_or(None)?;
        let stamp = campaign_stamp(config);
        if stamp != last_files {
            last_files = stamp;
            let report = sync_campaigns(&engine, config, now).await?;
            // Delivery has finished with the mailer (its render threads are done), so this is
            // the only reference.
            match std::sync::Arc::get_mut(&mut mailer) {
                Some(m) => {
                    if let Err(e) = m.reload_templates(config) {
                        tracing::error!("templates not reloaded: {e:#}");
                    }
                }
                None => tracing::error!("templates not reloaded: the mailer is still in use"),
            }
            tracing::info!(changed = ?report.changed, removed = ?report.removed, "campaign files re-read");
        }
        let (out, delivered) = crate::delivery::run_and_deliver(&mailer, &engine, now).await?;
        lost.observe_lost(delivered.lost);
        if out != Outcome::default() || delivered != nurture_scheduler::Delivered::default() {
            tracing::info!("{}", summary(&out, &delivered));
        }
        // Sleep until the next due time, at most a second: new events from other processes
        // (the CLI, another daemon) are picked up within that second.
        let wait = match engine.next_due().await? {
            Some(t) => (t - now_or(None)?)
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(Duration::from_secs(1)),
            None => Duration::from_secs(1),
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
            () = shutdown.notified() => break,
        }
    }
    let _ = stop_tx.send(());
    match server.await {
        Ok(Err(e)) => tracing::error!("HTTP server: {e}"),
        Err(e) => tracing::error!("HTTP server task: {e}"),
        Ok(Ok(())) => {}
    }
    mailer.close().await;
    eprintln!("stopped");
    engine.store().close().await;
    Ok(ExitCode::SUCCESS)
}

/// Completes when SIGTERM or SIGINT arrives.
fn tokio_util_shutdown() -> std::sync::Arc<tokio::sync::Notify> {
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let n = notify.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        n.notify_one();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested: finishing in-flight work");
        n.notify_one();
    });
    notify
}

/// Names and modification times of the campaign and template files, to notice edits.
fn campaign_stamp(config: &Config) -> Vec<(std::path::PathBuf, Option<std::time::SystemTime>)> {
    let mut out = Vec::new();
    for dir in [&config.campaigns_dir, &config.templates_dir] {
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let m = e.metadata().ok().and_then(|m| m.modified().ok());
                    out.push((p, m));
                }
            }
        }
    }
    out.sort();
    out
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

pub async fn event(
    config: &Config,
    email: &str,
    name: &str,
    props: &[String],
    attrs: &[String],
    at: Option<&str>,
    id: Option<String>,
) -> anyhow::Result<ExitCode> {
    let email = email_arg(email)?;
    if name.trim().is_empty() {
        return Err(invalid("the event name cannot be empty"));
    }
    let properties = key_values(props, "property")?;
    let attributes = key_values(attrs, "attribute")?;
    let now = now_or(at)?;
    let engine = open_engine(config).await?;
    let mut tx = engine.store().begin().await?;
    let (contact, created) = tx
        .upsert_contact(
            &Upsert {
                email: email.clone(),
                attributes,
                consent_source: Some("cli".into()),
                ..Upsert::default()
            },
            now.timestamp_millis(),
        )
        .await?;
    let inserted = tx
        .insert_event(
            &NewEvent {
                contact_id: contact.id,
                name: name.to_string(),
                properties,
                occurred_at: now.timestamp_millis(),
                idempotency_key: id,
                ..NewEvent::default()
            },
            now.timestamp_millis(),
        )
        .await?;
    tx.commit().await?;
    match inserted {
        Some(_) => outln!(
            "recorded {name} for {email}{}; campaigns it triggers start at the next tick",
            if created { " (new contact)" } else { "" }
        ),
        None => outln!("an event with this id was already recorded; nothing changed"),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn enroll(
    config: &Config,
    campaign: &str,
    email: &str,
    at: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let email = email_arg(email)?;
    let now = now_or(at)?;
    let engine = open_engine(config).await?;
    sync_campaigns(&engine, config, now).await?;
    let outcome = engine
        .enroll(campaign, &email, now)
        .await
        .map_err(|e| match e {
            nurture_scheduler::EngineError::UnknownCampaign(_)
            | nurture_scheduler::EngineError::UnknownContact(_) => invalid(e.to_string()),
            other => other.into(),
        })?;
    let (message, code) = match outcome {
        EnrollOutcome::Enrolled(_) => (format!("enrolled {email} in {campaign}"), 0),
        EnrollOutcome::AlreadyActive => (format!("{email} is already in {campaign}"), 1),
        EnrollOutcome::ReentryRefused => (
            format!("{email} cannot enter {campaign} again (reentry rule)"),
            1,
        ),
        EnrollOutcome::NotInAudience => (
            format!("{email} does not match the audience of {campaign}"),
            1,
        ),
        EnrollOutcome::NotMailable => (format!("{email} is unsubscribed or bounced"), 1),
        EnrollOutcome::CampaignNotActive => (format!("{campaign} is not active"), 1),
    };
    if code == 0 {
        outln!("{message}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {message}");
        Ok(ExitCode::from(code))
    }
}
