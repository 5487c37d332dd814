//! `test-send` and `preview`: what a lead will receive, before it goes.

use std::path::Path;
use std::process::ExitCode;

use nurture_campaign::{Action, CampaignFile, load_paths};
use nurture_sender::StepEmail;
use serde_json::{Map, Value};

use super::common::{email_arg, open_engine};
use crate::cli::Format;
use crate::config::Config;
use crate::exit::invalid;

/// The data an email is rendered with.
pub(crate) struct Sample {
    pub(crate) email: String,
    pub(crate) attributes: Map<String, Value>,
    pub(crate) tags: Vec<String>,
    pub(crate) event: Map<String, Value>,
}

impl Sample {
    /// The email of `step` of `campaign` for this sample.
    fn email<'a>(
        &'a self,
        campaign: &'a nurture_campaign::Campaign,
        step: &'a str,
        send: &'a nurture_campaign::SendAction,
    ) -> StepEmail<'a> {
        StepEmail {
            campaign,
            step_id: step,
            send,
            email: &self.email,
            attributes: &self.attributes,
            tags: &self.tags,
            event: &self.event,
        }
    }
}

/// The campaign as its file says now (it must validate, templates included).
pub(crate) fn campaign_from_files(config: &Config, id: &str) -> anyhow::Result<CampaignFile> {
    let loaded = load_paths(std::slice::from_ref(&config.campaigns_dir));
    let problems: Vec<_> = loaded
        .diagnostics
        .into_iter()
        .chain(super::templates::check(config, &loaded.campaigns))
        .collect();
    let Some(file) = loaded
        .campaigns
        .into_iter()
        .find(|c| c.campaign.id.as_str() == id)
    else {
        return Err(invalid(format!(
            "there is no valid campaign `{id}` in {} (run nurture validate)",
            config.campaigns_dir.display()
        )));
    };
    if problems.iter().any(|d| d.path == file.source.path) {
        super::validate::print_diagnostics(&problems);
        return Err(invalid(format!(
            "campaign `{id}` has problems; fix them first"
        )));
    }
    Ok(file)
}

/// `--data FILE.json`: `{"contact": {"email", attributes.., "tags": [..]}, "event": {..}}`.
pub(crate) fn sample_from_file(path: &Path) -> anyhow::Result<Sample> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("{}: not valid JSON: {e}", path.display())))?;
    let Value::Object(doc) = doc else {
        return Err(invalid(format!(
            "{}: expected an object {{\"contact\": {{..}}, \"event\": {{..}}}}",
            path.display()
        )));
    };
    for key in doc.keys() {
        if key != "contact" && key != "event" {
            return Err(invalid(format!(
                "{}: unknown key `{key}` (expected `contact` and `event`)",
                path.display()
            )));
        }
    }
    let mut contact = match doc.get("contact") {
        Some(Value::Object(c)) => c.clone(),
        None => Map::new(),
        Some(_) => {
            return Err(invalid(format!(
                "{}: `contact` must be an object",
                path.display()
            )));
        }
    };
    let event = match doc.get("event") {
        Some(Value::Object(e)) => e.clone(),
        None => Map::new(),
        Some(_) => {
            return Err(invalid(format!(
                "{}: `event` must be an object",
                path.display()
            )));
        }
    };
    let email = match contact.remove("email") {
        Some(Value::String(e)) => e,
        None => "sample@example.com".to_string(),
        Some(_) => {
            return Err(invalid(format!(
                "{}: `contact.email` must be text",
                path.display()
            )));
        }
    };
    let tags = match contact.remove("tags") {
        Some(Value::Array(t)) => t
            .into_iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Sample {
        email,
        attributes: contact,
        tags,
        event,
    })
}

/// A stored contact, with the properties of the event that enrolled it in `campaign` (its
/// latest enrollment), if any.
async fn sample_from_contact(
    config: &Config,
    email: &str,
    campaign: &str,
) -> anyhow::Result<(Sample, String)> {
    let email = email_arg(email)?;
    let engine = open_engine(config).await?;
    let mut tx = engine.store().begin_read().await?;
    let Some(contact) = tx.contact_by_email(&email).await? else {
        tx.rollback().await?;
        return Err(invalid(format!("there is no contact {email}")));
    };
    let event = tx
        .contact_enrollments(contact.id)
        .await?
        .into_iter()
        .rev()
        .find(|e| e.campaign_id == campaign)
        .map(|e| e.trigger_properties)
        .unwrap_or_default();
    tx.rollback().await?;
    let secret = match &config.secret {
        Some(s) => s.expose().to_string(),
        None => {
            let candidate = nurture_sender::random_secret()?;
            engine.store().secret(move || candidate).await?
        }
    };
    Ok((
        Sample {
            email: contact.email,
            attributes: contact.attributes,
            tags: contact.tags,
            event,
        },
        secret,
    ))
}

