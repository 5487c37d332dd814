//! The engine's [`Courier`]: renders a due step with the templates, builds the message and
//! hands it to SMTP (when `smtp_url` is set) or to the outbox folder, and maps every failure
//! onto the scheduler's [`Failure`] once, here.
//!
//! | module | what |
//! |---|---|
//! | (this) | [`Mailer`]: build, transmit, the [`Courier`] impl, [`run_and_deliver`] |
//! | settings | [`CourierSettings`] and [`CourierError`]: what a mailer is built from |
//! | pacer | `rate_per_second`, shared by every concurrent send |
//! | observer | [`SendObserver`], [`ReplyClass`]: what `/metrics` counts |
//!
//! Order matters in [`Mailer::transmit`]: the pacer's slot is taken before a connection, and
//! the connection goes back to the idle list whatever the answer (a failed one reconnects on
//! its next use), so a refusal never shrinks the pool.

mod observer;
mod pacer;
mod settings;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use nurture_campaign::{Campaign, SendAction};
use nurture_scheduler::{
    Courier, Delivered, Engine, EngineError, Failure, Job, Outcome, WebhookReport,
};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

pub use observer::{ReplyClass, SendObserver};
use pacer::Pacer;
pub use settings::{CourierError, CourierSettings};

use crate::{
    BuiltMessage, Claim, DkimSigner, Hooks, LoadError, Outbox, OutgoingEmail, RenderError,
    RenderRequest, Rendered, Signer, SmtpConnection, SmtpUrl, Templates, TlsTrust, Tracking,
    build_message, context,
};

/// Where messages go.
pub enum Transport {
    /// `.eml` files.
    Outbox(Outbox),
    /// SMTP connections, one per concurrent send, reused between messages.
    Smtp {
        /// `smtp_url`.
        url: SmtpUrl,
        /// `smtp_timeout`: the base of every wait on the server.
        timeout: Duration,
        /// The system's certificate store plus `smtp_ca_file`, read once at start-up.
        trust: Arc<TlsTrust>,
        /// Connections not in use.
        idle: Mutex<Vec<SmtpConnection>>,
    },
}

/// Renders and sends. One per process; templates reload with campaigns.
pub struct Mailer {
    /// The compiled templates.
    pub templates: Arc<Templates>,
    /// Signs the links in messages.
    pub signer: Signer,
    /// `base_url`: the start of every link.
    pub base_url: String,
    /// `postal_address`, for the footer.
    pub postal_address: Option<String>,
    /// Signs messages when DKIM is configured.
    pub dkim: Option<DkimSigner>,
    /// SMTP or the outbox.
    pub transport: Transport,
    pacer: Pacer,
    /// How many messages go out at once.
    pub concurrency: usize,
    /// Told of each SMTP attempt (the daemon's `/metrics`).
    pub metrics: Option<Arc<dyn SendObserver>>,
    /// Delivers webhook steps.
    pub webhooks: Hooks,
}

/// A step that could not be rendered for a contact.
#[derive(Debug, thiserror::Error)]
#[error("campaign {campaign}, step {step}, contact {contact}: {error}")]
pub struct StepRenderError {
    /// The campaign's id.
    pub campaign: String,
    /// The step's id.
    pub step: String,
    /// The contact's address.
    pub contact: String,
    /// What went wrong (part of the message, not a `source`: the one sentence is the report;
    /// boxed to keep `Result`s small on the render path).
    pub error: Box<RenderError>,
}

impl Mailer {
    /// Reloads the templates (after an edit).
    pub fn reload_templates(&mut self, templates_dir: &Path) -> Result<(), LoadError> {
        self.templates = Arc::new(Templates::load(templates_dir)?);
        Ok(())
    }

    fn url(&self, kind: &str, claim: &Claim) -> String {
        format!("{}/{kind}/{}", self.base_url, self.signer.sign(claim))
    }

