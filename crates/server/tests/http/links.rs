//! `/u/TOKEN`, `/o/TOKEN`, `/c/TOKEN`: unsubscribe, opens and clicks.

use nurture_store::{ContactStatus, EnrollmentState};
use nurture_token::{Claim, Signer};

use crate::support::{CAMPAIGN, STEP, TestApp, ms, spawn_app};

const NOW: &str = "2025-03-01T09:00:00Z";

async fn status(app: &TestApp, contact_id: i64) -> (ContactStatus, Option<i64>) {
    let mut tx = app.store.begin().await.unwrap();
    let c = tx.contact(contact_id).await.unwrap().unwrap();
    (c.status, c.status_changed_at)
}

async fn enrollment_state(app: &TestApp, id: i64) -> (String, Option<String>) {
    let mut tx = app.store.begin().await.unwrap();
    let e = tx.enrollment(id).await.unwrap().unwrap();
    (e.state.to_string(), e.exit_reason)
}

#[tokio::test]
async fn a_get_of_the_unsubscribe_link_shows_a_button_and_changes_nothing() {
    let app = spawn_app(None).await;
    let s = app.seed("ana@example.com", ms(NOW)).await;
    let link = app.link("u", &Claim::Unsubscribe(s.message_id));

    for _ in 0..3 {
        let r = app.get(&link).await;
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        let html = r.text();
        assert!(html.contains("<form method=\"post\">"), "{html}");
        assert!(html.contains(">Unsubscribe</button>"), "{html}");
        assert!(!html.contains("src="), "no external resources: {html}");
        assert!(!html.contains("href="), "no external resources: {html}");
    }

    assert_eq!(
        status(&app, s.contact_id).await.0,
        ContactStatus::Subscribed
    );
    assert_eq!(enrollment_state(&app, s.enrollment_id).await.0, "active");
}

async fn one_click(app: &TestApp, link: &str, content_type: &str, body: &str) {
    let r = app
        .request(
            "POST",
            link,
            &[("Content-Type", content_type)],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("location"), None);
    assert!(r.text().contains("You are unsubscribed"), "{}", r.text());
}

