//! What the engine knows about a contact when it evaluates conditions, loaded up front so
//! condition evaluation stays a pure function.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use nurture_campaign::{Campaign, Condition, Facts, StepId};
use nurture_store::{Contact, EnrollmentSummary, Tx};
use serde_json::{Map, Value};

use crate::{Result, from_ms, to_ms};

/// A contact, the trigger event's properties, and the events the campaign's conditions ask about.
pub(crate) struct Known {
    pub contact: Contact,
    pub properties: Map<String, Value>,
    latest: HashMap<String, i64>,
    opened: HashSet<String>,
    clicked: HashSet<String>,
    /// The lead score as of the batch's time.
    score: f64,
}

/// What a batch of contacts' conditions may ask, read in a few statements for the whole
/// batch instead of a few per contact: the contacts, the latest time of each event the
/// campaigns' conditions name, the opens and clicks of the enrollments, and each contact's
/// latest enrollment per campaign. Kept current by the engine as it writes within the batch.
#[derive(Default)]
pub(crate) struct Batch {
    pub contacts: HashMap<i64, Contact>,
    latest: HashMap<(i64, String), i64>,
    email_events: HashSet<(i64, String, String)>,
    pub last_enrollment: HashMap<(String, i64), EnrollmentSummary>,
    /// Stored lead scores of the contacts, and the time they are read at (ms).
    pub scores: HashMap<i64, nurture_store::ScoreRow>,
    now_ms: i64,
}

impl Batch {
    /// Loads what `conditions` need for `contacts` (and `enrollments`) as of `now`.
    pub async fn load(
        tx: &mut Tx,
        contacts: &[i64],
        enrollments: &[i64],
        conditions: &[&Condition],
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let mut ids = contacts.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let contacts = tx
            .contacts(&ids)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        Self::load_with(tx, contacts, enrollments, conditions, now).await
    }

    /// [`Batch::load`] for contacts already read in this transaction.
    pub async fn load_with(
        tx: &mut Tx,
        contacts: HashMap<i64, Contact>,
        enrollments: &[i64],
        conditions: &[&Condition],
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let mut ids: Vec<i64> = contacts.keys().copied().collect();
        ids.sort_unstable();
        let mut names: Vec<&str> = conditions.iter().flat_map(|c| c.event_names()).collect();
        names.sort_unstable();
        names.dedup();
        let scores = tx
            .scores(&ids)
            .await?
            .into_iter()
            .map(|s| (s.contact_id, s))
            .collect();
        let mut batch = Self {
            contacts,
            scores,
            now_ms: to_ms(now),
            ..Self::default()
        };
        for (contact, name, at) in tx.latest_events(&ids, &names, to_ms(now)).await? {
            batch.latest.insert((contact, name), at);
        }
        if !enrollments.is_empty() && conditions.iter().any(|c| !c.step_refs().is_empty()) {
            batch.email_events = tx
                .opens_and_clicks(enrollments)
                .await?
                .into_iter()
                .collect();
        }
        Ok(batch)
    }

    /// Also loads each contact's latest enrollment per campaign (for re-entry rules).
    pub async fn with_enrollments(mut self, tx: &mut Tx) -> Result<Self> {
        let ids: Vec<i64> = self.contacts.keys().copied().collect();
        self.last_enrollment = tx.last_enrollments(&ids).await?.into_iter().collect();
        Ok(self)
    }
}

impl Batch {
    /// Replaces a contact's score (scored in this batch).
    pub fn set_score(&mut self, row: nurture_store::ScoreRow) {
        self.scores.insert(row.contact_id, row);
    }
}

impl Known {
    /// What `conditions` need for `contact` in `enrollment` (if any), from `batch`.
    pub fn from_batch(
        batch: &Batch,
        contact: Contact,
        properties: Map<String, Value>,
        conditions: &[&Condition],
        enrollment: Option<i64>,
    ) -> Self {
        let mut latest = HashMap::new();
        let mut opened = HashSet::new();
        let mut clicked = HashSet::new();
        for cond in conditions {
            for name in cond.event_names() {
                if let Some(at) = batch.latest.get(&(contact.id, name.to_string())) {
                    latest.insert(name.to_string(), *at);
                }
            }
            if let Some(enrollment) = enrollment {
                for (kind, step) in cond.step_refs() {
                    let event = if kind == "opened" {
                        "email.opened"
                    } else {
                        "email.clicked"
                    };
                    let key = (enrollment, event.to_string(), step.to_string());
                    if batch.email_events.contains(&key) {
                        if kind == "opened" {
                            opened.insert(step.to_string());
                        } else {
                            clicked.insert(step.to_string());
                        }
                    }
                }
            }
        }
        let score = batch
            .scores
            .get(&contact.id)
            .map_or(0.0, |r| crate::decay::score_at(r, batch.now_ms));
        Self {
            contact,
            properties,
            latest,
            opened,
            clicked,
            score,
        }
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

    fn score(&self) -> f64 {
        self.score
    }
}

/// Every condition of a campaign that may be evaluated while an enrollment runs.
pub(crate) fn campaign_conditions(c: &Campaign) -> Vec<&Condition> {
    let mut out: Vec<&Condition> = c.steps.iter().filter_map(|s| s.when.as_ref()).collect();
    out.extend(c.exit_when.as_ref());
    out.extend(c.audience.as_ref());
    out
}
