//! Signing in to the dashboard: one shared password, a signed session cookie, and a limit on
//! guessing.
//!
//! The session is stateless: the cookie holds a [`Claim::Session`] token signed with the
//! configured `secret`, carrying its expiry, so any `nurture run` sharing that secret accepts
//! it and a restart signs nobody out. The cookie is `HttpOnly` (no script reads it),
//! `SameSite=Strict` (no other site's page can make the browser send it, which is what stops
//! cross-site request forgery of the logout form) and `Secure` when `base_url` is https.
//!
//! Guessing is bounded twice: per client address, the sixth wrong password within
//! [`WINDOW_MS`] locks that address out for a minute, doubling with each further miss up to an
//! hour; and across all addresses, [`GLOBAL_FREE`] misses within the window lock every
//! sign-in for a minute (doubling up to ten minutes), which stops a guesser that spreads over
//! many addresses. Locked out, even the right password gets 429, so the limit cannot be used
//! as an oracle. A successful sign-in clears its address's misses.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use axum::Extension;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nurture_token::Claim;

use super::{Nav, SESSION_SECONDS, esc, page};
use crate::AppState;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "nurture_session";
/// Misses are forgotten this long after the last one (15 minutes).
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Wrong passwords one address may send before it is locked out.
pub const PER_ADDRESS_FREE: u32 = 5;
/// Wrong passwords all addresses together may send within the window before every sign-in
/// is locked for a while.
pub const GLOBAL_FREE: u32 = 100;
/// Addresses remembered at most; beyond, the oldest are forgotten (memory stays bounded).
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Clone, Copy, Default)]
struct Misses {
    count: u32,
    last: i64,
    locked_until: i64,
}

impl Misses {
    /// One more miss at `now`; past `free` misses, locks for `base_ms` doubled per extra miss,
    /// at most `max_ms`.
    fn add(&mut self, now: i64, free: u32, base_ms: i64, max_ms: i64) {
        if now - self.last > WINDOW_MS {
            self.count = 0;
        }
        self.count += 1;
        self.last = now;
        if self.count > free {
            let doublings = (self.count - free - 1).min(20);
            let lock = base_ms.saturating_mul(1 << doublings).min(max_ms);
            self.locked_until = now + lock;
        }
    }
}

#[derive(Debug, Default)]
struct Ledger {
    by_address: HashMap<IpAddr, Misses>,
    global: Misses,
}

/// Counts wrong passwords per client address and overall, and says who must wait.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    ledger: Mutex<Ledger>,
}

impl LoginLimiter {
    /// `Err(seconds to wait)` while `ip` (or every sign-in) is locked out at `now` (ms).
    pub fn check(&self, ip: IpAddr, now: i64) -> Result<(), i64> {
        let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let until = ledger
            .by_address
            .get(&ip)
            .map_or(0, |m| m.locked_until)
            .max(ledger.global.locked_until);
        if until > now {
            Err((until - now + 999) / 1000)
        } else {
            Ok(())
        }
    }

    /// Records a wrong password from `ip` at `now` (ms).
    pub fn miss(&self, ip: IpAddr, now: i64) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        if ledger.by_address.len() >= MAX_ADDRESSES && !ledger.by_address.contains_key(&ip) {
            ledger
                .by_address
                .retain(|_, m| now - m.last <= WINDOW_MS || m.locked_until > now);
            if ledger.by_address.len() >= MAX_ADDRESSES {
                // Still full of recent guessers: the global lock is what holds them now.
                ledger.by_address.clear();
            }
        }
        ledger
            .by_address
            .entry(ip)
            .or_default()
            .add(now, PER_ADDRESS_FREE, 60_000, 3_600_000);
        ledger.global.add(now, GLOBAL_FREE, 60_000, 600_000);
    }

    /// Forgets `ip`'s misses after it signed in.
    pub fn success(&self, ip: IpAddr) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.by_address.remove(&ip);
    }
}

/// Whether `headers` carry a session cookie that is signed and not expired at `now` (ms).
fn signed_in(state: &AppState, headers: &HeaderMap, now: i64) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .any(|(_, token)| {
            matches!(state.signer.verify(token), Some(Claim::Session { expires }) if expires * 1000 > now)
        })
}

/// Serves the page only with a valid session; otherwise the login form, which comes back
/// here after signing in.
pub(crate) async fn require_session(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if signed_in(&state, request.headers(), crate::now_ms()) {
        return next.run(request).await;
    }
    let back = request
        .uri()
        .path_and_query()
        .map_or("/dashboard", |p| p.as_str())
        .to_string();
    login_page(StatusCode::OK, &back, None)
}

/// The login form. `next` is where to go once signed in.
pub(crate) fn login_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    page(
        status,
        "Sign in",
        Nav::None,
        &format!(
            "<div class=\"login\"><h1>nurture dashboard</h1>{error}\
             <form method=\"post\" action=\"/dashboard/login\">\
             <input type=\"hidden\" name=\"next\" value=\"{}\">\
             <label for=\"password\">Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
             <button type=\"submit\">Sign in</button></form></div>",
            esc(safe_next(next))
        ),
    )
}

