//! Who a simulation runs: a stored contact (read through a read-only connection), data given
//! by the caller or a made-up lead — and, when the campaign does not take it, why.

use chrono::{DateTime, Utc};
use nurture_campaign::{Campaign, Condition, Facts, Op, StepId, Trigger};
use nurture_store::{ContactStatus, EventRow, Store};
use serde_json::{Map, Value, json};

use super::SimulateError;
use crate::{EnrollOutcome, from_ms};

/// Who is simulated.
#[derive(Debug, Clone)]
pub struct Lead {
    /// The lead's address.
    pub email: String,
    /// Contact attributes.
    pub attributes: Map<String, Value>,
    /// Contact tags.
    pub tags: Vec<String>,
    /// The trigger event's properties (event triggers).
    pub event: Map<String, Value>,
    /// Where the data came from, for the header.
    pub origin: String,
    /// The contact's status (only a subscribed lead is enrolled and mailed).
    pub status: ContactStatus,
    /// Why the contact is in that status, if known.
    pub status_reason: Option<String>,
    /// A stored contact's events up to the start (audiences and goals may ask about them).
    pub history: Vec<EventRow>,
    /// Where the trigger event's properties (`event`) come from.
    pub event_source: EventSource,
}

/// Where the simulated trigger event comes from, for the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// The caller's data (or none, for a made-up lead, until [`satisfy`] fills it).
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
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Given => "given",
            Self::Stored(_) => "stored",
            Self::NoneStored | Self::MadeUp => "made_up",
        }
    }
}

impl Lead {
    /// A subscribed lead with this data and no history; `origin` says where it came from.
    pub fn new(
        origin: impl Into<String>,
        email: impl Into<String>,
        attributes: Map<String, Value>,
        tags: Vec<String>,
        event: Map<String, Value>,
    ) -> Self {
        Self {
            email: email.into(),
            attributes,
            tags,
            event,
            origin: origin.into(),
            status: ContactStatus::Subscribed,
            status_reason: None,
            history: Vec::new(),
            event_source: EventSource::Given,
        }
    }

    /// `sample.lead@example.com`, with no data at all.
    pub fn made_up() -> Self {
        Self::new(
            "a made-up lead",
            "sample.lead@example.com",
            Map::new(),
            Vec::new(),
            Map::new(),
        )
    }

    /// A stored contact, read from `database_url` through a read-only connection: its
    /// attributes, tags, status and events, and — for an event trigger — the properties of
    /// its latest event the trigger takes (the trigger's name, passing its `when`), which the
    /// simulation replays at the start. `email` must already be a valid address.
    pub async fn stored(
        database_url: &str,
        email: &str,
        campaign: &Campaign,
        start: DateTime<Utc>,
    ) -> Result<Self, SimulateError> {
        let Some(store) = Store::open_read_only(database_url)
            .await
            .map_err(SimulateError::OpenDatabase)?
        else {
            return Err(SimulateError::NoDatabase(email.to_string()));
        };
        let mut tx = store.begin_read().await?;
        let Some(contact) = tx.contact_by_email(email).await? else {
            tx.rollback().await?;
            store.close().await;
            return Err(SimulateError::NoContact(email.to_string()));
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
            status: contact.status,
            status_reason: contact.status_reason.clone(),
            history,
            ..Lead::new(
                "a stored contact",
                contact.email,
                contact.attributes,
                contact.tags,
                Map::new(),
            )
        };
        if let Trigger::Event { name, when } = &campaign.trigger {
            let found = latest_trigger_event(&lead, name, when.as_ref(), start)
                .map(|e| (e.properties.clone(), from_ms(e.occurred_at)));
            match found {
                Some((properties, at)) => {
                    lead.event = properties;
                    lead.event_source = EventSource::Stored(at);
                }
                None => lead.event_source = EventSource::NoneStored,
            }
        }
        Ok(lead)
    }
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

/// Why a hand enrollment was refused, in words.
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
pub(super) fn why_not_enrolled(campaign: &Campaign, lead: &Lead, start: DateTime<Utc>) -> String {
    if lead.status != ContactStatus::Subscribed {
        return not_mailable(lead);
    }
    let seen = Seen {
        lead,
        now: start,
        event: &lead.event,
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
        self.lead.tags.iter().any(|t| t == tag)
    }

    fn attribute(&self, name: &str) -> Option<Value> {
        if name == "email" {
            return Some(Value::String(self.lead.email.clone()));
        }
        self.lead.attributes.get(name).cloned()
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
