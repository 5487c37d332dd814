//! What a simulation found, and the two ways `simulate` shows it: a table with UTC and the
//! lead's local time ([`Report`]'s `Display`), or SPEC §7's JSON ([`Report::json`]).

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use nurture_campaign::{Campaign, Trigger};
use nurture_store::{Enrollment, EnrollmentState};
use serde::Serialize;

use super::lead::{EventSource, Lead};
use super::timeline::{LeadLine, Line};
use crate::from_ms;

/// The outcome of a simulation: the lead's timeline over the simulated period.
#[derive(Debug, Clone)]
pub struct Report {
    /// The campaign as its file says (its status included).
    pub campaign: Campaign,
    /// The lead, with the trigger event it entered with.
    pub lead: Lead,
    /// The lead's time zone (its `timezone` attribute, or the default).
    pub timezone: Tz,
    /// Start of the simulated period (whole seconds).
    pub start: DateTime<Utc>,
    /// End of the simulated period.
    pub end: DateTime<Utc>,
    /// Length of the period in days.
    pub days: u32,
    /// How the lead entered, or why it did not.
    pub entry: Result<String, String>,
    /// The campaign's status when it is not active (it is simulated as if it were).
    pub inactive: Option<&'static str>,
    /// What the engine did, in order.
    pub timeline: Vec<Line>,
    /// The scripted lead actions, in order, as applied.
    pub lead_actions: Vec<LeadLine>,
    /// The lead's last enrollment, as the run left it.
    pub last: Option<Enrollment>,
    /// Emails rendered and built (none is sent).
    pub rendered: usize,
    /// Emails whose rendering failed.
    pub failed: usize,
}

/// `--json`: SPEC §7's `{"campaign", "contact", "timeline"}`, then more.
#[derive(Serialize)]
pub struct JsonReport<'a> {
    campaign: &'a str,
    contact: &'a str,
    timeline: Vec<TimelineEntry<'a>>,
    /// The scripted lead actions, as applied.
    events: Vec<LeadEntry<'a>>,
    lead: &'a str,
    timezone: &'a str,
    start: String,
    end: String,
    days: u32,
    simulated_as_active: Option<&'a str>,
    /// The trigger event the lead entered with (event triggers).
    trigger_event: Option<TriggerEvent<'a>>,
    enrolled: Option<&'a str>,
    state: String,
    summary: String,
    rendered: usize,
    failed: usize,
    sent: usize,
}

#[derive(Serialize)]
struct TimelineEntry<'a> {
    at: String,
    local: String,
    day: i64,
    step: Option<&'a str>,
    outcome: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
}

/// Where the simulated trigger event came from: `stored` (the contact's latest event the
/// trigger takes, replayed at the start; `recorded_at` is when it was recorded), `made_up`
/// or `given` (the data file's).
#[derive(Serialize)]
struct TriggerEvent<'a> {
    name: &'a str,
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    recorded_at: Option<String>,
    properties: &'a serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct LeadEntry<'a> {
    at: String,
    local: String,
    day: i64,
    step: Option<&'a str>,
    what: &'a str,
    note: Option<&'a str>,
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Report {
    fn local(&self, t: DateTime<Utc>) -> DateTime<Tz> {
        t.with_timezone(&self.timezone)
    }

    fn day(&self, t: DateTime<Utc>) -> i64 {
        (t - self.start).num_days()
    }

    /// How the run ended: the last enrollment's state, and a sentence.
    pub fn ending(&self) -> (String, String) {
        let e = match (&self.entry, &self.last) {
            (Err(why), _) => return ("not_enrolled".into(), format!("not enrolled: {why}")),
            (Ok(_), None) => return ("not_enrolled".into(), "not enrolled".into()),
            (Ok(_), Some(e)) => e,
        };
        let (state, step, due, reason) = (
            &e.state,
            &e.step_id,
            e.next_run_at.map(from_ms),
            &e.exit_reason,
        );
        let last = self.timeline.last();
        let day = last.map_or(0, |l| self.day(l.at));
        let sentence = match state {
            EnrollmentState::Active => format!(
                "after {} days the lead waits at `{}` until {}",
                self.days,
                step.as_deref().unwrap_or("-"),
                due.map_or_else(
                    || "-".to_string(),
                    |t| format!("{} UTC", t.format("%Y-%m-%d %H:%M"))
                )
            ),
            EnrollmentState::Completed => format!("completed on day {day}"),
            EnrollmentState::Exited | EnrollmentState::Failed => format!(
                "{state} on day {day}: {}",
                last.filter(|l| l.outcome == "exited")
                    .map(|l| l.reason.clone())
                    .or_else(|| reason.clone())
                    .unwrap_or_else(|| "no reason recorded".into())
            ),
        };
        (state.as_str().to_string(), sentence)
    }

    /// The `--json` document (serialize it with `serde_json`).
    pub fn json(&self) -> JsonReport<'_> {
        let (state, summary) = self.ending();
        let local = |t: DateTime<Utc>| self.local(t).to_rfc3339_opts(SecondsFormat::Secs, true);
        JsonReport {
            campaign: self.campaign.id.as_str(),
            contact: &self.lead.email,
            timeline: self
                .timeline
                .iter()
                .map(|l| TimelineEntry {
                    at: rfc(l.at),
                    local: local(l.at),
                    day: self.day(l.at),
                    step: l.step.as_deref(),
                    outcome: &l.outcome,
                    reason: &l.reason,
                    subject: l.subject.as_deref(),
                })
                .collect(),
            events: self
                .lead_actions
                .iter()
                .map(|l| LeadEntry {
                    at: rfc(l.at),
                    local: local(l.at),
                    day: self.day(l.at),
                    step: l.step.as_deref(),
                    what: &l.what,
                    note: l.note.as_deref(),
                })
                .collect(),
            lead: &self.lead.origin,
            timezone: self.timezone.name(),
            start: rfc(self.start),
            end: rfc(self.end),
            days: self.days,
            simulated_as_active: self.inactive,
            trigger_event: match &self.campaign.trigger {
                Trigger::Event { name, .. } => Some(TriggerEvent {
                    name,
                    source: self.lead.event_source.as_str(),
                    recorded_at: match self.lead.event_source {
                        EventSource::Stored(at) => Some(rfc(at)),
                        _ => None,
                    },
                    properties: &self.lead.event,
                }),
                Trigger::Schedule { .. } | Trigger::Score(_) => None,
            },
            enrolled: self.entry.as_ref().ok().map(String::as_str),
            state,
            summary,
            rendered: self.rendered,
            failed: self.failed,
            sent: 0,
        }
    }
}

