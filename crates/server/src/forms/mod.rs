//! Public sign-up forms (SPEC §9): `GET`/`POST /f/FORM_ID`, `GET /f/FORM_ID/challenge`,
//! `GET`/`POST /f/confirm/TOKEN`.
//!
//! A post is checked in this order, cheapest first, and nothing is stored for a refused
//! one (only a counter per form and reason): the per-IP limit (429), the origin (cross-site
//! posts only from `allowed_origins`), the body, the honeypot, the signed time stamp, the
//! proof of work, then the fields (400 naming each bad field). An accepted post is written
//! in one transaction by `Tx::submit_form`; the confirmation email it queues is sent by the
//! daemon's delivery round, which the server wakes at once.

mod body;
mod defend;
mod html;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nurture_campaign::Form;
use nurture_store::{Confirmed, NewSubmission, Submitted};
use nurture_token::Claim;
use serde_json::json;

use crate::{AppState, now_ms};
use body::{Shape, Values};
pub use defend::solve;
use defend::{IpLimiter, StampError, Stamper};

/// How the form defences are tuned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormSettings {
    /// A post sooner than this after the page was served is refused (ms; default 3 s).
    pub min_fill_ms: i64,
    /// Posts per IP address per minute before 429 (default 20).
    pub per_ip_per_minute: u32,
    /// A repeat submission sends a new confirmation at most this often (ms; default 1 h).
    pub resend_after_ms: i64,
    /// Leading zero bits the proof of work needs (default 12: a fraction of a second).
    pub pow_difficulty: u32,
}

impl Default for FormSettings {
    fn default() -> Self {
        Self {
            min_fill_ms: 3_000,
            per_ip_per_minute: 20,
            resend_after_ms: 3_600_000,
            pow_difficulty: 12,
        }
    }
}

/// The forms the server serves, their settings and the state of their defences. One per
/// server instance (the rate limit is per instance).
pub struct Forms {
    forms: RwLock<HashMap<String, Arc<Form>>>,
    settings: FormSettings,
    limiter: IpLimiter,
}

impl std::fmt::Debug for Forms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forms")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Forms {
    /// These forms with these settings.
    pub fn new(forms: Vec<Form>, settings: FormSettings) -> Self {
        let this = Self {
            forms: RwLock::new(HashMap::new()),
            settings,
            limiter: IpLimiter::default(),
        };
        this.replace(forms);
        this
    }

    /// No forms (every `/f/…` is 404).
    pub fn none() -> Self {
        Self::new(Vec::new(), FormSettings::default())
    }

    /// Serves these forms from now on (after the files changed).
    pub fn replace(&self, forms: Vec<Form>) {
        let map = forms
            .into_iter()
            .map(|f| (f.id.clone(), Arc::new(f)))
            .collect();
        *self.forms.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    fn get(&self, id: &str) -> Option<Arc<Form>> {
        self.forms
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// The ids of the forms served, in no particular order.
    pub fn ids(&self) -> Vec<String> {
        self.forms
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// The settings.
    pub fn settings(&self) -> &FormSettings {
        &self.settings
    }
}

/// The signed time stamp a page of `form` served at `now` (ms) carries: for tests that
/// submit without fetching the page.
pub fn stamp_for(signer: &nurture_token::Signer, form: &str, now: i64) -> String {
    Stamper::new(signer).stamp(form, now)
}

/// The address in a form that logs may show: a fingerprint, never the address in clear.
fn address_hash(email: &str) -> String {
    nurture_campaign::form::fingerprint(&email.trim().to_lowercase())
}

fn json_error(
    status: StatusCode,
    message: &str,
    fields: Option<&BTreeMap<String, String>>,
) -> Response {
    let mut body = json!({ "error": message });
    if let Some(f) = fields {
        body["fields"] = json!(f);
    }
    (status, Json(body)).into_response()
}

/// Whether `origin` is this server itself (the hosted page posting to its own URL).
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| !host.is_empty() && rest.eq_ignore_ascii_case(host))
}

