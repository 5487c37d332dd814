//! The bounds on what one client may cost the server: how long it may take to send its
//! headers and to get its request answered, how large a body it may send, and how many
//! connections are served at once.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Bounds that keep idle, slow or greedy clients from exhausting the server. The defaults
/// suit a daemon behind a load balancer or on the open internet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A client must send a request's headers within this time of connecting, or of its
    /// previous response on a kept-alive connection; otherwise the connection is closed
    /// (a slowloris client, or an idle keep-alive connection, holds a slot no longer).
    pub header_read_timeout: Duration,
    /// A request must be answered within this time, reading its body included; otherwise
    /// the answer is 503.
    pub request_timeout: Duration,
    /// Connections served at once; one more is closed at once, unanswered.
    pub max_connections: usize,
    /// The largest body `/api/*` reads (SPEC §8: 64 KiB); larger ones get 413.
    pub api_body: usize,
    /// The largest body every other route reads (an unsubscribe post is a few bytes).
    pub page_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_connections: 512,
            api_body: crate::MAX_BODY,
            page_body: 16 * 1024,
        }
    }
}

/// Answers 413 before reading anything when the declared body is over `limit`. Bodies
/// without a length (chunked) are cut at `limit` by `DefaultBodyLimit` as they are read.
pub(crate) async fn refuse_large(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return crate::ingest::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} KiB", limit / 1024),
        );
    }
    next.run(request).await
}

/// Answers 503 when the request is not answered within `limit`: a client that sends its
/// body slowly, or a database that does not answer, holds the connection no longer.
pub(crate) async fn time_limit(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    // The first segment only: the rest may be a link token.
    let route = request
        .uri()
        .path()
        .split('/')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                route,
                limit_ms = limit.as_millis() as u64,
                "HTTP request timed out"
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONNECTION, "close")],
                "the request took too long; try again later\n",
            )
                .into_response()
        }
    }
}
