//! Double opt-in confirmation emails: claiming the ones the HTTP server queued, rendering and
//! sending each through the same [`Mailer`] as campaign mail, and recording the outcome.
//!
//! Confirmation emails are a queue in the database (`form_submissions.mail_state`): the
//! server inserts a `queued` row with the submission and wakes the daemon, whose delivery
//! round claims it (`queued → sending`, one guarded statement), sends it through the mailer
//! (transport, DKIM, `List-Unsubscribe`) and records `sent`. So the email is not lost if the
//! server's thread or the daemon stops between the two, and two daemons never both send it;
//! a process that dies mid-send leaves it `unknown`, never re-sent blindly.

use std::time::SystemTime;

use nurture_campaign::{Campaign, Form, Mailbox, Trigger};
use nurture_scheduler::{Engine, Failure};
use nurture_store::{FormMail, MailOutcome, StoreError};

use crate::{BuiltMessage, Claim, Mailer, OutgoingEmail, RenderRequest, Tracking, build_message};

/// How long a claimed confirmation may take before it counts as abandoned.
const LEASE_MS: i64 = 5 * 60 * 1000;
/// Confirmations sent per round at most (the rest wait for the next round, a second away).
const BATCH: i64 = 50;
/// Transient failures are retried this many times (about 1m, 5m, 15m, 1h, 4h apart).
const MAX_ATTEMPTS: i64 = 6;

/// The sender of a form's confirmation: its `from`, else the `from` of a campaign its event
/// triggers (the first by id).
pub fn sender_of<'a>(form: &'a Form, campaigns: &'a [Campaign]) -> Option<&'a Mailbox> {
    form.from.as_ref().or_else(|| {
        let mut matching: Vec<&Campaign> = campaigns
            .iter()
            .filter(|c| matches!(&c.trigger, Trigger::Event { name, .. } if *name == form.event))
            .filter(|c| c.from.is_some())
            .collect();
        matching.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        matching.first().and_then(|c| c.from.as_ref())
    })
}

/// Retry delay after `attempts` failed attempts.
fn backoff_ms(attempts: i64) -> i64 {
    const STEPS: [i64; 5] = [60, 300, 900, 3600, 4 * 3600];
    STEPS[usize::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(STEPS.len() - 1)]
        * 1000
}

/// Sends the confirmation emails due at `now_ms`; returns how many were sent.
///
/// `sources` gives the forms and campaigns (a confirmation's form, and the campaigns its
/// `from` may come from); it is called only when something was claimed, so an idle round
/// reads no files.
pub async fn deliver_confirmations(
    mailer: &Mailer,
    engine: &Engine,
    now_ms: i64,
    sources: impl FnOnce() -> (Vec<Form>, Vec<Campaign>),
) -> Result<u64, StoreError> {
    let claimed = {
        let mut tx = engine.store().begin().await?;
        let c = tx.claim_form_mail(now_ms, now_ms + LEASE_MS, BATCH).await?;
        tx.commit().await?;
        c
    };
    if claimed.is_empty() {
        return Ok(0);
    }
    let (forms, campaigns) = sources();
    let mut sent = 0;
    for mail in claimed {
        let outcome = match forms.iter().find(|f| f.id == mail.form_id) {
            None => MailOutcome::Failed {
                error: format!("the form {} no longer exists", mail.form_id),
            },
            Some(form) => match build(mailer, form, &campaigns, &mail, now_ms) {
                Err(error) => MailOutcome::Failed { error },
                Ok(built) => match mailer.transmit(&built).await {
                    Ok(_) => MailOutcome::Sent {
                        message_id: built.message_id.clone(),
                    },
                    Err(Failure::Transient(e)) if mail.attempts < MAX_ATTEMPTS => {
                        MailOutcome::Retry {
                            error: e,
                            at: now_ms + backoff_ms(mail.attempts),
                        }
                    }
                    Err(Failure::Unknown(e)) => MailOutcome::Unknown { error: e },
                    Err(Failure::Transient(e) | Failure::Permanent(e) | Failure::Render(e)) => {
                        MailOutcome::Failed { error: e }
                    }
                },
            },
        };
        match &outcome {
            MailOutcome::Sent { .. } => {
                sent += 1;
                tracing::info!(form = %mail.form_id, submission = mail.id, "confirmation email sent");
            }
            MailOutcome::Retry { error, .. } => {
                tracing::warn!(form = %mail.form_id, submission = mail.id, "confirmation email deferred: {error}")
            }
            MailOutcome::Failed { error } | MailOutcome::Unknown { error } => {
                tracing::error!(form = %mail.form_id, submission = mail.id, "confirmation email failed: {error}")
            }
        }
        let mut tx = engine.store().begin().await?;
        if !tx.finish_form_mail(mail.id, &outcome, now_ms).await? {
            tracing::warn!(
                submission = mail.id,
                "confirmation outcome not recorded: its lease ran out"
            );
        }
        tx.commit().await?;
    }
    Ok(sent)
}

