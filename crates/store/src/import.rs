//! [`Store::import_contacts`]: one batch of `contacts import` saved in one transaction — the
//! contacts upserted and, when the import names an event, one event each — so a batch is
//! either wholly saved or not at all, and its events never precede their contacts.

use crate::{NewEvent, Result, Store, Upsert};

impl Store {
    /// Upserts `rows` and, with `event`, records that event for each at `now` (ms), in one
    /// transaction; returns how many contacts were created and how many updated.
    pub async fn import_contacts(
        &self,
        rows: &[Upsert],
        event: Option<&str>,
        now: i64,
    ) -> Result<(u64, u64)> {
        if rows.is_empty() {
            return Ok((0, 0));
        }
        let mut tx = self.begin().await?;
        let saved = tx.upsert_contacts(rows, now).await?;
        if let Some(name) = event {
            let events: Vec<NewEvent> = saved
                .iter()
                .map(|(contact, _)| NewEvent {
                    contact_id: contact.id,
                    name: name.to_string(),
                    occurred_at: now,
                    ..NewEvent::default()
                })
                .collect();
            tx.insert_events(&events, now).await?;
        }
        tx.commit().await?;
        let created = saved.iter().filter(|(_, created)| *created).count() as u64;
        Ok((created, saved.len() as u64 - created))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn row(email: &str) -> Upsert {
        Upsert {
            email: email.to_string(),
            consent_source: Some("import".into()),
            ..Upsert::default()
        }
    }

    #[tokio::test]
    async fn a_batch_counts_created_and_updated_and_records_the_event_for_each() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("n.db").display());
        let store = Store::open(&url).await.unwrap();
        store.migrate().await.unwrap();

        let first = [row("a@x.example"), row("b@x.example")];
        assert_eq!(
            store.import_contacts(&first, None, 1_000).await.unwrap(),
            (2, 0)
        );
        let second = [row("b@x.example"), row("c@x.example")];
        assert_eq!(
            store
                .import_contacts(&second, Some("imported"), 2_000)
                .await
                .unwrap(),
            (1, 1)
        );
        assert_eq!(
            store.import_contacts(&[], Some("x"), 3_000).await.unwrap(),
            (0, 0)
        );

        let mut tx = store.begin().await.unwrap();
        let mut events = Vec::new();
        for email in ["a@x.example", "b@x.example", "c@x.example"] {
            let contact = tx.contact_by_email(email).await.unwrap().unwrap();
            let names: Vec<(String, i64)> = tx
                .contact_events(contact.id)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.name, e.occurred_at))
                .collect();
            events.push(names);
        }
        tx.commit().await.unwrap();
        assert_eq!(
            events,
            [
                vec![],
                vec![("imported".to_string(), 2_000)],
                vec![("imported".to_string(), 2_000)]
            ]
        );
    }
}
