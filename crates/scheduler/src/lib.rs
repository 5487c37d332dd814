//! The nurture engine: event and schedule triggers, enrollment, and the step-by-step state
//! machine that walks each enrollment through its campaign.
//!
//! [`Engine::run_once`] does one round of work as of a given `now` and returns what it did;
//! the daemon loop and `tick` are thin wrappers around it, and tests call it with fixed times.
//! Nothing here reads the clock. [`daemon`] holds the policy the daemon loop applies between
//! rounds (backoff after a failed round, the pause, the stop grace). All SQL lives in `nurture-store`; all rendering and SMTP in
//! `nurture-sender`. Work is claimed and done inside one short database transaction, so a
//! crash rolls back to a state where the work is still due: nothing is lost, nothing doubled.

mod advance;
pub mod daemon;
mod decay;
mod deliver;
mod enroll;
mod entry;
mod explain;
mod facts;
pub mod frequency;
mod live;
pub mod plan;
mod score;
pub mod simulate;
pub mod split;
mod time;
mod webhook;
pub mod winner;
mod writes;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use nurture_campaign::CampaignFile;
use nurture_store::{Store, StoreError};
use tokio::sync::RwLock;

pub use decay::{score_at, score_reasons};
pub use deliver::{Courier, Delivered, Failure, Job, backoff, next_attempt};
pub use entry::EnrollOutcome;
pub use explain::{explain, score, signal_lines};
pub use frequency::FrequencyCap;
pub use live::{LiveCampaign, SyncReport, remap_target};
pub use time::{Clock, ManualClock, from_ms, to_ms};
pub use webhook::{PostOutcome, Poster, WebhookReport, webhook_context};

/// Engine failures.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored campaign version could not be read back.
    #[error("stored campaign version {0} is unreadable: {1}")]
    BadVersion(i64, String),
    /// No such campaign.
    #[error("there is no campaign `{0}`")]
    UnknownCampaign(String),
    /// No such contact.
    #[error("there is no contact {0}")]
    UnknownContact(String),
    /// The runtime shut down while a batch was being rendered.
    #[error("delivery was interrupted: {0}")]
    Interrupted(String),
}

/// Result type of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What one round of work did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Events that went through the triggers.
    pub events: u64,
    /// New enrollments.
    pub enrolled: u64,
    /// Steps run (sent, skipped, tagged, ...).
    pub steps: u64,
    /// Emails queued for delivery.
    pub queued: u64,
    /// Enrollments that completed or exited.
    pub ended: u64,
    /// Schedule firings performed.
    pub firings: u64,
}

impl std::ops::AddAssign for Outcome {
    fn add_assign(&mut self, o: Self) {
        self.events += o.events;
        self.enrolled += o.enrolled;
        self.steps += o.steps;
        self.queued += o.queued;
        self.ended += o.ended;
        self.firings += o.firings;
    }
}

/// Told by the engine's phases about each batch they commit.
pub(crate) trait AfterBatch: Send {
    /// A batch that queued `queued` emails has been committed.
    fn committed<'a>(
        &'a mut self,
        engine: &'a Engine,
        queued: u64,
    ) -> futures_util::future::BoxFuture<'a, Result<()>>;
}

impl AfterBatch for () {
    fn committed<'a>(
        &'a mut self,
        _: &'a Engine,
        _: u64,
    ) -> futures_util::future::BoxFuture<'a, Result<()>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A random id for one engine's leases: unique across processes (the hasher's keys are
/// drawn from the operating system's random source once per thread and moved on for every
/// new one), positive, and never zero.
fn new_owner() -> i64 {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    ((h >> 1) | 1) as i64
}

/// Settings the engine needs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Time zone for contacts without a `timezone` attribute.
    pub default_timezone: Tz,
    /// Enrollments advanced per transaction.
    pub batch: i64,
    /// The frequency caps across campaigns (`[[frequency]]`; none by default).
    pub frequency: Vec<FrequencyCap>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_timezone: Tz::UTC,
            batch: 500,
            frequency: Vec::new(),
        }
    }
}

/// The engine: a store and the campaigns it runs.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    config: EngineConfig,
    live: Arc<RwLock<live::Live>>,
    /// How a round's time moves on from its `now` (see [`Clock`]).
    clock: time::Timing,
    /// Names this engine's leases on messages (random, one per engine).
    owner: i64,
    /// Set by [`Engine::stop`]; shared by every clone.
    stopping: Arc<AtomicBool>,
    /// The scoring rules (`scoring.yaml`), if any.
    scoring: Option<Arc<nurture_campaign::Scoring>>,
}

impl Engine {
    /// An engine over `store`.
    pub fn new(store: Store, config: EngineConfig) -> Self {
        Self {
            store,
            config,
            live: Arc::new(RwLock::new(live::Live::default())),
            clock: time::Timing::Elapsed,
            owner: new_owner(),
            stopping: Arc::default(),
            scoring: None,
        }
    }

