//! The delivery queue: one row per email, an explicit state machine
//! (`queued → sending → sent | deferred | failed | bounced | suppressed | unknown`) in which
//! every transition is guarded on the state it leaves.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::state::{self, MessageState};
use crate::{Result, Tx};

/// A queued or finished message.
#[derive(Debug, Clone)]
pub struct MessageRow {
    /// Row id.
    pub id: i64,
    /// Enrollment.
    pub enrollment_id: i64,
    /// The enrollment's step counter when queued.
    pub seq: i64,
    /// Contact.
    pub contact_id: i64,
    /// Campaign id.
    pub campaign_id: String,
    /// Campaign version the step came from.
    pub version_id: i64,
    /// Step id.
    pub step_id: String,
    /// Where it stands in the queue.
    pub state: MessageState,
    /// Attempts so far.
    pub attempts: i64,
    /// Message-ID header, once built.
    pub message_id: Option<String>,
    /// Last error or SMTP reply.
    pub error: Option<String>,
    /// Queued at (ms).
    pub created_at: i64,
    /// Accepted at (ms).
    pub sent_at: Option<i64>,
    /// Next attempt (ms).
    pub next_attempt_at: Option<i64>,
    /// The A/B variant of the step's email it was assigned (SPEC §13), if the step has any.
    pub variant: Option<String>,
}

/// An email to queue (see [`Tx::queue_messages`]).
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Enrollment.
    pub enrollment_id: i64,
    /// The enrollment's step counter for the step run.
    pub seq: i64,
    /// Contact.
    pub contact_id: i64,
    /// Campaign id.
    pub campaign_id: String,
    /// Campaign version the step comes from.
    pub version_id: i64,
    /// Step id.
    pub step_id: String,
    /// First attempt at (ms).
    pub due: i64,
    /// The A/B variant of the step's email, if the step has variants.
    pub variant: Option<String>,
}

