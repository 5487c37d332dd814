//! Leasing messages to one sender: a claim leases due mail without holding a lock across
//! SMTP, `sending` is marked under the send-time check before the server is reached, and a
//! lease is renewed while its holder works or given back when it stops early.

use sqlx::Row;

use super::{MessageRow, decode};
use crate::state::{self, MessageState};
use crate::{CHUNK, Result, Tx, dynamic, id_list};

impl Tx {
    /// Leases up to `limit` messages due at `now` to `owner` until `lease_until`. A lease left
    /// by a killed process expires and the message is taken again (it never reached
    /// `sending`). Held messages (of a paused campaign) are not due.
    pub async fn claim_messages(
        &mut self,
        now: i64,
        lease_until: i64,
        limit: i64,
        owner: i64,
    ) -> Result<Vec<MessageRow>> {
        if self.backend() == crate::Backend::Sqlite {
            // The transaction began IMMEDIATE: nobody else is writing between the read and
            // the update. Read packed (one row), then lease by id.
            type Packed = (
                i64,
                i64,
                i64,
                i64,
                String,
                i64,
                String,
                String,
                i64,
                Option<String>,
                Option<String>,
                i64,
                Option<i64>,
                Option<i64>,
                Option<String>,
            );
            let mut out: Vec<MessageRow> = self
                .fetch_packed::<Packed>(
                    sqlx::query(
                        "SELECT json_group_array(json_array(id, enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, attempts, message_id, error, created_at, sent_at, next_attempt_at, variant))
                         FROM (SELECT * FROM messages
                               WHERE state IN ('queued', 'deferred') AND held = 0 AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
                               ORDER BY next_attempt_at LIMIT $2)",
                    )
                    .bind(now)
                    .bind(limit),
                )
                .await?
                .into_iter()
                .map(|r| {
                    Ok(MessageRow {
                    id: r.0,
                    enrollment_id: r.1,
                    seq: r.2,
                    contact_id: r.3,
                    campaign_id: r.4,
                    version_id: r.5,
                    step_id: r.6,
                    state: state::decode(&r.7)?,
                    attempts: r.8,
                    message_id: r.9,
                    error: r.10,
                    created_at: r.11,
                    sent_at: r.12,
                    next_attempt_at: r.13,
                    variant: r.14,
                })
                })
                .collect::<Result<_>>()?;
            out.sort_by_key(|m| m.id);
            let ids: Vec<i64> = out.iter().map(|m| m.id).collect();
            self.set_by_id(
                "messages",
                &[("lease_until", lease_until), ("lease_owner", owner)],
                &ids,
            )
            .await?;
            return Ok(out);
        }
        let sql = self.pick(
            "UPDATE messages SET lease_until = $2, lease_owner = $4 WHERE id IN (
                 SELECT id FROM messages
                 WHERE state IN ('queued', 'deferred') AND held = 0 AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id, enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, attempts, message_id, error, created_at, sent_at, next_attempt_at, variant",
            "UPDATE messages SET lease_until = $2, lease_owner = $4 WHERE id IN (
                 SELECT id FROM messages
                 WHERE state IN ('queued', 'deferred') AND held = 0 AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
                 ORDER BY next_attempt_at LIMIT $3)
             RETURNING id, enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, attempts, message_id, error, created_at, sent_at, next_attempt_at, variant",
        );
        let rows = sqlx::query(sql)
            .bind(now)
            .bind(lease_until)
            .bind(limit)
            .bind(owner)
            .fetch_all(self.conn())
            .await?;
        let mut out: Vec<MessageRow> = rows.iter().map(decode).collect::<Result<_>>()?;
        out.sort_by_key(|m| m.id);
        Ok(out)
    }

    /// `queued|deferred → sending`, recorded (and committed by the caller) before SMTP; see
    /// [`Tx::mark_sending_many`] for the guards.
    pub async fn mark_sending(
        &mut self,
        id: i64,
        message_id: &str,
        lease_until: i64,
        now: i64,
        owner: i64,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE messages SET state = 'sending', attempts = attempts + 1, message_id = $1, lease_until = $2, updated_at = $3
             WHERE id = $4 AND state IN ('queued', 'deferred') AND lease_owner = $5
               AND EXISTS (SELECT 1 FROM contacts c WHERE c.id = messages.contact_id AND c.status = 'subscribed')
               AND EXISTS (SELECT 1 FROM campaigns k WHERE k.id = messages.campaign_id AND k.status = 'active')",
        )
        .bind(message_id)
        .bind(lease_until)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// `queued|deferred → sending` for many messages in one statement, each with its
    /// Message-ID; returns the ids that made the transition.
    ///
    /// This is the send-time check of SPEC §6: a message moves only while `owner` still
    /// holds its lease, its contact is still `subscribed` and its campaign still `active`,
    /// all in the statement that commits it to SMTP. The rest are left as they are for
    /// [`Tx::settle_unmarked`].
    pub async fn mark_sending_many(
        &mut self,
        messages: &[(i64, &str)],
        lease_until: i64,
        now: i64,
        owner: i64,
    ) -> Result<Vec<i64>> {
        let mut out = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(crate::CHUNK) {
            // Joined on a table of values, not `CASE id WHEN …` (searched linearly per row).
            let values = self.value_rows(chunk.len(), 2);
            let lease = self.placeholders_after(chunk.len() * 2);
            let at = self.placeholders_after(chunk.len() * 2 + 1);
            let by = self.placeholders_after(chunk.len() * 2 + 2);
            let sql = format!(
                "WITH v(id, message_id) AS (VALUES {values})
                 UPDATE messages SET message_id = v.message_id, state = 'sending', attempts = attempts + 1, lease_until = {lease}, updated_at = {at}
                 FROM v WHERE messages.id = v.id AND messages.state IN ('queued', 'deferred') AND messages.lease_owner = {by}
                   AND EXISTS (SELECT 1 FROM contacts c WHERE c.id = messages.contact_id AND c.status = 'subscribed')
                   AND EXISTS (SELECT 1 FROM campaigns k WHERE k.id = messages.campaign_id AND k.status = 'active')
                 RETURNING messages.id"
            );
            let mut q = crate::batched(sql);
            for (id, message_id) in chunk {
                q = q.bind(*id).bind(*message_id);
            }
            for row in q
                .bind(lease_until)
                .bind(now)
                .bind(owner)
                .fetch_all(self.conn())
                .await?
            {
                out.push(row.try_get(0)?);
            }
        }
        Ok(out)
    }

    /// Extends `owner`'s lease on messages it still holds (claimed or `sending`) to
    /// `lease_until`; returns how many it still holds.
    pub async fn renew_leases(&mut self, ids: &[i64], lease_until: i64, owner: i64) -> Result<u64> {
        let mut n = 0;
        for chunk in ids.chunks(crate::CHUNK) {
            let sql = format!(
                "UPDATE messages SET lease_until = {lease_until}
                 WHERE id IN ({}) AND lease_owner = {owner} AND state IN ('queued', 'deferred', 'sending')",
                crate::id_list(chunk)
            );
            n += crate::dynamic(sql)
                .execute(self.conn())
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    /// Gives back messages this process leased but never handed to SMTP (a daemon stopping
    /// in the middle of a round): each returns to `back_to`, the state it was claimed in
    /// (`queued` or `deferred`), due as before and without a lease, so any process may take
    /// it at once instead of after the lease. One this process had already marked `sending`
    /// also gets back the attempt that marking counted. The caller names only messages it
    /// holds and has not sent. Returns how many were released.
    pub async fn release_messages(
        &mut self,
        ids: &[i64],
        back_to: MessageState,
        now: i64,
        owner: i64,
    ) -> Result<u64> {
        let mut n = 0;
        for chunk in ids.chunks(CHUNK) {
            // The CASE reads the row as it was before this UPDATE (both backends).
            let sql = format!(
                "UPDATE messages SET attempts = CASE WHEN state = 'sending' THEN attempts - 1 ELSE attempts END,
                        state = '{back}', lease_until = NULL, updated_at = {now}
                 WHERE id IN ({}) AND state IN ('sending', '{back}') AND lease_owner = {owner}",
                id_list(chunk),
                back = back_to.as_str(),
            );
            n += dynamic(sql).execute(self.conn()).await?.rows_affected();
        }
        Ok(n)
    }
}
