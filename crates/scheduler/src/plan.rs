//! What an edit to a campaign will do to the leads already in it: the change lines of
//! `nurture plan`, computed from the campaign in use, the edited one and the active
//! enrollments waiting at each step. The binary reads the files and the database and prints
//! these lines; the reasoning about where each waiting lead ends up lives here, beside the
//! sync ([`remap_target`]) that will apply the edit.

use std::collections::{BTreeMap, HashMap};

use nurture_campaign::{Action, Campaign, Delay, Step};

use crate::remap_target;

fn total(waiting: &BTreeMap<String, i64>) -> i64 {
    waiting.values().sum()
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn leads(n: i64) -> String {
    count(usize::try_from(n).unwrap_or(0), "lead", "leads")
}

/// "no active lead", "1 active lead", "N active leads".
pub fn active(n: i64) -> String {
    match n {
        0 => "no active lead".into(),
        1 => "1 active lead".into(),
        n => format!("{n} active leads"),
    }
}

fn delay(d: Option<Delay>) -> String {
    d.map_or_else(|| "none".to_string(), |d| d.to_string())
}

/// What changed between two versions of a step, in short phrases.
fn step_changes(old: &Step, new: &Step) -> Vec<String> {
    let mut out = Vec::new();
    if old.after != new.after {
        out.push(format!("after {} → {}", delay(old.after), delay(new.after)));
    }
    if old.when != new.when {
        let show = |w: &Option<nurture_campaign::Condition>| {
            w.as_ref()
                .map_or_else(|| "none".to_string(), ToString::to_string)
        };
        out.push(format!("when {} → {}", show(&old.when), show(&new.when)));
    }
    if old.send_window != new.send_window {
        out.push("send_window".into());
    }
    match (&old.action, &new.action) {
        (Action::Send(a), Action::Send(b)) => {
            if a.template != b.template {
                out.push(format!("template {} → {}", a.template, b.template));
            }
            if a.subject != b.subject {
                out.push(format!("subject \"{}\" → \"{}\"", a.subject, b.subject));
            }
            if a.preheader != b.preheader {
                out.push("preheader".into());
            }
            if a.from != b.from {
                out.push("from".into());
            }
            if a.reply_to != b.reply_to {
                out.push("reply_to".into());
            }
            if a.layout != b.layout {
                out.push("layout".into());
            }
            if a.variants != b.variants {
                out.push("variants".into());
            }
        }
        (a, b) if a.kind() != b.kind() => {
            out.push(format!("action {} → {}", a.kind(), b.kind()));
        }
        (a, b) if a != b => out.push(format!("{} changed", a.kind())),
        _ => {}
    }
    out
}

/// The campaign-level settings that differ.
fn campaign_changes(old: &Campaign, new: &Campaign) -> Vec<&'static str> {
    let mut out = Vec::new();
    let fields: [(&'static str, bool); 10] = [
        ("name", old.name != new.name),
        ("from", old.from != new.from),
        ("reply_to", old.reply_to != new.reply_to),
        ("layout", old.layout != new.layout),
        ("tracking", old.tracking != new.tracking),
        ("trigger", old.trigger != new.trigger),
        ("audience", old.audience != new.audience),
        ("exit_when", old.exit_when != new.exit_when),
        ("reentry", old.reentry != new.reentry),
        ("send_window", old.send_window != new.send_window),
    ];
    for (name, differs) in fields {
        if differs {
            out.push(name);
        }
    }
    out
}

fn status_name(s: nurture_campaign::Status) -> &'static str {
    match s {
        nurture_campaign::Status::Active => "active",
        nurture_campaign::Status::Paused => "paused",
        nurture_campaign::Status::Draft => "draft",
    }
}

