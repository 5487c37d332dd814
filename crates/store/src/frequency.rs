//! Frequency caps and A/B counts (SPEC §13): a contact's recent sends, the lock that makes
//! the cap hold across workers, postponing a message, and the per-variant counts of `stats`.
//!
//! The cap is decided in the transaction that marks messages `sending`: the contacts' rows
//! are locked first (PostgreSQL: `FOR UPDATE`; SQLite's `BEGIN IMMEDIATE` already excludes
//! every other writer), then their recent sends are counted, then the messages that fit are
//! marked and stamped with `capped_at`. A second worker deciding for the same contact waits
//! for the lock and then counts the first one's message, so two daemons never both send
//! past the cap.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::{Backend, CHUNK, Result, Tx, dynamic, id_list};

/// Per-variant counts of an A/B test (`stats --json` `variants`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VariantCounts {
    /// The variant's (or arm's) id.
    pub id: String,
    /// Contacts whose email of this variant was accepted (for a split: contacts of the arm
    /// sent at least one email after it).
    pub sent: i64,
    /// Of those, contacts who opened.
    pub opened: i64,
    /// Of those, contacts who clicked.
    pub clicked: i64,
    /// Of those, contacts who reached the campaign's goal.
    pub goal: i64,
}

impl Tx {
    /// Locks the rows of these contacts until the transaction ends, in id order (so two
    /// workers locking overlapping sets cannot deadlock). On SQLite the transaction already
    /// holds the database's write lock.
    pub async fn lock_contacts(&mut self, ids: &[i64]) -> Result<()> {
        if self.backend() == Backend::Sqlite || ids.is_empty() {
            return Ok(());
        }
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT id FROM contacts WHERE id IN ({}) ORDER BY id FOR UPDATE",
                id_list(chunk)
            );
            dynamic(sql).fetch_all(self.conn()).await?;
        }
        Ok(())
    }

    /// `(contact, capped_at)` of every message of these contacts that counts toward the
    /// caps and was handed to SMTP after `since` (ms): `sending`, `sent` or `unknown` (which
    /// may have gone out). Read through `messages_capped`.
    pub async fn capped_sends(&mut self, contacts: &[i64], since: i64) -> Result<Vec<(i64, i64)>> {
        let mut out = Vec::new();
        for chunk in contacts.chunks(CHUNK) {
            let sql = format!(
                "SELECT contact_id, capped_at FROM messages
                 WHERE contact_id IN ({}) AND capped_at IS NOT NULL AND capped_at > $1
                   AND state IN ('sending', 'sent', 'unknown')",
                id_list(chunk)
            );
            for r in dynamic(sql).bind(since).fetch_all(self.conn()).await? {
                out.push((r.try_get(0)?, r.try_get(1)?));
            }
        }
        Ok(out)
    }

    /// Records that these messages, just marked `sending`, count toward the caps from `at`.
    pub async fn stamp_capped(&mut self, ids: &[i64], at: i64) -> Result<()> {
        self.set_by_id("messages", &[("capped_at", at)], ids).await
    }

    /// Puts a message `owner` leased back in the queue until `until` (ms) because of the
    /// frequency caps, in the state it was in; counted in `postponed`. Returns whether it
    /// was still `owner`'s.
    pub async fn postpone_message(
        &mut self,
        id: i64,
        until: i64,
        now: i64,
        owner: i64,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE messages SET next_attempt_at = $1, lease_until = NULL, postponed = postponed + 1, updated_at = $2
             WHERE id = $3 AND lease_owner = $4 AND state IN ('queued', 'deferred')",
        )
        .bind(until)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Per step of a campaign: how many of its messages the frequency caps postponed at
    /// least once.
    pub async fn cap_postponements(&mut self, campaign_id: &str) -> Result<BTreeMap<String, i64>> {
        let rows = sqlx::query(
            "SELECT step_id, COUNT(*) FROM messages WHERE campaign_id = $1 AND postponed > 0 GROUP BY step_id",
        )
        .bind(campaign_id)
        .fetch_all(self.conn())
        .await?;
        let mut out = BTreeMap::new();
        for r in rows {
            out.insert(r.try_get(0)?, r.try_get(1)?);
        }
        Ok(out)
    }

    /// Counts per variant of an email step with `variants`: contacts sent each variant, and
    /// of those who opened, clicked, and reached the goal.
    pub async fn email_variant_counts(
        &mut self,
        campaign_id: &str,
        step_id: &str,
    ) -> Result<Vec<VariantCounts>> {
        let mut by: BTreeMap<String, VariantCounts> = BTreeMap::new();
        let sent = sqlx::query(
            "SELECT m.variant, COUNT(*), CAST(COALESCE(SUM(CASE WHEN e.exit_reason = 'goal' THEN 1 ELSE 0 END), 0) AS BIGINT)
             FROM messages m JOIN enrollments e ON e.id = m.enrollment_id
             WHERE m.campaign_id = $1 AND m.step_id = $2 AND m.variant IS NOT NULL AND m.state = 'sent'
             GROUP BY m.variant",
        )
        .bind(campaign_id)
        .bind(step_id)
        .fetch_all(self.conn())
        .await?;
        for r in sent {
            let id: String = r.try_get(0)?;
            let c = by.entry(id.clone()).or_insert_with(|| VariantCounts {
                id,
                ..Default::default()
            });
            c.sent = r.try_get(1)?;
            c.goal = r.try_get(2)?;
        }
        let events = sqlx::query(
            "SELECT m.variant, ev.name, COUNT(DISTINCT ev.enrollment_id)
             FROM messages m JOIN events ev ON ev.enrollment_id = m.enrollment_id AND ev.step_id = m.step_id
             WHERE m.campaign_id = $1 AND m.step_id = $2 AND m.variant IS NOT NULL AND m.state = 'sent'
               AND ev.name IN ('email.opened', 'email.clicked')
             GROUP BY m.variant, ev.name",
        )
        .bind(campaign_id)
        .bind(step_id)
        .fetch_all(self.conn())
        .await?;
        add_events(&mut by, events)?;
        Ok(by.into_values().collect())
    }

    /// Counts per arm of a `split` step: contacts of each arm sent at least one email after
    /// the split, and of those who opened or clicked one of them, and who reached the goal.
    pub async fn split_arm_counts(
        &mut self,
        campaign_id: &str,
        step_id: &str,
    ) -> Result<Vec<VariantCounts>> {
        let mut by: BTreeMap<String, VariantCounts> = BTreeMap::new();
        let sent = sqlx::query(
            "SELECT sr.variant, COUNT(*), CAST(COALESCE(SUM(CASE WHEN e.exit_reason = 'goal' THEN 1 ELSE 0 END), 0) AS BIGINT)
             FROM step_runs sr JOIN enrollments e ON e.id = sr.enrollment_id
             WHERE e.campaign_id = $1 AND sr.step_id = $2 AND sr.variant IS NOT NULL
               AND EXISTS (SELECT 1 FROM messages m WHERE m.enrollment_id = sr.enrollment_id AND m.seq > sr.seq AND m.state = 'sent')
             GROUP BY sr.variant",
        )
        .bind(campaign_id)
        .bind(step_id)
        .fetch_all(self.conn())
        .await?;
        for r in sent {
            let id: String = r.try_get(0)?;
            let c = by.entry(id.clone()).or_insert_with(|| VariantCounts {
                id,
                ..Default::default()
            });
            c.sent = r.try_get(1)?;
            c.goal = r.try_get(2)?;
        }
        let events = sqlx::query(
            "SELECT sr.variant, ev.name, COUNT(DISTINCT ev.enrollment_id)
             FROM step_runs sr JOIN enrollments e ON e.id = sr.enrollment_id
             JOIN events ev ON ev.enrollment_id = sr.enrollment_id AND ev.occurred_at >= sr.at
             WHERE e.campaign_id = $1 AND sr.step_id = $2 AND sr.variant IS NOT NULL
               AND ev.name IN ('email.opened', 'email.clicked')
             GROUP BY sr.variant, ev.name",
        )
        .bind(campaign_id)
        .bind(step_id)
        .fetch_all(self.conn())
        .await?;
        add_events(&mut by, events)?;
        Ok(by.into_values().collect())
    }
}

fn add_events(
    by: &mut BTreeMap<String, VariantCounts>,
    rows: Vec<sqlx::any::AnyRow>,
) -> Result<()> {
    for r in rows {
        let id: String = r.try_get(0)?;
        let name: String = r.try_get(1)?;
        let n: i64 = r.try_get(2)?;
        let c = by.entry(id.clone()).or_insert_with(|| VariantCounts {
            id,
            ..Default::default()
        });
        if name == "email.opened" {
            c.opened = n;
        } else {
            c.clicked = n;
        }
    }
    Ok(())
}
