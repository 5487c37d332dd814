//! Walking enrollments through their steps.
//!
//! Due enrollments are claimed a batch at a time inside one transaction (PostgreSQL locks
//! them with `SKIP LOCKED`; SQLite's `BEGIN IMMEDIATE` excludes other writers), each is run
//! up to its next wait, and the transaction commits. Every step run inserts a
//! `(enrollment, seq)` row and every advance is guarded on the `seq` it read, so a step runs
//! at most once; a crash before the commit leaves the step due, so none is lost.
//!
//! Every decision keeps its reason, in the same transaction, for `nurture explain`: a skip
//! names the part of `when` that was false and the value it saw, a goal exit the part of
//! `exit_when` that held, and a send-window postponement (which runs no step) is written to
//! the decision history with the window and its next opening.
//!
//! It stays one module because `advance_one` is one state machine (run, skip, postpone, wait,
//! exit) read top to bottom, and the rest is what it needs: the words its reasons are written
//! in. The batch's `Writes` it fills live in `writes`, which `split` fills too.

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use nurture_campaign::{Action, Campaign, Condition, Facts, SendWindow};
use std::collections::HashMap;

use nurture_store::{
    Advance, Contact, ContactStatus, Enrollment, EnrollmentState, NewMessage, NewStepRun, Tx,
};
use serde_json::Value;

use crate::facts::{Batch, Known, campaign_conditions};
use crate::live::LiveCampaign;
use crate::writes::Writes;
use crate::{Engine, Outcome, Result, to_ms};

/// Most steps one enrollment may run in one go (validation already refuses loops that never
/// wait; this is a second fence).
const MAX_STEPS_AT_ONCE: usize = 100;

pub(crate) async fn advance_due(
    engine: &Engine,
    now: DateTime<Utc>,
    after: &mut dyn crate::AfterBatch,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    // Stopping between batches loses nothing: the enrollments not claimed stay due.
    while !engine.is_stopping() {
        let mut tx = engine.store.begin().await?;
        let due = tx
            .claim_due_enrollments(to_ms(now), engine.config.batch)
            .await?;
        if due.is_empty() {
            tx.commit().await?;
            return Ok(out);
        }
        let done = advance_batch(engine, &mut tx, due, None, now).await?;
        tx.commit().await?;
        after.committed(engine, done.queued).await?;
        out += done;
    }
    Ok(out)
}

/// Runs `due` (enrollments held by `tx`) up to their next waits, inside `tx`. `contacts`,
/// when given, are their contacts as already read in `tx`.
pub(crate) async fn advance_batch(
    engine: &Engine,
    tx: &mut Tx,
    due: Vec<Enrollment>,
    contacts: Option<HashMap<i64, Contact>>,
    now: DateTime<Utc>,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    let mut lives = Vec::new();
    for e in &due {
        if !lives
            .iter()
            .any(|l: &LiveCampaign| l.campaign.id.as_str() == e.campaign_id)
            && let Some(live) = engine.campaign(&e.campaign_id).await
        {
            lives.push(live);
        }
    }
    let conditions: Vec<&Condition> = lives
        .iter()
        .flat_map(|l| campaign_conditions(&l.campaign))
        .collect();
    let enrollments: Vec<i64> = due.iter().map(|e| e.id).collect();
    let mut batch = match contacts {
        Some(contacts) => Batch::load_with(tx, contacts, &enrollments, &conditions, now).await?,
        None => {
            let contacts: Vec<i64> = due.iter().map(|e| e.contact_id).collect();
            Batch::load(tx, &contacts, &enrollments, &conditions, now).await?
        }
    };
    let mut writes = Writes::default();
    for e in due {
        let Some(live) = lives
            .iter()
            .find(|l| l.campaign.id.as_str() == e.campaign_id)
        else {
            continue;
        };
        out += advance_one(engine, tx, &mut batch, &mut writes, live, e, now).await?;
    }
    out.queued += writes.flush(tx, to_ms(now)).await?;
    Ok(out)
}

enum End {
    /// Wait until this time at this step.
    Wait(usize, DateTime<Utc>),
    Completed,
    Exited(String),
}

