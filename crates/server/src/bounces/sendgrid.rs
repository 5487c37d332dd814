//! `POST /webhooks/bounces/sendgrid`: SendGrid's event webhook with its signature turned on.
//!
//! SendGrid signs `X-Twilio-Email-Event-Webhook-Timestamp` followed by the raw body with
//! ECDSA P-256 / SHA-256 and sends the DER signature, base64, in
//! `X-Twilio-Email-Event-Webhook-Signature`; the verification key it shows is a base64 DER
//! public key (`sendgrid_webhook_key`). The body is an array of events: `bounce` (`type`
//! `bounce` is hard, `blocked` soft), `spamreport`, `delivered`; the rest are ignored.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use nurture_store::SignalKind;
use serde_json::Value;
use x509_cert::der::Decode;

use super::{Refusal, Signal, answer, body};
use crate::AppState;

const SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
const TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";

/// SendGrid's verification key: a P-256 public key.
#[derive(Clone)]
pub struct SendgridKey {
    /// The uncompressed point, as ring takes it.
    point: Vec<u8>,
}

impl std::fmt::Debug for SendgridKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SendgridKey(..)")
    }
}

/// The OID of an elliptic-curve public key (id-ecPublicKey).
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";

impl SendgridKey {
    /// Reads the key as SendGrid shows it: base64 of a DER SubjectPublicKeyInfo (PEM
    /// armour, if pasted with it, is removed).
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let b64: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
            .split_whitespace()
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "sendgrid_webhook_key is not base64".to_string())?;
        let spki = x509_cert::spki::SubjectPublicKeyInfoRef::from_der(&der)
            .map_err(|_| "sendgrid_webhook_key is not a DER public key".to_string())?;
        if spki.algorithm.oid.to_string() != EC_PUBLIC_KEY {
            return Err("sendgrid_webhook_key is not an elliptic-curve key".into());
        }
        let point = spki
            .subject_public_key
            .as_bytes()
            .ok_or("sendgrid_webhook_key is not a DER public key")?
            .to_vec();
        Ok(Self { point })
    }

    /// Whether `signature` (DER, base64) signs `timestamp` + `payload`.
    fn verifies(&self, timestamp: &str, payload: &[u8], signature: &str) -> bool {
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature.trim())
        else {
            return false;
        };
        let mut message = Vec::with_capacity(timestamp.len() + payload.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.extend_from_slice(payload);
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            &self.point,
        )
        .verify(&message, &signature)
        .is_ok()
    }
}

pub(crate) async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let key = state.bounces.sendgrid_key.clone();
    let signals = body(raw).and_then(|b| verify_and_parse(key.as_ref(), &headers, &b));
    answer(&state, "sendgrid", signals).await
}

fn verify_and_parse(
    key: Option<&SendgridKey>,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Vec<Signal>, Refusal> {
    let forbid = |m: &str| Err((StatusCode::FORBIDDEN, m.to_string()));
    let Some(key) = key else {
        return forbid("the SendGrid webhook is disabled: set sendgrid_webhook_key");
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(timestamp)) = (header(SIGNATURE), header(TIMESTAMP)) else {
        return forbid("the request carries no SendGrid signature");
    };
    if !key.verifies(timestamp, bytes, signature) {
        return forbid("the SendGrid signature does not verify");
    }
    let events: Vec<Value> = serde_json::from_slice(bytes).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body is not an array of events: {e}"),
        )
    })?;
    Ok(events.iter().filter_map(signal).collect())
}

fn signal(e: &Value) -> Option<Signal> {
    let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
    let kind = match (text("event")?.as_str(), text("type").as_deref()) {
        ("bounce", Some("blocked")) => SignalKind::Soft,
        ("bounce", _) => SignalKind::Hard,
        ("spamreport", _) => SignalKind::Complaint,
        ("delivered", _) => SignalKind::Delivered,
        // deferred (SendGrid still retries), dropped, opens, clicks...
        _ => return None,
    };
    let reason = match (text("status"), text("reason")) {
        (Some(s), Some(r)) => Some(format!("{s} {r}")),
        (s, r) => r.or(s),
    };
    Some(Signal {
        email: text("email"),
        // SendGrid reports the Message-ID header we sent as `smtp-id`.
        message_id: text("smtp-id"),
        kind,
        reason,
        external_id: text("sg_event_id"),
    })
}
