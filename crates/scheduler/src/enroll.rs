//! Entering campaigns: event triggers, schedule triggers, and enrollment by hand, each
//! obeying the campaign's status, audience and re-entry rule as `entry` decides them.

use chrono::{DateTime, Utc};
use nurture_campaign::{Condition, Trigger};
use std::collections::HashMap;

use nurture_store::{Contact, Enrollment, NewEnrollment};
use serde_json::Map;

use crate::entry::{EnrollOutcome, decide};
use crate::facts::{Batch, Known};
use crate::live::LiveCampaign;
use crate::{Engine, EngineError, Outcome, Result, to_ms};

/// The campaigns that enroll now.
async fn active_campaigns(engine: &Engine) -> Vec<LiveCampaign> {
    engine
        .live
        .read()
        .await
        .all()
        .filter(|c| c.status == "active")
        .cloned()
        .collect()
}

/// Runs event triggers for events not seen yet, a batch per transaction.
pub(crate) async fn process_events(
    engine: &Engine,
    now: DateTime<Utc>,
    after: &mut dyn crate::AfterBatch,
) -> Result<Outcome> {
    let mut out = Outcome::default();
    let campaigns = active_campaigns(engine).await;
    let conditions: Vec<&Condition> = campaigns
        .iter()
        .flat_map(|live| {
            let when = match &live.campaign.trigger {
                Trigger::Event { when, .. } => when.as_ref(),
                _ => None,
            };
            when.into_iter().chain(live.campaign.audience.as_ref())
        })
        .chain(crate::score::rule_conditions(engine.scoring.as_deref()))
        .collect();
    // Stopping between batches loses nothing: the events not claimed stay new.
    while !engine.is_stopping() {
        let mut tx = engine.store.begin().await?;
        let events = tx.claim_new_events(to_ms(now), engine.config.batch).await?;
        if events.is_empty() {
            tx.commit().await?;
            return Ok(out);
        }
        let ids: Vec<i64> = events.iter().map(|e| e.contact_id).collect();
        let mut batch = Batch::load(&mut tx, &ids, &[], &conditions, now)
            .await?
            .with_enrollments(&mut tx)
            .await?;
        let mut enroll = crate::score::score_events(
            engine.scoring.as_deref(),
            &mut tx,
            &mut batch,
            &events,
            &campaigns,
            now,
        )
        .await?;
        for event in &events {
            out.events += 1;
            let Some(contact) = batch.contacts.get(&event.contact_id).cloned() else {
                continue;
            };
            for live in &campaigns {
                let Trigger::Event { name, when } = &live.campaign.trigger else {
                    continue;
                };
                if name != &event.name {
                    continue;
                }
                if let Some(when) = when {
                    let known = Known::from_batch(
                        &batch,
                        contact.clone(),
                        event.properties.clone(),
                        &[when],
                        None,
                    );
                    if !when.eval(&known, now) {
                        continue;
                    }
                }
                if let Ok(new) = decide(&mut batch, live, &contact, &event.properties, now) {
                    enroll.push(new);
                }
            }
        }
        let enrolled = tx.insert_enrollments_returning(&enroll, to_ms(now)).await?;
        let mut queued = 0;
        out.enrolled += enrolled.len() as u64;
        // A first step due at once runs in this transaction, with the contacts already read,
        // instead of being claimed again by `advance_due`.
        let due: Vec<Enrollment> = enrolled
            .into_iter()
            .filter(|e| e.next_run_at.is_some_and(|t| t <= to_ms(now)))
            .collect();
        if !due.is_empty() {
            let contacts: HashMap<i64, Contact> = due
                .iter()
                .filter_map(|e| batch.contacts.get(&e.contact_id))
                .map(|c| (c.id, c.clone()))
                .collect();
            let done =
                crate::advance::advance_batch(engine, &mut tx, due, Some(contacts), now).await?;
            queued = done.queued;
            out += done;
        }
        tx.commit().await?;
        after.committed(engine, queued).await?;
    }
    Ok(out)
}