async fn advance_one(
    engine: &Engine,
    tx: &mut Tx,
    batch: &mut Batch,
    w: &mut Writes,
    live: &LiveCampaign,
    e: Enrollment,
    now: DateTime<Utc>,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    let now_ms = to_ms(now);
    let c: &Campaign = &live.campaign;
    let Some(contact) = batch.contacts.get(&e.contact_id).cloned() else {
        return Ok(out);
    };
    let mut seq = e.seq;
    let mut idx = match e
        .step_id
        .as_deref()
        .and_then(|s| c.steps.iter().position(|st| st.id.as_str() == s))
    {
        Some(i) => i,
        // The step vanished without a sync remapping it (another process's edit); finish.
        None => {
            finish(w, &e, seq, None, End::Completed);
            out.ended += 1;
            return Ok(out);
        }
    };
    let conditions = campaign_conditions(c);
    let mut known = Known::from_batch(
        batch,
        contact,
        e.trigger_properties.clone(),
        &conditions,
        Some(e.id),
    );
    let tz = known.timezone(engine.config.default_timezone);

    let end = 'run: {
        if known.contact.status != ContactStatus::Subscribed {
            break 'run End::Exited(known.contact.status.as_str().to_string());
        }
        for _ in 0..MAX_STEPS_AT_ONCE {
            let step = &c.steps[idx];
            if let Some(exit) = &c.exit_when
                && exit.eval(&known, now)
            {
                w.step_run(
                    &e,
                    seq + 1,
                    step.id.as_str(),
                    "exited",
                    Some(format!("goal reached: {}", goal_part(exit, &known, now))),
                );
                seq += 1;
                break 'run End::Exited("goal".into());
            }
            if let Some(when) = &step.when
                && let Some(failed) = when.first_false(&known, now)
            {
                seq += 1;
                w.step_run(
                    &e,
                    seq,
                    step.id.as_str(),
                    "skipped",
                    Some(false_reason(failed, &known)),
                );
                out.steps += 1;
            } else {
                if let (Action::Send(_), Some(window)) = (&step.action, c.window_for(step)) {
                    let zone = window.zone(tz);
                    let opening = window.next_opening(now, zone);
                    if opening > now {
                        // Recorded for `explain` only; the step itself is still unrun, and
                        // its (enrollment, seq) key is what keeps it at most once.
                        tx.insert_decision(
                            e.id,
                            seq,
                            step.id.as_str(),
                            "postponed",
                            &format!(
                                "outside the send window {}; next opening {}",
                                describe_window(window, zone),
                                opening.to_rfc3339_opts(SecondsFormat::Secs, true)
                            ),
                            now_ms,
                        )
                        .await?;
                        break 'run End::Wait(idx, opening);
                    }
                }
                seq += 1;
                out.steps += 1;
                let mut jump = None;
                let outcome = match &step.action {
                    Action::Send(_) => {
                        let variant =
                            crate::split::choose(tx, w, c, step, &known.contact.email).await?;
                        w.messages.push(NewMessage {
                            enrollment_id: e.id,
                            seq,
                            contact_id: e.contact_id,
                            campaign_id: c.id.to_string(),
                            version_id: live.version_id,
                            step_id: step.id.to_string(),
                            due: now_ms,
                            variant,
                        });
                        "queued"
                    }
                    Action::Tag(tags) => {
                        let change = w.profiles.entry(known.contact.id).or_default();
                        for t in tags {
                            if !known.has_tag(t) {
                                known.contact.tags.push(t.clone());
                            }
                            change.tag(t);
                        }
                        known.contact.tags.sort();
                        "tagged"
                    }
                    Action::Untag(tags) => {
                        known.contact.tags.retain(|t| !tags.contains(t));
                        let change = w.profiles.entry(known.contact.id).or_default();
                        for t in tags {
                            change.untag(t);
                        }
                        "untagged"
                    }
                    Action::Set(values) => {
                        let change = w.profiles.entry(known.contact.id).or_default();
                        for (k, v) in values {
                            known.contact.attributes.insert(k.clone(), v.clone());
                            change.set(k, v.clone());
                        }
                        "set"
                    }
                    Action::Goto(target) => {
                        jump = c.step_index(target);
                        "goto"
                    }
                    Action::Split(arms) => {
                        let arm = crate::split::choose(tx, w, c, step, &known.contact.email)
                            .await?
                            .and_then(|id| arms.iter().find(|a| a.id == id));
                        jump = arm.and_then(|a| c.step_index(&a.goto));
                        w.step_runs.push(NewStepRun {
                            enrollment_id: e.id,
                            seq,
                            step_id: step.id.to_string(),
                            outcome: "split",
                            reason: arm.map(|a| format!("arm `{}`: went on to `{}`", a.id, a.goto)),
                            variant: arm.map(|a| a.id.clone()),
                        });
                        "split"
                    }
                    Action::Exit => {
                        w.step_run(
                            &e,
                            seq,
                            step.id.as_str(),
                            "exited",
                            Some("exit step".into()),
                        );
                        break 'run End::Exited("exit_step".into());
                    }
                    Action::Webhook(_) => {
                        w.webhooks.push(nurture_store::NewWebhook {
                            enrollment_id: e.id,
                            seq,
                            contact_id: e.contact_id,
                            campaign_id: c.id.to_string(),
                            version_id: live.version_id,
                            step_id: step.id.to_string(),
                            due: now_ms,
                        });
                        "queued"
                    }
                    Action::Wait => "waited",
                };
                if outcome != "split" {
                    w.step_run(&e, seq, step.id.as_str(), outcome, None);
                }
                if let Some(target) = jump {
                    idx = target;
                    let due = now
                        + c.steps[idx]
                            .after
                            .map(|d| d.to_chrono())
                            .unwrap_or_default();
                    if due > now {
                        break 'run End::Wait(idx, due);
                    }
                    continue;
                }
            }
            idx += 1;
            let Some(next) = c.steps.get(idx) else {
                break 'run End::Completed;
            };
            let due = now + next.after.map(|d| d.to_chrono()).unwrap_or_default();
            if due > now {
                break 'run End::Wait(idx, due);
            }
        }
        // Too many instant steps: park here and continue on the next round.
        End::Wait(idx, now)
    };
    if !matches!(end, End::Wait(..)) {
        out.ended += 1;
    }
    let step_id = match &end {
        End::Wait(i, _) => Some(c.steps[*i].id.as_str()),
        _ => c.steps.get(idx).map(|s| s.id.as_str()),
    };
    finish(w, &e, seq, step_id, end);
    // Later enrollments of the same contact in this batch see its new tags and attributes.
    batch.contacts.insert(known.contact.id, known.contact);
    Ok(out)
}

