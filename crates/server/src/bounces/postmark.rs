//! `POST /webhooks/bounces/postmark`: Postmark's bounce, spam-complaint and delivery
//! webhooks. Postmark signs nothing; the webhook URL carries basic-auth credentials
//! (`https://USER:PASSWORD@host/webhooks/bounces/postmark`), checked against
//! `webhook_user` / `webhook_password`.
//!
//! Postmark's `MessageID` is its own id, not our Message-ID header, so the contact is found
//! by `Email` (bounce, complaint) or `Recipient` (delivery).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use nurture_store::SignalKind;
use serde_json::Value;

use super::{Refusal, Signal, answer, body, same_secret};
use crate::AppState;

pub(crate) async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err((status, message)) = verify(state.bounces.postmark_auth.as_ref(), &headers) {
        let mut response = crate::ingest::error(status, message).into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"nurture\""),
        );
        return response;
    }
    let signals = body(raw).and_then(|b| parse(&b));
    answer(&state, "postmark", signals).await
}

fn verify(auth: Option<&(String, String)>, headers: &HeaderMap) -> Result<(), Refusal> {
    let refuse = |m: &str| Err((StatusCode::UNAUTHORIZED, m.to_string()));
    let Some((user, password)) = auth.filter(|(u, p)| !u.is_empty() && !p.is_empty()) else {
        return refuse("the Postmark webhook is disabled: set webhook_user and webhook_password");
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then(|| token.trim())
        })
        .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok());
    let Some(given) = given else {
        return refuse("this webhook needs basic authentication (webhook_user, webhook_password)");
    };
    let expected = format!("{user}:{password}");
    if same_secret(&given, expected.as_bytes()) {
        Ok(())
    } else {
        refuse("the webhook user or password is wrong")
    }
}

/// Postmark's bounce `Type`s that say the address will never take mail.
const HARD: &[&str] = &["HardBounce", "BadEmailAddress", "ManuallyDeactivated"];
/// Those that say it did not take this one.
const SOFT: &[&str] = &["SoftBounce", "DnsError", "Blocked", "Undeliverable"];

pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<Signal>, Refusal> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let id = v.get("ID").map(|i| match i {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let record = text("RecordType").unwrap_or_default();
    let kind_name = text("Type").unwrap_or_default();
    let kind = match record.as_str() {
        "SpamComplaint" => Some(SignalKind::Complaint),
        "Delivery" => Some(SignalKind::Delivered),
        "Bounce" | "" if kind_name == "SpamComplaint" => Some(SignalKind::Complaint),
        "Bounce" | "" if HARD.contains(&kind_name.as_str()) => Some(SignalKind::Hard),
        "Bounce" | "" if SOFT.contains(&kind_name.as_str()) => Some(SignalKind::Soft),
        _ => None,
    };
    let Some(kind) = kind else {
        // Auto-responders, transient delays, opens: not a bounce.
        tracing::debug!(record, kind = kind_name, "Postmark event ignored");
        return Ok(Vec::new());
    };
    let email = text("Email").or_else(|| text("Recipient"));
    let reason = match (text("Description"), text("Details")) {
        (Some(d), Some(x)) if !x.is_empty() => Some(format!("{kind_name}: {d} ({x})")),
        (Some(d), _) => Some(format!("{kind_name}: {d}")),
        (None, Some(x)) => Some(x),
        (None, None) => (!kind_name.is_empty()).then_some(kind_name),
    };
    Ok(vec![Signal {
        email,
        message_id: None,
        kind,
        reason,
        external_id: id.map(|i| format!("{record}:{i}")),
    }])
}
