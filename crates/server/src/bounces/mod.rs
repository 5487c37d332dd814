//! Bounces and complaints reported after the fact (SPEC §10).
//!
//! A relay that accepted a message reports later that the mailbox refused it (a bounce) or
//! that the recipient marked it as spam (a complaint). Each provider reports in its own
//! shape and signs in its own way; one module per provider checks what that provider signs
//! and turns its payload into [`Signal`]s, and [`apply`] is the one policy for all of them
//! and for the reports that reach a mailbox ([`report`], fed by `nurture bounces ingest`):
//!
//! | signal | effect |
//! |---|---|
//! | hard bounce | the contact becomes `bounced`, every enrollment exits, waiting mail is suppressed; the named message becomes `bounced` |
//! | complaint | the same with `complained` |
//! | soft bounce | counted; [`Webhooks::soft_bounce_limit`] in a row make the contact `bounced` |
//! | delivered (SES, SendGrid, Postmark, Mailgun report it) | ends a run of soft bounces |
//!
//! A request that cannot be verified is answered 401 (missing or wrong credentials) or 403
//! (a signature that does not verify) before anything is written. A verified report about
//! an address nurture does not know is answered 200 and ignored (a provider would otherwise
//! retry it for days).

mod generic;
mod mailgun;
mod postmark;
pub mod report;
mod sendgrid;
mod ses;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use nurture_store::{ContactStatus, NewSignal, SignalKind, Store, StoreError};
use serde_json::json;

use crate::AppState;
use crate::ingest::error;

pub use sendgrid::SendgridKey;

/// The largest webhook body read: providers batch events (SendGrid sends up to a few
/// hundred per request), so this is larger than the ingest API's 64 KiB.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

/// The default of [`Webhooks::soft_bounce_limit`].
pub const DEFAULT_SOFT_BOUNCE_LIMIT: u32 = 3;

/// Fetches an https URL for the SES (SNS) webhook: the signing certificate named by a
/// notification, and the URL that confirms a subscription. The daemon uses [`HttpsFetch`];
/// tests supply their own so no request leaves the machine. The URL has been checked
/// (https, an `sns.REGION.amazonaws.com` host) before it is handed here.
pub trait Fetch: Send + Sync {
    /// The body of a `GET url` answered 2xx, or why not.
    fn get<'a>(
        &'a self,
        url: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>>;
}

/// [`Fetch`] over the network (rustls with the webpki roots, 10 s timeout).
#[derive(Debug, Default)]
pub struct HttpsFetch {
    client: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

impl Fetch for HttpsFetch {
    fn get<'a>(
        &'a self,
        url: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>> {
        Box::pin(async move {
            let client = self
                .client
                .get_or_init(|| {
                    reqwest::Client::builder()
                        .timeout(std::time::Duration::from_secs(10))
                        .https_only(true)
                        // A redirect could lead off the checked host.
                        .redirect(reqwest::redirect::Policy::none())
                        .build()
                        .map_err(|e| format!("no HTTPS client: {e}"))
                })
                .as_ref()
                .map_err(Clone::clone)?;
            let response = client.get(url).send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("answered {status}"));
            }
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            Ok(body.to_vec())
        })
    }
}

/// What the bounce webhooks are configured with. Each provider's route refuses every
/// request until its key is set. Secrets are never printed.
#[derive(Clone)]
pub struct Webhooks {
    /// Soft bounces in a row that make a contact `bounced` (`soft_bounce_limit`).
    pub soft_bounce_limit: u32,
    /// SendGrid's verification key (`sendgrid_webhook_key`).
    pub sendgrid_key: Option<SendgridKey>,
    /// Postmark's basic-auth user and password (`webhook_user`, `webhook_password`).
    pub postmark_auth: Option<(String, String)>,
    /// Mailgun's HTTP webhook signing key (`mailgun_signing_key`).
    pub mailgun_key: Option<String>,
    /// The SNS topics whose notifications are taken (`ses_topic_arns`): anyone can make a
    /// topic of their own whose messages AWS signs, so the signature alone says nothing
    /// about who sent the bounce.
    pub ses_topics: Vec<String>,
    /// How the SES route fetches certificates and confirms subscriptions.
    pub fetch: Arc<dyn Fetch>,
    /// Signing certificates already fetched, by URL (SNS rotates them rarely).
    certs: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Vec<u8>>>>>,
}