/// The `Origin` of a cross-site request, if it is one: `Ok(None)` same-site or no Origin,
/// `Ok(Some(o))` allowed, `Err(o)` refused.
fn cross_origin(form: &Form, headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return Ok(None);
    };
    if same_origin(origin, headers) {
        return Ok(None);
    }
    if form
        .allowed_origins
        .iter()
        .any(|a| a.eq_ignore_ascii_case(origin))
    {
        Ok(Some(origin.to_string()))
    } else {
        Err(origin.to_string())
    }
}

/// Adds the CORS headers that let `origin` read the answer.
fn with_cors(mut response: Response, origin: Option<&str>) -> Response {
    if let Some(o) = origin
        && let Ok(v) = HeaderValue::from_str(o)
    {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

fn not_found(shape: Shape) -> Response {
    match shape {
        Shape::Json => json_error(StatusCode::NOT_FOUND, "there is no such form", None),
        Shape::Html => html::message(StatusCode::NOT_FOUND, "Not found", "There is no such form."),
    }
}

/// `GET /f/FORM_ID`: the hosted form.
pub(crate) async fn page(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(form) = state.forms.get(&id) else {
        return not_found(Shape::Html);
    };
    let stamp = Stamper::new(&state.signer).stamp(&form.id, now_ms());
    html::form_page(
        &form,
        &stamp,
        state.forms.settings.pow_difficulty,
        &Values::new(),
        &BTreeMap::new(),
        StatusCode::OK,
    )
}

/// `GET /f/FORM_ID/challenge`: a signed stamp and the proof-of-work difficulty, for a
/// script posting JSON (CORS per `allowed_origins`).
pub(crate) async fn challenge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(form) = state.forms.get(&id) else {
        return not_found(Shape::Json);
    };
    let origin = match cross_origin(&form, &headers) {
        Ok(o) => o,
        Err(o) => {
            return json_error(
                StatusCode::FORBIDDEN,
                &format!("the origin {o} may not use this form"),
                None,
            );
        }
    };
    let stamp = Stamper::new(&state.signer).stamp(&form.id, now_ms());
    with_cors(
        Json(json!({ "nurture_ts": stamp, "difficulty": state.forms.settings.pow_difficulty }))
            .into_response(),
        origin.as_deref(),
    )
}

/// `OPTIONS /f/FORM_ID` (and its challenge): the CORS preflight of a script on another site.
pub(crate) async fn preflight(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(form) = state.forms.get(&id) else {
        return not_found(Shape::Json);
    };
    match cross_origin(&form, &headers) {
        Ok(Some(origin)) => {
            let mut r = with_cors(StatusCode::NO_CONTENT.into_response(), Some(&origin));
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("content-type"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            r
        }
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(o) => json_error(
            StatusCode::FORBIDDEN,
            &format!("the origin {o} may not post to this form"),
            None,
        ),
    }
}

/// Why a post was refused: the reason counted and logged, and the answer.
struct Refusal {
    reason: &'static str,
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(reason: &'static str, status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            reason,
            status,
            message: message.into(),
        }
    }
}

/// Counts and logs a refusal (without the address in clear).
async fn count(state: &AppState, form: &str, reason: &str, email: Option<&str>) {
    tracing::info!(
        form,
        reason,
        address = email.map(address_hash).unwrap_or_default(),
        "form submission refused"
    );
    let counted = async {
        let mut tx = state.store.begin().await?;
        tx.count_form_rejection(form, reason).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = counted {
        tracing::error!("form rejection not counted: {e}");
    }
}

fn client_ip(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// `POST /f/FORM_ID`: a submission from the hosted page, an embedded form or a script.
pub(crate) async fn submit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let now = now_ms();
    let headers = request.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let shape = body::shape(&content_type);
    let Some(form) = state.forms.get(&id) else {
        return not_found(shape);
    };
    let settings = &state.forms.settings;
    let ip = client_ip(&request);
    if let Some(ip) = ip
        && !state
            .forms
            .limiter
            .allow(ip, now, settings.per_ip_per_minute)
    {
        count(&state, &form.id, "rate_limited", None).await;
        let mut r = match shape {
            Shape::Json => json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many submissions from this address; try again in a minute",
                None,
            ),
            Shape::Html => html::message(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "Too many submissions came from your network. Please try again in a minute.",
            ),
        };
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return r;
    }
    let origin = match cross_origin(&form, &headers) {
        Ok(o) => o,
        Err(o) => {
            count(&state, &form.id, "origin", None).await;
            return json_error(
                StatusCode::FORBIDDEN,
                &format!("the origin {o} may not post to this form"),
                None,
            );
        }
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(300).collect::<String>());
    let bytes = match axum::body::to_bytes(request.into_body(), crate::MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let r = Refusal::new(
                "invalid",
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is too large or could not be read",
            );
            return with_cors(
                refuse(&state, &form, shape, r, &Values::new(), None).await,
                origin.as_deref(),
            );
        }
    };
    let values = match body::parse(&content_type, &bytes) {
        Ok(v) => v,
        Err(message) => {
            let r = Refusal::new("invalid", StatusCode::BAD_REQUEST, message);
            return with_cors(
                refuse(&state, &form, shape, r, &Values::new(), None).await,
                origin.as_deref(),
            );
        }
    };
    if let Err(r) = defences(&state, &form, shape, &values, now) {
        return with_cors(
            refuse(&state, &form, shape, r, &values, None).await,
            origin.as_deref(),
        );
    }
    let checked = match body::check(&form, &values, shape) {
        Ok(c) => c,
        Err(errors) => {
            let r = Refusal::new(
                "invalid",
                StatusCode::BAD_REQUEST,
                "some fields need correcting",
            );
            return with_cors(
                refuse(&state, &form, shape, r, &values, Some(&errors)).await,
                origin.as_deref(),
            );
        }
    };
    let submission = NewSubmission {
        form_id: form.id.clone(),
        email: checked.email.clone(),
        attributes: checked.attributes,
        tags: form.tags.clone(),
        consent_text: form.consent.clone(),
        consent_version: form.consent_version.clone(),
        ip: if form.record_ip {
            ip.map(|i| i.to_string())
        } else {
            None
        },
        user_agent: if form.record_ip { user_agent } else { None },
        double_opt_in: form.double_opt_in.is_some(),
        resend_after_ms: settings.resend_after_ms,
        event: form.event.clone(),
        properties: form.properties.clone(),
    };
    let stored = async {
        let mut tx = state.store.begin().await?;
        let out = tx.submit_form(&submission, now).await?;
        tx.commit().await?;
        Ok::<_, nurture_store::StoreError>(out)
    }
    .await;
    let outcome = match stored {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(form = %form.id, "form submission not stored: {e}");
            return with_cors(
                match shape {
                    Shape::Json => json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the submission could not be stored; try again later",
                        None,
                    ),
                    Shape::Html => html::message(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Please try again",
                        "Your submission could not be stored just now. Please try again in a minute.",
                    ),
                },
                origin.as_deref(),
            );
        }
    };
    // The delivery round sends the confirmation (or runs the triggered campaign) at once.
    state.wake.notify_one();
    tracing::info!(form = %form.id, address = address_hash(&checked.email), outcome = ?outcome, "form submitted");
    let status = match outcome {
        Submitted::Pending { .. } => "pending",
        Submitted::Recorded { .. } => "subscribed",
    };
    let response = match shape {
        Shape::Json => {
            let message = match &form.after_submit {
                nurture_campaign::After::Message(m) => json!(m),
                nurture_campaign::After::Redirect(u) => json!({ "redirect": u }),
            };
            (
                StatusCode::ACCEPTED,
                Json(json!({ "status": status, "message": message })),
            )
                .into_response()
        }
        Shape::Html => html::after(&form.after_submit, &form.title),
    };
    with_cors(response, origin.as_deref())
}

