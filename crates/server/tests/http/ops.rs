//! `/healthz`, `/metrics`, unknown routes and graceful shutdown.

use std::time::Duration;

use nurture_token::Claim;

use crate::support::{API_KEY, TestApp, ms, spawn_app};

fn line(body: &str, expected: &str) {
    assert!(
        body.lines().any(|l| l == expected),
        "missing `{expected}` in\n{body}"
    );
}

#[tokio::test]
async fn healthz_answers_while_the_database_does() {
    let app = spawn_app(None).await;

    let r = app.get("/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text().trim(), "ok");

    app.store.close().await;
    assert_eq!(app.get("/healthz").await.status, 503);
}

#[tokio::test]
async fn metrics_report_the_queue_the_enrollments_and_the_sends() {
    let app: TestApp = spawn_app(None).await;
    // Due long ago: its enrollment and its message both wait now.
    let past = app
        .seed("due@example.com", ms("2025-03-01T09:00:00Z"))
        .await;
    // Due in 2100: counted by state, not in the queue depth.
    app.seed("later@example.com", ms("2100-01-01T00:00:00Z"))
        .await;
    // A third contact unsubscribes: its enrollment exits, its waiting mail is suppressed.
    let gone = app
        .seed("gone@example.com", ms("2100-01-01T00:00:00Z"))
        .await;
    let r = app
        .request(
            "POST",
            &app.link("u", &Claim::Unsubscribe(gone.message_id)),
            &[],
            b"List-Unsubscribe=One-Click",
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(past.message_id > 0);
    app.metrics.observe_send(Duration::from_millis(20), "2xx");
    app.metrics.observe_send(Duration::from_millis(300), "2xx");
    app.metrics.observe_send(Duration::from_millis(1500), "4xx");
    app.metrics.observe_send(Duration::from_secs(12), "error");

    let r = app.get("/metrics").await;

    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let body = r.text();
    for expected in [
        "# TYPE nurture_messages gauge",
        "nurture_messages{state=\"queued\"} 2",
        "nurture_messages{state=\"suppressed\"} 1",
        "nurture_messages{state=\"sent\"} 0",
        "nurture_messages{state=\"deferred\"} 0",
        "nurture_messages{state=\"failed\"} 0",
        "nurture_messages{state=\"unknown\"} 0",
        "nurture_enrollments{state=\"active\"} 2",
        "nurture_enrollments{state=\"exited\"} 1",
        "nurture_enrollments{state=\"completed\"} 0",
        "nurture_queue_depth 2",
        "# TYPE nurture_send_latency_seconds histogram",
        "nurture_send_latency_seconds_bucket{le=\"0.01\"} 0",
        "nurture_send_latency_seconds_bucket{le=\"0.025\"} 1",
        "nurture_send_latency_seconds_bucket{le=\"0.5\"} 2",
        "nurture_send_latency_seconds_bucket{le=\"2.5\"} 3",
        "nurture_send_latency_seconds_bucket{le=\"10\"} 3",
        "nurture_send_latency_seconds_bucket{le=\"+Inf\"} 4",
        "nurture_send_latency_seconds_sum 13.82",
        "nurture_send_latency_seconds_count 4",
        "# TYPE nurture_smtp_replies_total counter",
        "nurture_smtp_replies_total{class=\"2xx\"} 2",
        "nurture_smtp_replies_total{class=\"4xx\"} 1",
        "nurture_smtp_replies_total{class=\"5xx\"} 0",
        "nurture_smtp_replies_total{class=\"error\"} 1",
    ] {
        line(&body, expected);
    }
    // Every sample line is `name{labels} value` or `name value`, with a numeric value.
    for l in body.lines().filter(|l| !l.starts_with('#')) {
        let value = l.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{l}");
    }
}

#[tokio::test]
async fn unknown_routes_get_404() {
    let app = spawn_app(Some(API_KEY)).await;
    assert_eq!(app.get("/").await.status, 404);
    assert_eq!(app.get("/u/").await.status, 404);
    // The API says nothing, not even which methods exist, without the key.
    assert_eq!(app.get("/api/events").await.status, 401);
    let auth = format!("Bearer {API_KEY}");
    let r = app
        .request("GET", "/api/events", &[("Authorization", &auth)], b"")
        .await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn serve_returns_when_shutdown_completes() {
    let app = spawn_app(None).await;
    assert_eq!(app.get("/healthz").await.status, 200);
    tokio::time::timeout(Duration::from_secs(5), app.shut_down())
        .await
        .expect("serve did not stop")
        .unwrap();
}
