//! HTTP for nurture: the routes of SPEC §8 that `nurture run` serves beside the scheduler.
//!
//! | route | module |
//! |---|---|
//! | `POST /api/events`, `POST /api/contacts` (bearer key, 64 KiB bodies) | `ingest` |
//! | `GET`/`POST /u/TOKEN`, `GET /o/TOKEN`, `GET /c/TOKEN` | `links`, `pages` |
//! | `POST /webhooks/bounces/{ses,sendgrid,postmark,mailgun,generic}` | [`bounces`] |
//! | `GET`/`POST /f/FORM_ID`, `GET`/`POST /f/confirm/TOKEN` (public sign-up forms) | `forms` |
//! | `GET /healthz`, `GET /metrics` | `ops`, with the counters of [`Metrics`] and the daemon's [`Health`] |
//! | `/dashboard/*` (when a password is set) | `dashboard` |
//!
//! [`serve`] accepts connections itself (module `listen`) so that idle, slow or greedy
//! clients cannot exhaust the daemon: see [`Limits`] for the bounds. The daemon runs it on a
//! thread of its own ([`ServerThread`]), so a busy delivery round never delays `/healthz`.
//!
//! This crate owns requests and responses: authentication, validating what clients send,
//! verifying link tokens, and the few small HTML pages a recipient sees. It speaks no SQL —
//! every read and write goes through `nurture-store` methods — renders no email, and decides
//! nothing about campaigns: it records contacts and events and wakes the scheduler, which
//! does the rest. Handlers read the clock in one place (`now_ms`); everything below them
//! takes `now` as a parameter like the rest of the engine.

mod auth;
pub mod bounces;
mod dashboard;
mod forms;
mod ingest;
mod limits;
mod links;
mod listen;
mod metrics;
mod ops;
mod pages;
mod thread;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::sync::Notify;

pub use dashboard::{Dashboard, LoginLimiter};
pub use forms::{FormSettings, Forms, solve, stamp_for};
pub use limits::Limits;
pub use metrics::Metrics;
pub use ops::Health;
pub use thread::{ServerThread, StartError};

/// The largest request body the ingest API reads (64 KiB); larger ones get 413.
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler needs. Cheap to clone: the store is a pool, the rest are shared.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: nurture_store::Store,
    /// Verifies unsubscribe, open and click tokens (the same secret that signed them).
    pub signer: nurture_token::Signer,
    /// Bearer key of `/api/*`; `None` (or empty) refuses every ingest call.
    pub api_key: Option<String>,
    /// Notified after an event is recorded, so the scheduler runs at once instead of at its
    /// next poll.
    pub wake: Arc<Notify>,
    /// Delivery counters the sender updates and `/metrics` reports.
    pub metrics: Arc<Metrics>,
    /// Whether the daemon's last round worked; `/healthz` answers 503 while it does not.
    pub health: Arc<Health>,
    /// The bounce webhooks' keys and policy (`/webhooks/bounces/*`).
    pub bounces: Arc<bounces::Webhooks>,
    /// The dashboard (SPEC §12); `None` when no `dashboard_password` is set: its routes 404.
    pub dashboard: Option<Arc<Dashboard>>,
    /// The public sign-up forms and their defences.
    pub forms: Arc<Forms>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The API key is a secret: never printed.
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("api_key", &self.api_key.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

/// Every route of SPEC §8, with the default [`Limits`].
pub fn router(state: AppState) -> Router {
    router_with(state, &Limits::default())
}

/// Every route of SPEC §8, each with a body limit and a time limit (`limits`).
pub fn router_with(state: AppState, limits: &Limits) -> Router {
    let api = Router::new()
        .route("/api/events", post(ingest::post_event))
        .route("/api/contacts", post(ingest::post_contact))
        // Authentication runs before the body is read.
        .route_layer(axum::middleware::from_fn_with_state(
            auth::ApiKey::new(state.api_key.as_deref()),
            auth::require_api_key,
        ))
        .layer(DefaultBodyLimit::max(limits.api_body))
        .layer(axum::middleware::from_fn_with_state(
            limits.api_body,
            limits::refuse_large,
        ))
        .layer(axum::Extension(ingest::batch::Batcher::new(
            state.store.clone(),
            state.wake.clone(),
            ingest::batch::QUEUE,
        )));
    let rest = Router::new()
        .route(
            "/u/{token}",
            get(links::unsubscribe_page).post(links::unsubscribe),
        )
        .route(
            "/f/confirm/{token}",
            get(forms::confirm_page).post(forms::confirm),
        )
        .route(
            "/f/{id}",
            get(forms::page)
                .post(forms::submit)
                .options(forms::preflight),
        )
        .route(
            "/f/{id}/challenge",
            get(forms::challenge).options(forms::preflight),
        )
        .route("/o/{token}", get(links::open))
        .route("/c/{token}", get(links::click))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .merge(dashboard::routes(state.clone()))
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(limits.page_body))
        .layer(axum::middleware::from_fn_with_state(
            limits.page_body,
            limits::refuse_large,
        ));
    // Providers batch their events: a larger body than the ingest API's, read only once
    // each route has checked what its provider signs.
    let webhooks = bounces::routes()
        .layer(DefaultBodyLimit::max(bounces::MAX_WEBHOOK_BODY))
        .layer(axum::middleware::from_fn_with_state(
            bounces::MAX_WEBHOOK_BODY,
            limits::refuse_large,
        ));
    Router::new()
        .merge(api)
        .merge(webhooks)
        .merge(rest)
        .layer(axum::middleware::from_fn_with_state(
            limits.request_timeout,
            limits::time_limit,
        ))
        .with_state(state)
}

/// Serves [`router`] on `listener` with the default [`Limits`] until `shutdown` completes,
/// then stops accepting and lets requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, Limits::default(), shutdown).await
}

/// [`serve`] with these `limits`. Returns once every connection is closed, or a request
/// timeout after `shutdown` at the latest.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router_with(state, &limits);
    listen::accept(listener, app, &limits, shutdown).await
}

/// The current time in Unix milliseconds.
///
/// The one place this crate reads the clock: a request happens now, and the time of an
/// unsubscribe, an open or a click is when the request arrived. Everything below the
/// handlers receives this value as a parameter.
#[allow(clippy::disallowed_methods)]
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
