//! `migrate`, `tick`, `run`, `event`, `enroll`: the commands that drive the engine. `run`'s
//! loop is wiring: the HTTP thread is `nurture-server`'s, the policy between rounds the
//! scheduler's `daemon` module, the file stamp `nurture-campaign`'s.

use std::process::ExitCode;
use std::time::Duration;

use nurture_scheduler::daemon::{Backoff, STOP_GRACE, in_flight_at_timeout, pause, stopped};
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
    let mailer = std::sync::Arc::new(crate::delivery::mailer(config, &engine).await?);
    let started = std::time::Instant::now();
    let (out, delivered) = crate::delivery::run_and_deliver(&mailer, &engine, now).await?;
    let confirmations =
        super::forms::deliver_confirmations(&mailer, &engine, config, now.timestamp_millis())
            .await?;
    // A confirmation recorded an event only when followed: nothing more to run here.
    if confirmations > 0 {
        tracing::info!(confirmations, "form confirmation emails sent");
    }
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
    let mut stop = shutdown_signal(engine.clone());
    let mut last_files = campaign_stamp(config);
    sync_campaigns(&engine, config, now_or(None)?).await?;
    let mut mailer = crate::delivery::mailer(config, &engine).await?;
    let metrics = std::sync::Arc::new(nurture_server::Metrics::new());
    mailer.metrics = Some(crate::delivery::observer(metrics.clone()));
    let mut mailer = std::sync::Arc::new(mailer);
    // The HTTP server (ingest, unsubscribe, tracking, health, metrics) on a thread of its
    // own; a posted event wakes the loop at once.
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let health = std::sync::Arc::new(nurture_server::Health::new());
    let forms = std::sync::Arc::new(nurture_server::Forms::new(
        super::forms::load(config)?,
        config.forms.clone(),
    ));
    let signer = mailer.signer.clone();
    let api_key = config.api_key.as_ref().map(|k| k.expose().to_string());
    let bounces = std::sync::Arc::new(super::bounces::webhooks(config)?);
    let dashboard = config.dashboard_password.as_ref().map(|p| {
        std::sync::Arc::new(nurture_server::Dashboard::new(
            p.expose(),
            config.base_url.starts_with("https://"),
        ))
    });
    let (wake_http, health_http, forms_http) = (wake.clone(), health.clone(), forms.clone());
    // The server's state around the pool its thread opens.
    let state = move |store| nurture_server::AppState {
        store,
        signer,
        api_key,
        wake: wake_http,
        metrics,
        health: health_http,
        bounces,
        dashboard,
        forms: forms_http,
    };
    // Bound once the state is ready: a bad setting is reported before a busy port.
    let listener = std::net::TcpListener::bind(&config.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let url = config.database_url.expose().to_string();
    let http = nurture_server::ServerThread::start(listener, url, state).await?;
    tracing::info!(database = %nurture_store::redact(config.database_url.expose()), "nurture is running");
    eprintln!("nurture is running; stop with Ctrl-C");
    let mut failures = Backoff::default();
    while !engine.is_stopping() {
        let result = {
            // Boxed, so that it can be dropped (its claims and connections let go) on timeout.
            let mut round = Box::pin(round(&engine, config, &mut mailer, &mut last_files, &forms));
            let first = tokio::select! {
                r = &mut round => Some(r),
                () = stopped(&mut stop) => None,
            };
            match first {
                Some(r) => r,
                // SIGTERM mid-round: the engine claims nothing new from now on.
                None => match tokio::time::timeout(STOP_GRACE, &mut round).await {
                    Ok(r) => r,
                    Err(_) => {
                        drop(round);
                        in_flight_at_timeout(&engine).await;
                        break;
                    }
                },
            }
        };
        let wait = match result {
            Ok(wait) => {
                failures.succeeded();
                health.round_succeeded();
                wait
            }
            Err(e) => {
                let why = format!("{e:#}");
                let delay = failures.failed(&why);
                health.round_failed(why);
                if engine.is_stopping() {
                    break;
                }
                if pause(&engine, delay, &mut stop).await {
                    break;
                }
                continue;
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
            () = stopped(&mut stop) => break,
        }
    }
    http.stop().await;
    mailer.close().await;
    eprintln!("stopped");
    engine.store().close().await;
    Ok(ExitCode::SUCCESS)
}

/// One round of the daemon: re-reads changed campaign files, runs the engine and delivers.
/// Returns how long to sleep before the next: until the next due time, at most a second, so
/// new events from other processes (the CLI, another daemon) are picked up within it.
async fn round(
    engine: &nurture_scheduler::Engine,
    config: &Config,
    mailer: &mut std::sync::Arc<crate::delivery::Mailer>,
    last_files: &mut nurture_campaign::Stamp,
    forms: &nurture_server::Forms,
) -> anyhow::Result<Duration> {
    let now = now_or(None)?;
    let stamp = campaign_stamp(config);
    if stamp != *last_files {
        let report = sync_campaigns(engine, config, now).await?;
        // Only once synced: a failed sync is tried again next round.
        *last_files = stamp;
        // Delivery has finished with the mailer (its render threads are done), so this is
        // the only reference.
        match std::sync::Arc::get_mut(mailer) {
            Some(m) => {
                if let Err(e) = crate::delivery::reload_templates(m, config) {
                    tracing::error!("templates not reloaded: {e:#}");
                }
            }
            None => tracing::error!("templates not reloaded: the mailer is still in use"),
        }
        tracing::info!(changed = ?report.changed, removed = ?report.removed, "campaign files re-read");
        match super::forms::load(config) {
            Ok(f) => forms.replace(f),
            Err(e) => tracing::error!("forms not reloaded; the last good ones stay: {e:#}"),
        }
    }
    let (out, delivered) = crate::delivery::run_and_deliver(mailer, engine, now).await?;
    super::forms::deliver_confirmations(mailer, engine, config, now.timestamp_millis()).await?;
    if let Some(metrics) = &mailer.metrics {
        metrics.observe_lost(delivered.lost);
    }
    if out != Outcome::default() || delivered != nurture_scheduler::Delivered::default() {
        tracing::info!("{}", summary(&out, &delivered));
    }
    Ok(match engine.next_due().await? {
        Some(t) => (t - now_or(None)?)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(1)),
        None => Duration::from_secs(1),
    })
}

/// Stops `engine` (it claims nothing new from then on) when SIGTERM or SIGINT arrives, and
/// says so on the returned channel.
fn shutdown_signal(engine: nurture_scheduler::Engine) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested: claiming nothing new, finishing in-flight work");
        engine.stop();
        let _ = tx.send(true);
        // Keeps the channel open: `stopped` must not mistake a finished task for no signal.
        std::future::pending::<()>().await;
    });
    rx
}

/// Names and modification times of the campaign, template and form files, to notice edits.
fn campaign_stamp(config: &Config) -> nurture_campaign::Stamp {
    nurture_campaign::stamp(&[
        &config.campaigns_dir,
        &config.templates_dir,
        &config.forms_dir,
    ])
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
