//! The ingest API's bearer key, compared in constant time.
//!
//! Both sides are hashed with SHA-256 first, so the comparison runs over 32 bytes whatever
//! their lengths, and `subtle` compares those without an early exit: the time taken says
//! nothing about how much of a guess was right, not even its length.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ingest::error;

/// The key the middleware checks against: cheap to clone, as the middleware's state is cloned
/// for every request (the whole `AppState` would be: its key and signing secret copied each
/// time).
#[derive(Clone)]
pub(crate) struct ApiKey(Option<Arc<str>>);

impl ApiKey {
    pub(crate) fn new(key: Option<&str>) -> Self {
        Self(key.map(Arc::from))
    }
}

/// Lets a request through only with `Authorization: Bearer API_KEY`.
pub(crate) async fn require_api_key(
    State(key): State<ApiKey>,
    request: Request,
    next: Next,
) -> Response {
    match check(key.0.as_deref(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(message) => {
            let mut response = error(StatusCode::UNAUTHORIZED, message).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

fn check(api_key: Option<&str>, headers: &HeaderMap) -> Result<(), &'static str> {
    let Some(key) = api_key.filter(|k| !k.is_empty()) else {
        return Err("the ingest API is disabled: set api_key (NURTURE_API_KEY) to enable it");
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err("this call needs the header `Authorization: Bearer API_KEY`");
    };
    let given = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or("the `Authorization` header must read `Bearer API_KEY`")?;
    if keys_match(given, key) {
        Ok(())
    } else {
        Err("the API key is wrong")
    }
}

/// Whether `given` equals `expected`, in time independent of both.
pub(crate) fn keys_match(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.as_slice().ct_eq(b.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn bearer_key_is_checked_exactly() {
        let key = Some("s3cret-key");
        assert!(check(key, &headers("Bearer s3cret-key")).is_ok());
        assert!(check(key, &headers("bearer  s3cret-key ")).is_ok());
        assert!(check(key, &headers("Bearer s3cret-ke")).is_err());
        assert!(check(key, &headers("Bearer s3cret-key2")).is_err());
        assert!(check(key, &headers("Basic s3cret-key")).is_err());
        assert!(check(key, &headers("s3cret-key")).is_err());
        assert!(check(key, &HeaderMap::new()).is_err());
    }

    #[test]
    fn no_key_configured_refuses_everything() {
        for key in [None, Some("")] {
            let err = check(key, &headers("Bearer ")).unwrap_err();
            assert!(err.contains("disabled"), "{err}");
        }
    }
}
