//! Forms on the command side: loading `forms_dir`, sending the double opt-in confirmation
//! emails the HTTP server queued, and `nurture forms snippet FORM_ID`.
//!
//! Confirmation emails are a queue in the database (`form_submissions.mail_state`): the
//! server inserts a `queued` row with the submission and wakes the daemon, whose delivery
//! round claims it (`queued → sending`, one guarded statement), sends it through the same
//! mailer as campaign mail (transport, DKIM, `List-Unsubscribe`) and records `sent`. So the
//! email is not lost if the server's thread or the daemon stops between the two, and two
//! daemons never both send it; a process that dies mid-send leaves it `unknown`, never
//! re-sent blindly.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use nurture_campaign::{Form, Mailbox, Trigger};
use nurture_scheduler::{Engine, Failure};
use nurture_sender::{Claim, OutgoingEmail, RenderRequest, Tracking, build_message, context};
use nurture_store::{FormMail, MailOutcome};

use crate::config::Config;
use crate::delivery::Mailer;
use crate::exit::invalid;

/// How long a claimed confirmation may take before it counts as abandoned.
const LEASE_MS: i64 = 5 * 60 * 1000;
/// Confirmations sent per round at most (the rest wait for the next round, a second away).
const BATCH: i64 = 50;
/// Transient failures are retried this many times (about 1m, 5m, 15m, 1h, 4h apart).
const MAX_ATTEMPTS: i64 = 6;

/// The forms in `forms_dir`; any invalid form is an error listing every diagnostic.
pub fn load(config: &Config) -> anyhow::Result<Vec<Form>> {
    let loaded = nurture_campaign::load_forms(std::slice::from_ref(&config.forms_dir));
    if let Some(first) = loaded.diagnostics.first() {
        let all: Vec<String> = loaded
            .diagnostics
            .iter()
            .map(|d| format!("{}: {}", d.location(), d.message))
            .collect();
        return Err(invalid(format!(
            "{} form problem(s), first: {}: {}\n{}",
            loaded.diagnostics.len(),
            first.location(),
            first.message,
            all.join("\n")
        )));
    }
    Ok(loaded.forms.into_iter().map(|f| f.form).collect())
}