/// The bot checks: honeypot, signed time stamp, proof of work.
fn defences(
    state: &AppState,
    form: &Form,
    shape: Shape,
    values: &Values,
    now: i64,
) -> Result<(), Refusal> {
    if values.get("website").is_some_and(|v| !v.trim().is_empty()) {
        return Err(Refusal::new(
            "honeypot",
            StatusCode::BAD_REQUEST,
            "the submission was refused",
        ));
    }
    let settings = &state.forms.settings;
    let stamp = values.get("nurture_ts").map(String::as_str).unwrap_or("");
    match Stamper::new(&state.signer).check(
        &form.id,
        stamp,
        now,
        if shape == Shape::Json {
            0
        } else {
            settings.min_fill_ms
        },
    ) {
        Ok(()) => {}
        Err(StampError::TooFast) => {
            return Err(Refusal::new(
                "too_fast",
                StatusCode::BAD_REQUEST,
                "the form was sent too quickly; please wait a few seconds and send it again",
            ));
        }
        Err(StampError::Invalid) => {
            return Err(Refusal::new(
                "stamp",
                StatusCode::BAD_REQUEST,
                "the form has expired or did not come from this site; please reload the page and send it again",
            ));
        }
    }
    let pow = values.get("nurture_pow").map(|s| s.trim()).unwrap_or("");
    // A page without JavaScript cannot solve the challenge: the checks above let it through.
    if (shape == Shape::Json || !pow.is_empty())
        && !defend::proof_ok(stamp, pow, settings.pow_difficulty)
    {
        return Err(Refusal::new(
            "proof_of_work",
            StatusCode::BAD_REQUEST,
            "the proof of work is missing or wrong: fetch /f/FORM_ID/challenge and solve it",
        ));
    }
    Ok(())
}

