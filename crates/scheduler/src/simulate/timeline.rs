//! The timeline read back from what the engine recorded — step runs, decisions, messages and
//! enrollment ends, the same records `explain` reads — rather than from anything the
//! simulation itself noted, so it shows what the engine did and nothing it merely intended.
//!
//! Lines at one instant keep the engine's order: by enrollment, then by step counter, a
//! step's run before the decisions taken after it, and an enrollment's end last.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use nurture_campaign::{Action, Campaign};
use nurture_store::{Enrollment, EnrollmentState, MessageRow, MessageState};

use super::SimulateError;
use super::script::text;
use crate::{Engine, from_ms};

/// One line of the timeline: something the engine did.
#[derive(Debug, Clone)]
pub struct Line {
    /// When (a sent email: when it was sent).
    pub at: DateTime<Utc>,
    /// Order among lines at the same instant: (enrollment, step counter * 2 [+1 after]).
    pub order: (usize, i64),
    /// The step, if the line is about one.
    pub step: Option<String>,
    /// `sent`, `failed`, `skipped`, a decision's kind, `completed`, `exited`, ...
    pub outcome: String,
    /// Why, in words (a sent email: its subject).
    pub reason: String,
    /// A sent email's subject as the lead reads it.
    pub subject: Option<String>,
}

/// A scripted lead action, as applied.
#[derive(Debug, Clone)]
pub struct LeadLine {
    /// When.
    pub at: DateTime<Utc>,
    /// The step it concerns (opens and clicks).
    pub step: Option<String>,
    /// The action in words.
    pub what: String,
    /// Why it had no effect, if it had none.
    pub note: Option<String>,
}

/// What the engine recorded about the lead, read back after the last round.
pub(super) struct Recorded {
    /// The timeline, in order.
    pub(super) lines: Vec<Line>,
    /// The lead's enrollments, oldest first.
    pub(super) enrollments: Vec<Enrollment>,
    /// The lead's messages.
    pub(super) messages: Vec<MessageRow>,
}

/// Reads the lead's timeline back; `subjects` are the rendered subjects by message row and
/// `end` stands for the end time of an enrollment that recorded none.
pub(super) async fn read_back(
    engine: &Engine,
    campaign: &Campaign,
    email: &str,
    subjects: &HashMap<i64, String>,
    end: DateTime<Utc>,
) -> Result<Recorded, SimulateError> {
    let mut tx = engine.store().begin().await?;
    let contact = tx
        .contact_by_email(email)
        .await?
        .ok_or(SimulateError::LeadVanished)?;
    let enrollments = tx.contact_enrollments(contact.id).await?;
    let messages = tx.contact_messages(contact.id).await?;
    let mut lines = Vec::new();
    for (n, e) in enrollments.iter().enumerate() {
        let runs = tx.step_runs(e.id).await?;
        for run in &runs {
            let mut line = Line {
                at: from_ms(run.at),
                order: (n, run.seq * 2),
                step: Some(run.step_id.clone()),
                outcome: run.outcome.clone(),
                reason: run.reason.clone().unwrap_or_default(),
                subject: None,
            };
            if run.outcome == "queued" {
                match messages
                    .iter()
                    .find(|m| m.enrollment_id == e.id && m.seq == run.seq)
                {
                    Some(m) if m.state == MessageState::Sent => {
                        line.outcome = "sent".into();
                        line.at = m.sent_at.map_or(line.at, from_ms);
                        line.subject = subjects.get(&m.id).cloned();
                        line.reason = line.subject.clone().unwrap_or_default();
                    }
                    Some(m) => {
                        line.outcome = m.state.as_str().into();
                        line.reason = m.error.clone().unwrap_or_default();
                    }
                    None => {}
                }
            } else if line.reason.is_empty() {
                line.reason = action_reason(campaign, &run.step_id);
            }
            lines.push(line);
        }
        for d in tx.decisions(e.id).await? {
            lines.push(Line {
                at: from_ms(d.at),
                order: (n, d.seq * 2 + 1),
                step: Some(d.step_id),
                outcome: d.kind,
                reason: d.detail,
                subject: None,
            });
        }
        let ended = e.ended_at.map(from_ms).unwrap_or(end);
        let last_exit = runs.last().is_some_and(|r| r.outcome == "exited");
        match e.state {
            EnrollmentState::Completed => lines.push(Line {
                at: ended,
                order: (n, i64::MAX),
                step: None,
                outcome: "completed".into(),
                reason: "the last step has run".into(),
                subject: None,
            }),
            EnrollmentState::Exited if !last_exit => lines.push(Line {
                at: ended,
                order: (n, i64::MAX),
                step: e.step_id.clone(),
                outcome: "exited".into(),
                reason: e.exit_reason.clone().unwrap_or_default(),
                subject: None,
            }),
            _ => {}
        }
    }
    tx.commit().await?;
    lines.sort_by_key(|l| (l.at, l.order));
    Ok(Recorded {
        lines,
        enrollments,
        messages,
    })
}

/// What a step that runs no email did, in words.
fn action_reason(campaign: &Campaign, step: &str) -> String {
    let Some(step) = campaign.steps.iter().find(|s| s.id.as_str() == step) else {
        return String::new();
    };
    let did = match &step.action {
        Action::Tag(tags) => format!("adds the tag {}", tags.join(", ")),
        Action::Untag(tags) => format!("removes the tag {}", tags.join(", ")),
        Action::Set(values) => values
            .iter()
            .map(|(k, v)| format!("sets {k} = {}", text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Action::Goto(target) => format!("continues at `{target}`"),
        Action::Wait => "a pure wait".into(),
        Action::Exit => "leaves the campaign".into(),
        Action::Split(arms) => format!(
            "splits between {}",
            arms.iter()
                .map(|a| format!("`{}` → `{}`", a.id, a.goto))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Action::Webhook(h) => format!("posts to {}", h.url),
        Action::Send(_) => String::new(),
    };
    match &step.when {
        Some(when) => format!("{did}; {when} held"),
        None => did,
    }
}
