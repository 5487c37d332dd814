//! `POST /f/FORM_ID`: one submission taken through the checks in the order the module doc
//! gives, cheapest first, then written by `Tx::submit_form` in one transaction, and the
//! delivery round woken so the confirmation goes out at once.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nurture_store::{NewSubmission, Submitted};
use serde_json::json;

use super::body::{self, Shape, Values};
use super::cors::{cross_origin, with_cors};
use super::refusal::{Refusal, count, defences, refuse};
use super::{address_hash, html, json_error, not_found};
use crate::{AppState, now_ms};

fn client_ip(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// `POST /f/FORM_ID`: a submission from the hosted page, an embedded form or a script.
pub(crate) async fn submit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let now = now_ms();
    let headers = request.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let shape = body::shape(&content_type);
    let Some(form) = state.forms.get(&id) else {
        return not_found(shape);
    };
    let settings = &state.forms.settings;
    let ip = client_ip(&request);
    if let Some(ip) = ip
        && !state
            .forms
            .limiter
            .allow(ip, now, settings.per_ip_per_minute)
    {
        count(&state, &form.id, "rate_limited", None).await;
        let mut r = match shape {
            Shape::Json => json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many submissions from this address; try again in a minute",
                None,
            ),
            Shape::Html => html::message(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "Too many submissions came from your network. Please try again in a minute.",
            ),
        };
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return r;
    }
    let origin = match cross_origin(&form, &headers) {
        Ok(o) => o,
        Err(o) => {
            count(&state, &form.id, "origin", None).await;
            return json_error(
                StatusCode::FORBIDDEN,
                &format!("the origin {o} may not post to this form"),
                None,
            );
        }
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(300).collect::<String>());
    let bytes = match axum::body::to_bytes(request.into_body(), crate::MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let r = Refusal::new(
                "invalid",
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is too large or could not be read",
            );
            return with_cors(
                refuse(&state, &form, shape, r, &Values::new(), None).await,
                origin.as_deref(),
            );
        }
    };
    let values = match body::parse(&content_type, &bytes) {
        Ok(v) => v,
        Err(message) => {
            let r = Refusal::new("invalid", StatusCode::BAD_REQUEST, message);
            return with_cors(
                refuse(&state, &form, shape, r, &Values::new(), None).await,
                origin.as_deref(),
            );
        }
    };
    if let Err(r) = defences(&state, &form, shape, &values, now) {
        return with_cors(
            refuse(&state, &form, shape, r, &values, None).await,
            origin.as_deref(),
        );
    }
    let checked = match body::check(&form, &values, shape) {
        Ok(c) => c,
        Err(errors) => {
            let r = Refusal::new(
                "invalid",
                StatusCode::BAD_REQUEST,
                "some fields need correcting",
            );
            return with_cors(
                refuse(&state, &form, shape, r, &values, Some(&errors)).await,
                origin.as_deref(),
            );
        }
    };
    let submission = NewSubmission {
        form_id: form.id.clone(),
        email: checked.email.clone(),
        attributes: checked.attributes,
        tags: form.tags.clone(),
        consent_text: form.consent.clone(),
        consent_version: form.consent_version.clone(),
        ip: if form.record_ip {
            ip.map(|i| i.to_string())
        } else {
            None
        },
        user_agent: if form.record_ip { user_agent } else { None },
        double_opt_in: form.double_opt_in.is_some(),
        resend_after_ms: settings.resend_after_ms,
        event: form.event.clone(),
        properties: form.properties.clone(),
    };
    let stored = async {
        let mut tx = state.store.begin().await?;
        let out = tx.submit_form(&submission, now).await?;
        tx.commit().await?;
        Ok::<_, nurture_store::StoreError>(out)
    }
    .await;
    let outcome = match stored {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(form = %form.id, "form submission not stored: {e}");
            return with_cors(
                match shape {
                    Shape::Json => json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the submission could not be stored; try again later",
                        None,
                    ),
                    Shape::Html => html::message(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Please try again",
                        "Your submission could not be stored just now. Please try again in a minute.",
                    ),
                },
                origin.as_deref(),
            );
        }
    };
    // The delivery round sends the confirmation (or runs the triggered campaign) at once.
    state.wake.notify_one();
    tracing::info!(form = %form.id, address = address_hash(&checked.email), outcome = ?outcome, "form submitted");
    let status = match outcome {
        Submitted::Pending { .. } => "pending",
        Submitted::Recorded { .. } => "subscribed",
    };
    let response = match shape {
        Shape::Json => {
            let message = match &form.after_submit {
                nurture_campaign::After::Message(m) => json!(m),
                nurture_campaign::After::Redirect(u) => json!({ "redirect": u }),
            };
            (
                StatusCode::ACCEPTED,
                Json(json!({ "status": status, "message": message })),
            )
                .into_response()
        }
        Shape::Html => html::after(&form.after_submit, &form.title),
    };
    with_cors(response, origin.as_deref())
}
