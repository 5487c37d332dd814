//! `POST /api/events` and `POST /api/contacts`.

use std::time::Duration;

use crate::support::{API_KEY, spawn_app};

const LEAD: &str = r#"{"email": "ana@example.com", "name": "lead.captured", "properties": {"ebook": "seo"},
    "attributes": {"first_name": "Ana"}, "occurred_at": "2025-03-01T09:30:00Z", "id": "form-17"}"#;

#[tokio::test]
async fn events_without_the_right_key_get_401() {
    let app = spawn_app(Some(API_KEY)).await;
    let cases: [&[(&str, &str)]; 4] = [
        &[],
        &[("Authorization", "Bearer not-the-key")],
        &[("Authorization", "Basic dGVzdDp0ZXN0")],
        &[("Authorization", API_KEY)],
    ];
    for headers in cases {
        let r = app
            .request("POST", "/api/events", headers, LEAD.as_bytes())
            .await;
        assert_eq!(r.status, 401, "{headers:?}: {}", r.text());
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert!(r.json()["error"].is_string());
    }
    let r = app
        .request(
            "POST",
            "/api/contacts",
            &[("Authorization", "Bearer wrong")],
            b"{}",
        )
        .await;
    assert_eq!(r.status, 401);
    let mut tx = app.store.begin().await.unwrap();
    assert!(
        tx.contact_by_email("ana@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn with_no_api_key_configured_every_call_is_refused() {
    let app = spawn_app(None).await;
    for path in ["/api/events", "/api/contacts"] {
        let r = app.post_json(path, LEAD).await;
        assert_eq!(r.status, 401);
        let error = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            error.starts_with("the ingest API is disabled: set api_key"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn bad_bodies_get_400_naming_the_field() {
    let app = spawn_app(Some(API_KEY)).await;
    let cases = [
        (r#"{"name": "lead.captured"}"#, "`email` is missing"),
        (
            r#"{"email": "ana.example.com", "name": "lead.captured"}"#,
            "`email`: `ana.example.com` is not a valid address: it has no `@`",
        ),
        ("email=ana@example.com", "the body is not valid JSON: "),
        (r#"{"email": "ana@example.com"}"#, "`name` is missing"),
        (
            r#"{"email": "ana@example.com", "name": "x", "properties": "ebook"}"#,
            "`properties` must be a JSON object",
        ),
    ];
    for (body, expected) in cases {
        let r = app.post_json("/api/events", body).await;
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{body}");
        let error = r.json()["error"].as_str().unwrap().to_string();
        assert!(error.starts_with(expected), "{body}: {error}");
    }
    let r = app
        .post_json("/api/contacts", r#"{"email": "x", "tags": ["a"]}"#)
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().starts_with("`email`: "));
}

#[tokio::test]
async fn a_body_over_64_kib_gets_413() {
    let app = spawn_app(Some(API_KEY)).await;
    let big = format!(
        r#"{{"email": "ana@example.com", "name": "lead.captured", "properties": {{"blob": "{}"}}}}"#,
        "x".repeat(70 * 1024)
    );
    let r = app.post_json("/api/events", &big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("64 KiB"));
    let mut tx = app.store.begin().await.unwrap();
    assert!(
        tx.contact_by_email("ana@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_posted_event_is_stored_and_wakes_the_scheduler() {
    let app = spawn_app(Some(API_KEY)).await;

    let r = app.post_json("/api/events", LEAD).await;

    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"status": "accepted"}));
    tokio::time::timeout(Duration::from_secs(1), app.wake.notified())
        .await
        .expect("the scheduler was not woken");
    let mut tx = app.store.begin().await.unwrap();
    let contact = tx
        .contact_by_email("ana@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(contact.attributes["first_name"], "Ana");
    let events = tx.claim_new_events(i64::MAX, 100).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].contact_id, contact.id);
    assert_eq!(events[0].name, "lead.captured");
    assert_eq!(events[0].properties["ebook"], "seo");
    assert_eq!(
        events[0].occurred_at,
        crate::support::ms("2025-03-01T09:30:00Z")
    );
}

#[tokio::test]
async fn a_repeated_event_id_is_a_duplicate_and_changes_nothing() {
    let app = spawn_app(Some(API_KEY)).await;
    assert_eq!(app.post_json("/api/events", LEAD).await.status, 202);

    let again = LEAD.replace("\"Ana\"", "\"Changed\"");
    let r = app.post_json("/api/events", &again).await;

    assert_eq!(r.status, 202);
    assert_eq!(r.json(), serde_json::json!({"status": "duplicate"}));
    let mut tx = app.store.begin().await.unwrap();
    let events = tx.claim_new_events(i64::MAX, 100).await.unwrap();
    assert_eq!(events.len(), 1, "one event row");
    let contact = tx
        .contact_by_email("ana@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(contact.attributes["first_name"], "Ana");
}

#[tokio::test]
async fn contacts_are_upserted() {
    let app = spawn_app(Some(API_KEY)).await;

    let r = app
        .post_json(
            "/api/contacts",
            r#"{"email": "Bo@Example.com", "attributes": {"plan": "free"}, "tags": ["beta"]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"email": "Bo@Example.com", "created": true})
    );

    let r = app
        .post_json(
            "/api/contacts",
            r#"{"email": "bo@example.com", "attributes": {"plan": "pro", "company": "Acme"}, "tags": ["vip"]}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        serde_json::json!({"email": "Bo@Example.com", "created": false})
    );
    let mut tx = app.store.begin().await.unwrap();
    let contact = tx
        .contact_by_email("bo@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(contact.attributes["plan"], "pro");
    assert_eq!(contact.attributes["company"], "Acme");
    assert_eq!(contact.tags, ["beta", "vip"]);
}

/// Hundreds of concurrent posts (group commit): each id is stored once, its repeat is
/// answered `duplicate`, and every 202 is already in the SQLite file as a second
/// connection reads it.
#[tokio::test]
async fn concurrent_events_are_each_stored_once_and_durable_when_answered() {
    let app = std::sync::Arc::new(spawn_app(Some(API_KEY)).await);
    // 30 clients posting 10 each at once: concurrent enough to share batches, and few
    // enough connections that the accept backlog of a loaded machine does not reset them.
    let mut tasks = Vec::new();
    for client in 0..30 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in 0..10 {
                let k = client * 10 + n;
                let (copy, i) = (k / 150, k % 150);
                let body = format!(
                    r#"{{"email": "c{}@example.com", "name": "lead.captured", "id": "form-{i}", "attributes": {{"copy": {copy}}}}}"#,
                    i % 10
                );
                let r = app.post_json("/api/events", &body).await;
                assert_eq!(r.status, 202, "{}", r.text());
                statuses.push(r.json()["status"].as_str().unwrap().to_string());
            }
            statuses
        }));
    }
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for t in tasks {
        for status in t.await.unwrap() {
            *answers.entry(status).or_default() += 1;
        }
    }
    assert_eq!(answers.get("accepted"), Some(&150), "{answers:?}");
    assert_eq!(answers.get("duplicate"), Some(&150), "{answers:?}");

    let second = nurture_store::Store::open(&app.db_url).await.unwrap();
    let mut tx = second.begin().await.unwrap();
    let events = tx.claim_new_events(i64::MAX, 1000).await.unwrap();
    assert_eq!(events.len(), 150, "one row per id");
    for i in 0..10 {
        assert!(
            tx.contact_by_email(&format!("c{i}@example.com"))
                .await
                .unwrap()
                .is_some()
        );
    }
}
