//! The double opt-in's link: `GET /f/confirm/TOKEN` only shows a button, because mail
//! scanners fetch every link; `POST` confirms, sends a new link, or declines (RFC 8058
//! one-click from the confirmation's List-Unsubscribe), each in one transaction.

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use nurture_store::Confirmed;
use nurture_token::Claim;

use super::body::{self, Values};
use super::html;
use crate::{AppState, now_ms};

/// The submission a confirmation token names and whether it is still valid.
fn confirm_claim(state: &AppState, token: &str) -> Option<(i64, bool)> {
    match state.signer.verify(token) {
        Some(Claim::Confirm { id, expires }) => Some((id, now_ms() / 1000 <= expires)),
        _ => None,
    }
}

fn bad_link() -> Response {
    html::message(
        StatusCode::NOT_FOUND,
        "This link is not valid",
        "It may have been copied incompletely. Please use the link from the email itself.",
    )
}

fn unavailable() -> Response {
    html::message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again",
        "This page is unavailable just now. Please try again in a minute.",
    )
}

/// `GET /f/confirm/TOKEN`: a page with a confirm button; confirms nothing.
pub(crate) async fn confirm_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Response {
    let Some((id, valid)) = confirm_claim(&state, &token) else {
        return bad_link();
    };
    let found = async {
        // A read: the page never waits behind the writer.
        let mut tx = state.store.begin_read().await?;
        let s = tx.submission(id).await?;
        tx.rollback().await?;
        Ok::<_, nurture_store::StoreError>(s)
    }
    .await;
    match found {
        Ok(Some((form_id, confirmed))) => match state.forms.get(&form_id) {
            None => bad_link(),
            Some(form) if confirmed.is_some() => html::after(&form.after_confirm, "Confirmed"),
            Some(_) if !valid => html::expired_page(),
            Some(form) => html::confirm_page(&form),
        },
        Ok(None) => bad_link(),
        Err(e) => {
            tracing::error!("confirmation page: {e}");
            unavailable()
        }
    }
}

/// `POST /f/confirm/TOKEN`: confirms (the page's button), sends a new link (the expired
/// page's button), or declines (RFC 8058 one-click from the confirmation's List-Unsubscribe).
pub(crate) async fn confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    let Some((id, valid)) = confirm_claim(&state, &token) else {
        return bad_link();
    };
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let values = match axum::body::to_bytes(request.into_body(), 16 * 1024).await {
        Ok(b) => body::parse(&content_type, &b).unwrap_or_default(),
        Err(_) => Values::new(),
    };
    let now = now_ms();
    let result = async {
        let mut tx = state.store.begin().await?;
        let Some((form_id, _)) = tx.submission(id).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let Some(form) = state.forms.get(&form_id) else {
            tx.rollback().await?;
            return Ok(None);
        };
        let answer = if values
            .get("List-Unsubscribe")
            .is_some_and(|v| v == "One-Click")
        {
            tx.decline_submission(id, now).await?;
            html::message(
                StatusCode::OK,
                "Unsubscribed",
                "You will not receive any emails from this form.",
            )
        } else if values.contains_key("resend") || !valid {
            if values.contains_key("resend")
                && tx
                    .requeue_confirmation(id, state.forms.settings.resend_after_ms, now)
                    .await?
            {
                state.wake.notify_one();
                html::message(
                    StatusCode::OK,
                    "A new link is on its way",
                    "Please check your inbox for a new confirmation email.",
                )
            } else if !valid {
                html::expired_page()
            } else {
                html::message(
                    StatusCode::OK,
                    "Please check your inbox",
                    "A confirmation email was sent recently; please use the link in it.",
                )
            }
        } else {
            match tx
                .confirm_submission(id, &form.event, &form.properties, &form.tags, now)
                .await?
            {
                Confirmed::Now { .. } => {
                    tracing::info!(form = %form.id, submission = id, "form submission confirmed");
                    state.wake.notify_one();
                    html::after(&form.after_confirm, "Confirmed")
                }
                Confirmed::Already { .. } => html::after(&form.after_confirm, "Confirmed"),
                Confirmed::NotFound => bad_link(),
            }
        };
        tx.commit().await?;
        Ok::<_, nurture_store::StoreError>(Some(answer))
    }
    .await;
    match result {
        Ok(Some(r)) => r,
        Ok(None) => bad_link(),
        Err(e) => {
            tracing::error!("confirmation: {e}");
            unavailable()
        }
    }
}
