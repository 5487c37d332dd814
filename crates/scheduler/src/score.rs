//! Lead scores (SPEC §11): the points each new event, open and click earns by the rules of
//! `scoring.yaml`, the half-life decay, and the score triggers that fire when a score starts
//! to satisfy their comparison.
//!
//! Scores change as the engine processes new events, inside the transaction that claims
//! them: an event is scored exactly once (a crash rolls the claim and the points back
//! together), and a crossing enrolls in the same transaction, so it fires once per crossing.
//! What a stored score is worth later is `decay`'s.

use chrono::{DateTime, Utc};
use nurture_campaign::scoring::decayed;
use nurture_campaign::{Condition, Scoring, Trigger};
use nurture_store::{EventRow, NewEnrollment, ScorePoint, ScoreRow, Tx};
use serde_json::{Map, Value, json};

use crate::decay::score_at;
use crate::facts::{Batch, Known};
use crate::live::LiveCampaign;
use crate::{Result, to_ms};

/// Every condition the scoring rules evaluate (for loading the facts they need).
pub(crate) fn rule_conditions(scoring: Option<&Scoring>) -> Vec<&Condition> {
    scoring
        .map(|s| s.rules.iter().filter_map(|r| r.when.as_ref()).collect())
        .unwrap_or_default()
}

/// Scores `events` (claimed in `tx`) and returns the enrollments of the score triggers
/// their scores crossed. Keeps `batch`'s scores current for the conditions evaluated after.
pub(crate) async fn score_events(
    scoring: Option<&Scoring>,
    tx: &mut Tx,
    batch: &mut Batch,
    events: &[EventRow],
    campaigns: &[LiveCampaign],
    now: DateTime<Utc>,
) -> Result<Vec<NewEnrollment>> {
    let Some(scoring) = scoring else {
        return Ok(Vec::new());
    };
    if scoring.rules.is_empty() {
        return Ok(Vec::new());
    }
    let now_ms = to_ms(now);
    let half_life = scoring.half_life_ms();
    let conditions = rule_conditions(Some(scoring));
    let mut enroll = Vec::new();
    let mut points = Vec::new();
    // Events of one contact in one batch build on each other, in order.
    let mut changed: Vec<i64> = Vec::new();
    for event in events {
        let Some(contact) = batch.contacts.get(&event.contact_id).cloned() else {
            continue;
        };
        let known = Known::from_batch(
            batch,
            contact.clone(),
            event.properties.clone(),
            &conditions,
            None,
        );
        let earned = scoring.event_points(&event.name, &event.properties, &known, now);
        let profile = scoring.profile_points(&known, now);
        let profile_total: f64 = profile.iter().map(|(_, p)| p).sum();
        let old = batch.scores.get(&contact.id).cloned();
        let before = old.as_ref().map_or(0.0, |r| score_at(r, now_ms));
        if earned.is_empty() && old.as_ref().is_some_and(|r| r.profile == profile_total) {
            continue;
        }
        if earned.is_empty() && old.is_none() && profile.is_empty() {
            continue;
        }
        let mut signal = old.as_ref().map_or(0.0, |r| {
            decayed(r.points, now_ms - r.computed_at, r.half_life_ms)
        });
        for (rule, p) in &earned {
            signal += decayed(*p, now_ms - event.occurred_at, half_life);
            points.push(ScorePoint {
                contact_id: contact.id,
                event_id: Some(event.id),
                at: event.occurred_at.min(now_ms),
                points: *p,
                reason: rule.label.clone(),
            });
        }
        let row = ScoreRow {
            contact_id: contact.id,
            points: signal,
            profile: profile_total,
            profile_reasons: profile.iter().map(|(r, p)| (r.label.clone(), *p)).collect(),
            half_life_ms: half_life,
            computed_at: now_ms,
        };
        let after = score_at(&row, now_ms);
        batch.set_score(row);
        if !changed.contains(&contact.id) {
            changed.push(contact.id);
        }
        for live in campaigns {
            let Trigger::Score(op) = &live.campaign.trigger else {
                continue;
            };
            let holds = |v: f64| op.holds(Some(&nurture_campaign::scoring::score_value(v)));
            if holds(before) || !holds(after) {
                continue;
            }
            let mut properties = Map::new();
            properties.insert("score".into(), json!(round(after)));
            properties.insert("previous_score".into(), json!(round(before)));
            properties.insert("event".into(), Value::String(event.name.clone()));
            if let Ok(new) = crate::entry::decide(batch, live, &contact, &properties, now) {
                enroll.push(new);
            }
        }
    }
    for id in changed {
        if let Some(row) = batch.scores.get(&id) {
            tx.put_score(row).await?;
        }
    }
    tx.insert_score_points(&points).await?;
    Ok(enroll)
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
