//! `/f/FORM_ID` and `/f/confirm/TOKEN`: double opt-in (expiry, repeats, who is asked again),
//! CORS limited to the form's origins, the proof of work of JSON posts, and bad input
//! answered 4xx with a clear message, never 5xx.

use nurture_campaign::{SourceFile, parse_form};
use nurture_server::{FormSettings, Forms, solve, stamp_for};
use nurture_store::{ContactStatus, Upsert};
use nurture_token::Claim;

use crate::support::{TestApp, spawn_app_with_forms};

const FORM: &str = r#"title: Get the guide
fields:
  - { name: email, type: email, required: true, label: Work email }
  - { name: first_name, label: First name, max_length: 20 }
  - { name: seats, type: number }
event: lead.captured
properties: { source: guide }
tags: [guide]
double_opt_in: { send: forms/confirm, subject: "Please confirm", expires: 1d }
consent: "Send me the guide."
allowed_origins: ["https://www.acme.example"]
"#;

const URLENCODED: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

#[allow(clippy::disallowed_methods)] // the server stamps pages with the wall clock
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn app_with(settings: FormSettings) -> TestApp {
    let form = parse_form(SourceFile::new("forms/guide.yaml", FORM), "guide")
        .unwrap()
        .form;
    spawn_app_with_forms(Forms::new(vec![form], settings)).await
}

async fn app() -> TestApp {
    app_with(FormSettings::default()).await
}

