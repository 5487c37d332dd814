//! What a script on another site may do with a form: the origin check every answer to it
//! goes through, the CORS preflight, and the challenge it fetches before posting JSON. Only
//! the form's `allowed_origins` are let in; the hosted page posting to its own URL is
//! same-site and needs none of this.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nurture_campaign::Form;
use serde_json::json;

use super::body::Shape;
use super::defend::Stamper;
use super::{json_error, not_found};
use crate::{AppState, now_ms};

/// Whether `origin` is this server itself (the hosted page posting to its own URL).
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| !host.is_empty() && rest.eq_ignore_ascii_case(host))
}

/// The `Origin` of a cross-site request, if it is one: `Ok(None)` same-site or no Origin,
/// `Ok(Some(o))` allowed, `Err(o)` refused.
pub(super) fn cross_origin(form: &Form, headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return Ok(None);
    };
    if same_origin(origin, headers) {
        return Ok(None);
    }
    if form
        .allowed_origins
        .iter()
        .any(|a| a.eq_ignore_ascii_case(origin))
    {
        Ok(Some(origin.to_string()))
    } else {
        Err(origin.to_string())
    }
}

/// Adds the CORS headers that let `origin` read the answer.
pub(super) fn with_cors(mut response: Response, origin: Option<&str>) -> Response {
    if let Some(o) = origin
        && let Ok(v) = HeaderValue::from_str(o)
    {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// `GET /f/FORM_ID/challenge`: a signed stamp and the proof-of-work difficulty, for a
/// script posting JSON (CORS per `allowed_origins`).
pub(crate) async fn challenge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(form) = state.forms.get(&id) else {
        return not_found(Shape::Json);
    };
    let origin = match cross_origin(&form, &headers) {
        Ok(o) => o,
        Err(o) => {
            return json_error(
                StatusCode::FORBIDDEN,
                &format!("the origin {o} may not use this form"),
                None,
            );
        }
    };
    let stamp = Stamper::new(&state.signer).stamp(&form.id, now_ms());
    with_cors(
        Json(json!({ "nurture_ts": stamp, "difficulty": state.forms.settings.pow_difficulty }))
            .into_response(),
        origin.as_deref(),
    )
}

/// `OPTIONS /f/FORM_ID` (and its challenge): the CORS preflight of a script on another site.
pub(crate) async fn preflight(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(form) = state.forms.get(&id) else {
        return not_found(Shape::Json);
    };
    match cross_origin(&form, &headers) {
        Ok(Some(origin)) => {
            let mut r = with_cors(StatusCode::NO_CONTENT.into_response(), Some(&origin));
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("content-type"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            r
        }
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(o) => json_error(
            StatusCode::FORBIDDEN,
            &format!("the origin {o} may not post to this form"),
            None,
        ),
    }
}