impl Default for Webhooks {
    fn default() -> Self {
        Self::new(Arc::new(HttpsFetch::default()))
    }
}

impl Webhooks {
    /// No provider configured, the default soft-bounce limit, and `fetch` for SNS.
    pub fn new(fetch: Arc<dyn Fetch>) -> Self {
        Self {
            soft_bounce_limit: DEFAULT_SOFT_BOUNCE_LIMIT,
            sendgrid_key: None,
            postmark_auth: None,
            mailgun_key: None,
            ses_topics: Vec::new(),
            fetch,
            certs: Arc::default(),
        }
    }
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("soft_bounce_limit", &self.soft_bounce_limit)
            .field("sendgrid_key", &self.sendgrid_key.is_some())
            .field("postmark_auth", &self.postmark_auth.is_some())
            .field("mailgun_key", &self.mailgun_key.is_some())
            .field("ses_topics", &self.ses_topics)
            .finish_non_exhaustive()
    }
}

/// One report about one recipient, as a provider or a DSN tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// The recipient, when the report names it.
    pub email: Option<String>,
    /// The Message-ID of the message it concerns, when the report names it.
    pub message_id: Option<String>,
    /// What happened.
    pub kind: SignalKind,
    /// The provider's or the remote server's words.
    pub reason: Option<String>,
    /// The provider's id of the report (repeats are recorded once).
    pub external_id: Option<String>,
}

/// What [`apply`] did with one signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Recorded about this contact.
    Recorded {
        /// The contact's address.
        email: String,
        /// The status the contact was given, if this report changed it.
        status: Option<ContactStatus>,
        /// Whether the report named one of our messages by its Message-ID.
        matched_message: bool,
        /// Soft bounces in a row after this report (0 unless it was a soft bounce).
        soft_run: i64,
        /// Enrollments this report ended.
        exited: u64,
    },
    /// The same report (by the provider's id) was recorded before.
    Duplicate,
    /// Neither the address nor the Message-ID names a contact of ours.
    Unknown,
}

/// Records `signal` from `source` and applies the policy of SPEC §10, in one transaction.
pub async fn apply(
    store: &Store,
    source: &str,
    signal: &Signal,
    soft_bounce_limit: u32,
    now: i64,
) -> Result<Applied, StoreError> {
    let mut tx = store.begin().await?;
    let message = match &signal.message_id {
        Some(mid) => match tx.message_by_header(mid).await? {
            Some(id) => tx.message(id).await?,
            None => None,
        },
        None => None,
    };
    let contact = match (&signal.email, &message) {
        (Some(email), _) => tx.contact_by_email(email).await?,
        (None, Some(m)) => tx.contact(m.contact_id).await?,
        (None, None) => None,
    };
    let Some(contact) = contact else {
        tx.rollback().await?;
        return Ok(Applied::Unknown);
    };
    // A Message-ID that names another contact's message is not this contact's outcome.
    let message = message.filter(|m| m.contact_id == contact.id);
    let said = match &signal.reason {
        Some(r) if !r.trim().is_empty() => format!(
            "{} reported by {source}: {}",
            kind_words(signal.kind),
            r.trim()
        ),
        _ => format!("{} reported by {source}", kind_words(signal.kind)),
    };
    let recorded = tx
        .insert_signal(&NewSignal {
            contact_id: contact.id,
            message_id: message.as_ref().map(|m| m.id),
            kind: signal.kind,
            source: source.to_string(),
            reason: signal.reason.clone(),
            external_id: signal
                .external_id
                .as_ref()
                .map(|id| format!("{source}:{id}")),
            at: now,
        })
        .await?;
    if recorded.is_none() {
        tx.rollback().await?;
        return Ok(Applied::Duplicate);
    }
    let mut soft_run = 0;
    let verdict = match signal.kind {
        SignalKind::Hard => {
            if let Some(m) = &message {
                tx.mark_message_bounced(m.id, &said, now).await?;
            }
            Some((ContactStatus::Bounced, "bounced", said.clone()))
        }
        SignalKind::Complaint => Some((ContactStatus::Complained, "complained", said.clone())),
        SignalKind::Soft => {
            soft_run = tx.soft_bounce_run(contact.id).await?;
            (soft_run >= i64::from(soft_bounce_limit.max(1))).then(|| {
                (
                    ContactStatus::Bounced,
                    "bounced",
                    format!("{soft_run} soft bounces in a row; the last {said}"),
                )
            })
        }
        SignalKind::Delivered => None,
    };
    let (mut status, mut exited) = (None, 0);
    if let Some((to, exit_reason, why)) = verdict {
        if tx.set_contact_status(contact.id, to, &why, now).await? {
            status = Some(to);
        }
        // Whatever the status was, nothing more goes out to this address.
        exited = tx
            .exit_contact_enrollments(contact.id, exit_reason, now)
            .await?;
        tracing::warn!(
            source,
            kind = signal.kind.as_str(),
            exited,
            "{why}; the contact leaves every campaign"
        );
    }
    tx.commit().await?;
    Ok(Applied::Recorded {
        email: contact.email,
        status,
        matched_message: message.is_some(),
        soft_run,
        exited,
    })
}