/// A stamp from a page served ten seconds ago: past the minimum fill time.
fn stamp(app: &TestApp) -> String {
    stamp_for(&app.signer, "guide", now_ms() - 10_000)
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn submit(app: &TestApp, email: &str) -> crate::support::Response {
    let body = format!(
        "email={}&first_name=Ana&nurture_ts={}",
        encode(email),
        encode(&stamp(app))
    );
    app.request("POST", "/f/guide", &[URLENCODED], body.as_bytes())
        .await
}

/// The confirmation emails queued now, claimed as the daemon would: their submission ids.
async fn queued(app: &TestApp) -> Vec<i64> {
    let mut tx = app.store.begin().await.unwrap();
    let now = now_ms() + 1000;
    let mails = tx.claim_form_mail(now, now + 60_000, 100).await.unwrap();
    for m in &mails {
        tx.finish_form_mail(
            m.id,
            &nurture_store::MailOutcome::Sent {
                message_id: "<x@y>".into(),
            },
            now,
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    mails.iter().map(|m| m.id).collect()
}

async fn contact(app: &TestApp, email: &str) -> Option<nurture_store::Contact> {
    let mut tx = app.store.begin().await.unwrap();
    let c = tx.contact_by_email(email).await.unwrap();
    tx.rollback().await.unwrap();
    c
}

async fn had_event(app: &TestApp, id: i64) -> bool {
    let mut tx = app.store.begin().await.unwrap();
    let had = tx
        .had_event(id, "lead.captured", None, i64::MAX)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    had
}

#[tokio::test]
async fn a_confirmation_link_confirms_only_by_post_expires_and_offers_a_new_one() {
    let app = app_with(FormSettings {
        resend_after_ms: 0,
        ..FormSettings::default()
    })
    .await;
    let r = submit(&app, "ana@acme.example").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ana = contact(&app, "ana@acme.example").await.unwrap();
    assert_eq!(ana.status, ContactStatus::Pending);
    let ids = queued(&app).await;
    assert_eq!(ids.len(), 1);

    // Expired: the page offers a new link; confirming does nothing.
    let expired = app.link(
        "f/confirm",
        &Claim::Confirm {
            id: ids[0],
            expires: now_ms() / 1000 - 1,
        },
    );
    let page = app.get(&expired).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("This link has expired"),
        "{}",
        page.text()
    );
    let r = app
        .request("POST", &expired, &[URLENCODED], b"confirm=yes")
        .await;
    assert!(r.text().contains("This link has expired"));
    assert_eq!(
        contact(&app, "ana@acme.example").await.unwrap().status,
        ContactStatus::Pending
    );
    let r = app
        .request("POST", &expired, &[URLENCODED], b"resend=yes")
        .await;
    assert!(
        r.text().contains("A new link is on its way"),
        "{}",
        r.text()
    );
    assert_eq!(queued(&app).await, ids, "the confirmation is queued again");

    // Valid: a GET confirms nothing, the POST does, a repeat is harmless.
    let valid = app.link(
        "f/confirm",
        &Claim::Confirm {
            id: ids[0],
            expires: now_ms() / 1000 + 3600,
        },
    );
    let page = app.get(&valid).await;
    assert!(page.text().contains("Confirm my email address"));
    assert_eq!(
        contact(&app, "ana@acme.example").await.unwrap().status,
        ContactStatus::Pending
    );
    assert!(!had_event(&app, ana.id).await);
    for _ in 0..2 {
        let r = app
            .request("POST", &valid, &[URLENCODED], b"confirm=yes")
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let ana = contact(&app, "ana@acme.example").await.unwrap();
    assert_eq!(ana.status, ContactStatus::Subscribed);
    assert_eq!(ana.tags, ["guide"]);
    assert_eq!(ana.attributes["first_name"], "Ana");
    assert!(had_event(&app, ana.id).await);

    // A forged token goes nowhere.
    assert_eq!(app.get("/f/confirm/abc.def").await.status, 404);
}

#[tokio::test]
async fn a_repeat_submission_resends_at_most_once_an_hour_and_a_subscriber_is_not_asked_again() {
    let app = app().await;
    assert_eq!(submit(&app, "ana@acme.example").await.status, 200);
    assert_eq!(submit(&app, "ANA@acme.example").await.status, 200);
    assert_eq!(
        queued(&app).await.len(),
        1,
        "one confirmation for two submissions"
    );

    // Already subscribed: the event is recorded at once, no confirmation.
    let mut tx = app.store.begin().await.unwrap();
    let (bo, _) = tx
        .upsert_contact(
            &Upsert {
                email: "bo@acme.example".into(),
                ..Upsert::default()
            },
            now_ms(),
        )
        .await
        .unwrap();
    // Unsubscribed: asked to confirm, and stays unsubscribed until then.
    let (cy, _) = tx
        .upsert_contact(
            &Upsert {
                email: "cy@acme.example".into(),
                ..Upsert::default()
            },
            now_ms(),
        )
        .await
        .unwrap();
    tx.set_contact_status(cy.id, ContactStatus::Unsubscribed, "test", now_ms())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(submit(&app, "bo@acme.example").await.status, 200);
    assert!(had_event(&app, bo.id).await);
    assert_eq!(submit(&app, "cy@acme.example").await.status, 200);
    assert_eq!(
        contact(&app, "cy@acme.example").await.unwrap().status,
        ContactStatus::Unsubscribed
    );
    assert!(!had_event(&app, cy.id).await);
    assert_eq!(
        queued(&app).await.len(),
        1,
        "only the unsubscribed contact is asked"
    );
}

#[tokio::test]
async fn cors_is_limited_to_the_forms_origins_and_scripts_must_prove_work() {
    let app = app().await;
    let allowed = ("Origin", "https://www.acme.example");
    let other = ("Origin", "https://evil.example");
    let json = ("Content-Type", "application/json");

    let r = app
        .request(
            "OPTIONS",
            "/f/guide",
            &[allowed, ("Access-Control-Request-Method", "POST")],
            b"",
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("https://www.acme.example")
    );
    let r = app.request("OPTIONS", "/f/guide", &[other], b"").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);

    // A script on another site fetches a challenge, then must solve it.
    let c = app
        .request("GET", "/f/guide/challenge", &[allowed], b"")
        .await;
    assert_eq!(
        c.header("Access-Control-Allow-Origin"),
        Some("https://www.acme.example")
    );
    let c = c.json();
    let ts = c["nurture_ts"].as_str().unwrap().to_string();
    let difficulty = c["difficulty"].as_u64().unwrap() as u32;
    let body = serde_json::json!({ "email": "ana@acme.example", "nurture_ts": ts }).to_string();
    let r = app
        .request("POST", "/f/guide", &[allowed, json], body.as_bytes())
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("proof of work")
    );
    let pow = solve(&ts, difficulty);
    let body =
        serde_json::json!({ "email": "ana@acme.example", "nurture_ts": ts, "nurture_pow": pow })
            .to_string();
    let r = app
        .request("POST", "/f/guide", &[other, json], body.as_bytes())
        .await;
    assert_eq!(r.status, 403);
    assert!(contact(&app, "ana@acme.example").await.is_none());
    let r = app
        .request("POST", "/f/guide", &[allowed, json], body.as_bytes())
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["status"], "pending");
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("https://www.acme.example")
    );
    assert_eq!(
        contact(&app, "ana@acme.example").await.unwrap().status,
        ContactStatus::Pending
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_never_a_5xx_and_stores_nothing() {
    let app = app().await;
    let raw = stamp(&app);
    let ts = encode(&raw);
    let json = ("Content-Type", "application/json");
    type Case<'a> = (Vec<(&'a str, &'a str)>, String, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![URLENCODED],
            format!("email=not-an-address&nurture_ts={ts}"),
            400,
            "Work email: `not-an-address` is not a valid address",
        ),
        (
            vec![URLENCODED],
            format!("first_name=Ana&nurture_ts={ts}"),
            400,
            "Work email is required",
        ),
        (
            vec![URLENCODED],
            format!(
                "email=a%40b.example&first_name={}&nurture_ts={ts}",
                "x".repeat(21)
            ),
            400,
            "First name is longer than 20 characters",
        ),
        (
            vec![URLENCODED],
            format!("email=a%40b.example&seats=many&nurture_ts={ts}"),
            400,
            "Seats must be a number",
        ),
        (
            vec![URLENCODED],
            "email=a%40b.example".to_string(),
            400,
            "did not come from this site",
        ),
        (
            vec![json],
            "{\"email\": ".to_string(),
            400,
            "body is not valid JSON",
        ),
        (
            vec![json],
            format!(
                "{{\"email\": \"a@b.example\", \"frist_name\": \"x\", \"nurture_ts\": \"{raw}\", \"nurture_pow\": \"{}\"}}",
                solve(&raw, 12)
            ),
            400,
            "unknown field `frist_name`: did you mean `first_name`?",
        ),
        (
            vec![("Content-Type", "text/plain")],
            "hello".to_string(),
            400,
            "body is `text/plain`",
        ),
        (
            vec![("Content-Type", "multipart/form-data; boundary=B")],
            "--B\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nx".to_string(),
            400,
            "closing boundary",
        ),
    ];
    for (headers, body, status, message) in cases {
        let r = app
            .request("POST", "/f/guide", &headers, body.as_bytes())
            .await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        let text = r.text().replace("&#39;", "'");
        assert!(
            text.contains(message),
            "{body}: expected {message:?} in {text}"
        );
    }
    assert_eq!(app.get("/f/nope").await.status, 404);
    assert_eq!(
        app.request("POST", "/f/nope", &[URLENCODED], b"email=a%40b.example")
            .await
            .status,
        404
    );
    assert!(contact(&app, "a@b.example").await.is_none());

    // Multipart from an embedded form works.
    let body = format!(
        "--B\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nmp@b.example\r\n--B\r\nContent-Disposition: form-data; name=\"nurture_ts\"\r\n\r\n{}\r\n--B--\r\n",
        stamp(&app)
    );
    let r = app
        .request(
            "POST",
            "/f/guide",
            &[("Content-Type", "multipart/form-data; boundary=B")],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(contact(&app, "mp@b.example").await.is_some());
}

#[tokio::test]
async fn the_hosted_page_is_accessible_and_works_without_javascript() {
    let app = app().await;
    let page = app.get("/f/guide").await;
    assert_eq!(page.status, 200);
    let html = page.text();
    for needle in [
        "<html lang=\"en\">",
        "<title>Get the guide</title>",
        "name=\"viewport\"",
        "<label for=\"f-email\">",
        "type=\"email\" id=\"f-email\" name=\"email\"",
        "method=\"post\" action=\"/f/guide\"",
        "Send me the guide.",
        "name=\"website\" tabindex=\"-1\"",
    ] {
        assert!(html.contains(needle), "{needle} missing in {html}");
    }
    let csp = page.header("Content-Security-Policy").unwrap();
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
}
