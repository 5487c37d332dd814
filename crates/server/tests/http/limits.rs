//! What one client may cost the server: header and request timeouts, body limits on every
//! POST route, the connection limit, and `/healthz` reporting the daemon's own failures.

use std::time::Duration;

use nurture_server::Limits;
use nurture_token::Claim;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{API_KEY, TestApp, ms, spawn_app, spawn_app_with};

/// Far longer than any limit under test: reaching it means the server never acted.
const CLIENT_PATIENCE: Duration = Duration::from_secs(30);

/// Reads until the server closes the connection; returns what it sent. Panics if it keeps
/// the connection open past [`CLIENT_PATIENCE`].
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(CLIENT_PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {CLIENT_PATIENCE:?}; it sent {:?}",
        String::from_utf8_lossy(&got)
    );
    got
}

fn short(limits: Limits) -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        ..limits
    }
}

#[tokio::test]
async fn clients_that_send_no_header_or_half_of_one_are_closed_after_the_header_timeout() {
    let app = spawn_app_with(None, short(Limits::default())).await;

    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();

    for (what, stream) in [("silent", &mut silent), ("half a header", &mut half)] {
        let got = read_until_closed(stream).await;
        assert!(
            !String::from_utf8_lossy(&got).contains("200 OK"),
            "{what}: {}",
            String::from_utf8_lossy(&got)
        );
    }
    // The server itself is fine.
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(None, short(Limits::default())).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut s).await;
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn a_body_that_never_comes_gets_503_after_the_request_timeout() {
    let app = spawn_app_with(Some(API_KEY), short(Limits::default())).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"email\": "
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let got = String::from_utf8_lossy(&read_until_closed(&mut s).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    // Nothing was stored.
    let mut tx = app.store.begin().await.unwrap();
    assert!(
        tx.contact_by_email("a@x.example").await.unwrap().is_none(),
        "nothing stored"
    );
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn oversized_bodies_get_413_on_every_post_route() {
    let app: TestApp = spawn_app(Some(API_KEY)).await;
    let seeded = app
        .seed("big@example.com", ms("2025-03-01T09:00:00Z"))
        .await;
    let api_limit = Limits::default().api_body;
    let page_limit = Limits::default().page_body;
    let json = |n: usize| format!(r#"{{"email": "a@x.example", "x": "{}"}}"#, "y".repeat(n));

    for path in ["/api/events", "/api/contacts"] {
        let r = app.post_json(path, &json(api_limit)).await;
        assert_eq!(r.status, 413, "{path}: {}", r.text());
        // Just under the limit is read (and refused for its content, not its size).
        let r = app.post_json(path, &json(api_limit - 100)).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    let unsubscribe = app.link("u", &Claim::Unsubscribe(seeded.message_id));
    let body = format!("List-Unsubscribe=One-Click&x={}", "y".repeat(page_limit));
    let r = app
        .request(
            "POST",
            &unsubscribe,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    // Refused before anything happened: the contact is still subscribed.
    let mut tx = app.store.begin().await.unwrap();
    let contact = tx
        .contact_by_email("big@example.com")
        .await
        .unwrap()
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(contact.status, nurture_store::ContactStatus::Subscribed);
    // A GET route with a body is refused the same way.
    let r = app
        .request(
            "GET",
            "/healthz",
            &[],
            "y".repeat(page_limit + 1).as_bytes(),
        )
        .await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn the_connection_past_the_limit_is_closed_unanswered_until_one_frees() {
    let limits = Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let app = spawn_app_with(None, limits).await;
    let mut idle = vec![
        TcpStream::connect(app.addr).await.unwrap(),
        TcpStream::connect(app.addr).await.unwrap(),
    ];

    // Accepted after the two before it (the listen queue is first come, first served), so
    // the server is full when it arrives.
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let got = read_until_closed(&mut third).await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));

    // One idle client goes away: its slot is served again.
    drop(idle.pop());
    let deadline = tokio::time::Instant::now() + CLIENT_PATIENCE;
    loop {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        let _ = s
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let got = read_until_closed(&mut s).await;
        if String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no slot came free after a client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(idle);
}

#[tokio::test]
async fn healthz_is_503_while_the_daemons_last_round_failed() {
    let app = spawn_app(None).await;
    app.health.round_failed("the database went away");
    let r = app.get("/healthz").await;
    assert_eq!(r.status, 503);
    assert!(
        !r.text().contains("went away"),
        "the cause stays in the log: {}",
        r.text()
    );
    app.health.round_succeeded();
    assert_eq!(app.get("/healthz").await.status, 200);
}
