//! The few HTML pages a recipient may see. Each is self-contained — inline style, no scripts,
//! no images, fonts or anything else fetched from elsewhere — and is never cached or indexed:
//! an unsubscribe page is personal even though it names nobody.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;\
max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222;line-height:1.5}\
h1{font-size:1.4rem}button{font:inherit;padding:.6rem 1.4rem;border:0;border-radius:.3rem;\
background:#222;color:#fff;cursor:pointer}";

/// A complete page with the headers every page gets.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The page behind an unsubscribe link: a button, because a GET alone must change nothing
/// (mail scanners and link previews fetch every link). The form has no `action`, so it
/// posts to the very URL it was fetched from, token included.
pub(crate) fn unsubscribe_form() -> Response {
    page(
        StatusCode::OK,
        "Unsubscribe",
        "<h1>Unsubscribe</h1>\n\
         <p>Press the button to stop receiving these emails.</p>\n\
         <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\">Unsubscribe</button></form>",
    )
}

/// Shown after the unsubscribe went through, and on every repeat.
pub(crate) fn unsubscribed() -> Response {
    page(
        StatusCode::OK,
        "Unsubscribed",
        "<h1>You are unsubscribed</h1>\n<p>You will not receive these emails any more.</p>",
    )
}

/// Shown by the unsubscribe link of a `nurture test-send` email: nobody is unsubscribed.
pub(crate) fn test_unsubscribe() -> Response {
    page(
        StatusCode::OK,
        "Test email",
        "<h1>This was a test email</h1>\n\
         <p>Its unsubscribe link works only in real campaign emails, so nothing has changed.</p>",
    )
}

/// For links that are not (or no longer) valid, and for unknown paths.
pub(crate) fn not_found_page() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        "<h1>This link is not valid</h1>\n\
         <p>It may have been copied incompletely. Please use the link from the email itself.</p>",
    )
}

/// Fallback for unknown routes.
pub(crate) async fn not_found() -> Response {
    not_found_page()
}

/// When the database failed: nothing is said about why (the log has it).
pub(crate) fn unavailable() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "<h1>Something went wrong</h1>\n<p>Please try again in a few minutes.</p>",
    )
}
