//! A campaign run for one lead over weeks of virtual time, before a single email leaves
//! (`nurture simulate`).
//!
//! Nothing here imitates the engine. It is the real one ([`Engine::run_once`] and
//! [`Engine::deliver`], the code paths of `tick`) on a throwaway SQLite database in a temp
//! folder deleted afterwards, with a clock that jumps from one due time (or scripted lead
//! action) to the next. Every email is rendered and built by the caller's [`Rehearse`] (the
//! binary's real renderer) and none is sent, so a template error shows up here and not in a
//! lead's inbox. The timeline is read back from what the engine recorded, the same records
//! `explain` reads. A stored lead is read through a read-only connection ([`Lead::stored`]);
//! nothing here writes to any database but the throwaway one.
//!
//! The order of one round matters: the scripted actions due by then are applied first, then
//! the engine's round runs and its emails are delivered, so a click scripted for the moment
//! a wait ends is seen by the step that follows the wait.

mod act;
mod enter;
mod lead;
mod report;
mod script;
mod timeline;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use nurture_campaign::{CampaignFile, Status};
use nurture_store::{MessageState, Store, StoreError};
use serde_json::Value;

pub use lead::{EventSource, Lead};
pub use report::{JsonReport, Report};
pub use script::{Act, ScriptError, Scripted, parse_script};
pub use timeline::{LeadLine, Line};

use crate::{Courier, Engine, EngineConfig, EngineError, Failure, Job};

/// Rounds of engine work after which a simulation is declared stuck (a real campaign settles
/// in a few dozen).
pub const MAX_ROUNDS: usize = 10_000;

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The user's database could not be opened (for [`Lead::stored`]).
    #[error("cannot open the database")]
    OpenDatabase(#[source] StoreError),
    /// There is no contact with this address: the database does not exist yet.
    #[error("there is no contact {0} (the database does not exist yet)")]
    NoDatabase(String),
    /// There is no contact with this address.
    #[error("there is no contact {0}")]
    NoContact(String),
    /// The temp folder for the throwaway database could not be made.
    #[error("cannot create the temp folder {}", .0.display())]
    TempFolder(PathBuf, #[source] std::io::Error),
    /// The throwaway database could not be created.
    #[error("cannot create the simulation's database")]
    Scratch(#[source] StoreError),
    /// The lead is gone from the throwaway database (nothing should remove it).
    #[error("the simulated lead vanished")]
    LeadVanished,
    /// The engine still had work due after [`MAX_ROUNDS`] rounds.
    #[error("the simulation did not settle after {MAX_ROUNDS} rounds of work")]
    Unsettled,
}

impl SimulateError {
    /// Whether the error is the user's input being wrong (an unknown contact) rather than a
    /// failure at run time.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::NoDatabase(_) | Self::NoContact(_))
    }
}

/// An email as the rehearsal rendered it.
#[derive(Debug, Clone)]
pub struct Rehearsed {
    /// The Message-ID of the built message.
    pub message_id: String,
    /// The subject as the lead would read it (the message holds it encoded), if it could be
    /// had.
    pub subject: Option<String>,
}

/// Renders and builds an email exactly as delivery does, and sends nothing. The binary
/// implements it with its real renderer (this crate cannot depend on `nurture-sender`).
pub trait Rehearse: Send + Sync + 'static {
    /// Renders and builds `job`'s email; a [`Failure`] fails the step, as in delivery.
    fn rehearse(&self, job: &Job<'_>) -> Result<Rehearsed, Failure>;
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Simulation<'a> {
    /// The campaign as its file says now (validated, templates included). A draft or paused
    /// campaign is simulated as if it were active, and the report says so.
    pub file: &'a CampaignFile,
    /// Who.
    pub lead: Lead,
    /// What the lead does and when, in time order (see [`parse_script`]).
    pub script: &'a [Scripted],
    /// Start of the period; taken in whole seconds.
    pub start: DateTime<Utc>,
    /// Length of the period in days.
    pub days: u32,
    /// The engine's settings (default time zone, frequency caps).
    pub config: EngineConfig,
}

/// `t` without its fraction of a second: the timeline reads better and nothing finer
/// matters to a drip.
pub fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// Runs the simulation: the lead enters at the start, the engine does every round of work
/// due until the end (the clock jumping between due times), and the timeline is read back.
/// The throwaway database is deleted before this returns, whatever the outcome.
pub async fn simulate<R: Rehearse>(
    sim: Simulation<'_>,
    renderer: R,
) -> Result<Report, SimulateError> {
    let Simulation {
        file,
        mut lead,
        script,
        start,
        days,
        config,
    } = sim;
    let start = whole_seconds(start);
    let end = start + chrono::Duration::days(i64::from(days));
    let timezone = lead
        .attributes
        .get("timezone")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Tz>().ok())
        .unwrap_or(config.default_timezone);

    let scratch = Scratch::new()?;
    let store = Store::open(&format!(
        "sqlite://{}",
        scratch.0.join("simulate.db").display()
    ))
    .await
    .map_err(SimulateError::Scratch)?;
    let engine = Engine::new(store, config).with_time_standing_still();
    let rehearsal = Arc::new(Rehearsal {
        renderer,
        subjects: Mutex::new(HashMap::new()),
    });
    let result = run(&engine, file, &mut lead, script, &rehearsal, start, end).await;
    engine.store().close().await;
    drop(scratch);
    let run = result?;
    Ok(Report {
        campaign: file.campaign.clone(),
        lead,
        timezone,
        start,
        end,
        days,
        entry: run.entry,
        inactive: run.inactive,
        timeline: run.lines,
        lead_actions: run.lead_lines,
        last: run.last,
        rendered: run.rendered,
        failed: run.failed,
    })
}