fn finish(w: &mut Writes, e: &Enrollment, seq: i64, step_id: Option<&str>, end: End) {
    let (state, next, reason) = match end {
        End::Wait(_, at) => (EnrollmentState::Active, Some(to_ms(at)), None),
        End::Completed => (EnrollmentState::Completed, None, None),
        End::Exited(r) => (EnrollmentState::Exited, None, Some(r)),
    };
    w.advances.push(Advance {
        id: e.id,
        expected_seq: e.seq,
        seq,
        step_id: step_id.map(str::to_string),
        next_run_at: next,
        state,
        exit_reason: reason,
    });
}

/// Why a `when` was false, with the value the engine saw for an attribute or property:
/// "{property: team_size, lt: 20} was false (team_size was 35)".
fn false_reason(failed: &Condition, known: &Known) -> String {
    let leaf = match failed {
        Condition::Not(inner) => inner.as_ref(),
        other => other,
    };
    let seen = match leaf {
        Condition::Attribute { name, .. } => Some((name, known.attribute(name))),
        Condition::Property { name, .. } => Some((name, known.property(name))),
        _ => None,
    };
    match seen {
        Some((name, Some(Value::String(v)))) => format!("{failed} was false ({name} was {v})"),
        Some((name, Some(v))) => format!("{failed} was false ({name} was {v})"),
        Some((name, None)) => format!("{failed} was false ({name} was not set)"),
        None => format!("{failed} was false"),
    }
}

/// The part of `exit_when` that held: the first true item of a top-level `any`, else all of it.
fn goal_part<'a>(exit: &'a Condition, known: &Known, now: DateTime<Utc>) -> &'a Condition {
    match exit {
        Condition::Any(items) => items.iter().find(|c| c.eval(known, now)).unwrap_or(exit),
        other => other,
    }
}

/// A send window in words: "mon-fri 09:00-17:00 (America/New_York)".
fn describe_window(window: &SendWindow, zone: Tz) -> String {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let mut on = [false; 7];
    for d in &window.days {
        on[d.num_days_from_monday() as usize] = true;
    }
    let days = if on.iter().all(|d| *d) {
        "every day".to_string()
    } else {
        let mut runs = Vec::new();
        let mut i = 0;
        while i < 7 {
            if !on[i] {
                i += 1;
                continue;
            }
            let start = i;
            while i + 1 < 7 && on[i + 1] {
                i += 1;
            }
            runs.push(match i - start {
                0 => NAMES[start].to_string(),
                1 => format!("{}, {}", NAMES[start], NAMES[i]),
                _ => format!("{}-{}", NAMES[start], NAMES[i]),
            });
            i += 1;
        }
        runs.join(", ")
    };
    let hours = window
        .hours
        .map_or_else(|| "all day".to_string(), |h| h.to_string());
    if days == "every day" && window.hours.is_none() {
        return format!("every day, all day ({zone})");
    }
    format!("{days} {hours} ({zone})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;
    use nurture_campaign::{Hours, WindowZone};

    #[test]
    fn windows_in_words() {
        let window = |days: Vec<Weekday>, hours: Option<&str>| SendWindow {
            days,
            hours: hours.map(|h| Hours::parse(h).unwrap()),
            timezone: WindowZone::Contact,
        };
        use Weekday::*;
        let ny: Tz = "America/New_York".parse().unwrap();
        let cases = [
            (
                window(vec![Mon, Tue, Wed, Thu, Fri], Some("09:00-17:00")),
                "mon-fri 09:00-17:00 (America/New_York)",
            ),
            (
                window(vec![Sun, Sat, Mon, Tue, Wed, Thu, Fri], None),
                "every day, all day (America/New_York)",
            ),
            (
                window(vec![Mon, Wed, Thu, Sat], Some("08:00-12:30")),
                "mon, wed, thu, sat 08:00-12:30 (America/New_York)",
            ),
        ];
        for (w, want) in cases {
            assert_eq!(describe_window(&w, ny), want);
        }
    }
}
