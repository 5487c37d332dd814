//! Who `simulate` runs: a stored contact (read through a read-only connection), a data file or
//! a made-up lead — and, when the campaign does not take it, why.

use anyhow::Context;
use chrono::{DateTime, Utc};
use nurture_campaign::{Campaign, Condition, Facts, Op, StepId, Trigger};
use nurture_scheduler::{EnrollOutcome, from_ms};
use nurture_store::{ContactStatus, EventRow, Store};
use serde_json::{Map, Value, json};

use crate::cmd::common::email_arg;
use crate::cmd::send::Sample;
use crate::config::Config;
use crate::exit::invalid;

/// Who is simulated.
pub(super) struct Lead {
    pub(super) sample: Sample,
    /// Where the data came from, for the header.
    pub(super) origin: String,
    pub(super) status: ContactStatus,
    pub(super) status_reason: Option<String>,
    /// A stored contact's events up to the start (audiences and goals may ask about them).
    pub(super) history: Vec<EventRow>,
    /// Where the trigger event's properties (`sample.event`) come from.
    pub(super) event_source: EventSource,
}

/// Where the simulated trigger event comes from, for the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventSource {
    /// The data file's `event` (or none, for a made-up lead, until [`satisfy`] fills it).
    Given,
    /// The stored contact's latest event that the trigger takes, recorded at this time.
    Stored(DateTime<Utc>),
    /// Made up: the stored contact has no event the trigger takes.
    NoneStored,
    /// Made up to pass the trigger's `when`: the lead brought no event data.
    MadeUp,
}

impl EventSource {
    /// For `--json`: `stored`, `made_up` or `given`.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Given => "given",
            Self::Stored(_) => "stored",
            Self::NoneStored | Self::MadeUp => "made_up",
        }
    }
}

impl Lead {
    pub(super) fn new(sample: Sample) -> Self {
        Self {
            sample,
            origin: String::new(),
            status: ContactStatus::Subscribed,
            status_reason: None,
            history: Vec::new(),
            event_source: EventSource::Given,
        }
    }
}

/// A stored contact, read through a read-only connection: its attributes, tags, status and
/// events, and — for an event trigger — the properties of its latest event the trigger takes
/// (the trigger's name, passing its `when`), which the simulation replays at the start.
pub(super) async fn stored_lead(
    config: &Config,
    email: &str,
    campaign: &Campaign,
    start: DateTime<Utc>,
) -> anyhow::Result<Lead> {
    let email = email_arg(email)?;
    let Some(store) = Store::open_read_only(config.database_url.expose())
        .await
        .context("cannot open the database")?
    else {
        return Err(invalid(format!(
            "there is no contact {email} (the database does not exist yet)"
        )));
    };
    let mut tx = store.begin_read().await?;
    let Some(contact) = tx.contact_by_email(&email).await? else {
        tx.rollback().await?;
        store.close().await;
        return Err(invalid(format!("there is no contact {email}")));
    };
    let history = tx
        .contact_events(contact.id)
        .await?
        .into_iter()
        .filter(|e| from_ms(e.occurred_at) <= start)
        .collect();
    tx.rollback().await?;
    store.close().await;
    let mut lead = Lead {
        origin: "a stored contact".into(),
        status: contact.status,
        status_reason: contact.status_reason.clone(),
        history,
        ..Lead::new(Sample {
            email: contact.email,
            attributes: contact.attributes,
            tags: contact.tags,
            event: Map::new(),
        })
    };
    if let Trigger::Event { name, when } = &campaign.trigger {
        let found = latest_trigger_event(&lead, name, when.as_ref(), start)
            .map(|e| (e.properties.clone(), from_ms(e.occurred_at)));
        match found {
            Some((properties, at)) => {
                lead.sample.event = properties;
                lead.event_source = EventSource::Stored(at);
            }
            None => lead.event_source = EventSource::NoneStored,
        }
    }
    Ok(lead)
}