async fn assert_unsubscribed_once(app: &TestApp, contact_id: i64, enrollment_id: i64) {
    let mut tx = app.store.begin().await.unwrap();
    let c = tx.contact(contact_id).await.unwrap().unwrap();
    assert_eq!(c.status, ContactStatus::Unsubscribed);
    assert_eq!(
        c.status_reason.as_deref(),
        Some("unsubscribe link in welcome/intro")
    );
    let e = tx.enrollment(enrollment_id).await.unwrap().unwrap();
    assert_eq!(e.state, EnrollmentState::Exited);
    assert_eq!(e.exit_reason.as_deref(), Some("unsubscribed"));
    assert!(
        tx.had_email_event(enrollment_id, "email.unsubscribed", STEP)
            .await
            .unwrap()
    );
    let stats = tx.campaign_stats(CAMPAIGN).await.unwrap();
    let step = stats.steps.iter().find(|st| st.id == STEP).unwrap();
    assert_eq!(step.unsubscribed, 1);
    assert_eq!(stats.exited.get("unsubscribed"), Some(&1));
    // Recorded as processed: triggers never see it.
    assert!(tx.claim_new_events(i64::MAX, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_one_click_post_unsubscribes_and_repeating_it_is_harmless() {
    let app = spawn_app(None).await;
    let s = app.seed("ana@example.com", ms(NOW)).await;
    let link = app.link("u", &Claim::Unsubscribe(s.message_id));

    one_click(
        &app,
        &link,
        "application/x-www-form-urlencoded",
        "List-Unsubscribe=One-Click",
    )
    .await;
    assert_unsubscribed_once(&app, s.contact_id, s.enrollment_id).await;
    let changed_at = status(&app, s.contact_id).await.1;

    one_click(
        &app,
        &link,
        "application/x-www-form-urlencoded",
        "List-Unsubscribe=One-Click",
    )
    .await;
    assert_eq!(status(&app, s.contact_id).await.1, changed_at, "unchanged");
    assert_unsubscribed_once(&app, s.contact_id, s.enrollment_id).await;

    // Once unsubscribed, the page says so instead of offering the button again.
    let r = app.get(&link).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("You are unsubscribed"));
}

#[tokio::test]
async fn a_multipart_one_click_post_unsubscribes() {
    let app = spawn_app(None).await;
    let s = app.seed("ana@example.com", ms(NOW)).await;
    let link = app.link("u", &Claim::Unsubscribe(s.message_id));
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n";

    one_click(&app, &link, "multipart/form-data; boundary=XyZ", body).await;

    assert_unsubscribed_once(&app, s.contact_id, s.enrollment_id).await;
}

#[tokio::test]
async fn the_unsubscribe_link_of_a_test_email_changes_nothing() {
    let app = spawn_app(None).await;
    let s = app.seed("ana@example.com", ms(NOW)).await;
    let link = app.link("u", &Claim::TestUnsubscribe(0));

    let page = app.get(&link).await;
    let post = app
        .request("POST", &link, &[], b"List-Unsubscribe=One-Click")
        .await;

    for r in [page, post] {
        assert_eq!(r.status, 200);
        assert!(r.text().contains("This was a test email"), "{}", r.text());
    }
    assert_eq!(
        status(&app, s.contact_id).await.0,
        ContactStatus::Subscribed
    );
}

/// Tokens that must not work: forged, tampered, truncated, of another kind.
fn bad_tokens(app: &TestApp, message_id: i64, kind: &str) -> Vec<String> {
    let other = Signer::new("another-secret");
    let claim = match kind {
        "u" => Claim::Unsubscribe(message_id),
        "o" => Claim::Open(message_id),
        _ => Claim::Click(message_id, "https://example.com/".into()),
    };
    let good = app.signer.sign(&claim);
    let mut tampered = good.clone().into_bytes();
    tampered[2] = if tampered[2] == b'A' { b'B' } else { b'A' };
    let wrong_kind = match kind {
        "u" => Claim::Open(message_id),
        _ => Claim::Unsubscribe(message_id),
    };
    vec![
        other.sign(&claim),
        String::from_utf8(tampered).unwrap(),
        good[..good.len() - 3].to_string(),
        good.split('.').next().unwrap().to_string(),
        app.signer.sign(&wrong_kind),
        "nonsense".into(),
        // Message ids are not enumerable: a valid-looking token for id + 1 is not signed.
        other.sign(&match kind {
            "u" => Claim::Unsubscribe(message_id + 1),
            "o" => Claim::Open(message_id + 1),
            _ => Claim::Click(message_id + 1, "https://evil.example/".into()),
        }),
    ]
}

#[tokio::test]
async fn forged_or_tampered_tokens_get_404_and_go_nowhere() {
    let app = spawn_app(None).await;
    let s = app.seed("ana@example.com", ms(NOW)).await;

    for kind in ["u", "o", "c"] {
        for token in bad_tokens(&app, s.message_id, kind) {
            let path = format!("/{kind}/{token}");
            let mut responses = vec![app.get(&path).await];
            if kind == "u" {
                responses.push(
                    app.request("POST", &path, &[], b"List-Unsubscribe=One-Click")
                        .await,
                );
            }
            for r in responses {
                assert_eq!(r.status, 404, "{path}");
                assert_eq!(r.header("location"), None, "{path}");
            }
        }
    }

    assert_eq!(
        status(&app, s.contact_id).await.0,
        ContactStatus::Subscribed
    );
    let mut tx = app.store.begin().await.unwrap();
    assert!(tx.claim_new_events(i64::MAX, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn tokens_for_a_message_that_does_not_exist_get_404() {
    let app = spawn_app(None).await;
    let s = app.seed("ana@example.com", ms(NOW)).await;
    let missing = s.message_id + 100;

    let u = app.link("u", &Claim::Unsubscribe(missing));
    assert_eq!(app.get(&u).await.status, 404);
    assert_eq!(app.request("POST", &u, &[], b"").await.status, 404);
    assert_eq!(
        app.get(&app.link("o", &Claim::Open(missing))).await.status,
        404
    );
    let c = app
        .get(&app.link("c", &Claim::Click(missing, "https://example.com/".into())))
        .await;
    assert_eq!(c.status, 404);
    assert_eq!(c.header("location"), None);
}

#[tokio::test]
async fn a_click_redirects_to_exactly_the_original_link_and_is_recorded() {
    let app = spawn_app(None).await;
    let s = app.seed("ana@example.com", ms(NOW)).await;
    let url = "https://example.com/pricing?plan=pro&utm_source=nurture%20mail&x=%2F#faq";

    let r = app
        .get(&app.link("c", &Claim::Click(s.message_id, url.into())))
        .await;

    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some(url));
    let mut tx = app.store.begin().await.unwrap();
    assert!(
        tx.had_email_event(s.enrollment_id, "email.clicked", STEP)
            .await
            .unwrap()
    );
    let events = tx.claim_new_events(i64::MAX, 100).await.unwrap();
    assert_eq!(events.len(), 1, "unprocessed, so triggers see it");
    let e = &events[0];
    assert_eq!(e.name, "email.clicked");
    assert_eq!(e.contact_id, s.contact_id);
    assert_eq!(e.properties["campaign"], CAMPAIGN);
    assert_eq!(e.properties["step"], STEP);
    assert_eq!(e.properties["url"], url);
}

#[tokio::test]
async fn a_signed_click_to_a_non_http_link_goes_nowhere() {
    let app = spawn_app(None).await;
    let s = app.seed("ana@example.com", ms(NOW)).await;

    for url in [
        "javascript:alert(1)",
        "//evil.example/",
        "data:text/html,hi",
    ] {
        let r = app
            .get(&app.link("c", &Claim::Click(s.message_id, url.into())))
            .await;
        assert_eq!(r.status, 404, "{url}");
        assert_eq!(r.header("location"), None, "{url}");
    }
}

#[tokio::test]
async fn the_open_pixel_is_a_gif_and_records_an_open() {
    let app = spawn_app(None).await;
    let s = app.seed("ana@example.com", ms(NOW)).await;

    let r = app.get(&app.link("o", &Claim::Open(s.message_id))).await;

    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/gif"));
    assert!(r.header("cache-control").unwrap().contains("no-store"));
    assert_eq!(r.body.len(), 43);
    assert!(r.body.starts_with(b"GIF89a"));
    let mut tx = app.store.begin().await.unwrap();
    assert!(
        tx.had_email_event(s.enrollment_id, "email.opened", STEP)
            .await
            .unwrap()
    );
    let events = tx.claim_new_events(i64::MAX, 100).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].name, "email.opened");
    assert_eq!(events[0].properties["campaign"], CAMPAIGN);
    assert_eq!(events[0].properties["step"], STEP);
    assert!(events[0].properties.contains_key("message_id"));
}
