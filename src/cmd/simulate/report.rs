//! What `simulate` prints: a table with UTC and the lead's local time, or SPEC §7's JSON.

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use nurture_campaign::{CampaignFile, Trigger};
use nurture_scheduler::from_ms;
use serde::Serialize;

use super::Sim;
use super::lead::{EventSource, Lead};

/// `--json`: SPEC §7's `{"campaign", "contact", "timeline"}`, then more.
#[derive(Serialize)]
pub(super) struct Output<'a> {
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

pub(super) struct Report<'a> {
    pub(super) file: &'a CampaignFile,
    pub(super) lead: &'a Lead,
    pub(super) tz: Tz,
    pub(super) start: DateTime<Utc>,
    pub(super) end: DateTime<Utc>,
    pub(super) days: u32,
    pub(super) sim: &'a Sim,
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Report<'_> {
    fn local(&self, t: DateTime<Utc>) -> DateTime<Tz> {
        t.with_timezone(&self.tz)
    }

    fn day(&self, t: DateTime<Utc>) -> i64 {
        (t - self.start).num_days()
    }

    /// How the run ended: the last enrollment's state, and a sentence.
    fn ending(&self) -> (String, String) {
        let e = match (&self.sim.entry, &self.sim.last) {
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
        let last = self.sim.lines.last();
        let day = last.map_or(0, |l| self.day(l.at));
        let sentence = match state.as_str() {
            "active" => format!(
                "after {} days the lead waits at `{}` until {}",
                self.days,
                step.as_deref().unwrap_or("-"),
                due.map_or_else(
                    || "-".to_string(),
                    |t| format!("{} UTC", t.format("%Y-%m-%d %H:%M"))
                )
            ),
            "completed" => format!("completed on day {day}"),
            other => format!(
                "{other} on day {day}: {}",
                last.filter(|l| l.outcome == "exited")
                    .map(|l| l.reason.clone())
                    .or_else(|| reason.clone())
                    .unwrap_or_else(|| "no reason recorded".into())
            ),
        };
        (state.clone(), sentence)
    }

    /// `--json`.
    pub(super) fn json(&self) -> Output<'_> {
        let (state, summary) = self.ending();
        let local = |t: DateTime<Utc>| self.local(t).to_rfc3339_opts(SecondsFormat::Secs, true);
        Output {
            campaign: self.file.campaign.id.as_str(),
            contact: &self.lead.sample.email,
            timeline: self
                .sim
                .lines
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
                .sim
                .lead_lines
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
            timezone: self.tz.name(),
            start: rfc(self.start),
            end: rfc(self.end),
            days: self.days,
            simulated_as_active: self.sim.inactive,
            trigger_event: match &self.file.campaign.trigger {
                Trigger::Event { name, .. } => Some(TriggerEvent {
                    name,
                    source: self.lead.event_source.as_str(),
                    recorded_at: match self.lead.event_source {
                        EventSource::Stored(at) => Some(rfc(at)),
                        _ => None,
                    },
                    properties: &self.lead.sample.event,
                }),
                Trigger::Schedule { .. } | Trigger::Score(_) => None,
            },
            enrolled: self.sim.entry.as_ref().ok().map(String::as_str),
            state,
            summary,
            rendered: self.sim.rendered,
            failed: self.sim.failed,
            sent: 0,
        }
    }

    /// The table a marketer reads.
    pub(super) fn print(&self) {
        let c = &self.file.campaign;
        outln!(
            "{} for {} ({}), {} days from {} UTC; nothing is sent",
            c.id,
            self.lead.sample.email,
            self.lead.origin,
            self.days,
            self.start.format("%Y-%m-%d %H:%M")
        );
        if let Some(status) = self.sim.inactive {
            outln!("the campaign is {status}; simulated as if it were active");
        }
        match &self.sim.entry {
            Ok(how) => outln!("{how}"),
            Err(why) => {
                outln!("not enrolled: {why}");
                return;
            }
        }
        outln!();
        // Lead actions first at equal times: they are applied before the engine's round.
        let mut rows: Vec<(DateTime<Utc>, u8, [String; 4])> = Vec::new();
        for l in &self.sim.lead_lines {
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
        for l in &self.sim.lines {
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
        let local_head = format!("local ({})", self.tz.name());
        let local_w = width(3, local_head.len());
        outln!(
            "{:>3}  {:<16}  {:<local_w$}  {:<step_w$}  {:<out_w$}  reason",
            "day",
            "UTC",
            local_head,
            "step",
            "outcome"
        );
        for (at, _, [step, outcome, reason, local]) in &rows {
            outln!(
                "{:>3}  {:<16}  {:<local_w$}  {:<step_w$}  {:<out_w$}  {}",
                self.day(*at),
                at.format("%Y-%m-%d %H:%M").to_string(),
                local,
                step,
                outcome,
                reason
            );
        }
        if rows.is_empty() {
            outln!("  (nothing happens within {} days)", self.days);
        }
        outln!();
        let (_, ending) = self.ending();
        outln!(
            "{ending}; {} email{} rendered{}, none sent",
            self.sim.rendered,
            if self.sim.rendered == 1 { "" } else { "s" },
            if self.sim.failed > 0 {
                format!(", {} failed", self.sim.failed)
            } else {
                String::new()
            }
        );
    }
}