/// With neither `--contact` nor `--data`: a made-up lead. Templates must cope with missing
/// attributes (`{{default ..}}`), exactly as they must for real leads.
fn made_up() -> Sample {
    Sample {
        email: "sample.lead@example.com".into(),
        attributes: Map::new(),
        tags: Vec::new(),
        event: Map::new(),
    }
}

async fn sample(
    config: &Config,
    contact: Option<&str>,
    data: Option<&Path>,
    campaign: &str,
) -> anyhow::Result<(Sample, String)> {
    // Links in a preview or test send are signed with the configured secret when there is
    // one (so they work against this installation); otherwise with the stored one.
    let fallback = config.secret.as_ref().map(|s| s.expose().to_string());
    match (contact, data) {
        (Some(email), _) => sample_from_contact(config, email, campaign).await,
        (None, Some(path)) => Ok((
            sample_from_file(path)?,
            fallback.unwrap_or_else(|| "preview".into()),
        )),
        (None, None) => Ok((made_up(), fallback.unwrap_or_else(|| "preview".into()))),
    }
}

pub async fn preview(
    config: &Config,
    campaign: &str,
    step_id: &str,
    contact: Option<&str>,
    data: Option<&Path>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let file = campaign_from_files(config, campaign)?;
    let c = &file.campaign;
    let Some(step) = c.steps.iter().find(|s| s.id.as_str() == step_id) else {
        let ids: Vec<&str> = c.steps.iter().map(|s| s.id.as_str()).collect();
        return Err(invalid(format!(
            "campaign `{campaign}` has no step `{step_id}` (steps: {})",
            ids.join(", ")
        )));
    };
    let Action::Send(send) = &step.action else {
        return Err(invalid(format!(
            "step `{step_id}` sends no email (it is a {} step)",
            step.action.kind()
        )));
    };
    let (s, secret) = sample(config, contact, data, campaign).await?;
    let mailer = crate::delivery::with_secret(config, &secret)?;
    let email = s.email(c, step_id, send);
    let built = mailer
        .build(&email, None, None, "")
        .map_err(|f| anyhow::anyhow!("{}", failure_text(&f)))?;
    match format {
        Format::Eml => outln!("{}", String::from_utf8_lossy(&built.bytes)),
        Format::Html | Format::Text => {
            let rendered = mailer.render_parts(&email)?;
            outln!(
                "{}",
                if format == Format::Html {
                    rendered.html
                } else {
                    rendered.text
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn failure_text(f: &nurture_scheduler::Failure) -> String {
    match f {
        nurture_scheduler::Failure::Render(r)
        | nurture_scheduler::Failure::Transient(r)
        | nurture_scheduler::Failure::Permanent(r)
        | nurture_scheduler::Failure::Unknown(r) => r.clone(),
    }
}

pub async fn test_send(
    config: &Config,
    campaign: &str,
    to: &str,
    step: Option<&str>,
    contact: Option<&str>,
    data: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let to = email_arg(to)?;
    let file = campaign_from_files(config, campaign)?;
    let c = &file.campaign;
    let steps: Vec<_> = c
        .steps
        .iter()
        .filter(|s| step.is_none_or(|id| s.id.as_str() == id))
        .filter_map(|s| match &s.action {
            Action::Send(send) => Some((s, send)),
            _ => None,
        })
        .collect();
    if steps.is_empty() {
        return Err(invalid(match step {
            Some(id) => format!("campaign `{campaign}` has no email step `{id}`"),
            None => format!("campaign `{campaign}` has no email steps"),
        }));
    }
    let (s, secret) = sample(config, contact, data, campaign).await?;
    let mailer = crate::delivery::with_secret(config, &secret)?;
    let mut failed = 0;
    for (st, send) in steps {
        let sent = match mailer.build(
            &s.email(c, st.id.as_str(), send),
            None,
            Some(&to),
            "[TEST] ",
        ) {
            Ok(built) => mailer
                .transmit(&built)
                .await
                .map(|reply| (built.message_id.clone(), reply)),
            Err(f) => Err(f),
        };
        match sent {
            Ok((id, reply)) => outln!("sent {} to {to}: {id} ({reply})", st.id),
            Err(f) => {
                failed += 1;
                eprintln!("error: step {}: {}", st.id, failure_text(&f));
            }
        }
    }
    mailer.close().await;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
