//! What the engine knows about a contact when it evaluates conditions, loaded up front so
//! condition evaluation stays a pure function.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use nurture_campaign::{Campaign, Condition, Facts, StepId};
use nurture_store::{Contact, Tx};
use serde_json::{Map, Value};

use crate::{Result, from_ms, to_ms};

/// A contact, the trigger event's properties, and the events the campaign's conditions ask about.
pub(crate) struct Known {
    pub contact: Contact,
    pub properties: Map<String, Value>,
    latest: HashMap<String, i64>,
    opened: HashSet<String>,
    clicked: HashSet<String>,
}

impl Known {
    /// Loads what `conditions` need for `contact` in `enrollment` (if any) as of `now`.
    pub async fn load(
        tx: &mut Tx,
        contact: Contact,
        properties: Map<String, Value>,
        conditions: &[&Condition],
        enrollment: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let mut latest = HashMap::new();
        let mut opened = HashSet::new();
        let mut clicked = HashSet::new();
        for cond in conditions {
            for name in cond.event_names() {
                if latest.contains_key(name) {
                    continue;
                }
                if let Some(at) = tx.latest_event(contact.id, name, to_ms(now)).await? {
                    latest.insert(name.to_string(), at);
                }
            }
            if let Some(enrollment) = enrollment {
                for (kind, step) in cond.step_refs() {
                    let event = if kind == "opened" {
                        "email.opened"
                    } else {
                        "email.clicked"
                    };
                    if tx.had_email_event(enrollment, event, step.as_str()).await? {
                        if kind == "opened" {
                            opened.insert(step.to_string());
                        } else {
                            clicked.insert(step.to_string());
                        }
                    }
                }
            }
        }
        Ok(Self {
            contact,
            properties,
            latest,
            opened,
            clicked,
        })
    }

    /// The contact's time zone: its `timezone` attribute, else `default`.
    pub fn timezone(&self, default: Tz) -> Tz {
        self.contact
            .attributes
            .get("timezone")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    }
}

impl Facts for Known {
    fn has_tag(&self, tag: &str) -> bool {
        self.contact.tags.iter().any(|t| t == tag)
    }

    fn attribute(&self, name: &str) -> Option<Value> {
        if name == "email" {
            return Some(Value::String(self.contact.email.clone()));
        }
        self.contact.attributes.get(name).cloned()
    }

    fn property(&self, name: &str) -> Option<Value> {
        self.properties.get(name).cloned()
    }

    fn had_event(&self, name: &str, since: Option<DateTime<Utc>>) -> bool {
        self.latest
            .get(name)
            .is_some_and(|at| since.is_none_or(|s| from_ms(*at) >= s))
    }

    fn opened(&self, step: &StepId) -> bool {
        self.opened.contains(step.as_str())
    }

    fn clicked(&self, step: &StepId) -> bool {
        self.clicked.contains(step.as_str())
    }
}

/// Every condition of a campaign that may be evaluated while an enrollment runs.
pub(crate) fn campaign_conditions(c: &Campaign) -> Vec<&Condition> {
    let mut out: Vec<&Condition> = c.steps.iter().filter_map(|s| s.when.as_ref()).collect();
    out.extend(c.exit_when.as_ref());
    out.extend(c.audience.as_ref());
    out
}
