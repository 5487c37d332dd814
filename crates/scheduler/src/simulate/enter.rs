//! How the simulated lead gets into the throwaway database and into the campaign: stored as
//! the real database has it (status and past events included), then enrolled the way the
//! trigger would — by the trigger event for an event trigger, by hand for a schedule or a
//! score trigger (which a single lead cannot wait for) — with a sentence saying which.
//!
//! The order matters: the contact and its history are committed before the trigger event
//! is processed, so audiences and goals see the past, and hand enrollments need the contact.

use chrono::{DateTime, Utc};
use nurture_campaign::{Campaign, Op, Trigger};
use nurture_store::{ContactStatus, NewEvent, Upsert};

use super::SimulateError;
use super::lead::{EventSource, Lead, refusal, satisfy};
use super::script::pairs;
use crate::{Engine, EnrollOutcome};

/// Stores the lead and enrolls it; returns how it entered, or why the engine refused it.
/// An event trigger's event is only inserted here: the first round processes it.
pub(super) async fn enter(
    engine: &Engine,
    campaign: &Campaign,
    lead: &mut Lead,
    start: DateTime<Utc>,
) -> Result<Result<String, String>, SimulateError> {
    let id = campaign.id.as_str();
    let start_ms = start.timestamp_millis();
    // The lead, as the real database has it (or as the data says).
    let mut tx = engine.store().begin().await?;
    let (contact, _) = tx
        .upsert_contact(
            &Upsert {
                email: lead.email.clone(),
                attributes: lead.attributes.clone(),
                tags: lead.tags.clone(),
                consent_source: Some("simulate".into()),
                ..Upsert::default()
            },
            start_ms,
        )
        .await?;
    if lead.status != ContactStatus::Subscribed {
        tx.set_contact_status(
            contact.id,
            lead.status,
            lead.status_reason.as_deref().unwrap_or(""),
            start_ms,
        )
        .await?;
    }
    for e in &lead.history {
        tx.insert_event(
            &NewEvent {
                contact_id: contact.id,
                name: e.name.clone(),
                properties: e.properties.clone(),
                occurred_at: e.occurred_at,
                processed: true,
                ..NewEvent::default()
            },
            e.occurred_at,
        )
        .await?;
    }
    let mut entry = Ok(String::new());
    if let Trigger::Event { name, when } = &campaign.trigger {
        let mut made_up = false;
        if lead.event.is_empty()
            && let Some(when) = when
        {
            satisfy(when, &mut lead.event);
            made_up = !lead.event.is_empty();
            if made_up && lead.event_source == EventSource::Given {
                lead.event_source = EventSource::MadeUp;
            }
        }
        tx.insert_event(
            &NewEvent {
                contact_id: contact.id,
                name: name.clone(),
                properties: lead.event.clone(),
                occurred_at: start_ms,
                ..NewEvent::default()
            },
            start_ms,
        )
        .await?;
        let props = if lead.event.is_empty() {
            String::new()
        } else {
            format!(
                " ({}{})",
                pairs(&lead.event),
                if made_up {
                    ", made up to pass the trigger's `when`"
                } else {
                    ""
                }
            )
        };
        entry = Ok(match lead.event_source {
            EventSource::Stored(at) => format!(
                "enrolled by the contact's latest `{name}` event, recorded {} UTC{props}, replayed at the start",
                at.format("%Y-%m-%d %H:%M")
            ),
            EventSource::NoneStored => format!(
                "enrolled by a made-up `{name}` event at the start{props}: the contact has no stored `{name}` event{}",
                if when.is_some() {
                    " that passes the trigger's `when`"
                } else {
                    ""
                }
            ),
            EventSource::Given | EventSource::MadeUp => {
                format!("enrolled by a `{name}` event at the start{props}")
            }
        });
    }
    tx.commit().await?;
    if let Trigger::Score(op) = &campaign.trigger {
        entry = match engine.enroll(id, &lead.email, start).await? {
            EnrollOutcome::Enrolled(_) => Ok(format!(
                "enrolled by hand at the start (the trigger is the score crossing {{{}: {}}}: a real lead enters when its score crosses it)",
                op.key(),
                match op {
                    Op::Gte(v)
                    | Op::Gt(v)
                    | Op::Lte(v)
                    | Op::Lt(v)
                    | Op::Equals(v)
                    | Op::NotEquals(v) => v.to_string(),
                    _ => String::new(),
                }
            )),
            other => Err(refusal(&other, lead)),
        };
    }
    if let Trigger::Schedule { cron, timezone } = &campaign.trigger {
        entry = match engine.enroll(id, &lead.email, start).await? {
            EnrollOutcome::Enrolled(_) => Ok(format!(
                "enrolled by hand at the start (the trigger is the schedule `{cron}` in {timezone}: a real lead enters at a firing)"
            )),
            other => Err(refusal(&other, lead)),
        };
    }
    Ok(entry)
}
