//! `POST /api/events` and `POST /api/contacts`: how a website's lead form gets into nurture.
//!
//! Bodies are parsed into checked values before anything is written, and every problem is
//! answered with a 400 whose `error` names the field, so whoever wires up a form can fix it
//! from the response alone. Unknown fields are refused for the same reason campaigns refuse
//! unknown keys: a misspelt `atributes` must not be dropped silently.

pub(crate) mod batch;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use nurture_store::Upsert;

use batch::{Outcome, Refused};
use serde_json::{Map, Value, json};

use crate::{AppState, MAX_BODY, now_ms};

/// A JSON error answer: `{"error": "..."}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The answer when the database fails: the cause goes to the log, not to the client.
pub(crate) fn internal(e: &nurture_store::StoreError) -> Response {
    tracing::error!("HTTP request failed: {e}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the request could not be stored; try again later",
    )
}

/// A checked `POST /api/events` body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventBody {
    pub email: String,
    pub name: String,
    pub properties: Map<String, Value>,
    pub attributes: Map<String, Value>,
    pub occurred_at: Option<i64>,
    pub id: Option<String>,
}

/// A checked `POST /api/contacts` body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ContactBody {
    pub email: String,
    pub attributes: Map<String, Value>,
    pub tags: Vec<String>,
}

const EVENT_FIELDS: &[&str] = &[
    "email",
    "name",
    "properties",
    "attributes",
    "occurred_at",
    "id",
];
const CONTACT_FIELDS: &[&str] = &["email", "attributes", "tags"];

/// A failed request: the status and the sentence for `{"error": ...}`.
type Refusal = (StatusCode, String);

/// The buffered body, or why it could not be read (413 when too large).
fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Refusal> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            (
                status,
                format!("the body is larger than {} KiB", MAX_BODY / 1024),
            )
        } else {
            (status, format!("the body could not be read: {rejection}"))
        }
    })
}

/// Reads and checks a body with `parse`.
fn checked<T>(
    raw: Result<Bytes, BytesRejection>,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, Refusal> {
    let bytes = body(raw)?;
    parse(&bytes).map_err(|message| (StatusCode::BAD_REQUEST, message))
}

/// The body as a JSON object whose keys are all in `allowed`.
fn object(bytes: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            "the body is empty: send a JSON object".to_string()
        } else {
            format!("the body is not valid JSON: {e}")
        }
    })?;
    let Value::Object(map) = value else {
        return Err("the body must be a JSON object".into());
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        let hint = match nurture_campaign::did_you_mean(unknown, allowed) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("the fields are {}", allowed.join(", ")),
        };
        return Err(format!("unknown field `{unknown}`: {hint}"));
    }
    Ok(map)
}

fn email(map: &Map<String, Value>) -> Result<String, String> {
    let email = match map.get("email") {
        None | Some(Value::Null) => return Err("`email` is missing".into()),
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err("`email` must be a string".into()),
    };
    nurture_campaign::check_address(email).map_err(|e| format!("`email`: {e}"))?;
    Ok(email.to_string())
}

fn optional_object(map: &Map<String, Value>, field: &str) -> Result<Map<String, Value>, String> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(_) => Err(format!("`{field}` must be a JSON object")),
    }
}

pub(crate) fn parse_event(bytes: &[u8]) -> Result<EventBody, String> {
    let map = object(bytes, EVENT_FIELDS)?;
    let email = email(&map)?;
    let name = match map.get("name") {
        None | Some(Value::Null) => return Err("`name` is missing".into()),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err("`name` cannot be empty".into());
        }
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => return Err("`name` must be a string such as \"lead.captured\"".into()),
    };
    let occurred_at = match map.get("occurred_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            chrono::DateTime::parse_from_rfc3339(s.trim())
                .map_err(|_| {
                    format!(
                        "`occurred_at`: `{s}` is not an RFC 3339 time such as 2025-03-01T09:30:00Z"
                    )
                })?
                .timestamp_millis(),
        ),
        Some(_) => {
            return Err(
                "`occurred_at` must be an RFC 3339 time in a string, such as \"2025-03-01T09:30:00Z\""
                    .into(),
            );
        }
    };
    let id = match map.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => return Err("`id` cannot be empty".into()),
        Some(Value::String(s)) => Some(s.clone()),
        // Form backends often number their submissions; the number's text is the key.
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err("`id` must be a string".into()),
    };
    Ok(EventBody {
        email,
        name,
        properties: optional_object(&map, "properties")?,
        attributes: optional_object(&map, "attributes")?,
        occurred_at,
        id,
    })
}

pub(crate) fn parse_contact(bytes: &[u8]) -> Result<ContactBody, String> {
    let map = object(bytes, CONTACT_FIELDS)?;
    let email = email(&map)?;
    let tags = match map.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                _ => Err(format!("`tags[{i}]` must be a non-empty string")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("`tags` must be an array of strings".into()),
    };
    Ok(ContactBody {
        email,
        attributes: optional_object(&map, "attributes")?,
        tags,
    })
}