/// The table a marketer reads; every line, the last included, ends with a newline.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.campaign;
        writeln!(
            f,
            "{} for {} ({}), {} days from {} UTC; nothing is sent",
            c.id,
            self.lead.email,
            self.lead.origin,
            self.days,
            self.start.format("%Y-%m-%d %H:%M")
        )?;
        if let Some(status) = self.inactive {
            writeln!(
                f,
                "the campaign is {status}; simulated as if it were active"
            )?;
        }
        match &self.entry {
            Ok(how) => writeln!(f, "{how}")?,
            Err(why) => return writeln!(f, "not enrolled: {why}"),
        }
        writeln!(f)?;
        // Lead actions first at equal times: they are applied before the engine's round.
        let mut rows: Vec<(DateTime<Utc>, u8, [String; 4])> = Vec::new();
        for l in &self.lead_actions {
            let reason = match &l.note {
                Some(n) => format!("{} ({n})", l.what),
                None => l.what.clone(),
            };
            rows.push((
                l.at,
                0,
                [
                    l.step.clone().unwrap_or_else(|| "-".into()),
                    "lead".into(),
                    reason,
                    String::new(),
                ],
            ));
        }
        for l in &self.timeline {
            let reason = match &l.subject {
                Some(subject) => format!("\"{subject}\""),
                None => l.reason.clone(),
            };
            rows.push((
                l.at,
                1,
                [
                    l.step.clone().unwrap_or_else(|| "-".into()),
                    l.outcome.clone(),
                    reason,
                    String::new(),
                ],
            ));
        }
        rows.sort_by_key(|(at, rank, _)| (*at, *rank));
        for (at, _, cells) in &mut rows {
            let local = self.local(*at);
            cells[3] = format!(
                "{} {}",
                local.format("%a %Y-%m-%d %H:%M"),
                local.format("%Z")
            );
        }
        let width = |i: usize, min: usize| {
            rows.iter()
                .map(|r| r.2[i].len())
                .max()
                .unwrap_or(min)
                .max(min)
        };
        let step_w = width(0, 4);
        let out_w = width(1, 7);
        let local_head = format!("local ({})", self.timezone.name());
        let local_w = width(3, local_head.len());
        writeln!(
            f,
            "{:>3}  {:<16}  {:<local_w$}  {:<step_w$}  {:<out_w$}  reason",
            "day", "UTC", local_head, "step", "outcome"
        )?;
        for (at, _, [step, outcome, reason, local]) in &rows {
            writeln!(
                f,
                "{:>3}  {:<16}  {:<local_w$}  {:<step_w$}  {:<out_w$}  {}",
                self.day(*at),
                at.format("%Y-%m-%d %H:%M").to_string(),
                local,
                step,
                outcome,
                reason
            )?;
        }
        if rows.is_empty() {
            writeln!(f, "  (nothing happens within {} days)", self.days)?;
        }
        writeln!(f)?;
        let (_, ending) = self.ending();
        writeln!(
            f,
            "{ending}; {} email{} rendered{}, none sent",
            self.rendered,
            if self.rendered == 1 { "" } else { "s" },
            if self.failed > 0 {
                format!(", {} failed", self.failed)
            } else {
                String::new()
            }
        )
    }
}
