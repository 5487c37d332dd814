//! The links inside every email: `/u/TOKEN` (unsubscribe), `/o/TOKEN` (the open pixel) and
//! `/c/TOKEN` (a tracked click).
//!
//! A token is only what `Signer::verify` says it is; anything else — forged, tampered,
//! truncated, or a token of another kind — gets 404 and goes nowhere. Tokens name a message,
//! and the message names the contact, campaign and step, so a token for a message that no
//! longer exists is not valid either.
//!
//! Only `POST /u/TOKEN` changes a contact. A GET never does: mail scanners and link previews
//! fetch every link in a message, and must not unsubscribe anyone by doing so.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nurture_store::{Contact, ContactStatus, MessageRow, NewEvent, Tx};
use nurture_token::Claim;
use serde_json::{Map, Value, json};

use crate::pages::{not_found_page, test_unsubscribe, unavailable, unsubscribe_form, unsubscribed};
use crate::{AppState, now_ms};

/// A transparent 1×1 GIF, the smallest image every mail client shows.
const PIXEL: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The message a token names and its contact, if both still exist.
async fn message_and_contact(
    tx: &mut Tx,
    message_id: i64,
) -> nurture_store::Result<Option<(MessageRow, Contact)>> {
    let Some(message) = tx.message(message_id).await? else {
        return Ok(None);
    };
    Ok(tx
        .contact(message.contact_id)
        .await?
        .map(|contact| (message, contact)))
}

/// What email events say about the message they concern.
fn email_properties(message: &MessageRow) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("campaign".into(), json!(message.campaign_id));
    p.insert("step".into(), json!(message.step_id));
    p.insert("message_id".into(), json!(message.message_id));
    p
}

/// `GET /u/TOKEN`: a page with a button; changes nothing.
pub(crate) async fn unsubscribe_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Response {
    let id = match state.signer.verify(&token) {
        Some(Claim::Unsubscribe(id)) => id,
        Some(Claim::TestUnsubscribe(_)) => return test_unsubscribe(),
        _ => return not_found_page(),
    };
    let found = async {
        // A read: the page never waits behind the writer (a send round, an ingest batch).
        let mut tx = state.store.begin_read().await?;
        let found = message_and_contact(&mut tx, id).await?;
        tx.rollback().await?;
        Ok::<_, nurture_store::StoreError>(found)
    }
    .await;
    match found {
        Ok(Some((_, contact))) if contact.status == ContactStatus::Unsubscribed => unsubscribed(),
        Ok(Some(_)) => unsubscribe_form(),
        Ok(None) => not_found_page(),
        Err(e) => {
            tracing::error!("unsubscribe page: {e}");
            unavailable()
        }
    }
}

/// `POST /u/TOKEN`: RFC 8058 one-click unsubscribe, also what the page's button posts.
///
/// Any body is accepted (`List-Unsubscribe=One-Click` urlencoded or multipart, or nothing):
/// the signed token is the proof, and mailbox providers differ in what they send. The answer
/// is 200 and a short page, never a redirect, and a repeat changes nothing.
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    Path(token): Path<String>,
    // Read (so the connection can be reused) and ignored, even when unreadable.
    _body: Result<Bytes, BytesRejection>,
) -> Response {
    let id = match state.signer.verify(&token) {
        Some(Claim::Unsubscribe(id)) => id,
        Some(Claim::TestUnsubscribe(_)) => return test_unsubscribe(),
        _ => return not_found_page(),
    };
    match unsubscribe_contact(&state, id, now_ms()).await {
        Ok(true) => unsubscribed(),
        Ok(false) => not_found_page(),
        Err(e) => {
            tracing::error!("unsubscribe: {e}");
            unavailable()
        }
    }
}

