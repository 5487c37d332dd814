//! `GET /healthz` and `GET /metrics`: what an operator's load balancer and Prometheus ask.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::metrics::render_states;
use crate::{AppState, now_ms};

/// Every message state (SPEC §6), reported even when no message is in it.
const MESSAGE_STATES: [&str; 8] = [
    "queued",
    "sending",
    "sent",
    "deferred",
    "failed",
    "bounced",
    "suppressed",
    "unknown",
];

/// Every enrollment state.
const ENROLLMENT_STATES: [&str; 4] = ["active", "completed", "exited", "failed"];

/// `GET /healthz`: 200 when the database answers, 503 when it does not.
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    if state.store.ping().await {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the database does not answer\n",
        )
            .into_response()
    }
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
        &MESSAGE_STATES,
        &messages,
    );
    render_states(
        &mut out,
        "nurture_enrollments",
        "Enrollments by state.",
        &ENROLLMENT_STATES,
        &enrollments,
    );
    out.push_str(
        "# HELP nurture_queue_depth Work due now: queued or deferred messages due, and active enrollments whose next step is due.\n\
         # TYPE nurture_queue_depth gauge\n",
    );
    out.push_str(&format!("nurture_queue_depth {due}\n"));
    state.metrics.render(&mut out);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        out,
    )
        .into_response()
}
