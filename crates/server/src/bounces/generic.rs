//! `POST /webhooks/bounces/generic`: for a relay with no webhook format of its own (a
//! company Postfix with a script, a provider nurture does not know): the API key as
//! `Authorization: Bearer`, and `{"email", "type": "hard|soft|complaint", "message_id"?,
//! "reason"?}` (also `"delivered"`, which ends a run of soft bounces).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use nurture_store::SignalKind;
use serde::Deserialize;

use super::{Refusal, Signal, answer, body, same_secret};
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    email: String,
    #[serde(rename = "type")]
    kind: String,
    message_id: Option<String>,
    reason: Option<String>,
    id: Option<String>,
}

pub(crate) async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let signals = verify(state.api_key.as_deref(), &headers).and_then(|()| parse(&body(raw)?));
    answer(&state, "generic", signals).await
}

fn verify(api_key: Option<&str>, headers: &HeaderMap) -> Result<(), Refusal> {
    let refuse = |m: &str| Err((StatusCode::UNAUTHORIZED, m.to_string()));
    let Some(key) = api_key.filter(|k| !k.is_empty()) else {
        return refuse("the generic bounce webhook is disabled: set api_key (NURTURE_API_KEY)");
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match given {
        None => refuse("this call needs the header `Authorization: Bearer API_KEY`"),
        Some(g) if same_secret(g.as_bytes(), key.as_bytes()) => Ok(()),
        Some(_) => refuse("the API key is wrong"),
    }
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<Signal>, Refusal> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let b: Body = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("the body is not a bounce report: {e}")))?;
    let email = b.email.trim().to_string();
    nurture_campaign::check_address(&email).map_err(|e| bad(format!("`email`: {e}")))?;
    let kind = match b.kind.trim() {
        "hard" => SignalKind::Hard,
        "soft" => SignalKind::Soft,
        "complaint" => SignalKind::Complaint,
        "delivered" => SignalKind::Delivered,
        other => {
            return Err(bad(format!(
                "`type` must be hard, soft, complaint or delivered, not `{other}`"
            )));
        }
    };
    Ok(vec![Signal {
        email: Some(email),
        message_id: b.message_id.filter(|m| !m.trim().is_empty()),
        kind,
        reason: b.reason,
        external_id: b.id,
    }])
}
