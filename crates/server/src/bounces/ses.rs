//! `POST /webhooks/bounces/ses`: Amazon SES bounce and complaint notifications, delivered by
//! an SNS topic subscribed to this URL over HTTPS.
//!
//! SNS signs every message with RSA (SHA1 for `SignatureVersion` 1, SHA256 for 2) over a
//! string made of some of its fields, and names the certificate in `SigningCertURL`. That
//! URL must be https on an `sns.REGION.amazonaws.com` host, or the request is refused before
//! anything is fetched (a forged message would otherwise name a certificate of its own).
//! Certificates are cached by URL. Since any AWS account can make a topic whose messages
//! SNS signs, only the topics listed in `ses_topic_arns` are taken, and only theirs are
//! confirmed: a `SubscriptionConfirmation` is confirmed by fetching its `SubscribeURL`
//! (checked like the certificate's URL).
//!
//! The `Message` of a `Notification` is SES's JSON: `notificationType` (or `eventType` with
//! configuration-set event publishing) `Bounce` (`bounceType` `Permanent` is hard,
//! `Transient` soft, `Undetermined` ignored), `Complaint` or `Delivery`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use nurture_store::SignalKind;
use serde_json::Value;
use x509_cert::der::Decode;

use super::{Refusal, Signal, Webhooks, answer, body};
use crate::AppState;

pub(crate) async fn post(
    State(state): State<AppState>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let signals = match body(raw) {
        Ok(b) => verify_and_parse(&state.bounces, &b).await,
        Err(r) => Err(r),
    };
    answer(&state, "ses", signals).await
}

fn forbid<T>(m: impl Into<String>) -> Result<T, Refusal> {
    Err((StatusCode::FORBIDDEN, m.into()))
}

/// Whether `url` is https on an SNS host (`sns.REGION.amazonaws.com`, or `.com.cn`), with
/// no user, port or other trick that would send the request elsewhere.
pub(crate) fn is_sns_url(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    if u.scheme() != "https"
        || !u.username().is_empty()
        || u.password().is_some()
        || u.port().is_some()
    {
        return false;
    }
    let Some(host) = u.host_str() else {
        return false;
    };
    let region = host.strip_prefix("sns.").and_then(|h| {
        h.strip_suffix(".amazonaws.com")
            .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
    });
    region.is_some_and(|r| {
        !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

/// The string SNS signs for a message of `type` (its documented field order).
pub(crate) fn string_to_sign(v: &Value) -> Option<String> {
    let kind = v.get("Type")?.as_str()?;
    let fields: &[&str] = match kind {
        "Notification" => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
        _ => return None,
    };
    let mut out = String::new();
    for f in fields {
        match v.get(*f).and_then(Value::as_str) {
            Some(value) => {
                out.push_str(f);
                out.push('\n');
                out.push_str(value);
                out.push('\n');
            }
            // Subject is the one optional field; every other must be there.
            None if *f == "Subject" => {}
            None => return None,
        }
    }
    Some(out)
}

/// The RSA public key (PKCS#1 DER, as ring takes it) of a PEM certificate.
fn public_key(pem: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "the certificate is not PEM")?;
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect::<String>()
        .split_whitespace()
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the certificate is not PEM")?;
    let cert = x509_cert::Certificate::from_der(&der)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    cert.tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "the certificate has no public key".to_string())
}

async fn signing_key(hooks: &Webhooks, url: &str) -> Result<Arc<Vec<u8>>, Refusal> {
    if let Some(k) = hooks.certs.lock().ok().and_then(|c| c.get(url).cloned()) {
        return Ok(k);
    }
    let pem = hooks.fetch.get(url).await.map_err(|e| {
        tracing::warn!(url, "cannot fetch the SNS signing certificate: {e}");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the SNS signing certificate could not be fetched; try again later".to_string(),
        )
    })?;
    let key = Arc::new(public_key(&pem).map_err(|e| (StatusCode::FORBIDDEN, e))?);
    if let Ok(mut c) = hooks.certs.lock() {
        c.insert(url.to_string(), key.clone());
    }
    Ok(key)
}

async fn verify_and_parse(hooks: &Webhooks, bytes: &[u8]) -> Result<Vec<Signal>, Refusal> {
    if hooks.ses_topics.is_empty() {
        return forbid(
            "the SES webhook is disabled: set ses_topic_arns to the SNS topics of your bounce notifications",
        );
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body is not an SNS message: {e}"),
        )
    })?;
    let text = |k: &str| v.get(k).and_then(Value::as_str);
    let Some(signed) = string_to_sign(&v) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "the body is not an SNS message".into(),
        ));
    };
    let algorithm: &dyn ring::signature::VerificationAlgorithm = match text("SignatureVersion") {
        Some("1") => &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        Some("2") => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        _ => return forbid("the SNS message has no known SignatureVersion"),
    };
    let cert_url = text("SigningCertURL").unwrap_or_default();
    if !is_sns_url(cert_url) {
        return forbid("SigningCertURL is not an https URL of Amazon SNS");
    }
    let Some(signature) =
        text("Signature").and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    else {
        return forbid("the SNS message carries no signature");
    };
    let key = signing_key(hooks, cert_url).await?;
    if ring::signature::UnparsedPublicKey::new(algorithm, key.as_slice())
        .verify(signed.as_bytes(), &signature)
        .is_err()
    {
        return forbid("the SNS signature does not verify");
    }
    let topic = text("TopicArn").unwrap_or_default();
    if !hooks.ses_topics.iter().any(|t| t == topic) {
        return forbid(format!("the SNS topic {topic} is not in ses_topic_arns"));
    }
    match text("Type") {
        Some("SubscriptionConfirmation") => {
            let url = text("SubscribeURL").unwrap_or_default();
            if !is_sns_url(url) {
                return forbid("SubscribeURL is not an https URL of Amazon SNS");
            }
            hooks.fetch.get(url).await.map_err(|e| {
                tracing::warn!(topic, "cannot confirm the SNS subscription: {e}");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the SNS subscription could not be confirmed; try again later".to_string(),
                )
            })?;
            tracing::info!(topic, "SNS subscription confirmed");
            Ok(Vec::new())
        }
        Some("Notification") => {
            let message: Value = serde_json::from_str(text("Message").unwrap_or_default())
                .map_err(|e| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("the notification's Message is not SES JSON: {e}"),
                    )
                })?;
            Ok(parse(&message, text("MessageId").unwrap_or_default()))
        }
        _ => Ok(Vec::new()),
    }
}