/// A temp folder for the throwaway database, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, SimulateError> {
        let dir = std::env::temp_dir().join(format!(
            "nurture-simulate-{}-{:016x}",
            std::process::id(),
            random()
        ));
        std::fs::create_dir(&dir).map_err(|e| SimulateError::TempFolder(dir.clone(), e))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A random number for the temp folder's name (the hasher's keys are drawn from the
/// operating system's random source), so two simulations never share a folder.
fn random() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

/// The courier of a simulation: renders through the [`Rehearse`], keeps the subjects, and
/// sends nothing.
struct Rehearsal<R> {
    renderer: R,
    /// Rendered subjects by message row.
    subjects: Mutex<HashMap<i64, String>>,
}

impl<R: Rehearse> Courier for Rehearsal<R> {
    type Prepared = ();

    fn prepare(&self, job: &Job<'_>) -> Result<(String, ()), Failure> {
        let done = self.renderer.rehearse(job)?;
        if let Some(subject) = done.subject
            && let Ok(mut subjects) = self.subjects.lock()
        {
            subjects.insert(job.message.id, subject);
        }
        Ok((done.message_id, ()))
    }

    async fn send(&self, (): ()) -> Result<String, Failure> {
        Ok("not sent: simulation".into())
    }
}

/// What the run produced.
struct Run {
    entry: Result<String, String>,
    inactive: Option<&'static str>,
    lines: Vec<Line>,
    lead_lines: Vec<LeadLine>,
    last: Option<nurture_store::Enrollment>,
    rendered: usize,
    failed: usize,
}

async fn run<R: Rehearse>(
    engine: &Engine,
    file: &CampaignFile,
    lead: &mut Lead,
    script: &[Scripted],
    courier: &Arc<Rehearsal<R>>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Run, SimulateError> {
    let campaign = &file.campaign;
    let id = campaign.id.as_str();
    let inactive = match campaign.status {
        Status::Active => None,
        Status::Paused => Some("paused"),
        Status::Draft => Some("draft"),
    };
    let mut file = file.clone();
    file.campaign.status = Status::Active;
    engine
        .sync(std::slice::from_ref(&file), true, start)
        .await?;
    let mut entry = enter::enter(engine, campaign, lead, start).await?;

    let mut lead_lines = Vec::new();
    let mut t = start;
    let mut next = 0;
    for round in 0.. {
        if round == MAX_ROUNDS {
            return Err(SimulateError::Unsettled);
        }
        while let Some(s) = script.get(next)
            && s.at <= t
        {
            let note = act::act(engine, &lead.email, id, s).await?;
            let (step, what) = s.act.describe();
            lead_lines.push(LeadLine {
                at: s.at,
                step: step.map(String::from),
                what,
                note,
            });
            next += 1;
        }
        engine.run_once(t).await?;
        engine.deliver(courier, t, 1).await?;
        let due = engine.next_due().await?;
        match [due, script.get(next).map(|s| s.at)]
            .into_iter()
            .flatten()
            .min()
        {
            Some(n) if n <= end => t = n.max(t),
            _ => break,
        }
    }
    for s in &script[next..] {
        let (step, what) = s.act.describe();
        lead_lines.push(LeadLine {
            at: s.at,
            step: step.map(String::from),
            what,
            note: Some("after the simulated period; not applied".into()),
        });
    }

    let subjects = courier
        .subjects
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let recorded = timeline::read_back(engine, campaign, &lead.email, &subjects, end).await?;
    if entry.is_ok() && recorded.enrollments.is_empty() {
        entry = Err(lead::why_not_enrolled(campaign, lead, start));
    }
    let messages = &recorded.messages;
    Ok(Run {
        entry,
        inactive,
        rendered: messages
            .iter()
            .filter(|m| m.state == MessageState::Sent)
            .count(),
        failed: messages
            .iter()
            .filter(|m| m.state == MessageState::Failed)
            .count(),
        last: recorded.enrollments.last().cloned(),
        lines: recorded.lines,
        lead_lines,
    })
}