/// A place inside the dashboard to return to; anything else (another site, `//host`) is
/// replaced by the campaigns page, so the login form is no open redirect.
fn safe_next(next: &str) -> &str {
    let inside = next == "/dashboard"
        || next.starts_with("/dashboard/") && !next.starts_with("/dashboard/login");
    if inside && !next.contains(['\\', '\r', '\n']) && !next.contains("//") {
        next
    } else {
        "/dashboard"
    }
}

/// The login form's fields.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// `POST /dashboard/login`: the right password sets the session cookie and goes back to the
/// page asked for (303); a wrong one shows the form again (401); too many wrong ones, 429.
pub(crate) async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let Some(dashboard) = super::config(&state) else {
        return crate::pages::not_found_page();
    };
    let now = crate::now_ms();
    // Without a peer address (a router served by something else) every client shares one.
    let ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |Extension(ConnectInfo(a))| {
        a.ip()
    });
    if let Err(wait) = dashboard.limiter.check(ip, now) {
        tracing::warn!(%ip, wait_s = wait, "dashboard sign-in refused: too many wrong passwords");
        let mut response = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            &form.next,
            Some(&format!(
                "Too many wrong passwords. Try again in {wait} seconds."
            )),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    if !crate::auth::keys_match(&form.password, &dashboard.password) {
        dashboard.limiter.miss(ip, now);
        tracing::warn!(%ip, "dashboard sign-in with a wrong password");
        return login_page(
            StatusCode::UNAUTHORIZED,
            &form.next,
            Some("The password is wrong."),
        );
    }
    dashboard.limiter.success(ip);
    let expires = now / 1000 + SESSION_SECONDS;
    let token = state.signer.sign(&Claim::Session { expires });
    let cookie = format!(
        "{COOKIE}={token}; Path=/dashboard; Max-Age={SESSION_SECONDS}; HttpOnly; SameSite=Strict{}",
        if dashboard.secure_cookie {
            "; Secure"
        } else {
            ""
        }
    );
    redirect(safe_next(&form.next), Some(cookie))
}

/// `POST /dashboard/logout`: the cookie is cleared and the login form shown.
pub(crate) async fn logout(State(state): State<AppState>) -> Response {
    let secure = super::config(&state).is_some_and(|d| d.secure_cookie);
    let cookie = format!(
        "{COOKIE}=; Path=/dashboard; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    redirect("/dashboard", Some(cookie))
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        headers.insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, c);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn an_address_is_locked_after_five_misses_and_the_lock_doubles() {
        let l = LoginLimiter::default();
        for i in 0..5 {
            assert_eq!(l.check(ip(1), T0 + i), Ok(()));
            l.miss(ip(1), T0 + i);
        }
        // Five misses are free; the sixth attempt must wait.
        assert_eq!(l.check(ip(1), T0 + 5), Ok(()));
        l.miss(ip(1), T0 + 5);
        assert_eq!(l.check(ip(1), T0 + 6), Err(60));
        // Other addresses are not affected.
        assert_eq!(l.check(ip(2), T0 + 6), Ok(()));
        // After the minute, one more miss locks for two minutes.
        let t = T0 + 5 + 60_000;
        assert_eq!(l.check(ip(1), t), Ok(()));
        l.miss(ip(1), t);
        assert_eq!(l.check(ip(1), t + 1), Err(120));
    }

    #[test]
    fn misses_are_forgotten_after_the_window_and_after_a_sign_in() {
        let l = LoginLimiter::default();
        for i in 0..5 {
            l.miss(ip(1), T0 + i);
        }
        // Sixteen minutes later the count starts again: five more are free.
        let later = T0 + WINDOW_MS + 60_000;
        for i in 0..5 {
            l.miss(ip(1), later + i);
        }
        assert_eq!(l.check(ip(1), later + 10), Ok(()));
        l.success(ip(1));
        for i in 0..5 {
            l.miss(ip(1), later + 20 + i);
        }
        assert_eq!(l.check(ip(1), later + 30), Ok(()));
    }

    #[test]
    fn many_addresses_together_lock_every_sign_in() {
        let l = LoginLimiter::default();
        // 100 addresses, one miss each: nobody is locked yet.
        for n in 0..GLOBAL_FREE {
            l.miss(IpAddr::from([10, 1, (n / 256) as u8, (n % 256) as u8]), T0);
        }
        assert_eq!(l.check(ip(9), T0 + 1), Ok(()));
        l.miss(ip(200), T0 + 1);
        assert_eq!(l.check(ip(9), T0 + 2), Err(60));
        assert_eq!(l.check(ip(9), T0 + 1 + 60_000), Ok(()));
    }

    #[test]
    fn next_stays_inside_the_dashboard() {
        assert_eq!(
            safe_next("/dashboard/campaigns/x?days=7"),
            "/dashboard/campaigns/x?days=7"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/dashboard//evil",
            "/dashboardx",
            "/dashboard/login",
            "",
            "/dashboard/\\evil",
        ] {
            assert_eq!(safe_next(bad), "/dashboard", "{bad}");
        }
    }
}