    /// The same engine scoring new events by `scoring` (SPEC §11).
    pub fn with_scoring(mut self, scoring: Option<Arc<nurture_campaign::Scoring>>) -> Self {
        self.scoring = scoring;
        self
    }

    /// The same engine reading the time from `clock` while its rounds run (leases, retry
    /// and outcome times), instead of from each round's `now` plus the time elapsed.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = time::Timing::Clock(clock);
        self
    }

    /// The same engine with each round's time standing still at its `now`: `tick --now T`
    /// and `simulate` treat T as the current time everywhere (retry and outcome times
    /// included), as SPEC §7 says.
    pub fn with_time_standing_still(mut self) -> Self {
        self.clock = time::Timing::Still;
        self
    }

    /// The clock of a round that does what is due as of `now`.
    pub(crate) fn round_clock(&self, now: DateTime<Utc>) -> time::RoundClock {
        time::RoundClock::new(now, self.clock.clone())
    }

    /// Asks the engine (and every clone of it) to stop: from now on a round claims nothing
    /// new. Event and enrollment batches already committed stay done; delivery sends the
    /// messages already handed to SMTP, records their outcomes, and gives back the lease of
    /// every other message it holds, so a round in progress ends within about one SMTP
    /// reply. Cannot be undone.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Whether [`Engine::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Records the campaigns read from files as the versions in use (SPEC §3 edits): new
    /// content becomes a new version, enrollments at removed steps move on, and campaigns
    /// whose file is gone stop — unless some file failed to load (`complete == false`), in
    /// which case nothing is removed, since the broken file may be the missing campaign.
    pub async fn sync(
        &self,
        files: &[CampaignFile],
        complete: bool,
        now: DateTime<Utc>,
    ) -> Result<SyncReport> {
        live::sync(self, files, complete, now).await
    }

    /// One round of work as of `now`: triggers, schedules and every due step.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<Outcome> {
        self.run_phases(now, &mut ()).await
    }

    /// [`Engine::run_once`], then [`Engine::deliver`] — except that the emails the engine
    /// queues are claimed as its batches commit and rendered on the core it leaves idle (it
    /// alternates between this thread and the database's), so delivery starts with several
    /// batches ready to send (at most 8 batches, ~32 MB of messages, or what the courier's
    /// [`Courier::rate`] sends in 30 seconds).
    pub async fn run_and_deliver<C: Courier + 'static>(
        &self,
        courier: &Arc<C>,
        now: DateTime<Utc>,
        concurrency: usize,
    ) -> Result<(Outcome, Delivered)> {
        let mut ahead = deliver::Ahead::new(self, courier.clone(), now);
        ahead.engine_running(true);
        let phases = self.run_phases(now, &mut ahead).await;
        ahead.engine_running(false);
        // Even if a phase failed: what it queued before is committed, and the batches
        // claimed ahead would otherwise wait out their lease.
        let delivered = self.deliver_ahead(ahead, concurrency).await;
        Ok((phases?, delivered?))
    }

    async fn run_phases(&self, now: DateTime<Utc>, after: &mut dyn AfterBatch) -> Result<Outcome> {
        self.refresh().await?;
        self.store.fold_state_counts().await?;
        let mut out = Outcome::default();
        out += enroll::process_events(self, now, after).await?;
        out += enroll::fire_schedules(self, now).await?;
        out += advance::advance_due(self, now, after).await?;
        Ok(out)
    }

    /// The earliest time anything is due (a step, a message, a webhook call or a
    /// confirmation email), for the daemon's sleep.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        // Reads only: no writer lock, so the daemon's sleep never waits behind an ingest batch.
        let mut tx = self.store.begin_read().await?;
        let steps = tx.next_due().await?;
        let messages = tx.next_message_due().await?;
        let webhooks = tx.next_webhook_due().await?;
        let confirmations = tx.next_form_mail_due().await?;
        tx.rollback().await?;
        Ok([steps, messages, webhooks, confirmations]
            .into_iter()
            .flatten()
            .min()
            .map(from_ms))
    }

    /// Enrolls a contact by hand (`nurture enroll`), obeying audience and re-entry.
    pub async fn enroll(
        &self,
        campaign: &str,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<EnrollOutcome> {
        self.refresh().await?;
        enroll::enroll_by_hand(self, campaign, email, now).await
    }

    /// The live campaign with this id.
    pub async fn campaign(&self, id: &str) -> Option<LiveCampaign> {
        self.live.read().await.get(id)
    }

    /// A campaign version by id (messages carry the version they were queued from).
    pub async fn version(&self, version_id: i64) -> Result<Arc<nurture_campaign::Campaign>> {
        live::version(self, version_id).await
    }

    /// Reloads the campaigns in use from the database (another process may have synced).
    pub async fn refresh(&self) -> Result<()> {
        live::refresh(self).await
    }
}
