//! `POST /webhooks/bounces/mailgun`: Mailgun's webhooks (`failed` permanent — hard, or soft
//! when Mailgun gave up retrying (`reason: old`) —, `complained`, `delivered`; temporary
//! failures Mailgun still retries are ignored). Mailgun signs each request: `signature.signature` is the hex HMAC-SHA256,
//! keyed with the HTTP webhook signing key (`mailgun_signing_key`), of
//! `signature.timestamp` followed by `signature.token`.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::Response;
use nurture_store::SignalKind;
use serde_json::Value;

use super::{Refusal, Signal, answer, body, hex, same_secret};
use crate::AppState;

pub(crate) async fn post(
    State(state): State<AppState>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let key = state.bounces.mailgun_key.clone();
    let signals = body(raw).and_then(|b| verify_and_parse(key.as_deref(), &b));
    answer(&state, "mailgun", signals).await
}

/// The hex HMAC-SHA256 Mailgun sends for `timestamp` and `token`.
pub(crate) fn sign(key: &str, timestamp: &str, token: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.as_bytes());
    ctx.update(token.as_bytes());
    hex(ctx.sign().as_ref())
}

pub(crate) fn verify_and_parse(key: Option<&str>, bytes: &[u8]) -> Result<Vec<Signal>, Refusal> {
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Err((
            StatusCode::FORBIDDEN,
            "the Mailgun webhook is disabled: set mailgun_signing_key".into(),
        ));
    };
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    let field = |k: &str| {
        v.pointer(&format!("/signature/{k}")).map(|x| match x {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let (Some(timestamp), Some(token), Some(signature)) =
        (field("timestamp"), field("token"), field("signature"))
    else {
        return Err((
            StatusCode::FORBIDDEN,
            "the request carries no Mailgun signature".into(),
        ));
    };
    let expected = sign(key, &timestamp, &token);
    if !same_secret(
        signature.trim().to_ascii_lowercase().as_bytes(),
        expected.as_bytes(),
    ) {
        return Err((
            StatusCode::FORBIDDEN,
            "the Mailgun signature does not verify".into(),
        ));
    }
    // The signature covers only the timestamp and token, so the token is the report's id:
    // the same signed token sent again with another event is taken once.
    Ok(parse(&v, &token))
}

fn parse(v: &Value, token: &str) -> Vec<Signal> {
    let Some(data) = v.get("event-data") else {
        return Vec::new();
    };
    let text = |p: &str| data.pointer(p).and_then(Value::as_str).map(str::to_string);
    let event = text("/event").unwrap_or_default();
    let kind = match (
        event.as_str(),
        text("/severity").as_deref(),
        text("/reason").as_deref(),
    ) {
        // Mailgun gave up after retrying temporary failures: the address may well be fine.
        ("failed", Some("permanent"), Some("old")) => SignalKind::Soft,
        ("failed", Some("permanent"), _) => SignalKind::Hard,
        ("complained", _, _) => SignalKind::Complaint,
        ("delivered", _, _) => SignalKind::Delivered,
        // A temporary failure Mailgun still retries is not a bounce yet.
        _ => return Vec::new(),
    };
    let status = [
        data.pointer("/delivery-status/code").map(|c| c.to_string()),
        text("/delivery-status/message"),
        text("/delivery-status/description"),
    ];
    let reason: Vec<String> = status
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty() && s != "null")
        .collect();
    vec![Signal {
        email: text("/recipient"),
        message_id: text("/message/headers/message-id"),
        kind,
        reason: (!reason.is_empty()).then(|| reason.join(" ")),
        external_id: Some(text("/id").unwrap_or_else(|| token.to_string())),
    }]
}
