//! The entry decision: whether a contact may enter a campaign now, by its status, audience
//! and re-entry rule. A pure decision over the batch's facts, in its own module so both the
//! triggers in `enroll` and the score triggers in `score` can ask it.

use chrono::{DateTime, Utc};
use nurture_campaign::Reentry;
use nurture_store::{Contact, ContactStatus, EnrollmentState, EnrollmentSummary, NewEnrollment};
use serde_json::{Map, Value};

use crate::facts::{Batch, Known};
use crate::live::LiveCampaign;
use crate::to_ms;

/// What an enrollment attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollOutcome {
    /// Enrolled; the enrollment id.
    Enrolled(i64),
    /// Already active in the campaign.
    AlreadyActive,
    /// The re-entry rule forbids entering again (yet).
    ReentryRefused,
    /// The contact does not match the audience.
    NotInAudience,
    /// The contact is unsubscribed, bounced or complained.
    NotMailable,
    /// The campaign is paused, draft or removed.
    CampaignNotActive,
}

/// Decides whether `contact` enters `live` as of `now`: the enrollment to insert, or why
/// not. The batch then counts the contact as active in the campaign.
pub(crate) fn decide(
    batch: &mut Batch,
    live: &LiveCampaign,
    contact: &Contact,
    properties: &Map<String, Value>,
    now: DateTime<Utc>,
) -> std::result::Result<NewEnrollment, EnrollOutcome> {
    if live.status != "active" {
        return Err(EnrollOutcome::CampaignNotActive);
    }
    if contact.status != ContactStatus::Subscribed {
        return Err(EnrollOutcome::NotMailable);
    }
    let c = &live.campaign;
    let id = c.id.as_str();
    if let Some(audience) = &c.audience {
        let known = Known::from_batch(
            batch,
            contact.clone(),
            properties.clone(),
            &[audience],
            None,
        );
        if !audience.eval(&known, now) {
            return Err(EnrollOutcome::NotInAudience);
        }
    }
    let key = (id.to_string(), contact.id);
    if let Some(last) = batch.last_enrollment.get(&key) {
        if last.state == EnrollmentState::Active {
            return Err(EnrollOutcome::AlreadyActive);
        }
        let ended = last.ended_at.unwrap_or(i64::MAX);
        let allowed = match c.reentry {
            Reentry::Never => false,
            Reentry::AfterExit => true,
            Reentry::After(d) => ended.saturating_add(d.as_secs() * 1000) <= to_ms(now),
        };
        if !allowed {
            return Err(EnrollOutcome::ReentryRefused);
        }
    }
    let Some(first) = c.steps.first() else {
        return Err(EnrollOutcome::CampaignNotActive);
    };
    let due = now + first.after.map(|d| d.to_chrono()).unwrap_or_default();
    let new = NewEnrollment {
        campaign_id: id.to_string(),
        contact_id: contact.id,
        step_id: first.id.to_string(),
        next_run_at: to_ms(due),
        trigger_properties: properties.clone(),
    };
    batch.last_enrollment.insert(
        key,
        EnrollmentSummary {
            state: EnrollmentState::Active,
            ended_at: None,
        },
    );
    Ok(new)
}