/// The sender of a form's confirmation: its `from`, else the `from` of a campaign its event
/// triggers (the first by id).
pub fn sender_of<'a>(
    form: &'a Form,
    campaigns: &'a [nurture_campaign::Campaign],
) -> Option<&'a Mailbox> {
    form.from.as_ref().or_else(|| {
        let mut matching: Vec<&nurture_campaign::Campaign> = campaigns
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
pub async fn deliver_confirmations(
    mailer: &Arc<Mailer>,
    engine: &Engine,
    config: &Config,
    now_ms: i64,
) -> anyhow::Result<u64> {
    let claimed = {
        let mut tx = engine.store().begin().await?;
        let c = tx.claim_form_mail(now_ms, now_ms + LEASE_MS, BATCH).await?;
        tx.commit().await?;
        c
    };
    if claimed.is_empty() {
        return Ok(0);
    }
    let forms = load(config).unwrap_or_else(|e| {
        tracing::error!("forms not readable: {e:#}");
        Vec::new()
    });
    let campaigns: Vec<nurture_campaign::Campaign> =
        nurture_campaign::load_paths(std::slice::from_ref(&config.campaigns_dir))
            .campaigns
            .into_iter()
            .map(|c| c.campaign)
            .collect();
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
    campaigns: &[nurture_campaign::Campaign],
    mail: &FormMail,
    now_ms: i64,
) -> Result<nurture_sender::BuiltMessage, String> {
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
    let mut ctx = context(
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

/// `nurture forms snippet FORM_ID`: HTML to paste into another site's page. The form posts
/// to the daemon; its script fetches a signed stamp and solves the proof of work (the site
/// must be in the form's `allowed_origins`). Without JavaScript, the iframe variant works.
pub fn snippet(config: &Config, id: &str) -> anyhow::Result<ExitCode> {
    let forms = load(config)?;
    let Some(form) = forms.iter().find(|f| f.id == id) else {
        let ids: Vec<&str> = forms.iter().map(|f| f.id.as_str()).collect();
        return Err(invalid(format!(
            "there is no form `{id}` in {} (forms: {})",
            config.forms_dir.display(),
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        )));
    };
    let base = &config.base_url;
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut out = String::new();
    out.push_str(&format!(
        "<!-- nurture form `{id}`. Without JavaScript, embed the hosted page instead:\n     <iframe src=\"{base}/f/{id}\" title=\"{}\" style=\"width:100%;min-height:36rem;border:0\"></iframe> -->\n",
        esc(&form.title)
    ));
    out.push_str(&format!(
        "<form class=\"nurture-form\" method=\"post\" action=\"{base}/f/{id}\" data-nurture=\"{base}/f/{id}\">\n"
    ));
    for f in &form.fields {
        let req = if f.required { " required" } else { "" };
        match f.kind {
            nurture_campaign::FieldKind::Textarea => out.push_str(&format!(
                "  <label>{} <textarea name=\"{}\" maxlength=\"{}\"{req}></textarea></label>\n",
                esc(&f.label),
                f.name,
                f.max_length
            )),
            kind => out.push_str(&format!(
                "  <label>{} <input type=\"{}\" name=\"{}\" maxlength=\"{}\"{req}></label>\n",
                esc(&f.label),
                kind.input_type(),
                f.name,
                f.max_length
            )),
        }
    }
    out.push_str("  <div style=\"position:absolute;left:-10000px\" aria-hidden=\"true\"><input type=\"text\" name=\"website\" tabindex=\"-1\" autocomplete=\"off\"></div>\n");
    out.push_str("  <input type=\"hidden\" name=\"nurture_ts\"><input type=\"hidden\" name=\"nurture_pow\">\n");
    out.push_str(&format!("  <p>{}</p>\n", esc(&form.consent)));
    out.push_str(&format!(
        "  <button type=\"submit\">{}</button>\n</form>\n",
        esc(&form.button)
    ));
    out.push_str(SNIPPET_SCRIPT);
    outln!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// Fetches a stamp for each embedded form and solves its proof of work, as the hosted page's
/// script does.
const SNIPPET_SCRIPT: &str = "<script>document.querySelectorAll('form[data-nurture]').forEach(function(f){\
fetch(f.getAttribute('data-nurture')+'/challenge').then(function(r){return r.json()}).then(function(c){\
f.nurture_ts.value=c.nurture_ts;var e=new TextEncoder(),n=0,d=c.difficulty;\
function ok(b){var r=d;for(var i=0;i<b.length&&r>0;i++){if(r>=8){if(b[i]!==0)return false;r-=8}else{return(b[i]>>(8-r))===0}}return true}\
(function step(){var a=[];for(var k=0;k<64;k++)a.push(n++);Promise.all(a.map(function(i){\
return crypto.subtle.digest('SHA-256',e.encode(c.nurture_ts+':'+i)).then(function(h){return[i,new Uint8Array(h)]})}))\
.then(function(rs){for(var j=0;j<rs.length;j++){if(ok(rs[j][1])){f.nurture_pow.value=String(rs[j][0]);return}}step()})})()})});</script>";

/// `validate`'s checks of forms beyond their own file: the confirmation template exists,
/// and someone sends it (the form's `from`, or a campaign its event triggers).
pub fn check(
    config: &Config,
    forms: &[nurture_campaign::FormFile],
    campaigns: &[nurture_campaign::CampaignFile],
) -> Vec<nurture_campaign::Diagnostic> {
    let campaigns: Vec<nurture_campaign::Campaign> =
        campaigns.iter().map(|c| c.campaign.clone()).collect();
    let mut out = Vec::new();
    for file in forms {
        let form = &file.form;
        let Some(opt_in) = &form.double_opt_in else {
            continue;
        };
        let html = config
            .templates_dir
            .join(format!("{}.html.hbs", opt_in.template.as_str()));
        if !html.is_file() {
            out.push(
                file.diagnostic(
                    "double_opt_in.send",
                    format!(
                        "the confirmation template {} does not exist",
                        html.display()
                    ),
                )
                .hint("create it; it gets `confirm_url` besides the usual context"),
            );
        }
        if sender_of(form, &campaigns).is_none() {
            out.push(
                file.diagnostic(
                    "event",
                    format!(
                        "nobody sends this form's confirmation: it has no `from`, and no campaign triggered by `{}` has one",
                        form.event
                    ),
                )
                .hint("add `from: \"Name <address>\"` to the form"),
            );
        }
    }
    out
}

fn time(ms: Option<i64>) -> serde_json::Value {
    ms.map_or(serde_json::Value::Null, |ms| {
        serde_json::Value::String(nurture_scheduler::from_ms(ms).to_rfc3339())
    })
}

/// Consent records as `contacts show --json` gives them.
pub fn consents_json(consents: &[nurture_store::Consent]) -> serde_json::Value {
    serde_json::Value::Array(
        consents
            .iter()
            .map(|c| {
                let mut v = serde_json::json!({
                    "form": c.form,
                    "text": c.text,
                    "version": c.version,
                    "submitted_at": time(Some(c.submitted_at)),
                    "confirmed_at": time(c.confirmed_at),
                    "confirmation_email": c.mail_state,
                    "confirmation_sent_at": time(c.mail_sent_at),
                });
                if let Some(ip) = &c.ip {
                    v["ip"] = serde_json::json!(ip);
                }
                if let Some(ua) = &c.user_agent {
                    v["user_agent"] = serde_json::json!(ua);
                }
                if let Some(e) = &c.mail_error {
                    v["confirmation_error"] = serde_json::json!(e);
                }
                v
            })
            .collect(),
    )
}

/// One line per consent record, for `contacts show` and `explain`.
pub fn print_consents(consents: &[nurture_store::Consent]) {
    outln!("consents:");
    if consents.is_empty() {
        outln!("  none");
    }
    for c in consents {
        let submitted = time(Some(c.submitted_at));
        let confirmed = match c.confirmed_at {
            Some(ms) => format!("confirmed {}", time(Some(ms)).as_str().unwrap_or("-")),
            None => format!("not confirmed (confirmation email: {})", c.mail_state),
        };
        outln!(
            "  form {:<16} submitted {}  {confirmed}{}",
            c.form,
            submitted.as_str().unwrap_or("-"),
            c.ip.as_deref()
                .map(|ip| format!("  from {ip}"))
                .unwrap_or_default()
        );
        outln!("    \"{}\" (version {})", c.text, c.version);
    }
}

/// Per-form counters for `stats --json`.
pub fn counts_json(counts: &[nurture_store::FormCounts]) -> serde_json::Value {
    serde_json::Value::Array(
        counts
            .iter()
            .map(|c| {
                let rejections: serde_json::Map<String, serde_json::Value> = c
                    .rejections
                    .iter()
                    .map(|(r, n)| (r.clone(), serde_json::json!(n)))
                    .collect();
                serde_json::json!({
                    "id": c.form,
                    "submissions": c.submissions,
                    "confirmations": c.confirmations,
                    "confirmation_emails_sent": c.mailed,
                    "rejections": rejections,
                })
            })
            .collect(),
    )
}

/// Per-form counters for `stats`.
pub fn print_counts(counts: &[nurture_store::FormCounts]) {
    if counts.is_empty() {
        return;
    }
    outln!("forms:");
    for c in counts {
        let rejected: i64 = c.rejections.iter().map(|(_, n)| n).sum();
        let reasons: Vec<String> = c
            .rejections
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        outln!(
            "  {:<24} {} submitted, {} confirmed, {} rejected{}",
            c.form,
            c.submissions,
            c.confirmations,
            rejected,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            }
        );
    }
    outln!();
}

#[cfg(test)]
mod tests {
    #[test]
    fn confirmation_retries_back_off() {
        let got: Vec<i64> = (1..=7).map(super::backoff_ms).map(|m| m / 1000).collect();
        assert_eq!(got, [60, 300, 900, 3600, 14_400, 14_400, 14_400]);
    }
}
