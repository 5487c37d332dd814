//! `explain`: why a contact got, or did not get, each step — told from what the engine
//! recorded when it decided: step runs with the condition that was false or the goal that was
//! reached, send-window postponements, every SMTP attempt with its reply, opens and clicks,
//! and the suppression that stopped the mail. `nurture explain` prints these lines and the
//! dashboard's contact page shows them.

use std::collections::HashMap;

use nurture_campaign::{Campaign, Trigger};
use nurture_store::history::{Decision, StepRun};
use nurture_store::{Enrollment, EnrollmentState, MessageRow, MessageState, Tx};
use serde_json::Value;

use crate::{EngineError, Result, from_ms};

mod signals;

pub use signals::{score, signal_lines};

fn utc(ms: i64) -> String {
    format!("{} UTC", from_ms(ms).format("%Y-%m-%d %H:%M"))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn pairs(map: &serde_json::Map<String, Value>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}: {}", text(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One thing that happened in an enrollment, in time order.
enum Entry<'a> {
    Run(&'a StepRun),
    Decision(&'a Decision),
}

impl Entry<'_> {
    fn key(&self) -> (i64, i64) {
        match self {
            Entry::Run(r) => (r.at, r.seq * 2),
            Entry::Decision(d) => (d.at, d.seq * 2 + 1),
        }
    }
}

/// Why a contact got, or did not get, each step: the lines `nurture explain EMAIL
/// [CAMPAIGN]` prints, also shown by the dashboard's contact page. Reads only; times are UTC;
/// `now_ms` is when the score is told (it decays).
pub async fn explain(
    tx: &mut Tx,
    email: &str,
    campaign: Option<&str>,
    now_ms: i64,
) -> Result<Vec<String>> {
    let Some(contact) = tx.contact_by_email(email).await? else {
        return Err(EngineError::UnknownContact(email.to_string()));
    };
    let in_use: HashMap<String, (String, Option<Campaign>)> = tx
        .campaigns()
        .await?
        .into_iter()
        .map(|row| {
            let c = serde_json::from_str::<Campaign>(&row.definition).ok();
            (row.id, (row.status, c))
        })
        .collect();
    if let Some(id) = campaign
        && !in_use.contains_key(id)
    {
        return Err(EngineError::UnknownCampaign(id.to_string()));
    }
    let enrollments: Vec<Enrollment> = tx
        .contact_enrollments(contact.id)
        .await?
        .into_iter()
        .filter(|e| campaign.is_none_or(|c| e.campaign_id == c))
        .collect();
    let messages = tx.contact_messages(contact.id).await?;
    let consents = tx.consents(contact.id).await?;
    let mut out = Vec::new();

    // The contact: who, and whether it can be mailed at all.
    let status = contact.status.as_str();
    if status == "subscribed" {
        out.push(format!(
            "{}: subscribed (a contact since {})",
            contact.email,
            utc(contact.created_at)
        ));
    } else {
        out.push(format!(
            "{}: {status} since {}{}; gets no more email from any campaign",
            contact.email,
            contact
                .status_changed_at
                .map_or_else(|| "an unknown time".to_string(), utc),
            contact
                .status_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    out.extend(signals::consent_lines(&consents));
    if !contact.tags.is_empty() {
        out.push(format!("  tags: {}", contact.tags.join(", ")));
    }
    if !contact.attributes.is_empty() {
        out.push(format!("  attributes: {}", pairs(&contact.attributes)));
    }
    let signals = tx.contact_signals(contact.id).await?;
    if !signals.is_empty() {
        out.push("  bounces and complaints:".into());
        for line in signal_lines(&signals, &messages) {
            out.push(format!("    {line}"));
        }
    }
    out.extend(signals::score_lines(tx, contact.id, now_ms).await?);
    let webhooks = tx.contact_webhooks(contact.id).await?;

    if enrollments.is_empty() {
        out.push(String::new());
        match campaign {
            Some(id) => {
                out.push(format!("never enrolled in {id}"));
                let events = tx.contact_events(contact.id).await?;
                if let Some((_, Some(c))) = in_use.get(id) {
                    out.extend(never_enrolled(c, &events));
                }
            }
            None => out.push("never enrolled in any campaign".into()),
        }
    }

    for e in &enrollments {
        let (status, definition) = in_use
            .get(&e.campaign_id)
            .map_or(("removed", None), |(s, c)| (s.as_str(), c.as_ref()));
        out.push(String::new());
        let by = match definition.map(|c| &c.trigger) {
            Some(Trigger::Event { name, .. }) if !e.trigger_properties.is_empty() => {
                format!(" by a `{name}` event ({})", pairs(&e.trigger_properties))
            }
            Some(Trigger::Event { name, .. }) => format!(" by a `{name}` event or by hand"),
            Some(Trigger::Schedule { cron, .. }) => {
                format!(" by the schedule `{cron}` or by hand")
            }
            Some(Trigger::Score(_)) => signals::crossing_text(&e.trigger_properties),
            None => String::new(),
        };
        out.push(format!(
            "{}: enrolled {}{by}",
            e.campaign_id,
            utc(e.enrolled_at)
        ));
        let now = match e.state {
            EnrollmentState::Active => {
                let mut s = format!(
                    "  now: active; next step `{}` due {}",
                    e.step_id.as_deref().unwrap_or("-"),
                    e.next_run_at.map_or_else(|| "-".to_string(), utc)
                );
                if status != "active" {
                    s.push_str(&format!(
                        " (the campaign is {status}: the enrollment is held)"
                    ));
                }
                s
            }
            EnrollmentState::Completed => format!(
                "  completed {} after the last step",
                e.ended_at.map_or_else(|| "-".to_string(), utc)
            ),
            EnrollmentState::Exited | EnrollmentState::Failed => format!(
                "  {} {}: {}{}",
                e.state,
                e.ended_at.map_or_else(|| "-".to_string(), utc),
                exit_reason(e.exit_reason.as_deref()),
                match (e.exit_reason.as_deref(), e.step_id.as_deref()) {
                    (Some("goal" | "exit_step"), _) | (_, None) => String::new(),
                    (_, Some(step)) => format!("; it was waiting for `{step}`"),
                }
            ),
        };
        out.push(now);

        let runs = tx.step_runs(e.id).await?;
        let decisions = tx.decisions(e.id).await?;
        let email_events = tx.email_events(e.id).await?;
        let mut entries: Vec<Entry> = runs
            .iter()
            .map(Entry::Run)
            .chain(decisions.iter().map(Entry::Decision))
            .collect();
        entries.sort_by_key(Entry::key);
        if entries.is_empty() {
            out.push("  no step has run yet".into());
        }
        let step_w = entries
            .iter()
            .map(|x| match x {
                Entry::Run(r) => r.step_id.len(),
                Entry::Decision(d) => d.step_id.len(),
            })
            .max()
            .unwrap_or(4);
        for entry in entries {
            match entry {
                Entry::Decision(d) => out.push(format!(
                    "  {}  {:<step_w$}  {:<9}  {}",
                    utc(d.at),
                    d.step_id,
                    d.kind,
                    d.detail
                )),
                Entry::Run(r)
                    if let Some(w) = webhooks
                        .iter()
                        .find(|w| w.enrollment_id == e.id && w.seq == r.seq) =>
                {
                    out.extend(signals::webhook_lines(tx, r, w, step_w).await?);
                }
                Entry::Run(r) if r.outcome == "queued" => {
                    let m = messages
                        .iter()
                        .find(|m| m.enrollment_id == e.id && m.seq == r.seq);
                    out.extend(message_lines(tx, r, m, &contact, &email_events, step_w).await?);
                }
                Entry::Run(r) => out.push(format!(
                    "  {}  {:<step_w$}  {:<9}  {}",
                    utc(r.at),
                    r.step_id,
                    r.outcome,
                    r.reason
                        .clone()
                        .unwrap_or_else(|| action_text(definition, &r.step_id))
                )),
            }
        }
    }
    Ok(out)
}

fn exit_reason(reason: Option<&str>) -> String {
    match reason {
        Some("goal") => "the campaign's goal (`exit_when`) was reached".into(),
        Some("exit_step") => "an `exit` step".into(),
        Some("unsubscribed") => "the contact unsubscribed".into(),
        Some("bounced") => "a hard bounce".into(),
        Some("complained") => "the contact complained".into(),
        Some("campaign_removed") => "the campaign's file was removed".into(),
        Some(other) => other.to_string(),
        None => "no reason recorded".into(),
    }
}

/// What a step that sends no email does, from the campaign version in use.
fn action_text(campaign: Option<&Campaign>, step: &str) -> String {
    use nurture_campaign::Action;
    let Some(step) = campaign.and_then(|c| c.steps.iter().find(|s| s.id.as_str() == step)) else {
        return String::new();
    };
    let did = match &step.action {
        Action::Tag(t) => format!("added the tag {}", t.join(", ")),
        Action::Untag(t) => format!("removed the tag {}", t.join(", ")),
        Action::Set(values) => values
            .iter()
            .map(|(k, v)| format!("set {k} = {}", text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Action::Goto(target) => format!("went on to `{target}`"),
        Action::Wait => "a pure wait".into(),
        Action::Webhook(h) => format!("posted to {}", h.url),
        Action::Exit | Action::Send(_) | Action::Split(_) => String::new(),
    };
    match &step.when {
        Some(cond) => format!("{did}; {cond} held"),
        None => did,
    }
}

/// An email step: the message, each delivery attempt with its reply, opens and clicks.
async fn message_lines(
    tx: &mut nurture_store::Tx,
    run: &StepRun,
    message: Option<&MessageRow>,
    contact: &nurture_store::Contact,
    events: &[nurture_store::history::EmailEvent],
    step_w: usize,
) -> Result<Vec<String>> {
    let pad = " ".repeat(2 + 20 + 2 + step_w + 2);
    let Some(m) = message else {
        return Ok(vec![format!(
            "  {}  {:<step_w$}  {:<9}  the email was queued; its message is gone",
            utc(run.at),
            run.step_id,
            "queued"
        )]);
    };
    let detail = match m.state {
        MessageState::Sent => format!(
            "message {}",
            m.message_id.as_deref().unwrap_or("(no Message-ID)")
        ),
        MessageState::Queued => match m.next_attempt_at {
            // Postponed (by the frequency cap): the decision line below says why.
            Some(next) if next > m.created_at => format!("waiting for delivery at {}", utc(next)),
            _ => format!("waiting for delivery since {}", utc(m.created_at)),
        },
        MessageState::Deferred => format!(
            "retrying {}; last reply: {}",
            m.next_attempt_at.map_or_else(|| "-".to_string(), utc),
            m.error.as_deref().unwrap_or("-")
        ),
        // Suppressed for another reason than the contact's status (its enrollment reached
        // its goal, its campaign was removed): the message says which.
        MessageState::Suppressed if contact.status == nurture_store::ContactStatus::Subscribed => {
            m.error.clone().unwrap_or_else(|| "not sent".to_string())
        }
        MessageState::Suppressed => format!(
            "not sent: the contact was no longer mailable ({} since {}{})",
            contact.status.as_str(),
            contact
                .status_changed_at
                .map_or_else(|| "an unknown time".to_string(), utc),
            contact
                .status_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        MessageState::Unknown => {
            "the sending process stopped before the outcome was recorded; never re-sent blindly"
                .into()
        }
        MessageState::Sending | MessageState::Failed | MessageState::Bounced => {
            m.error.clone().unwrap_or_default()
        }
    };
    let mut out = vec![format!(
        "  {}  {:<step_w$}  {:<9}  {detail}",
        utc(run.at),
        run.step_id,
        m.state
    )];
    for (n, a) in tx.attempts(m.id).await?.iter().enumerate() {
        out.push(format!(
            "{pad}attempt {} at {}: {}{}",
            n + 1,
            utc(a.at),
            a.outcome,
            a.reply
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    for ev in events
        .iter()
        .filter(|ev| ev.step_id.as_deref() == Some(&run.step_id))
    {
        let what = ev.name.strip_prefix("email.").unwrap_or(&ev.name);
        let url = ev
            .properties
            .get("url")
            .map(|u| format!(" {}", text(u)))
            .unwrap_or_default();
        out.push(format!("{pad}{what} at {}{url}", utc(ev.occurred_at)));
    }
    Ok(out)
}

/// Why a contact may never have entered a campaign, from its trigger and the contact's events.
fn never_enrolled(c: &Campaign, events: &[nurture_store::EventRow]) -> Vec<String> {
    match &c.trigger {
        Trigger::Event { name, when } => {
            let seen: Vec<_> = events.iter().filter(|e| &e.name == name).collect();
            if seen.is_empty() {
                return vec![format!(
                    "  no `{name}` event was recorded for this contact: that event is what enrolls"
                )];
            }
            let mut out = vec![format!(
                "  `{name}` was recorded {} time{} (last {}), and enrolled nobody:",
                seen.len(),
                if seen.len() == 1 { "" } else { "s" },
                seen.last().map_or_else(String::new, |e| format!(
                    "{} with {}",
                    utc(e.occurred_at),
                    if e.properties.is_empty() {
                        "no properties".to_string()
                    } else {
                        pairs(&e.properties)
                    }
                ))
            )];
            if let Some(w) = when {
                out.push(format!("    the trigger's `when` must hold: {w}"));
            }
            if let Some(a) = &c.audience {
                out.push(format!("    the contact must be in the audience: {a}"));
            }
            out.push("    and the contact must be subscribed".into());
            out
        }
        Trigger::Score(op) => vec![format!(
            "  the campaign enrolls a contact when its score starts to satisfy {{{}: {}}}; see the score above",
            op.key(),
            signals::operand(op)
        )],
        Trigger::Schedule { cron, timezone } => vec![format!(
            "  the campaign enrolls at each firing of `{cron}` ({timezone}) every contact in its audience{}",
            c.audience
                .as_ref()
                .map(|a| format!(": {a}"))
                .unwrap_or_default()
        )],
    }
}