/// `POST /api/events`: queue the checked event for the next group commit (see [`batch`]),
/// answer once it is durable.
pub(crate) async fn post_event(
    Extension(batcher): Extension<batch::Batcher>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let event = match checked(raw, parse_event) {
        Ok(e) => e,
        Err((status, message)) => return error(status, message),
    };
    match batcher.record(event, now_ms()).await {
        Ok(Outcome::Accepted) => {
            (StatusCode::ACCEPTED, Json(json!({ "status": "accepted" }))).into_response()
        }
        Ok(Outcome::Duplicate) => {
            (StatusCode::ACCEPTED, Json(json!({ "status": "duplicate" }))).into_response()
        }
        Ok(Outcome::Failed) | Err(Refused::Gone) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request could not be stored; try again later",
        ),
        Err(Refused::Full) => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many events are waiting to be stored; retry in a second",
            );
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_static("1"),
            );
            r
        }
    }
}

/// `POST /api/contacts`: upsert attributes and tags.
pub(crate) async fn post_contact(
    State(state): State<AppState>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let contact = match checked(raw, parse_contact) {
        Ok(c) => c,
        Err((status, message)) => return error(status, message),
    };
    let now = now_ms();
    let result = async {
        let mut tx = state.store.begin().await?;
        let out = tx
            .upsert_contact(
                &Upsert {
                    email: contact.email.clone(),
                    attributes: contact.attributes.clone(),
                    tags: contact.tags.clone(),
                    consent_source: Some("api".into()),
                    ..Upsert::default()
                },
                now,
            )
            .await?;
        tx.commit().await?;
        Ok::<_, nurture_store::StoreError>(out)
    }
    .await;
    match result {
        Ok((stored, created)) => (
            StatusCode::OK,
            Json(json!({ "email": stored.email, "created": created })),
        )
            .into_response(),
        Err(e) => internal(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_bodies_are_checked_field_by_field() {
        let cases: &[(&str, &str)] = &[
            ("", "the body is empty: send a JSON object"),
            ("{\"email\": ", "the body is not valid JSON: "),
            ("[1]", "the body must be a JSON object"),
            ("{\"name\": \"x\"}", "`email` is missing"),
            (
                "{\"email\": 3, \"name\": \"x\"}",
                "`email` must be a string",
            ),
            (
                "{\"email\": \"x\", \"name\": \"x\"}",
                "`email`: `x` is not a valid address: it has no `@`",
            ),
            ("{\"email\": \"a@b.example\"}", "`name` is missing"),
            (
                "{\"email\": \"a@b.example\", \"name\": \" \"}",
                "`name` cannot be empty",
            ),
            (
                "{\"email\": \"a@b.example\", \"name\": \"x\", \"properties\": [1]}",
                "`properties` must be a JSON object",
            ),
            (
                "{\"email\": \"a@b.example\", \"name\": \"x\", \"attributes\": \"plan=pro\"}",
                "`attributes` must be a JSON object",
            ),
            (
                "{\"email\": \"a@b.example\", \"name\": \"x\", \"occurred_at\": \"yesterday\"}",
                "`occurred_at`: `yesterday` is not an RFC 3339 time",
            ),
            (
                "{\"email\": \"a@b.example\", \"name\": \"x\", \"atributes\": {}}",
                "unknown field `atributes`: did you mean `attributes`?",
            ),
            (
                "{\"email\": \"a@b.example\", \"name\": \"x\", \"id\": true}",
                "`id` must be a string",
            ),
        ];
        for (body, expected) in cases {
            let err = parse_event(body.as_bytes()).unwrap_err();
            assert!(err.starts_with(expected), "{body}: {err}");
        }
    }

    #[test]
    fn a_full_event_body_parses() {
        let e = parse_event(
            br#"{"email": " Ana@Example.com ", "name": "lead.captured", "properties": {"ebook": "seo"},
                 "attributes": {"first_name": "Ana"}, "occurred_at": "2025-03-01T09:30:00+01:00", "id": 17}"#,
        )
        .unwrap();
        assert_eq!(e.email, "Ana@Example.com");
        assert_eq!(e.name, "lead.captured");
        assert_eq!(e.properties["ebook"], "seo");
        assert_eq!(e.attributes["first_name"], "Ana");
        assert_eq!(e.occurred_at, Some(1_740_817_800_000));
        assert_eq!(e.id.as_deref(), Some("17"));
    }

    #[test]
    fn contact_bodies_are_checked() {
        let c = parse_contact(br#"{"email": "a@b.example", "tags": ["vip", " beta "]}"#).unwrap();
        assert_eq!(c.tags, ["vip", "beta"]);
        assert!(c.attributes.is_empty());
        assert_eq!(
            parse_contact(br#"{"email": "a@b.example", "tags": "vip"}"#).unwrap_err(),
            "`tags` must be an array of strings"
        );
        assert_eq!(
            parse_contact(br#"{"email": "a@b.example", "tags": ["vip", ""]}"#).unwrap_err(),
            "`tags[1]` must be a non-empty string"
        );
        assert_eq!(
            parse_contact(br#"{"email": "a@b.example", "name": "x"}"#).unwrap_err(),
            "unknown field `name`: the fields are email, attributes, tags"
        );
    }
}