    /// Renders and builds one email. The `Date` header is the wall clock: when the message
    /// really leaves, even under `tick --now`. `message_id` names the queued message for tokens
    /// (`None` for test sends); `to` overrides the recipient.
    #[allow(clippy::disallowed_methods)]
    pub fn build(
        &self,
        email: &StepEmail<'_>,
        message_id: Option<i64>,
        to: Option<&str>,
        subject_prefix: &str,
    ) -> Result<BuiltMessage, Failure> {
        let campaign = email.campaign;
        let unsubscribe_url = match message_id {
            Some(id) => self.url("u", &Claim::Unsubscribe(id)),
            None => self.url("u", &Claim::TestUnsubscribe(0)),
        };
        let tracking = match message_id {
            Some(id) => {
                let signer = self.signer.clone();
                let base = self.base_url.clone();
                Tracking {
                    open_pixel: campaign
                        .tracking
                        .opens
                        .then(|| self.url("o", &Claim::Open(id))),
                    click: campaign.tracking.clicks.then(|| {
                        Arc::new(move |u: &str| {
                            format!("{base}/c/{}", signer.sign(&Claim::Click(id, u.to_string())))
                        }) as Arc<dyn Fn(&str) -> String + Send + Sync>
                    }),
                    keep: Some(unsubscribe_url.clone()),
                }
            }
            None => Tracking::default(),
        };
        let rendered = self
            .render_with(email, &unsubscribe_url, tracking)
            .map_err(|e| Failure::Render(e.to_string()))?;
        let from = campaign.from_for(email.send).ok_or_else(|| {
            Failure::Render(format!("campaign {} has no From address", campaign.id))
        })?;
        let reply_to = campaign.reply_to_for(email.send);
        let subject = format!("{subject_prefix}{}", rendered.subject);
        let to_name = display_name(email.attributes);
        build_message(
            &OutgoingEmail {
                from_name: from.name(),
                from_address: from.address(),
                reply_to: reply_to.map(|r| (r.name(), r.address())),
                to_name: if to.is_some() {
                    None
                } else {
                    to_name.as_deref()
                },
                to_address: to.unwrap_or(email.email),
                subject: &subject,
                html: &rendered.html,
                text: &rendered.text,
                unsubscribe_url: &unsubscribe_url,
                campaign: campaign.id.as_str(),
                step: email.step_id,
                date: SystemTime::now(),
            },
            self.dkim.as_ref(),
        )
        .map_err(|e| Failure::Render(e.to_string()))
    }

    /// The rendered parts of one email, for `preview`.
    pub fn render_parts(&self, email: &StepEmail<'_>) -> Result<Rendered, StepRenderError> {
        let unsubscribe_url = self.url("u", &Claim::TestUnsubscribe(0));
        self.render_with(email, &unsubscribe_url, Tracking::default())
    }

    /// Renders one email step for one contact; errors name campaign, step and contact.
    fn render_with(
        &self,
        email: &StepEmail<'_>,
        unsubscribe_url: &str,
        tracking: Tracking,
    ) -> Result<Rendered, StepRenderError> {
        let StepEmail {
            campaign,
            step_id,
            send,
            ..
        } = *email;
        let ctx = context(
            email.email,
            email.attributes,
            email.tags,
            email.event,
            campaign.id.as_str(),
            &campaign.name,
            step_id,
            unsubscribe_url,
            self.postal_address.as_deref(),
        );
        self.templates
            .render(&RenderRequest {
                template: send.template.as_str(),
                layout: campaign.layout_for(send).map(|l| l.as_str()),
                subject: &send.subject,
                preheader: send.preheader.as_deref(),
                context: &ctx,
                tracking,
            })
            .map_err(|error| StepRenderError {
                campaign: campaign.id.to_string(),
                step: step_id.to_string(),
                contact: email.email.to_string(),
                error: Box::new(error),
            })
    }

    /// Hands a built message to the transport.
    #[allow(clippy::disallowed_methods)] // the outbox file name carries the wall-clock time
    pub async fn transmit(&self, m: &BuiltMessage) -> Result<String, Failure> {
        match &self.transport {
            Transport::Outbox(outbox) => {
                let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
                let path = outbox
                    .write(m, &stamp)
                    .map_err(|e| Failure::Transient(format!("cannot write to the outbox: {e}")))?;
                Ok(format!("written to {}", path.display()))
            }
            Transport::Smtp {
                url,
                timeout,
                trust,
                idle,
            } => {
                self.pacer.wait().await;
                let mut conn = idle.lock().await.pop().unwrap_or_else(|| {
                    SmtpConnection::new(url.clone())
                        .with_timeout(*timeout)
                        .with_trust(trust.clone())
                });
                let started = tokio::time::Instant::now();
                let result = conn.send(m).await;
                if let Some(metrics) = &self.metrics {
                    let code = match &result {
                        Ok(_) => Some(250),
                        Err(e) => e.code,
                    };
                    metrics.observe_send(started.elapsed(), ReplyClass::from_code(code));
                }
                idle.lock().await.push(conn);
                result.map_err(|e| {
                    if e.is_permanent() {
                        Failure::Permanent(e.to_string())
                    } else if e.is_unknown() {
                        Failure::Unknown(e.to_string())
                    } else {
                        Failure::Transient(e.to_string())
                    }
                })
            }
        }
    }

