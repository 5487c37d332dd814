//! Why a post is refused and how it is answered: the bot checks (honeypot, signed time
//! stamp, proof of work) turned into a reason and a sentence, the counter and log line of
//! each refusal (never the address in clear), and the answer, a JSON error or the page again
//! filled in with a fresh stamp. Nothing of a refused post is stored.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use nurture_campaign::Form;

use super::body::{Shape, Values};
use super::defend::{self, StampError, Stamper};
use super::{address_hash, html, json_error};
use crate::{AppState, now_ms};

/// Why a post was refused: the reason counted and logged, and the answer.
pub(super) struct Refusal {
    reason: &'static str,
    status: StatusCode,
    message: String,
}

impl Refusal {
    pub(super) fn new(
        reason: &'static str,
        status: StatusCode,
        message: impl Into<String>,
    ) -> Self {
        Self {
            reason,
            status,
            message: message.into(),
        }
    }
}

/// Counts and logs a refusal (without the address in clear).
pub(super) async fn count(state: &AppState, form: &str, reason: &str, email: Option<&str>) {
    tracing::info!(
        form,
        reason,
        address = email.map(address_hash).unwrap_or_default(),
        "form submission refused"
    );
    let counted = async {
        let mut tx = state.store.begin().await?;
        tx.count_form_rejection(form, reason).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = counted {
        tracing::error!("form rejection not counted: {e}");
    }
}

/// The bot checks: honeypot, signed time stamp, proof of work.
pub(super) fn defences(
    state: &AppState,
    form: &Form,
    shape: Shape,
    values: &Values,
    now: i64,
) -> Result<(), Refusal> {
    if values.get("website").is_some_and(|v| !v.trim().is_empty()) {
        return Err(Refusal::new(
            "honeypot",
            StatusCode::BAD_REQUEST,
            "the submission was refused",
        ));
    }
    let settings = &state.forms.settings;
    let stamp = values.get("nurture_ts").map(String::as_str).unwrap_or("");
    match Stamper::new(&state.signer).check(
        &form.id,
        stamp,
        now,
        if shape == Shape::Json {
            0
        } else {
            settings.min_fill_ms
        },
    ) {
        Ok(()) => {}
        Err(StampError::TooFast) => {
            return Err(Refusal::new(
                "too_fast",
                StatusCode::BAD_REQUEST,
                "the form was sent too quickly; please wait a few seconds and send it again",
            ));
        }
        Err(StampError::Invalid) => {
            return Err(Refusal::new(
                "stamp",
                StatusCode::BAD_REQUEST,
                "the form has expired or did not come from this site; please reload the page and send it again",
            ));
        }
    }
    let pow = values.get("nurture_pow").map(|s| s.trim()).unwrap_or("");
    // A page without JavaScript cannot solve the challenge: the checks above let it through.
    if (shape == Shape::Json || !pow.is_empty())
        && !defend::proof_ok(stamp, pow, settings.pow_difficulty)
    {
        return Err(Refusal::new(
            "proof_of_work",
            StatusCode::BAD_REQUEST,
            "the proof of work is missing or wrong: fetch /f/FORM_ID/challenge and solve it",
        ));
    }
    Ok(())
}

pub(super) async fn refuse(
    state: &AppState,
    form: &Form,
    shape: Shape,
    r: Refusal,
    values: &Values,
    fields: Option<&BTreeMap<String, String>>,
) -> Response {
    count(
        state,
        &form.id,
        r.reason,
        values.get("email").map(String::as_str),
    )
    .await;
    match shape {
        Shape::Json => json_error(r.status, &r.message, fields),
        Shape::Html => {
            let mut errors = fields.cloned().unwrap_or_default();
            if errors.is_empty() {
                errors.insert(String::new(), upper_first(&r.message));
            }
            // The page comes back filled in, with a fresh stamp; the honeypot stays empty.
            let mut kept = values.clone();
            kept.remove("website");
            let stamp = Stamper::new(&state.signer).stamp(&form.id, now_ms());
            html::form_page(
                form,
                &stamp,
                state.forms.settings.pow_difficulty,
                &kept,
                &errors,
                r.status,
            )
        }
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}
