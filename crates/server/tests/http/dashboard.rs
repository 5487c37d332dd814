//! `/dashboard`: off without a password, the session cookie's attributes, a forged or
//! expired cookie refused, the sign-in limit.

use std::sync::Arc;

use nurture_server::{Dashboard, Limits};
use nurture_token::Claim;

use crate::support::{Response, TestApp, spawn_app, spawn_app_dashboard};

const PASSWORD: &str = "correct horse battery staple";
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

async fn app(secure: bool) -> TestApp {
    spawn_app_dashboard(
        None,
        Limits::default(),
        Some(Arc::new(Dashboard::new(PASSWORD, secure))),
    )
    .await
}

async fn login(app: &TestApp, password: &str) -> Response {
    let body = format!(
        "password={}&next=%2Fdashboard%2Fforms",
        password.replace(' ', "+")
    );
    app.request("POST", "/dashboard/login", &[FORM], body.as_bytes())
        .await
}

/// The `name=value` of the session cookie set by a response.
fn session(r: &Response) -> String {
    let c = r.header("set-cookie").expect("a Set-Cookie header");
    c.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn without_a_password_every_dashboard_route_is_404() {
    let app = spawn_app(None).await;
    for path in ["/dashboard", "/dashboard/contacts", "/dashboard/time.js"] {
        assert_eq!(app.get(path).await.status, 404, "{path}");
    }
    let r = app
        .request("POST", "/dashboard/login", &[FORM], b"password=x")
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn the_right_password_sets_a_strict_http_only_cookie_that_opens_the_pages() {
    let app = app(false).await;
    // No cookie: the login form, and no data.
    let r = app.get("/dashboard/forms").await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("name=\"password\""), "{}", r.text());
    assert!(!r.text().contains("No forms yet"));

    let r = login(&app, PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/dashboard/forms"));
    let set = r.header("set-cookie").unwrap().to_string();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/dashboard",
        "Max-Age=43200",
    ] {
        assert!(set.contains(attribute), "{attribute} missing: {set}");
    }
    assert!(!set.contains("Secure"), "plain http: no Secure: {set}");

    let cookie = session(&r);
    let r = app
        .request("GET", "/dashboard/forms", &[("Cookie", &cookie)], b"")
        .await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("No forms yet"), "{}", r.text());
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");

    // Logout clears the cookie.
    let r = app
        .request("POST", "/dashboard/logout", &[("Cookie", &cookie)], b"")
        .await;
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn an_https_base_url_marks_the_cookie_secure() {
    let app = app(true).await;
    let r = login(&app, PASSWORD).await;
    assert_eq!(r.status, 303);
    assert!(
        r.header("set-cookie").unwrap().contains("; Secure"),
        "{:?}",
        r.header("set-cookie")
    );
}

#[tokio::test]
async fn forged_expired_and_other_tokens_are_not_sessions() {
    let app = app(false).await;
    let expired = app.signer.sign(&Claim::Session { expires: 1 });
    let other_kind = app.signer.sign(&Claim::Unsubscribe(1));
    let foreign = nurture_token::Signer::new("another secret").sign(&Claim::Session {
        expires: i64::MAX / 2000,
    });
    for token in [expired, other_kind, foreign, "garbage".to_string()] {
        let cookie = format!("nurture_session={token}");
        let r = app
            .request("GET", "/dashboard/forms", &[("Cookie", &cookie)], b"")
            .await;
        assert!(!r.text().contains("No forms yet"), "{token} let in");
        assert!(r.text().contains("name=\"password\""));
    }
}

#[tokio::test]
async fn wrong_passwords_are_refused_and_the_sixth_is_rate_limited_even_when_right() {
    let app = app(false).await;
    for _ in 0..5 {
        let r = login(&app, "guess").await;
        assert_eq!(r.status, 401);
        assert!(r.header("set-cookie").is_none());
        assert!(r.text().contains("The password is wrong"), "{}", r.text());
    }
    let r = login(&app, "guess").await;
    assert_eq!(r.status, 401);
    // Locked out now: even the right password waits, with Retry-After.
    let r = login(&app, PASSWORD).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("set-cookie").is_none());
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}