async fn refuse(
    state: &AppState,
    form: &Form,
    shape: Shape,
    r: Refusal,
    values: &Values,
    fields: Option<&BTreeMap<String, String>>,
) -> Response {
    count(
        state,
        &form.id,
        r.reason,
        values.get("email").map(String::as_str),
    )
    .await;
    match shape {
        Shape::Json => json_error(r.status, &r.message, fields),
        Shape::Html => {
            let mut errors = fields.cloned().unwrap_or_default();
            if errors.is_empty() {
                errors.insert(String::new(), upper_first(&r.message));
            }
            // The page comes back filled in, with a fresh stamp; the honeypot stays empty.
            let mut kept = values.clone();
            kept.remove("website");
            let stamp = Stamper::new(&state.signer).stamp(&form.id, now_ms());
            html::form_page(
                form,
                &stamp,
                state.forms.settings.pow_difficulty,
                &kept,
                &errors,
                r.status,
            )
        }
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// The submission a confirmation token names and whether it is still valid.
fn confirm_claim(state: &AppState, token: &str) -> Option<(i64, bool)> {
    match state.signer.verify(token) {
        Some(Claim::Confirm { id, expires }) => Some((id, now_ms() / 1000 <= expires)),
        _ => None,
    }
}

fn bad_link() -> Response {
    html::message(
        StatusCode::NOT_FOUND,
        "This link is not valid",
        "It may have been copied incompletely. Please use the link from the email itself.",
    )
}

fn unavailable() -> Response {
    html::message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again",
        "This page is unavailable just now. Please try again in a minute.",
    )
}

/// `GET /f/confirm/TOKEN`: a page with a confirm button; confirms nothing.
pub(crate) async fn confirm_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Response {
    let Some((id, valid)) = confirm_claim(&state, &token) else {
        return bad_link();
    };
    let found = async {
        let mut tx = state.store.begin().await?;
        let s = tx.submission(id).await?;
        tx.rollback().await?;
        Ok::<_, nurture_store::StoreError>(s)
    }
    .await;
    match found {
        Ok(Some((form_id, confirmed))) => match state.forms.get(&form_id) {
            None => bad_link(),
            Some(form) if confirmed.is_some() => html::after(&form.after_confirm, "Confirmed"),
            Some(_) if !valid => html::expired_page(),
            Some(form) => html::confirm_page(&form),
        },
        Ok(None) => bad_link(),
        Err(e) => {
            tracing::error!("confirmation page: {e}");
            unavailable()
        }
    }
}

/// `POST /f/confirm/TOKEN`: confirms (the page's button), sends a new link (the expired
/// page's button), or declines (RFC 8058 one-click from the confirmation's List-Unsubscribe).
pub(crate) async fn confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    let Some((id, valid)) = confirm_claim(&state, &token) else {
        return bad_link();
    };
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let values = match axum::body::to_bytes(request.into_body(), 16 * 1024).await {
        Ok(b) => body::parse(&content_type, &b).unwrap_or_default(),
        Err(_) => Values::new(),
    };
    let now = now_ms();
    let result = async {
        let mut tx = state.store.begin().await?;
        let Some((form_id, _)) = tx.submission(id).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let Some(form) = state.forms.get(&form_id) else {
            tx.rollback().await?;
            return Ok(None);
        };
        let answer = if values
            .get("List-Unsubscribe")
            .is_some_and(|v| v == "One-Click")
        {
            tx.decline_submission(id, now).await?;
            html::message(
                StatusCode::OK,
                "Unsubscribed",
                "You will not receive any emails from this form.",
            )
        } else if values.contains_key("resend") || !valid {
            if values.contains_key("resend")
                && tx
                    .requeue_confirmation(id, state.forms.settings.resend_after_ms, now)
                    .await?
            {
                state.wake.notify_one();
                html::message(
                    StatusCode::OK,
                    "A new link is on its way",
                    "Please check your inbox for a new confirmation email.",
                )
            } else if !valid {
                html::expired_page()
            } else {
                html::message(
                    StatusCode::OK,
                    "Please check your inbox",
                    "A confirmation email was sent recently; please use the link in it.",
                )
            }
        } else {
            match tx
                .confirm_submission(id, &form.event, &form.properties, &form.tags, now)
                .await?
            {
                Confirmed::Now { .. } => {
                    tracing::info!(form = %form.id, submission = id, "form submission confirmed");
                    state.wake.notify_one();
                    html::after(&form.after_confirm, "Confirmed")
                }
                Confirmed::Already { .. } => html::after(&form.after_confirm, "Confirmed"),
                Confirmed::NotFound => bad_link(),
            }
        };
        tx.commit().await?;
        Ok::<_, nurture_store::StoreError>(Some(answer))
    }
    .await;
    match result {
        Ok(Some(r)) => r,
        Ok(None) => bad_link(),
        Err(e) => {
            tracing::error!("confirmation: {e}");
            unavailable()
        }
    }
}