/// The lead's latest event (up to `start`) named `name` that passes `when`.
fn latest_trigger_event<'a>(
    lead: &'a Lead,
    name: &str,
    when: Option<&Condition>,
    start: DateTime<Utc>,
) -> Option<&'a EventRow> {
    lead.history
        .iter()
        .rev()
        .filter(|e| e.name == name && from_ms(e.occurred_at) <= start)
        .find(|e| {
            when.is_none_or(|w| {
                let seen = Seen {
                    lead,
                    now: start,
                    event: &e.properties,
                };
                w.eval(&seen, start)
            })
        })
}

/// Trigger properties that pass a trigger's `when`, for a lead that brings none: the value of
/// each `equals`, the first of each `in`, ... (`not_equals` and `not` hold without one).
pub(super) fn satisfy(cond: &Condition, out: &mut Map<String, Value>) {
    match cond {
        Condition::All(items) => items.iter().for_each(|c| satisfy(c, out)),
        Condition::Any(items) => {
            if let Some(first) = items.first() {
                satisfy(first, out);
            }
        }
        Condition::Property { name, op } => {
            let value = match op {
                Op::Equals(v) | Op::Contains(v) | Op::Gte(v) | Op::Lte(v) => Some(v.clone()),
                Op::In(values) => values.first().cloned(),
                Op::Exists(true) => Some(json!("sample")),
                _ => None,
            };
            if let Some(v) = value {
                out.insert(name.clone(), v);
            }
        }
        _ => {}
    }
}

/// Why a schedule enrollment was refused, in words.
pub(super) fn refusal(outcome: &EnrollOutcome, lead: &Lead) -> String {
    match outcome {
        EnrollOutcome::NotInAudience => "the lead is not in the campaign's audience".into(),
        EnrollOutcome::NotMailable => not_mailable(lead),
        EnrollOutcome::CampaignNotActive => "the campaign is not active".into(),
        EnrollOutcome::ReentryRefused => "the re-entry rule refuses the lead".into(),
        EnrollOutcome::AlreadyActive | EnrollOutcome::Enrolled(_) => {
            "the lead is already enrolled".into()
        }
    }
}

fn not_mailable(lead: &Lead) -> String {
    format!(
        "the contact is {}{}: nobody in that state is enrolled or mailed",
        lead.status.as_str(),
        lead.status_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    )
}

/// Why the trigger event enrolled nobody: the contact's status, the trigger's `when`, or the
/// audience, with the part that was false.
pub(super) fn why_not_enrolled(
    campaign: &nurture_campaign::Campaign,
    lead: &Lead,
    start: DateTime<Utc>,
) -> String {
    if lead.status != ContactStatus::Subscribed {
        return not_mailable(lead);
    }
    let seen = Seen {
        lead,
        now: start,
        event: &lead.sample.event,
    };
    if let Trigger::Event {
        when: Some(when), ..
    } = &campaign.trigger
        && let Some(failed) = when.first_false(&seen, start)
    {
        return format!("the trigger's `when` does not match the event: {failed} was false");
    }
    if let Some(audience) = &campaign.audience
        && let Some(failed) = audience.first_false(&seen, start)
    {
        return format!("the lead is not in the audience: {failed} was false");
    }
    "the trigger event enrolled nobody".into()
}

/// What is known about the lead before it enters, for [`why_not_enrolled`].
struct Seen<'a> {
    lead: &'a Lead,
    now: DateTime<Utc>,
    /// The trigger event's properties.
    event: &'a Map<String, Value>,
}

impl Facts for Seen<'_> {
    fn has_tag(&self, tag: &str) -> bool {
        self.lead.sample.tags.iter().any(|t| t == tag)
    }

    fn attribute(&self, name: &str) -> Option<Value> {
        if name == "email" {
            return Some(Value::String(self.lead.sample.email.clone()));
        }
        self.lead.sample.attributes.get(name).cloned()
    }

    fn property(&self, name: &str) -> Option<Value> {
        self.event.get(name).cloned()
    }

    fn had_event(&self, name: &str, since: Option<DateTime<Utc>>) -> bool {
        self.lead.history.iter().any(|e| {
            let at = from_ms(e.occurred_at);
            e.name == name && at <= self.now && since.is_none_or(|s| at >= s)
        })
    }

    fn opened(&self, _: &StepId) -> bool {
        false
    }

    fn clicked(&self, _: &StepId) -> bool {
        false
    }
}
