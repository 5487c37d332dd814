//! Claiming and leases: which messages this worker holds, and for how long.
//!
//! A claim leases a batch of due messages to this worker ([`Leases`]); every transaction of
//! the round renews the leases it holds, so only a worker that has stopped loses them. For
//! "never twice" the lease is what tells a crashed send (`sending`, lease run out: `unknown`)
//! from a message merely claimed (lease run out: back in the queue). [`Engine::release`]
//! gives back what was claimed and never handed to SMTP, to the state it was claimed in.

use super::*;

/// A claimed batch with what rendering it needs.
pub(super) struct Claimed {
    pub(super) batch: Vec<MessageRow>,
    pub(super) contacts: HashMap<i64, Contact>,
    pub(super) events: HashMap<i64, Map<String, Value>>,
    pub(super) versions: HashMap<i64, Arc<Campaign>>,
}

impl Engine {
    /// Leases the next batch of messages due at `due` and reads what rendering them needs.
    /// The lease runs from the clock's time now, not from the round's start.
    pub(super) async fn claim_batch(
        &self,
        due: DateTime<Utc>,
        leases: &Leases,
    ) -> Result<Option<Claimed>> {
        if self.is_stopping() {
            return Ok(None);
        }
        let mut tx = self.store.begin().await?;
        let batch = tx
            .claim_messages(
                to_ms(due),
                to_ms(leases.now() + LEASE),
                self.config.batch,
                self.owner,
            )
            .await?;
        if batch.is_empty() {
            tx.commit().await?;
            return Ok(None);
        }
        leases.hold(batch.iter().map(|m| m.id));
        let mut ids: Vec<i64> = batch.iter().map(|m| m.contact_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let contacts: HashMap<i64, Contact> = tx
            .contacts(&ids)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let mut ids: Vec<i64> = batch.iter().map(|m| m.enrollment_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let events = tx.trigger_properties(&ids).await?;
        tx.commit().await?;
        let mut versions: HashMap<i64, Arc<Campaign>> = HashMap::new();
        for m in &batch {
            if let std::collections::hash_map::Entry::Vacant(v) = versions.entry(m.version_id) {
                v.insert(self.version(m.version_id).await?);
            }
        }
        Ok(Some(Claimed {
            batch,
            contacts,
            events,
            versions,
        }))
    }

    /// Gives back the lease of messages claimed and never handed to SMTP (see
    /// [`Engine::stop`]), each to the state it was claimed in.
    pub(super) async fn release(&self, messages: &[&MessageRow], leases: &Leases) -> Result<()> {
        let now = leases.now();
        let mut tx = self.store.begin().await?;
        for back_to in [MessageState::Queued, MessageState::Deferred] {
            let ids: Vec<i64> = messages
                .iter()
                .filter(|m| m.state == back_to)
                .map(|m| m.id)
                .collect();
            if !ids.is_empty() {
                tx.release_messages(&ids, back_to, to_ms(now), self.owner)
                    .await?;
            }
        }
        tx.commit().await?;
        leases.release(messages.iter().map(|m| m.id));
        tracing::info!(
            messages = messages.len(),
            "stopping: messages not sent yet go back to the queue"
        );
        Ok(())
    }
}

/// The messages one worker holds during a round (claimed and not finished), and the clock
/// their leases run on. Every transaction of the round renews them when [`RENEW_EVERY`] has
/// passed, so a long round (a slow server, a paced daemon, a long engine phase while batches
/// wait rendered ahead) keeps what it claimed.
pub(crate) struct Leases {
    pub(super) clock: crate::time::RoundClock,
    pub(super) owner: i64,
    pub(super) held: std::sync::Mutex<HashSet<i64>>,
    pub(super) renew_at: std::sync::Mutex<DateTime<Utc>>,
}

impl Leases {
    pub(super) fn new(clock: crate::time::RoundClock, owner: i64) -> Self {
        let renew_at = clock.now() + RENEW_EVERY;
        Self {
            clock,
            owner,
            held: Default::default(),
            renew_at: std::sync::Mutex::new(renew_at),
        }
    }

    /// The current time.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(super) fn hold(&self, ids: impl IntoIterator<Item = i64>) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ids);
    }

    pub(super) fn release(&self, ids: impl IntoIterator<Item = i64>) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            held.remove(&id);
        }
    }

    pub(super) fn renewal_due(&self) -> bool {
        self.now() >= *self.renew_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renews the lease on every message still held (but those in `finished`, recorded in
    /// this same transaction).
    pub(super) async fn renew(&self, tx: &mut Tx, finished: &[i64]) -> Result<()> {
        let now = self.now();
        let ids: Vec<i64> = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.iter()
                .copied()
                .filter(|id| !finished.contains(id))
                .collect()
        };
        let n = tx
            .renew_leases(&ids, to_ms(now + LEASE), self.owner)
            .await?;
        tracing::debug!(held = ids.len(), renewed = n, "leases renewed");
        *self.renew_at.lock().unwrap_or_else(|e| e.into_inner()) = now + RENEW_EVERY;
        Ok(())
    }
}
