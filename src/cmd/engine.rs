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

/// How long `run` waits, after SIGTERM, for the round in progress to stop (it claims nothing
/// new at once; this bounds the sends and the writes already under way).
const STOP_GRACE: Duration = Duration::from_secs(30);
/// The first wait after a failed round; it doubles with each failure in a row...
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// ...up to this.
const MAX_RETRY: Duration = Duration::from_secs(30);

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
    let http = HttpThread::start(
        config,
        HttpParts {
            signer: mailer.signer.clone(),
            api_key: config.api_key.as_ref().map(|k| k.expose().to_string()),
            wake: wake.clone(),
            metrics,
            health: health.clone(),
            bounces: std::sync::Arc::new(super::bounces::webhooks(config)?),
            dashboard: config.dashboard_password.as_ref().map(|p| {
                std::sync::Arc::new(nurture_server::Dashboard::new(
                    p.expose(),
                    config.base_url.starts_with("https://"),
                ))
            }),
            forms: forms.clone(),
        },
    )
    .await?;
    tracing::info!(database = %redact(config.database_url.expose()), "nurture is running");
    eprintln!("nurture is running; stop with Ctrl-C");
    let mut failures = Failures::default();
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
                failures.succeeded(&health);
                wait
            }
            Err(e) => {
                let delay = failures.failed(&health, &e);
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
    last_files: &mut CampaignStamp,
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

/// Failed rounds in a row: how long to wait before the next, and what was logged.
#[derive(Default)]
struct Failures {
    in_a_row: u32,
    since: Option<std::time::Instant>,
    /// The last error logged: the same error again is not logged again (a database that is
    /// away fails every round the same way).
    logged: Option<String>,
}

impl Failures {
    /// Records a failed round; returns how long to wait before the next.
    fn failed(&mut self, health: &nurture_server::Health, e: &anyhow::Error) -> Duration {
        let why = format!("{e:#}");
        let (delay, log) = self.record(&why);
        if log {
            tracing::error!(
                retry_in_s = delay.as_secs(),
                "round failed; retrying with backoff while it keeps failing: {why}"
            );
        } else {
            tracing::debug!(failures = self.in_a_row, "round failed again: {why}");
        }
        health.round_failed(why);
        delay
    }

    /// The policy: the wait after this failure (1 s, doubling, at most 30 s) and whether to
    /// log it (not when the previous failure said the same).
    fn record(&mut self, why: &str) -> (Duration, bool) {
        self.in_a_row += 1;
        self.since.get_or_insert_with(std::time::Instant::now);
        let delay = FIRST_RETRY
            .saturating_mul(1 << self.in_a_row.saturating_sub(1).min(16))
            .min(MAX_RETRY);
        let log = self.logged.as_deref() != Some(why);
        if log {
            self.logged = Some(why.to_string());
        }
        (delay, log)
    }

    /// Records a round that worked.
    fn succeeded(&mut self, health: &nurture_server::Health) {
        if self.in_a_row > 0 {
            let for_s = self.since.map_or(0, |t| t.elapsed().as_secs());
            tracing::warn!(failed_rounds = self.in_a_row, for_s, "rounds work again");
        }
        *self = Self::default();
        health.round_succeeded();
    }
}

/// Waits `delay` after a failed round; returns true when a stop was requested meanwhile.
/// When the database did not answer at the start, the wait ends as soon as it does (checked
/// every second), so the daemon resumes within a second or two of its return.
async fn pause(
    engine: &nurture_scheduler::Engine,
    delay: Duration,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let until = tokio::time::Instant::now() + delay;
    let mut answered = ping(engine).await;
    loop {
        let step = until
            .saturating_duration_since(tokio::time::Instant::now())
            .min(Duration::from_secs(1));
        tokio::select! {
            () = tokio::time::sleep(step) => {}
            () = stopped(stop) => return true,
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        let answers = ping(engine).await;
        if answers && !answered {
            tracing::info!("the database answers again; retrying now");
            return false;
        }
        answered = answers;
    }
}

/// Whether the database answers within two seconds.
async fn ping(engine: &nurture_scheduler::Engine) -> bool {
    tokio::time::timeout(Duration::from_secs(2), engine.store().ping())
        .await
        .unwrap_or(false)
}

/// Logged when the round did not stop within [`STOP_GRACE`] of SIGTERM.
async fn in_flight_at_timeout(engine: &nurture_scheduler::Engine) {
    let sending = tokio::time::timeout(Duration::from_secs(2), async {
        let mut tx = engine.store().begin_read().await.ok()?;
        let counts = tx.count_messages_by_state().await.ok()?;
        let _ = tx.rollback().await;
        counts
            .into_iter()
            .find(|(s, _)| s == "sending")
            .map(|(_, n)| n)
    })
    .await
    .ok()
    .flatten();
    tracing::warn!(
        grace_s = STOP_GRACE.as_secs(),
        sending = sending.unwrap_or(0),
        "the round did not stop in time; exiting anyway. Messages still `sending` become `unknown` when their lease runs out (never re-sent); the rest of the queue waits for the next start"
    );
}

/// What the HTTP server shares with the loop.
struct HttpParts {
    signer: nurture_sender::Signer,
    api_key: Option<String>,
    wake: std::sync::Arc<tokio::sync::Notify>,
    metrics: std::sync::Arc<nurture_server::Metrics>,
    health: std::sync::Arc<nurture_server::Health>,
    bounces: std::sync::Arc<nurture_server::bounces::Webhooks>,
    dashboard: Option<std::sync::Arc<nurture_server::Dashboard>>,
    forms: std::sync::Arc<nurture_server::Forms>,
}

/// The HTTP server on a thread and a runtime of its own, so that a busy delivery round (this
/// thread polls every SMTP connection) never delays `/healthz` or an ingest call. It has its
/// own connection pool too: a pool's connections belong to the runtime that opened them.
struct HttpThread {
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::sync::oneshot::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl HttpThread {
    /// Binds `listen`, opens the server's pool and starts serving; fails if either fails.
    async fn start(config: &Config, parts: HttpParts) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(&config.listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let url = config.database_url.expose().to_string();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("nurture-http".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let opened = async {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        let store = nurture_store::Store::open(&url)
                            .await
                            .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
                        anyhow::Ok((listener, store))
                    }
                    .await;
                    let (listener, store) = match opened {
                        Ok(o) => o,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let state = nurture_server::AppState {
                        store: store.clone(),
                        signer: parts.signer,
                        api_key: parts.api_key,
                        wake: parts.wake,
                        metrics: parts.metrics,
                        health: parts.health,
                        bounces: parts.bounces,
                        dashboard: parts.dashboard,
                        forms: parts.forms,
                    };
                    let _ = ready_tx.send(Ok(()));
                    let served = nurture_server::serve(listener, state, async move {
                        let _ = stop_rx.await;
                    })
                    .await;
                    if let Err(e) = served {
                        tracing::error!("HTTP server: {e}");
                    }
                    store.close().await;
                });
                let _ = done_tx.send(());
            })?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(Self {
                stop: stop_tx,
                done: done_rx,
                thread,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(anyhow::anyhow!("the HTTP server thread did not start")),
        }
    }

    /// Stops accepting, lets requests in flight finish (bounded by the request timeout) and
    /// waits for the thread.
    async fn stop(self) {
        let _ = self.stop.send(());
        if self.done.await.is_err() {
            tracing::error!("the HTTP server thread ended abnormally");
        }
        // Done was sent (or the thread is gone): joining does not block.
        let _ = self.thread.join();
    }
}

/// Completes once a stop was requested.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    // An error means the signal task is gone; then no stop will come.
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
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

type CampaignStamp = Vec<(std::path::PathBuf, Option<std::time::SystemTime>)>;

/// Names and modification times of the campaign and template files, to notice edits.
fn campaign_stamp(config: &Config) -> CampaignStamp {
    let mut out = Vec::new();
    for dir in [
        &config.campaigns_dir,
        &config.templates_dir,
        &config.forms_dir,
    ] {
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

/// A URL fit for the log: the userinfo (`user:pass@`) and the values of query parameters
/// that carry secrets (`password`, `pass`, `pwd`, `secret`, `token`, `key`) are hidden.
fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &base[..s], &base[at + 1..]),
        _ => base.to_string(),
    };
    if let Some(q) = query {
        let secret = |k: &str| {
            let k = k.to_ascii_lowercase();
            [
                "password",
                "pass",
                "pwd",
                "secret",
                "token",
                "key",
                "sslpassword",
            ]
            .iter()
            .any(|s| k == *s || k.ends_with(&format!("_{s}")))
        };
        let parts: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if secret(k) => format!("{k}=…"),
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
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

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_userinfo_and_secret_query_values() {
        use super::redact;
        assert_eq!(
            redact("postgres://nurture:hunter2@db:5432/nurture"),
            "postgres://…@db:5432/nurture"
        );
        assert_eq!(
            redact("postgres://db/nurture?user=n&password=hunter2&sslmode=require"),
            "postgres://db/nurture?user=n&password=…&sslmode=require"
        );
        assert_eq!(
            redact("smtp://relay?tls=required&PASS=x&auth_token=y"),
            "smtp://relay?tls=required&PASS=…&auth_token=…"
        );
        assert_eq!(redact("sqlite://nurture.db"), "sqlite://nurture.db");
    }

    use super::*;

    #[test]
    fn failed_rounds_back_off_from_1_s_to_30_s_and_log_each_kind_of_failure_once() {
        let mut f = Failures::default();
        let down = "pool timed out while waiting for an open connection";
        let got: Vec<(u64, bool)> = [down, down, down, "refused", down, down, down, down]
            .into_iter()
            .map(|why| {
                let (delay, log) = f.record(why);
                (delay.as_secs(), log)
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, true),
                (2, false),
                (4, false),
                (8, true),
                (16, true),
                (30, false),
                (30, false),
                (30, false)
            ]
        );
        // A round that works starts over.
        f.succeeded(&nurture_server::Health::new());
        assert_eq!(f.record(down), (Duration::from_secs(1), true));
    }
}