fn kind_words(kind: SignalKind) -> &'static str {
    match kind {
        SignalKind::Hard => "hard bounce",
        SignalKind::Soft => "soft bounce",
        SignalKind::Complaint => "complaint",
        SignalKind::Delivered => "delivery",
    }
}

/// The bounce webhook routes, without body limits (the caller adds them).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks/bounces/ses", post(ses::post))
        .route("/webhooks/bounces/sendgrid", post(sendgrid::post))
        .route("/webhooks/bounces/postmark", post(postmark::post))
        .route("/webhooks/bounces/mailgun", post(mailgun::post))
        .route("/webhooks/bounces/generic", post(generic::post))
}

/// A refused webhook request: the status and the sentence for `{"error": ...}`.
pub(crate) type Refusal = (StatusCode, String);

/// The buffered body, or why it could not be read (413 when too large).
pub(crate) fn body(raw: Result<Bytes, BytesRejection>) -> Result<Bytes, Refusal> {
    raw.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            (
                status,
                format!("the body is larger than {} KiB", MAX_WEBHOOK_BODY / 1024),
            )
        } else {
            (status, format!("the body could not be read: {rejection}"))
        }
    })
}

/// Applies verified signals from `source` and answers 200 with what was done, or a
/// refusal as `{"error": ...}`.
pub(crate) async fn answer(
    state: &AppState,
    source: &str,
    signals: Result<Vec<Signal>, Refusal>,
) -> Response {
    let signals = match signals {
        Ok(s) => s,
        Err((status, message)) => {
            tracing::info!(source, %status, "bounce webhook refused: {message}");
            return error(status, message);
        }
    };
    let now = crate::now_ms();
    let (mut recorded, mut ignored) = (0u64, 0u64);
    for signal in &signals {
        match apply(
            &state.store,
            source,
            signal,
            state.bounces.soft_bounce_limit,
            now,
        )
        .await
        {
            Ok(Applied::Recorded { .. }) => recorded += 1,
            Ok(Applied::Duplicate | Applied::Unknown) => ignored += 1,
            Err(e) => return crate::ingest::internal(&e),
        }
    }
    if recorded > 0 {
        // Exited enrollments may free the scheduler's work; let it look now.
        state.wake.notify_one();
    }
    (
        StatusCode::OK,
        Json(json!({ "recorded": recorded, "ignored": ignored })),
    )
        .into_response()
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Whether two secrets are equal, in time independent of both.
pub(crate) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let a = Sha256::digest(given);
    let b = Sha256::digest(expected);
    a.as_slice().ct_eq(b.as_slice()).into()
}
