//! The read-only dashboard (SPEC §12) under `/dashboard`, behind one shared password.
//!
//! | route | page |
//! |---|---|
//! | `GET /dashboard` | campaigns with status and totals (the login form until signed in) |
//! | `POST /dashboard/login`, `POST /dashboard/logout` | module `auth`: signed session cookie, brute-force limit |
//! | `GET /dashboard/campaigns/ID?days=N` | the flow picture (inline SVG, module `flow`), counts per step, the funnel of the last N days |
//! | `GET /dashboard/contacts?q=PREFIX&after=KEY` | contact search by address prefix, keyset-paged |
//! | `GET /dashboard/contacts/ID` | what `nurture explain` says about the contact |
//! | `GET /dashboard/forms` | lead-capture forms: submissions, confirmations, refusals |
//!
//! Every page is plain HTML with inline style and works without JavaScript; one small
//! optional script (`/dashboard/time.js`) rewrites the UTC times, which every page prints in
//! `<time datetime>` elements labelled UTC, into the viewer's time zone. With no password
//! configured every dashboard route answers 404, as if it did not exist.

mod auth;
mod flow;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::AppState;

pub use auth::LoginLimiter;

/// How long a session lasts after signing in.
const SESSION_SECONDS: i64 = 12 * 3600;

/// The dashboard's configuration: present only when a password is configured.
pub struct Dashboard {
    password: String,
    secure_cookie: bool,
    limiter: LoginLimiter,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is a secret: never printed.
        f.debug_struct("Dashboard")
            .field("secure_cookie", &self.secure_cookie)
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A dashboard behind `password`. `secure_cookie` marks the session cookie `Secure`
    /// (set it when `base_url` is https, so the cookie never travels in clear text).
    pub fn new(password: impl Into<String>, secure_cookie: bool) -> Self {
        Self {
            password: password.into(),
            secure_cookie,
            limiter: LoginLimiter::default(),
        }
    }
}

/// The dashboard's routes; each answers 404 when no dashboard is configured.
pub(crate) fn routes(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/dashboard", get(pages::campaigns))
        .route("/dashboard/", get(pages::campaigns))
        .route("/dashboard/campaigns/{id}", get(pages::campaign))
        .route("/dashboard/contacts", get(pages::contacts))
        .route("/dashboard/contacts/{id}", get(pages::contact))
        .route("/dashboard/forms", get(pages::forms))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_session,
        ));
    Router::new()
        .merge(signed_in)
        .route("/dashboard/login", post(auth::login))
        .route("/dashboard/logout", post(auth::logout))
        .route("/dashboard/time.js", get(time_script))
        .route_layer(axum::middleware::from_fn_with_state(state, require_enabled))
}

/// 404 for every dashboard route while no password is configured.
async fn require_enabled(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match &state.dashboard {
        Some(d) if !d.password.is_empty() => next.run(request).await,
        _ => crate::pages::not_found_page(),
    }
}

/// The optional script: UTC times into the viewer's time zone. Without it the page shows UTC,
/// labelled as such.
const TIME_SCRIPT: &str = r#"(function () {
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  document.querySelectorAll("time[datetime]").forEach(function (t) {
    var d = new Date(t.getAttribute("datetime"));
    if (isNaN(d.getTime())) return;
    t.title = t.textContent;
    t.textContent = d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
    t.setAttribute("data-local", "1");
  });
  document.querySelectorAll("[data-zone]").forEach(function (z) {
    z.textContent = "Times are shown in your time zone (" + zone + ").";
  });
})();
"#;

async fn time_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        TIME_SCRIPT,
    )
        .into_response()
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;background:#f6f7f9;line-height:1.45}\
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center;flex-wrap:wrap}\
header a{color:#fff;text-decoration:none}header a[aria-current]{text-decoration:underline}\
header form{margin-left:auto}header button{background:none;border:1px solid #fff;color:#fff;border-radius:.3rem;padding:.2rem .7rem;font:inherit;cursor:pointer}\
main{max-width:72rem;margin:1.2rem auto;padding:0 1.2rem}h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}\
table{border-collapse:collapse;background:#fff;width:100%;margin:.5rem 0}th,td{padding:.4rem .6rem;border-bottom:1px solid #e3e6ea;text-align:left}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}caption{text-align:left;font-weight:600;padding:.3rem 0}\
.bar{background:#3b6fd8;height:.8rem;border-radius:.2rem}.flow{background:#fff;border:1px solid #e3e6ea;overflow-x:auto}\
pre{background:#fff;border:1px solid #e3e6ea;padding:1rem;overflow-x:auto;white-space:pre-wrap}\
.login{max-width:22rem;margin:5rem auto;background:#fff;padding:1.5rem 2rem;border-radius:.4rem;border:1px solid #e3e6ea}\
label{display:block;margin:.8rem 0 .3rem}input[type=password],input[type=search]{font:inherit;padding:.4rem;width:100%;box-sizing:border-box}\
.login button,.search button{font:inherit;margin-top:1rem;padding:.5rem 1.2rem;border:0;border-radius:.3rem;background:#1d2330;color:#fff;cursor:pointer}\
.search{display:flex;gap:.6rem;align-items:end}.search label{margin:0}.error{color:#a01818;font-weight:600}.muted{color:#687080}footer{max-width:72rem;margin:2rem auto;padding:0 1.2rem;color:#687080;font-size:.85rem}";

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Campaigns,
    Contacts,
    Forms,
    None,
}

/// A complete dashboard page: navigation, then `body`.
pub(crate) fn page(status: StatusCode, title: &str, nav: Nav, body: &str) -> Response {
    let link = |href: &str, label: &str, me: Nav| {
        let current = if me == nav {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!("<a href=\"{href}\"{current}>{label}</a>")
    };
    let header = if nav == Nav::None {
        String::new()
    } else {
        format!(
            "<header><strong>nurture</strong><nav aria-label=\"Dashboard\" style=\"display:flex;gap:1.2rem\">{}{}{}</nav>\
             <form method=\"post\" action=\"/dashboard/logout\"><button type=\"submit\">Sign out</button></form></header>",
            link("/dashboard", "Campaigns", Nav::Campaigns),
            link("/dashboard/contacts", "Contacts", Nav::Contacts),
            link("/dashboard/forms", "Forms", Nav::Forms),
        )
    };
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>{} · nurture</title><style>{STYLE}</style>\
         <script src=\"/dashboard/time.js\" defer></script></head>\n<body>\n{header}\n<main>\n{body}\n</main>\n\
         <footer><p data-zone>Times are shown in UTC.</p></footer>\n</body></html>\n",
        esc(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Escapes text for HTML and SVG (element content and quoted attributes).
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A time (Unix ms) as `<time>`: UTC in the text, labelled; the script makes it local.
pub(crate) fn time(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => format!(
            "<time datetime=\"{}\">{} UTC</time>",
            t.format("%Y-%m-%dT%H:%M:%SZ"),
            t.format("%Y-%m-%d %H:%M")
        ),
        None => "-".into(),
    }
}

/// What a failed database read shows (the log has the cause).
pub(crate) fn unavailable(e: &nurture_store::StoreError) -> Response {
    tracing::error!("dashboard: the database failed: {e}");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        Nav::None,
        "<h1>The database did not answer</h1><p>Please try again in a moment.</p>",
    )
}

/// The dashboard's shared state, when configured.
pub(crate) fn config(state: &AppState) -> Option<&Arc<Dashboard>> {
    state.dashboard.as_ref()
}