/// The lines `nurture plan` prints for one changed campaign: each change and the active
/// leads it touches. `status` is the status in use; `waiting` counts the active enrollments
/// by the step they wait at. Where a lead at a removed step goes is [`remap_target`], the
/// function the engine's sync applies, so the plan and the edit cannot disagree.
pub fn describe_change(
    old: &Campaign,
    new: &Campaign,
    status: &str,
    waiting: &BTreeMap<String, i64>,
) -> Vec<String> {
    let id = new.id.as_str();
    let all = total(waiting);
    let mut out = vec![format!("{id}: changed ({})", active(all))];
    let new_index: HashMap<&str, usize> = new
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let old_index: HashMap<&str, usize> = old
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    // Where each waiting lead will sit in the new order (after the remap of removed steps);
    // `None` for leads that will complete.
    let placed: Vec<(Option<usize>, i64)> = waiting
        .iter()
        .map(|(step, n)| {
            let at = match new_index.get(step.as_str()) {
                Some(i) => Some(*i),
                None => remap_target(old, new, step).and_then(|t| new_index.get(t).copied()),
            };
            (at, *n)
        })
        .collect();
    let at_or_before_new = |i: usize| -> i64 {
        placed
            .iter()
            .filter(|(at, _)| at.is_some_and(|a| a <= i))
            .map(|(_, n)| n)
            .sum()
    };
    let at_or_before_old = |i: usize| -> i64 {
        waiting
            .iter()
            .filter(|(s, _)| old_index.get(s.as_str()).is_some_and(|a| *a <= i))
            .map(|(_, n)| n)
            .sum()
    };

    let new_status = status_name(new.status);
    if status != new_status {
        let effect = match new_status {
            "paused" => format!("{} will be held, and nothing is sent", active(all)),
            "draft" => format!("nothing runs; {} will wait", active(all)),
            _ => format!("{} will continue", active(all)),
        };
        out.push(format!("  ~ status {status} → {new_status}: {effect}"));
    }
    for (i, step) in old.steps.iter().enumerate() {
        let sid = step.id.as_str();
        if new_index.contains_key(sid) {
            continue;
        }
        out.push(format!("  - removed `{sid}`"));
        let here = waiting.get(sid).copied().unwrap_or(0);
        let before = at_or_before_old(i) - here;
        if here > 0 {
            let destination = match remap_target(old, new, sid) {
                Some(t) => format!("they will continue at `{t}`"),
                None => "they will complete, since no later step remains".to_string(),
            };
            out.push(format!(
                "      {} wait{} at `{sid}`, which is removed; {destination}",
                leads(here),
                if here == 1 { "s" } else { "" }
            ));
        }
        if before > 0 {
            out.push(format!(
                "      {} before it will no longer get it",
                leads(before)
            ));
        }
        if here == 0 && before == 0 {
            out.push("      no active lead is at or before it".into());
        }
    }
    for (i, step) in new.steps.iter().enumerate() {
        let sid = step.id.as_str();
        let touched = at_or_before_new(i);
        match old.steps.iter().find(|s| s.id == step.id) {
            None => {
                let place = match i {
                    0 => "first".to_string(),
                    _ => format!("after `{}`", new.steps[i - 1].id),
                };
                out.push(format!("  + added `{sid}` ({place})"));
                out.push(if touched > 0 {
                    format!("      {} at or before it will get it", leads(touched))
                } else {
                    "      no active lead is at or before it; only leads who enter later get it"
                        .into()
                });
            }
            Some(before) if before != step => {
                out.push(format!(
                    "  ~ changed `{sid}`: {}",
                    step_changes(before, step).join("; ")
                ));
                let here = waiting.get(sid).copied().unwrap_or(0);
                if touched > 0 {
                    out.push(format!(
                        "      {} at or before it will get the new version",
                        leads(touched)
                    ));
                } else {
                    out.push("      no active lead is at or before it".into());
                }
                if here > 0 && before.after != step.after {
                    out.push(format!(
                        "      the {here} waiting at `{sid}` keep the due time set under the old wait"
                    ));
                }
            }
            Some(_) => {}
        }
    }
    let common_old: Vec<&str> = old
        .steps
        .iter()
        .map(|s| s.id.as_str())
        .filter(|s| new_index.contains_key(s))
        .collect();
    let common_new: Vec<&str> = new
        .steps
        .iter()
        .map(|s| s.id.as_str())
        .filter(|s| old_index.contains_key(s))
        .collect();
    if common_old != common_new {
        out.push(format!(
            "  ~ steps reordered: {} → {}",
            common_old.join(", "),
            common_new.join(", ")
        ));
    }
    let settings = campaign_changes(old, new);
    if !settings.is_empty() {
        out.push(format!(
            "  ~ campaign {}: applies to {} from their next step",
            settings.join(", "),
            if all == 0 {
                "leads who enter".to_string()
            } else {
                format!("the {}", active(all))
            }
        ));
    }
    let unchanged: Vec<&str> = new
        .steps
        .iter()
        .filter(|s| old.steps.iter().any(|o| o == *s))
        .map(|s| s.id.as_str())
        .collect();
    if !unchanged.is_empty() {
        out.push(format!("    unchanged steps: {}", unchanged.join(", ")));
    }
    out
}