/// Unsubscribes the contact of a message and ends its enrollments; false when the message
/// is gone. Queued mail needs nothing more: delivery re-checks the status before sending.
async fn unsubscribe_contact(
    state: &AppState,
    message_id: i64,
    now: i64,
) -> nurture_store::Result<bool> {
    let mut tx = state.store.begin().await?;
    let Some((message, contact)) = message_and_contact(&mut tx, message_id).await? else {
        tx.rollback().await?;
        return Ok(false);
    };
    // A bounced or complained contact is already unmailable; its status says more than
    // "unsubscribed" would, so it stays.
    if contact.status == ContactStatus::Subscribed {
        let reason = format!(
            "unsubscribe link in {}/{}",
            message.campaign_id, message.step_id
        );
        // Guarded on the status it changes: of two concurrent clicks, one does the rest.
        if tx
            .set_contact_status(contact.id, ContactStatus::Unsubscribed, &reason, now)
            .await?
        {
            tx.exit_contact_enrollments(contact.id, "unsubscribed", now)
                .await?;
            tx.insert_event(
                &NewEvent {
                    contact_id: contact.id,
                    name: "email.unsubscribed".into(),
                    properties: email_properties(&message),
                    occurred_at: now,
                    idempotency_key: None,
                    enrollment_id: Some(message.enrollment_id),
                    step_id: Some(message.step_id.clone()),
                    processed: true,
                },
                now,
            )
            .await?;
            tracing::info!(
                campaign = %message.campaign_id,
                step = %message.step_id,
                "a contact unsubscribed"
            );
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// Records `email.opened` / `email.clicked` for a message; false when the message is gone.
async fn record_email_event(
    state: &AppState,
    message_id: i64,
    name: &str,
    url: Option<&str>,
    now: i64,
) -> nurture_store::Result<bool> {
    let mut tx = state.store.begin().await?;
    let Some(message) = tx.message(message_id).await? else {
        tx.rollback().await?;
        return Ok(false);
    };
    let mut properties = email_properties(&message);
    if let Some(url) = url {
        properties.insert("url".into(), json!(url));
    }
    tx.insert_event(
        &NewEvent {
            contact_id: message.contact_id,
            name: name.into(),
            properties,
            occurred_at: now,
            idempotency_key: None,
            enrollment_id: Some(message.enrollment_id),
            step_id: Some(message.step_id.clone()),
            // Unprocessed, so event triggers and `exit_when` can react to it like any other.
            processed: false,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// `GET /o/TOKEN`: the pixel, and an `email.opened` event.
pub(crate) async fn open(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(Claim::Open(id)) = state.signer.verify(&token) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match record_email_event(&state, id, "email.opened", None, now_ms()).await {
        Ok(true) => {}
        Ok(false) => return StatusCode::NOT_FOUND.into_response(),
        // The reader sees the image either way; only the statistic is lost.
        Err(e) => tracing::error!("open not recorded: {e}"),
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/gif")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
            ),
        ],
        PIXEL,
    )
        .into_response()
}

/// Whether a link may be redirected to: http(s) only, and nothing that cannot be a header.
fn redirect_target(url: &str) -> Option<HeaderValue> {
    let bytes = url.as_bytes();
    let http = bytes.len() > 7 && bytes[..7].eq_ignore_ascii_case(b"http://");
    let https = bytes.len() > 8 && bytes[..8].eq_ignore_ascii_case(b"https://");
    if !(http || https) {
        return None;
    }
    // Bytes, not `from_str`: a link with UTF-8 in it goes out exactly as written. Control
    // characters (a CR LF that would split the header) are refused either way.
    HeaderValue::from_bytes(bytes).ok()
}

/// `GET /c/TOKEN`: 302 to exactly the URL inside the signed token, and `email.clicked`.
pub(crate) async fn click(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    // The URL comes from the signed token, so nobody can choose where this redirects; the
    // scheme is checked all the same, so a bug elsewhere can never make it `javascript:`.
    let Some(Claim::Click(id, url)) = state.signer.verify(&token) else {
        return not_found_page();
    };
    let Some(location) = redirect_target(&url) else {
        return not_found_page();
    };
    match record_email_event(&state, id, "email.clicked", Some(&url), now_ms()).await {
        Ok(true) => {}
        Ok(false) => return not_found_page(),
        // The reader still gets where they were going; only the statistic is lost.
        Err(e) => tracing::error!("click not recorded: {e}"),
    }
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_links_are_redirect_targets() {
        for ok in [
            "https://example.com/a?b=c&d=e#f",
            "http://example.com",
            "HTTPS://EXAMPLE.COM/",
            "https://example.com/café?q=ü",
        ] {
            assert!(redirect_target(ok).is_some(), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "mailto:a@b.example",
            "//evil.example",
            "/relative",
            "https://",
            "ftp://example.com",
            "data:text/html,hi",
            "https://example.com/\r\nSet-Cookie: a=b",
            "",
        ] {
            assert!(redirect_target(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_pixel_is_a_gif() {
        assert_eq!(&PIXEL[..6], b"GIF89a");
        assert_eq!(PIXEL[PIXEL.len() - 1], 0x3b);
    }
}
