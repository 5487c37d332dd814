//! Recording how delivery ended: `sending → sent | deferred | failed | …` guarded on the
//! state left and the sender's lease, the attempts kept for `explain`, and the `unknown`
//! state of mail whose sender died or whose lease ran out before the server answered.

use sqlx::Row;

use crate::state::{self, MessageState};
use crate::{Result, Tx};

impl Tx {
    /// `sending → sent` for many messages of `owner` in one statement; returns the ids that
    /// moved (the others are no longer `sending` under this owner's lease).
    pub async fn finish_sent(&mut self, ids: &[i64], now: i64, owner: i64) -> Result<Vec<i64>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(crate::CHUNK) {
            // Placeholders and values in the order of the text (SQLite's `?` are positional).
            let mut p = self.placeholders();
            let (sent_at, at) = (p.next(), p.next());
            let list: Vec<String> = chunk.iter().map(|_| p.next()).collect();
            let by = p.next();
            let sql = format!(
                "UPDATE messages SET state = 'sent', error = NULL, next_attempt_at = NULL, sent_at = {sent_at}, lease_until = NULL, updated_at = {at}
                 WHERE id IN ({}) AND state = 'sending' AND lease_owner = {by} RETURNING id",
                list.join(",")
            );
            let mut q = crate::batched(sql).bind(now).bind(now);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.bind(owner).fetch_all(self.conn()).await? {
                out.push(row.try_get(0)?);
            }
        }
        Ok(out)
    }

    /// Records the same outcome for many messages: `from → to`, guarded on `from` and on
    /// `owner`'s lease; returns how many moved.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_messages(
        &mut self,
        ids: &[i64],
        from: MessageState,
        to: MessageState,
        error: Option<&str>,
        next_attempt_at: Option<i64>,
        now: i64,
        owner: i64,
    ) -> Result<u64> {
        let mut n = 0;
        let sent_at = if to == MessageState::Sent {
            now.to_string()
        } else {
            "sent_at".to_string()
        };
        let next = next_attempt_at.map_or_else(|| "NULL".to_string(), |t| t.to_string());
        for chunk in ids.chunks(crate::CHUNK) {
            let mut p = self.placeholders();
            let sql = format!(
                "UPDATE messages SET error = {}, state = '{}', next_attempt_at = {next}, sent_at = {sent_at}, lease_until = NULL, updated_at = {now}
                 WHERE id IN ({}) AND state = '{}' AND lease_owner = {owner}",
                p.next(),
                to.as_str(),
                crate::id_list(chunk),
                from.as_str()
            );
            n += crate::dynamic(sql)
                .bind(error)
                .execute(self.conn())
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    /// Records the outcome of a delivery: `from → to`, guarded on `from` and on `owner`'s
    /// lease.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_message(
        &mut self,
        id: i64,
        from: MessageState,
        to: MessageState,
        error: Option<&str>,
        next_attempt_at: Option<i64>,
        now: i64,
        owner: i64,
    ) -> Result<bool> {
        let sent_at = (to == MessageState::Sent).then_some(now);
        let n = sqlx::query(
            "UPDATE messages SET state = $1, error = $2, next_attempt_at = $3, sent_at = COALESCE($4, sent_at), lease_until = NULL, updated_at = $5
             WHERE id = $6 AND state = $7 AND lease_owner = $8",
        )
        .bind(to.as_str())
        .bind(error)
        .bind(next_attempt_at)
        .bind(sent_at)
        .bind(now)
        .bind(id)
        .bind(from.as_str())
        .bind(owner)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Settles messages of `owner` that [`Tx::mark_sending_many`] left out because the send-
    /// time check failed: a contact no longer mailable or a removed campaign suppress the
    /// message (with the reason), a paused one holds it. Returns the state of every message
    /// in `ids` afterwards: `suppressed`, `queued`/`deferred` (held), or whatever another
    /// worker made of it.
    pub async fn settle_unmarked(
        &mut self,
        ids: &[i64],
        owner: i64,
        now: i64,
    ) -> Result<Vec<(i64, MessageState)>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(crate::CHUNK) {
            let list = crate::id_list(chunk);
            let mine = format!(
                "id IN ({list}) AND lease_owner = {owner} AND state IN ('queued', 'deferred')"
            );
            crate::dynamic(format!(
                "UPDATE messages SET state = 'suppressed', next_attempt_at = NULL, lease_until = NULL, updated_at = {now},
                     error = 'not sent: the contact is ' || (SELECT c.status FROM contacts c WHERE c.id = messages.contact_id)
                 WHERE {mine} AND contact_id IN (SELECT id FROM contacts WHERE status <> 'subscribed')"
            ))
            .execute(self.conn())
            .await?;
            crate::dynamic(format!(
                "UPDATE messages SET state = 'suppressed', next_attempt_at = NULL, lease_until = NULL, updated_at = {now},
                     error = 'not sent: the campaign was removed'
                 WHERE {mine} AND campaign_id IN (SELECT id FROM campaigns WHERE status = 'removed')"
            ))
            .execute(self.conn())
            .await?;
            crate::dynamic(format!(
                "UPDATE messages SET held = 1, lease_until = NULL, updated_at = {now}
                 WHERE {mine} AND campaign_id IN (SELECT id FROM campaigns WHERE status IN ('paused', 'draft'))"
            ))
            .execute(self.conn())
            .await?;
            let rows = crate::dynamic(format!(
                "SELECT id, state FROM messages WHERE id IN ({list})"
            ))
            .fetch_all(self.conn())
            .await?;
            for row in rows {
                out.push((row.try_get(0)?, state::column(&row, 1)?));
            }
        }
        Ok(out)
    }

    /// Messages left in `sending` by a process that died (lease expired) become `unknown`:
    /// the server may have accepted them, so they are never re-sent blindly.
    pub async fn expire_sending(&mut self, now: i64) -> Result<u64> {
        let n = sqlx::query(
            "UPDATE messages SET state = 'unknown', error = 'the sending process stopped before the outcome was recorded', lease_until = NULL, updated_at = $1
             WHERE state = 'sending' AND lease_until < $1",
        )
        .bind(now)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n)
    }

    /// Records an outcome that arrived after the message was given up as `unknown` (its
    /// lease had run out while `owner` waited for the server): the outcome is known after
    /// all. Returns whether it was recorded.
    pub async fn finish_unknown(
        &mut self,
        id: i64,
        owner: i64,
        to: MessageState,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let sent_at = (to == MessageState::Sent).then_some(now);
        let n = sqlx::query(
            "UPDATE messages SET state = $1, error = $2, sent_at = COALESCE($3, sent_at), updated_at = $4
             WHERE id = $5 AND state = 'unknown' AND lease_owner = $6",
        )
        .bind(to.as_str())
        .bind(error)
        .bind(sent_at)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Records many SMTP attempts `(message, outcome, reply)` at `at`, for `explain`.
    pub async fn insert_attempts(
        &mut self,
        attempts: &[(i64, &str, Option<&str>)],
        at: i64,
    ) -> Result<()> {
        for chunk in attempts.chunks(crate::CHUNK) {
            let sql = format!(
                "INSERT INTO message_attempts (message_id, at, outcome, reply) VALUES {}",
                self.value_rows(chunk.len(), 4)
            );
            let mut q = crate::batched(sql);
            for (id, outcome, reply) in chunk {
                q = q.bind(*id).bind(at).bind(*outcome).bind(*reply);
            }
            q.execute(self.conn()).await?;
        }
        Ok(())
    }
}
