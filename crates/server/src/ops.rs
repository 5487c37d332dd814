//! `GET /healthz` and `GET /metrics`: what an operator's load balancer and Prometheus ask.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use nurture_store::{EnrollmentState, MessageState};

use crate::metrics::render_states;
use crate::{AppState, now_ms};

/// How long `/healthz` waits for the database: a load balancer's probe must get its 503
/// while the database is away, not hang with it.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The daemon's own view of its health: whether its last round of work succeeded. Shared
/// between the scheduler loop, which records each round, and `/healthz`.
#[derive(Debug, Default)]
pub struct Health {
    /// Why the last round failed; `None` after a round that worked (or before the first).
    failure: std::sync::Mutex<Option<String>>,
}

impl Health {
    /// Healthy until told otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a round that worked.
    pub fn round_succeeded(&self) {
        *self.lock() = None;
    }

    /// Records a round that failed, and why (kept for the log, never shown to clients).
    pub fn round_failed(&self, why: impl Into<String>) {
        *self.lock() = Some(why.into());
    }

    /// Why the last round failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // A panic elsewhere cannot leave an Option half-written.
        self.failure.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `GET /healthz`: 200 when the database answers within two seconds and the daemon's last
/// round worked, 503 otherwise (the cause goes to the daemon's log, not to the client).
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    let unhealthy =
        |why: &str| (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
    match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
        Ok(true) => {}
        Ok(false) | Err(_) => return unhealthy("the database does not answer"),
    }
    if state.health.failure().is_some() {
        return unhealthy("the scheduler's last round failed; see the log");
    }
    (StatusCode::OK, "ok\n").into_response()
}

/// `GET /metrics`: Prometheus text format 0.0.4.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let now = now_ms();
    let counts = async {
        let mut tx = state.store.begin_read().await?;
        let messages = tx.count_messages_by_state().await?;
        let enrollments = tx.count_enrollments_by_state().await?;
        let due = tx.due_now(now).await?;
        tx.rollback().await?;
        Ok::<_, nurture_store::StoreError>((messages, enrollments, due))
    }
    .await;
    let (messages, enrollments, due) = match counts {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("metrics: {e}");
            // A failed scrape is what Prometheus should see when the database is down.
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database does not answer\n",
            )
                .into_response();
        }
    };
    let mut out = String::with_capacity(4096);
    render_states(
        &mut out,
        "nurture_messages",
        "Messages by delivery state.",
        MessageState::ALL,
        &messages,
    );
    render_states(
        &mut out,
        "nurture_enrollments",
        "Enrollments by state.",
        EnrollmentState::ALL,
        &enrollments,
    );
    out.push_str(
        "# HELP nurture_queue_depth Work due now: queued or deferred messages due, and active enrollments whose next step is due.\n\
         # TYPE nurture_queue_depth gauge\n",
    );
    out.push_str(&format!("nurture_queue_depth {due}\n"));
    state.metrics.render(&mut out);
    crate::forms::render_metrics(&state, &mut out).await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        out,
    )
        .into_response()
}