/// Fires schedule triggers: the latest firing time at or before `now` that has not fired,
/// once across every process (a missed week fires once, not once per missed slot). A firing
/// left unfinished (a process stopped midway through its audience) is resumed first.
pub(crate) async fn fire_schedules(engine: &Engine, now: DateTime<Utc>) -> Result<Outcome> {
    let mut out = Outcome::default();
    let campaigns = active_campaigns(engine).await;
    for live in campaigns {
        let Trigger::Schedule { cron, timezone } = &live.campaign.trigger else {
            continue;
        };
        let id = live.campaign.id.as_str();
        let mut tx = engine.store.begin().await?;
        let open = tx.open_firings(id).await?;
        tx.commit().await?;
        for fire_at in open {
            tracing::info!(campaign = id, at = %crate::from_ms(fire_at), "resuming schedule firing");
            out.enrolled += run_firing(engine, &live, fire_at, now).await?;
        }
        let mut tx = engine.store.begin().await?;
        let since = match tx.last_firing(id).await? {
            Some(last) => crate::from_ms(last),
            None => crate::from_ms(
                tx.campaign_first_seen(id)
                    .await?
                    .unwrap_or_else(|| to_ms(now)),
            ),
        };
        let mut due = None;
        let mut cursor = since;
        for _ in 0..100_000 {
            match cron.next_after(cursor, *timezone) {
                Some(t) if t <= now => {
                    due = Some(t);
                    cursor = t;
                }
                _ => break,
            }
        }
        let Some(fire_at) = due else {
            tx.commit().await?;
            continue;
        };
        if !tx.claim_firing(id, to_ms(fire_at), to_ms(now)).await? {
            tx.commit().await?;
            continue;
        }
        tx.commit().await?;
        out.firings += 1;
        tracing::info!(campaign = id, at = %fire_at, "schedule fired");
        out.enrolled += run_firing(engine, &live, to_ms(fire_at), now).await?;
    }
    Ok(out)
}

/// Enrolls a claimed firing's audience from where its cursor stands to the end; returns how
/// many were enrolled.
///
/// Each batch is one transaction that locks the firing, reads the contacts after its
/// cursor, enrolls them and moves the cursor past them: a crash at any point leaves the
/// cursor at the last batch committed, so the next tick enrolls every contact exactly once.
/// A huge audience never holds one long transaction. The firing covers the contacts that
/// exist when each batch runs, so contacts added since the firing time are in it too.
async fn run_firing(
    engine: &Engine,
    live: &LiveCampaign,
    fire_at: i64,
    now: DateTime<Utc>,
) -> Result<u64> {
    let id = live.campaign.id.as_str();
    let audience: Vec<&Condition> = live.campaign.audience.iter().collect();
    let mut enrolled = 0;
    loop {
        let mut tx = engine.store.begin().await?;
        let Some(from) = tx.lock_open_firing(id, fire_at).await? else {
            // Completed, by this loop's last batch or by another process.
            tx.commit().await?;
            return Ok(enrolled);
        };
        let contacts = tx.contacts_after(from, engine.config.batch).await?;
        let through = contacts.last().map_or(from, |c| c.id);
        let done = (contacts.len() as i64) < engine.config.batch;
        let n = if contacts.is_empty() {
            0
        } else {
            let ids: Vec<i64> = contacts.iter().map(|c| c.id).collect();
            let mut batch = Batch::load(&mut tx, &ids, &[], &audience, now)
                .await?
                .with_enrollments(&mut tx)
                .await?;
            let enroll: Vec<NewEnrollment> = contacts
                .iter()
                .filter_map(|contact| decide(&mut batch, live, contact, &Map::new(), now).ok())
                .collect();
            tx.insert_enrollments(&enroll, to_ms(now)).await?
        };
        if !tx
            .advance_firing(id, fire_at, from, through, done, to_ms(now))
            .await?
        {
            // Not expected under the lock; if the cursor moved anyway, this batch was
            // someone else's: undo it and read the cursor again.
            tx.rollback().await?;
            continue;
        }
        tx.commit().await?;
        enrolled += n;
        if done {
            return Ok(enrolled);
        }
    }
}

pub(crate) async fn enroll_by_hand(
    engine: &Engine,
    campaign: &str,
    email: &str,
    now: DateTime<Utc>,
) -> Result<EnrollOutcome> {
    let live = engine
        .live
        .read()
        .await
        .get(campaign)
        .ok_or_else(|| EngineError::UnknownCampaign(campaign.to_string()))?;
    let mut tx = engine.store.begin().await?;
    let contact = tx
        .contact_by_email(email)
        .await?
        .ok_or_else(|| EngineError::UnknownContact(email.to_string()))?;
    let audience: Vec<&Condition> = live.campaign.audience.iter().collect();
    let mut batch = Batch::load(&mut tx, &[contact.id], &[], &audience, now)
        .await?
        .with_enrollments(&mut tx)
        .await?;
    let outcome = match decide(&mut batch, &live, &contact, &Map::new(), now) {
        Ok(new) => match tx.insert_enrollment(&new, to_ms(now)).await? {
            Some(e) => {
                tracing::debug!(campaign, contact = contact.id, enrollment = e, "enrolled");
                EnrollOutcome::Enrolled(e)
            }
            None => EnrollOutcome::AlreadyActive,
        },
        Err(refused) => refused,
    };
    tx.commit().await?;
    Ok(outcome)
}
