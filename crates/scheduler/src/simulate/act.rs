//! Applies a scripted lead action to the throwaway database, the way the real inputs would
//! record it: an event as `nurture event` stores it, an open or a click as the HTTP server
//! records the pixel or the link, attributes and tags as a contact upsert. The engine's next
//! round then reacts to it like to any other input.

use nurture_store::{MessageState, NewEvent, Upsert};
use serde_json::{Map, json};

use super::SimulateError;
use super::script::{Act, Scripted};
use crate::Engine;

/// Applies one scripted action to the simulated lead; returns a note when it had no effect.
pub(super) async fn act(
    engine: &Engine,
    email: &str,
    campaign: &str,
    s: &Scripted,
) -> Result<Option<String>, SimulateError> {
    let at = s.at.timestamp_millis();
    let mut tx = engine.store().begin().await?;
    let contact = tx
        .contact_by_email(email)
        .await?
        .ok_or(SimulateError::LeadVanished)?;
    let upsert = |u: Upsert| Upsert {
        email: email.to_string(),
        ..u
    };
    let mut note = None;
    match &s.act {
        Act::Event { name, properties } => {
            tx.insert_event(
                &NewEvent {
                    contact_id: contact.id,
                    name: name.clone(),
                    properties: properties.clone(),
                    occurred_at: at,
                    ..NewEvent::default()
                },
                at,
            )
            .await?;
        }
        Act::Opened(step) | Act::Clicked(step) => {
            // What the HTTP server records when the pixel loads or a link is followed: an
            // email event tied to the enrollment and the step of the message.
            let enrollment = tx
                .contact_enrollments(contact.id)
                .await?
                .into_iter()
                .rev()
                .find(|e| e.campaign_id == campaign);
            let message = match &enrollment {
                Some(e) => tx
                    .contact_messages(contact.id)
                    .await?
                    .into_iter()
                    .find(|m| {
                        m.enrollment_id == e.id
                            && m.step_id == *step
                            && m.state == MessageState::Sent
                    }),
                None => None,
            };
            match message {
                None => {
                    note = Some(format!(
                        "no effect: `{step}` has not been sent to the lead by then"
                    ));
                }
                Some(m) => {
                    let name = if matches!(s.act, Act::Clicked(_)) {
                        "email.clicked"
                    } else {
                        "email.opened"
                    };
                    let mut properties = Map::new();
                    properties.insert("campaign".into(), json!(m.campaign_id));
                    properties.insert("step".into(), json!(m.step_id));
                    properties.insert("message_id".into(), json!(m.message_id));
                    tx.insert_event(
                        &NewEvent {
                            contact_id: contact.id,
                            name: name.into(),
                            properties,
                            occurred_at: at,
                            enrollment_id: Some(m.enrollment_id),
                            step_id: Some(m.step_id.clone()),
                            ..NewEvent::default()
                        },
                        at,
                    )
                    .await?;
                }
            }
        }
        Act::Attribute(values) => {
            tx.upsert_contact(
                &upsert(Upsert {
                    attributes: values.clone(),
                    ..Upsert::default()
                }),
                at,
            )
            .await?;
        }
        Act::Tag(tags) => {
            tx.upsert_contact(
                &upsert(Upsert {
                    tags: tags.clone(),
                    ..Upsert::default()
                }),
                at,
            )
            .await?;
        }
        Act::Untag(tags) => {
            tx.upsert_contact(
                &upsert(Upsert {
                    untag: tags.clone(),
                    ..Upsert::default()
                }),
                at,
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(note)
}