/// Renders and builds one confirmation email.
#[allow(clippy::disallowed_methods)] // the Date header is the wall clock, as for campaign mail
fn build(
    mailer: &Mailer,
    form: &Form,
    campaigns: &[Campaign],
    mail: &FormMail,
    now_ms: i64,
) -> Result<BuiltMessage, String> {
    let opt_in = form
        .double_opt_in
        .as_ref()
        .ok_or_else(|| format!("the form {} no longer asks for confirmation", form.id))?;
    let from = sender_of(form, campaigns).ok_or_else(|| {
        format!(
            "the form {} has no `from`, and no campaign triggered by {} has one",
            form.id, form.event
        )
    })?;
    let token = mailer.signer.sign(&Claim::Confirm {
        id: mail.id,
        expires: now_ms / 1000 + opt_in.expires.as_secs(),
    });
    let confirm_url = format!("{}/f/confirm/{token}", mailer.base_url);
    let mut ctx = crate::context(
        &mail.email,
        &mail.attributes,
        &mail.tags,
        &form.properties,
        &format!("form:{}", form.id),
        &form.title,
        "confirm",
        // One-click "unsubscribe" from a confirmation is "no thanks": a POST with
        // `List-Unsubscribe=One-Click` to the confirmation URL declines.
        &confirm_url,
        mailer.postal_address.as_deref(),
    );
    ctx["confirm_url"] = serde_json::Value::String(confirm_url.clone());
    ctx["form"] =
        serde_json::json!({ "id": form.id, "title": form.title, "consent": form.consent });
    let rendered = mailer
        .templates
        .render(&RenderRequest {
            template: opt_in.template.as_str(),
            layout: None,
            subject: &opt_in.subject,
            preheader: None,
            context: &ctx,
            tracking: Tracking::default(),
        })
        .map_err(|e| {
            format!(
                "form {}, confirmation for submission {}: {e}",
                form.id, mail.id
            )
        })?;
    build_message(
        &OutgoingEmail {
            from_name: from.name(),
            from_address: from.address(),
            reply_to: None,
            to_name: None,
            to_address: &mail.email,
            subject: &rendered.subject,
            html: &rendered.html,
            text: &rendered.text,
            unsubscribe_url: &confirm_url,
            campaign: &format!("form:{}", form.id),
            step: "confirm",
            date: SystemTime::now(),
        },
        mailer.dkim.as_ref(),
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;
    use crate::CourierSettings;

    const FORM: &str = r#"title: Get the guide
fields:
  - { name: email, type: email, required: true, label: Work email }
event: lead.captured
double_opt_in: { send: forms/confirm, subject: "Please confirm your email" }
consent: "Send me the guide."
after_submit: { message: "Check your inbox." }
after_confirm: { message: "Confirmed." }
"#;

    fn campaign(id: &str, from: Option<&str>, event: &str) -> String {
        let (from, steps) = match from {
            Some(f) => (
                format!("from: \"{f}\"\n"),
                "  - id: welcome\n    send: welcome\n    subject: Hi\n",
            ),
            // A campaign without `from` sends nothing.
            None => (String::new(), "  - id: mark\n    tag: [lead]\n"),
        };
        format!("name: {id}\n{from}trigger: {{ event: {event} }}\nsteps:\n{steps}")
    }

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn forms(dir: &Path) -> Vec<Form> {
        let loaded = nurture_campaign::load_forms(&[dir.join("forms")]);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        loaded.forms.into_iter().map(|f| f.form).collect()
    }

    fn campaigns(dir: &Path) -> Vec<Campaign> {
        let loaded = nurture_campaign::load_paths(&[dir.join("campaigns")]);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        loaded.campaigns.into_iter().map(|c| c.campaign).collect()
    }

    #[test]
    fn confirmation_retries_back_off() {
        let got: Vec<i64> = (1..=7).map(backoff_ms).map(|m| m / 1000).collect();
        assert_eq!(got, [60, 300, 900, 3600, 14_400, 14_400, 14_400]);
    }

    #[test]
    fn the_sender_is_the_forms_from_else_the_first_campaign_by_id_its_event_triggers() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "forms/guide.yaml", FORM);
        write(
            dir.path(),
            "campaigns/b.yaml",
            &campaign("b", Some("Bea <bea@x.example>"), "lead.captured"),
        );
        write(
            dir.path(),
            "campaigns/c.yaml",
            &campaign("c", Some("Cy <cy@x.example>"), "lead.captured"),
        );
        // Sorts first, but another event triggers it; and the first with this event has no from.
        write(
            dir.path(),
            "campaigns/a.yaml",
            &campaign("a", Some("Al <al@x.example>"), "other"),
        );
        write(
            dir.path(),
            "campaigns/aa.yaml",
            &campaign("aa", None, "lead.captured"),
        );
        let forms = forms(dir.path());
        let campaigns = campaigns(dir.path());
        let from = sender_of(&forms[0], &campaigns).map(|m| m.address().to_string());
        assert_eq!(from.as_deref(), Some("bea@x.example"));
        assert!(sender_of(&forms[0], &campaigns[..0]).is_none());

        write(
            dir.path(),
            "forms/guide.yaml",
            &format!("from: \"Fo <fo@x.example>\"\n{FORM}"),
        );
        let forms = self::forms(dir.path());
        let from = sender_of(&forms[0], &campaigns).map(|m| m.address().to_string());
        assert_eq!(from.as_deref(), Some("fo@x.example"));
    }

    #[test]
    fn a_confirmation_links_to_its_signed_confirm_url_and_names_the_form() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "forms/guide.yaml", FORM);
        write(
            dir.path(),
            "templates/forms/confirm.html.hbs",
            r#"<p><a href="{{confirm_url}}">Confirm</a> for {{form.title}}</p>"#,
        );
        write(
            dir.path(),
            "campaigns/b.yaml",
            &campaign("b", Some("Bea <bea@x.example>"), "lead.captured"),
        );
        let templates: PathBuf = dir.path().join("templates");
        let settings = CourierSettings {
            templates_dir: &templates,
            smtp_url: None,
            smtp_timeout: Duration::from_secs(5),
            smtp_ca_file: None,
            outbox_dir: dir.path(),
            base_url: "https://n.example",
            postal_address: None,
            rate_per_second: 1000,
            dkim_domain: None,
            dkim_selector: None,
            dkim_private_key: None,
            dkim_algorithm: None,
            webhook_secret: None,
            webhook_hosts: &[],
        };
        let mailer = Mailer::with_secret(&settings, "secret").unwrap();
        let mail = FormMail {
            id: 7,
            form_id: "guide".into(),
            email: "lea@y.example".into(),
            attributes: serde_json::Map::new(),
            tags: Vec::new(),
            attempts: 1,
            queued_at: 0,
        };
        let forms = forms(dir.path());
        let now_ms = 1_700_000_000_000;
        let built = build(&mailer, &forms[0], &campaigns(dir.path()), &mail, now_ms).unwrap();
        let raw = String::from_utf8_lossy(&built.bytes).to_string();
        let token = mailer.signer.sign(&Claim::Confirm {
            id: 7,
            expires: now_ms / 1000 + forms[0].double_opt_in.as_ref().unwrap().expires.as_secs(),
        });
        let url = format!("https://n.example/f/confirm/{token}");
        assert!(raw.contains("Subject: Please confirm your email"), "{raw}");
        assert!(raw.contains("From: Bea <bea@x.example>"), "{raw}");
        assert!(raw.contains("To: lea@y.example"), "{raw}");
        assert!(raw.contains(&format!("List-Unsubscribe: <{url}>")), "{raw}");
        assert!(raw.contains("Get the guide"), "{raw}");

        // Without anyone to send it, nothing is built.
        let err = build(&mailer, &forms[0], &[], &mail, now_ms).unwrap_err();
        assert!(err.contains("has no `from`"), "{err}");
    }
}