/// Whose waiting mail [`Tx::suppress_waiting_messages`] settles.
#[derive(Debug, Clone, Copy)]
pub enum Waiting<'a> {
    /// Every message of a contact (unsubscribed, bounced).
    Contact(i64),
    /// Every message of a campaign (removed).
    Campaign(&'a str),
    /// The messages of these enrollments (exited by their goal).
    Enrollments(&'a [i64]),
}

/// A message as `contacts show` lists it.
pub type MessageSummary = MessageRow;

fn decode(r: &AnyRow) -> Result<MessageRow> {
    Ok(MessageRow {
        id: r.try_get("id")?,
        enrollment_id: r.try_get("enrollment_id")?,
        seq: r.try_get("seq")?,
        contact_id: r.try_get("contact_id")?,
        campaign_id: r.try_get("campaign_id")?,
        version_id: r.try_get("version_id")?,
        step_id: r.try_get("step_id")?,
        state: state::column(r, "state")?,
        attempts: r.try_get("attempts")?,
        message_id: r.try_get("message_id")?,
        error: r.try_get("error")?,
        created_at: r.try_get("created_at")?,
        sent_at: r.try_get("sent_at")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        variant: r.try_get("variant")?,
    })
}

impl Tx {
    /// Queues an email for a step run; the unique (enrollment, seq) key makes a second insert
    /// for the same step run a no-op.
    #[allow(clippy::too_many_arguments)]
    pub async fn queue_message(
        &mut self,
        enrollment_id: i64,
        seq: i64,
        contact_id: i64,
        campaign_id: &str,
        version_id: i64,
        step_id: &str,
        due: i64,
        now: i64,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO messages (enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, next_attempt_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $8)
             ON CONFLICT (enrollment_id, seq) DO NOTHING RETURNING id",
        )
        .bind(enrollment_id)
        .bind(seq)
        .bind(contact_id)
        .bind(campaign_id)
        .bind(version_id)
        .bind(step_id)
        .bind(due)
        .bind(now)
        .fetch_optional(self.conn())
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Queues many emails; the unique (enrollment, seq) key makes a repeat a no-op. Returns
    /// how many were queued.
    pub async fn queue_messages(&mut self, messages: &[NewMessage], now: i64) -> Result<u64> {
        let mut n = 0;
        for chunk in messages.chunks(crate::CHUNK) {
            let mut sql = format!(
                "INSERT INTO messages (enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, next_attempt_at, created_at, updated_at, variant) VALUES {}",
                self.value_rows(chunk.len(), 11)
            );
            sql.push_str(" ON CONFLICT (enrollment_id, seq) DO NOTHING");
            let mut q = crate::batched(sql);
            for m in chunk {
                q = q
                    .bind(m.enrollment_id)
                    .bind(m.seq)
                    .bind(m.contact_id)
                    .bind(m.campaign_id.as_str())
                    .bind(m.version_id)
                    .bind(m.step_id.as_str())
                    .bind("queued")
                    .bind(m.due)
                    .bind(now)
                    .bind(now)
                    .bind(m.variant.clone());
            }
            n += q.execute(self.conn()).await?.rows_affected();
        }
        Ok(n)
    }

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

    /// Holds (`hold`) or releases the queued and deferred mail of a campaign that was paused
    /// or resumed; returns how many messages changed.
    pub async fn hold_campaign_messages(
        &mut self,
        campaign_id: &str,
        hold: bool,
        now: i64,
    ) -> Result<u64> {
        let (to, from) = if hold { (1, 0) } else { (0, 1) };
        let n = sqlx::query(
            "UPDATE messages SET held = $1, updated_at = $2
             WHERE campaign_id = $3 AND held = $4 AND state IN ('queued', 'deferred')",
        )
        .bind(to)
        .bind(now)
        .bind(campaign_id)
        .bind(from)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n)
    }

    /// Suppresses the queued and deferred mail of a contact, of a campaign or of some
    /// enrollments (whichever `scope` names), with `reason`; returns how many.
    pub async fn suppress_waiting_messages(
        &mut self,
        scope: Waiting<'_>,
        reason: &str,
        now: i64,
    ) -> Result<u64> {
        let set = "UPDATE messages SET state = 'suppressed', next_attempt_at = NULL, lease_until = NULL, held = 0, error = $1, updated_at = $2";
        let waiting = "state IN ('queued', 'deferred')";
        let n = match scope {
            Waiting::Contact(id) => {
                crate::dynamic(format!("{set} WHERE contact_id = $3 AND {waiting}"))
                    .bind(reason)
                    .bind(now)
                    .bind(id)
                    .execute(self.conn())
                    .await?
                    .rows_affected()
            }
            Waiting::Campaign(id) => {
                crate::dynamic(format!("{set} WHERE campaign_id = $3 AND {waiting}"))
                    .bind(reason)
                    .bind(now)
                    .bind(id)
                    .execute(self.conn())
                    .await?
                    .rows_affected()
            }
            Waiting::Enrollments(ids) => {
                let mut n = 0;
                for chunk in ids.chunks(crate::CHUNK) {
                    let sql = format!(
                        "{set} WHERE enrollment_id IN ({}) AND {waiting}",
                        crate::id_list(chunk)
                    );
                    n += crate::dynamic(sql)
                        .bind(reason)
                        .bind(now)
                        .execute(self.conn())
                        .await?
                        .rows_affected();
                }
                n
            }
        };
        Ok(n)
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

    /// Records one SMTP attempt, for `explain`.
    pub async fn insert_attempt(
        &mut self,
        message_id: i64,
        outcome: &str,
        reply: Option<&str>,
        at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO message_attempts (message_id, at, outcome, reply) VALUES ($1, $2, $3, $4)",
        )
        .bind(message_id)
        .bind(at)
        .bind(outcome)
        .bind(reply)
        .execute(self.conn())
        .await?;
        Ok(())
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

    /// The earliest due time of a queued or deferred message (ms).
    pub async fn next_message_due(&mut self) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) FROM messages WHERE state IN ('queued', 'deferred') AND held = 0",
        )
        .fetch_one(self.conn())
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Every message of a contact, oldest first.
    pub async fn contact_messages(&mut self, contact_id: i64) -> Result<Vec<MessageRow>> {
        let rows = sqlx::query(
            "SELECT id, enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, attempts, message_id, error, created_at, sent_at, next_attempt_at, variant
             FROM messages WHERE contact_id = $1 ORDER BY id",
        )
        .bind(contact_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// The state and lease holder of messages, by id.
    pub async fn message_states(&mut self, ids: &[i64]) -> Result<Vec<(i64, String, Option<i64>)>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(crate::CHUNK) {
            let sql = format!(
                "SELECT id, state, lease_owner FROM messages WHERE id IN ({})",
                crate::id_list(chunk)
            );
            for row in crate::dynamic(sql).fetch_all(self.conn()).await? {
                out.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
            }
        }
        Ok(out)
    }

    /// A message by id.
    pub async fn message(&mut self, id: i64) -> Result<Option<MessageRow>> {
        let row = sqlx::query(
            "SELECT id, enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, attempts, message_id, error, created_at, sent_at, next_attempt_at, variant
             FROM messages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(decode).transpose()
    }
}