/// The form counters for `/metrics`.
pub(crate) async fn render_metrics(state: &AppState, out: &mut String) {
    let counts = async {
        let mut tx = state.store.begin_read().await?;
        let c = tx.form_counts().await?;
        tx.rollback().await?;
        Ok::<_, nurture_store::StoreError>(c)
    }
    .await;
    let counts = match counts {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("form metrics: {e}");
            return;
        }
    };
    let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    out.push_str("# HELP nurture_form_submissions_total Form submissions stored, per form.\n# TYPE nurture_form_submissions_total counter\n");
    for c in &counts {
        out.push_str(&format!(
            "nurture_form_submissions_total{{form=\"{}\"}} {}\n",
            label(&c.form),
            c.submissions
        ));
    }
    out.push_str("# HELP nurture_form_confirmations_total Form submissions confirmed, per form.\n# TYPE nurture_form_confirmations_total counter\n");
    for c in &counts {
        out.push_str(&format!(
            "nurture_form_confirmations_total{{form=\"{}\"}} {}\n",
            label(&c.form),
            c.confirmations
        ));
    }
    out.push_str("# HELP nurture_form_rejections_total Form submissions refused, per form and reason.\n# TYPE nurture_form_rejections_total counter\n");
    for c in &counts {
        for (reason, n) in &c.rejections {
            out.push_str(&format!(
                "nurture_form_rejections_total{{form=\"{}\",reason=\"{}\"}} {n}\n",
                label(&c.form),
                label(reason)
            ));
        }
    }
}