/// Our Message-ID as SES reports it: in `mail.commonHeaders.messageId`, or among
/// `mail.headers` when the notification includes them.
fn our_message_id(m: &Value) -> Option<String> {
    if let Some(id) = m
        .pointer("/mail/commonHeaders/messageId")
        .and_then(Value::as_str)
    {
        return Some(id.to_string());
    }
    m.pointer("/mail/headers")?
        .as_array()?
        .iter()
        .find_map(|h| {
            let name = h.get("name")?.as_str()?;
            name.eq_ignore_ascii_case("message-id")
                .then(|| h.get("value")?.as_str().map(str::to_string))?
        })
}

fn parse(m: &Value, sns_id: &str) -> Vec<Signal> {
    let kind = m
        .get("notificationType")
        .or_else(|| m.get("eventType"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let message_id = our_message_id(m);
    let each = |list: &str,
                address: &str,
                kind: SignalKind,
                reason: &dyn Fn(&Value) -> Option<String>|
     -> Vec<Signal> {
        m.pointer(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| {
                let email = if address.is_empty() {
                    r.as_str()
                } else {
                    r.get(address).and_then(Value::as_str)
                };
                Signal {
                    email: email.map(str::to_string),
                    message_id: message_id.clone(),
                    kind,
                    reason: reason(r),
                    external_id: Some(format!("{sns_id}:{i}")),
                }
            })
            .collect()
    };
    match kind {
        "Bounce" => {
            let bounce_kind = match m.pointer("/bounce/bounceType").and_then(Value::as_str) {
                Some("Permanent") => SignalKind::Hard,
                Some("Transient") => SignalKind::Soft,
                _ => return Vec::new(),
            };
            let sub = m
                .pointer("/bounce/bounceSubType")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            each(
                "/bounce/bouncedRecipients",
                "emailAddress",
                bounce_kind,
                &|r| {
                    let diag = r.get("diagnosticCode").and_then(Value::as_str);
                    Some(match diag {
                        Some(d) => format!("{sub}: {d}"),
                        None => sub.clone(),
                    })
                    .filter(|s| !s.is_empty())
                },
            )
        }
        "Complaint" => {
            let feedback = m
                .pointer("/complaint/complaintFeedbackType")
                .and_then(Value::as_str)
                .map(|f| format!("feedback type {f}"));
            if m.pointer("/complaint/complaintFeedbackType")
                .and_then(Value::as_str)
                == Some("not-spam")
            {
                return Vec::new();
            }
            each(
                "/complaint/complainedRecipients",
                "emailAddress",
                SignalKind::Complaint,
                &|_| feedback.clone(),
            )
        }
        "Delivery" => each("/delivery/recipients", "", SignalKind::Delivered, &|_| None),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_sns_hosts_are_fetched() {
        for ok in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.eu-west-3.amazonaws.com/?Action=ConfirmSubscription&Token=x",
            "https://sns.cn-north-1.amazonaws.com.cn/x.pem",
        ] {
            assert!(is_sns_url(ok), "{ok}");
        }
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://s3.amazonaws.com/x.pem",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://sns.us_east.amazonaws.com/x.pem",
            "not a url",
        ] {
            assert!(!is_sns_url(bad), "{bad}");
        }
    }

    #[test]
    fn the_string_to_sign_follows_the_documented_order() {
        let v = serde_json::json!({
            "Type": "Notification", "MessageId": "m1", "TopicArn": "arn:t",
            "Message": "hello", "Timestamp": "2026-01-01T00:00:00.000Z",
            "SignatureVersion": "1", "Signature": "x", "SigningCertURL": "u"
        });
        assert_eq!(
            string_to_sign(&v).unwrap(),
            "Message\nhello\nMessageId\nm1\nTimestamp\n2026-01-01T00:00:00.000Z\nTopicArn\narn:t\nType\nNotification\n"
        );
        let mut with_subject = v.clone();
        with_subject["Subject"] = "s".into();
        assert!(
            string_to_sign(&with_subject)
                .unwrap()
                .contains("MessageId\nm1\nSubject\ns\nTimestamp")
        );
        let mut missing = v;
        missing.as_object_mut().unwrap().remove("TopicArn");
        assert_eq!(string_to_sign(&missing), None);
    }
}
