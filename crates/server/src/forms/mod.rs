//! Public sign-up forms (SPEC §9): `GET`/`POST /f/FORM_ID`, `GET /f/FORM_ID/challenge`,
//! `GET`/`POST /f/confirm/TOKEN`.
//!
//! A post is checked in this order, cheapest first, and nothing is stored for a refused
//! one (only a counter per form and reason): the per-IP limit (429), the origin (cross-site
//! posts only from `allowed_origins`), the body, the honeypot, the signed time stamp, the
//! proof of work, then the fields (400 naming each bad field). An accepted post is written
//! in one transaction by `Tx::submit_form`; the confirmation email it queues is sent by the
//! daemon's delivery round, which the server wakes at once.
//!
//! This file keeps the forms served and their settings, the hosted page, and the answers the
//! others share; the router in `lib.rs` reaches every handler through it.
//!
//! | module    | owns                                                                   |
//! |-----------|------------------------------------------------------------------------|
//! | `submit`  | `POST /f/FORM_ID`: the checks in order, then the one write             |
//! | `refusal` | the bot checks as reasons, the counter of refusals, the refused answer |
//! | `defend`  | the defences themselves: stamp, proof of work, per-IP limit            |
//! | `body`    | reading a post (urlencoded, multipart, JSON) and checking its fields   |
//! | `cors`    | scripts on other sites: origin check, preflight, `/challenge`          |
//! | `confirm` | `GET`/`POST /f/confirm/TOKEN`: the double opt-in                       |
//! | `html`    | every page: the form, the answers, the confirmation pages              |
//! | `metrics` | the form counters on `/metrics`                                        |

mod body;
mod confirm;
mod cors;
mod defend;
mod html;
mod metrics;
mod refusal;
mod submit;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nurture_campaign::Form;
use serde_json::json;

use crate::{AppState, now_ms};
use body::{Shape, Values};
pub(crate) use confirm::{confirm, confirm_page};
pub(crate) use cors::{challenge, preflight};
pub use defend::solve;
use defend::{IpLimiter, Stamper};
pub(crate) use metrics::render_metrics;
pub(crate) use submit::submit;

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