    /// Closes idle SMTP connections politely.
    pub async fn close(&self) {
        if let Transport::Smtp { idle, .. } = &self.transport {
            for mut c in idle.lock().await.drain(..) {
                c.close().await;
            }
        }
    }
}

/// The contact's name for the To header: `name`, else `first_name last_name`.
fn display_name(attributes: &Map<String, Value>) -> Option<String> {
    let get = |k: &str| {
        attributes
            .get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    if let Some(n) = get("name") {
        return Some(n.to_string());
    }
    let parts: Vec<&str> = [get("first_name"), get("last_name")]
        .into_iter()
        .flatten()
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// One email step for one contact: what an email is rendered from.
#[derive(Debug, Clone, Copy)]
pub struct StepEmail<'a> {
    /// The campaign (version) the step belongs to.
    pub campaign: &'a Campaign,
    /// The step's id.
    pub step_id: &'a str,
    /// The step's email.
    pub send: &'a SendAction,
    /// The recipient's address.
    pub email: &'a str,
    /// The recipient's attributes.
    pub attributes: &'a Map<String, Value>,
    /// The recipient's tags.
    pub tags: &'a [String],
    /// The trigger event's properties.
    pub event: &'a Map<String, Value>,
}

impl<'a> StepEmail<'a> {
    /// The email of a queued message the scheduler hands over.
    pub fn of(job: &Job<'a>) -> Self {
        Self {
            campaign: job.campaign,
            step_id: job.step.id.as_str(),
            send: job.send,
            email: &job.contact.email,
            attributes: &job.contact.attributes,
            tags: &job.contact.tags,
            event: job.event,
        }
    }
}

impl Courier for Mailer {
    type Prepared = BuiltMessage;

    fn prepare(&self, job: &Job<'_>) -> Result<(String, BuiltMessage), Failure> {
        let built = self.build(&StepEmail::of(job), Some(job.message.id), None, "")?;
        Ok((built.message_id.clone(), built))
    }

    /// Renders on every core: rendering (Handlebars, CSS inlining, the text part, MIME
    /// encoding) is most of a message's CPU time.
    fn prepare_all(&self, jobs: &[Job<'_>]) -> Vec<Result<(String, BuiltMessage), Failure>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        if threads < 2 || jobs.len() < 8 {
            return jobs.iter().map(|j| self.prepare(j)).collect();
        }
        let per = jobs.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = jobs
                .chunks(per)
                .map(|chunk| {
                    let h = scope
                        .spawn(move || chunk.iter().map(|j| self.prepare(j)).collect::<Vec<_>>());
                    (chunk.len(), h)
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|(n, h)| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(Failure::Render("the renderer panicked".into())); n]
                    })
                })
                .collect()
        })
    }

    fn rate(&self) -> Option<u32> {
        // Only SMTP sends are paced.
        matches!(self.transport, Transport::Smtp { .. }).then_some(self.pacer.rate)
    }

    fn size(&self, prepared: &BuiltMessage) -> usize {
        std::mem::size_of::<BuiltMessage>()
            + prepared.bytes.capacity()
            + prepared.from.capacity()
            + prepared.to.capacity()
            + prepared.message_id.capacity()
    }

    async fn send(&self, prepared: BuiltMessage) -> Result<String, Failure> {
        self.transmit(&prepared).await
    }
}

/// One round of the engine, then delivery of everything due (see
/// [`Engine::run_and_deliver`]), then the webhook steps due.
pub async fn run_and_deliver(
    mailer: &Arc<Mailer>,
    engine: &Engine,
    now: DateTime<Utc>,
) -> Result<(Outcome, Delivered), EngineError> {
    let done = engine
        .run_and_deliver(mailer, now, mailer.concurrency)
        .await?;
    let hooks = engine.deliver_webhooks(&mailer.webhooks, now).await?;
    if hooks != WebhookReport::default() {
        tracing::info!(
            sent = hooks.sent,
            deferred = hooks.deferred,
            failed = hooks.failed,
            unknown = hooks.unknown,
            "webhooks delivered"
        );
    }
    Ok(done)
}
