//! `nurture simulate`: a campaign run for one lead over weeks of virtual time, before a single
//! email leaves.
//!
//! Nothing here imitates the engine. It is the real one (`Engine::run_once` and
//! `Engine::deliver`, the code paths of `tick`) and the real renderer (`Mailer::build`), on a
//! throwaway SQLite database in a temp folder deleted afterwards, with a clock that jumps from
//! one due time (or scripted lead action) to the next. The courier renders and builds every
//! email and sends none, so a template error shows up here and not in a lead's inbox. The
//! timeline is read back from what the engine recorded, the same records `explain` reads.
//! The user's database is at most read (`--contact`), through a read-only connection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use nurture_campaign::{Action, CampaignFile, Status, Trigger, load_paths};
use nurture_scheduler::{Courier, Engine, EngineConfig, EnrollOutcome, Failure, Job, from_ms};
use nurture_store::{ContactStatus, Enrollment, NewEvent, Store, Upsert};
use serde_json::{Map, Value, json};

mod lead;
mod report;
mod script;

use lead::{EventSource, Lead, refusal, satisfy, stored_lead, why_not_enrolled};
use report::Report;
use script::{Act, Scripted, pairs, parse_script, text};

use super::common::{email_arg, now_or};
use super::send::{Sample, campaign_from_files, sample_from_file};
use crate::config::Config;
use crate::delivery::Mailer;
use crate::exit::invalid;

/// Rounds of engine work after which a simulation is declared stuck (a real campaign settles
/// in a few dozen).
const MAX_ROUNDS: usize = 10_000;

/// The command's arguments.
pub struct Args<'a> {
    pub campaign: &'a str,
    pub contact: Option<&'a str>,
    pub data: Option<&'a Path>,
    pub events: Option<&'a Path>,
    pub start: Option<&'a str>,
    pub days: u32,
    pub json: bool,
}

pub async fn simulate(config: &Config, args: &Args<'_>) -> anyhow::Result<ExitCode> {
    let file = load_campaign(config, args.campaign)?;
    let start = now_or(args.start)?;
    // Whole seconds: the timeline reads better and nothing finer matters to a drip.
    let start = DateTime::from_timestamp(start.timestamp(), 0).unwrap_or(start);
    let end = start + chrono::Duration::days(i64::from(args.days));
    let script = match args.events {
        Some(path) => parse_script(path, &file, start)?,
        None => Vec::new(),
    };
    let mut lead = match (args.contact, args.data) {
        (Some(email), _) => stored_lead(config, email, &file.campaign, start).await?,
        (None, Some(path)) => Lead {
            origin: format!("from {}", path.display()),
            ..Lead::new(sample_from_file(path)?)
        },
        (None, None) => Lead {
            origin: "a made-up lead".into(),
            ..Lead::new(Sample {
                email: "sample.lead@example.com".into(),
                attributes: Map::new(),
                tags: Vec::new(),
                event: Map::new(),
            })
        },
    };
    lead.sample.email = email_arg(&lead.sample.email)?;
    let tz = lead
        .sample
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
    .context("cannot create the simulation's database")?;
    let engine = Engine::new(
        store,
        EngineConfig {
            default_timezone: config.default_timezone,
            frequency: config.frequency.clone(),
            ..EngineConfig::default()
        },
    )
    .with_time_standing_still();
    let result = run(config, &engine, &file, &mut lead, &script, start, end).await;
    engine.store().close().await;
    drop(scratch);
    let sim = result?;
    let report = Report {
        file: &file,
        lead: &lead,
        tz,
        start,
        end,
        days: args.days,
        sim: &sim,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        report.print();
    }
    Ok(ExitCode::SUCCESS)
}

/// The campaign as its file says now: an id in `campaigns_dir`, or the path of a file. It
/// must validate, templates included, exactly as `validate` demands.
fn load_campaign(config: &Config, arg: &str) -> anyhow::Result<CampaignFile> {
    let path = Path::new(arg);
    if !path.is_file() {
        return campaign_from_files(config, arg);
    }
    let loaded = load_paths(&[path.to_path_buf()]);
    let mut problems = loaded.diagnostics;
    problems.extend(super::templates::check(config, &loaded.campaigns));
    if !problems.is_empty() {
        super::validate::print_diagnostics(&problems);
        return Err(invalid(format!(
            "{} has problems; fix them first",
            path.display()
        )));
    }
    loaded
        .campaigns
        .into_iter()
        .next()
        .ok_or_else(|| invalid(format!("{} holds no campaign", path.display())))
}

/// A temp folder for the throwaway database, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let tag: String = nurture_sender::random_secret()?
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(16)
            .collect();
        let dir =
            std::env::temp_dir().join(format!("nurture-simulate-{}-{tag}", std::process::id()));
        std::fs::create_dir(&dir)
            .with_context(|| format!("cannot create the temp folder {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Renders and builds every email exactly as delivery does, and sends none.
struct Rehearsal {
    mailer: Mailer,
    /// Rendered subjects by message row.
    subjects: Mutex<HashMap<i64, String>>,
}

impl Courier for Rehearsal {
    type Prepared = ();

    fn prepare(&self, job: &Job<'_>) -> Result<(String, ()), Failure> {
        let (contact, step) = (job.contact, job.step.id.as_str());
        let built = self.mailer.build(
            job.campaign,
            step,
            job.send,
            &contact.email,
            &contact.attributes,
            &contact.tags,
            job.event,
            Some(job.message.id),
            None,
            "",
        )?;
        // The subject as the lead would read it (the message holds it encoded).
        if let Ok(parts) = self.mailer.render_parts(
            job.campaign,
            step,
            job.send,
            &contact.email,
            &contact.attributes,
            &contact.tags,
            job.event,
        ) && let Ok(mut subjects) = self.subjects.lock()
        {
            subjects.insert(job.message.id, parts.subject);
        }
        Ok((built.message_id, ()))
    }

    async fn send(&self, (): ()) -> Result<String, Failure> {
        Ok("not sent: simulation".into())
    }
}

/// What the run produced.
struct Sim {
    /// How the lead entered, or why it did not.
    entry: Result<String, String>,
    /// The campaign's status when it is not active (it is simulated as if it were).
    inactive: Option<&'static str>,
    lines: Vec<Line>,
    lead_lines: Vec<LeadLine>,
    /// The lead's last enrollment, as the run left it.
    last: Option<Enrollment>,
    rendered: usize,
    failed: usize,
}

/// One line of the timeline.
struct Line {
    at: DateTime<Utc>,
    /// Order among lines at the same instant: (enrollment, step counter * 2 [+1 after]).
    order: (usize, i64),
    step: Option<String>,
    outcome: String,
    reason: String,
    subject: Option<String>,
}

/// A scripted lead action, as applied.
struct LeadLine {
    at: DateTime<Utc>,
    step: Option<String>,
    what: String,
    note: Option<String>,
}

async fn run(
    config: &Config,
    engine: &Engine,
    file: &CampaignFile,
    lead: &mut Lead,
    script: &[Scripted],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> anyhow::Result<Sim> {
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
    let start_ms = start.timestamp_millis();

    // The lead, as the real database has it (or as the data file says).
    let mut tx = engine.store().begin().await?;
    let (contact, _) = tx
        .upsert_contact(
            &Upsert {
                email: lead.sample.email.clone(),
                attributes: lead.sample.attributes.clone(),
                tags: lead.sample.tags.clone(),
                consent_source: Some("simulate".into()),
                ..Upsert::default()
            },
            start_ms,
        )
        .await?;
    if lead.status != ContactStatus::Subscribed {
        tx.set_contact_status(
            contact.id,
            lead.status,
            lead.status_reason.as_deref().unwrap_or(""),
            start_ms,
        )
        .await?;
    }
    for e in &lead.history {
        tx.insert_event(
            &NewEvent {
                contact_id: contact.id,
                name: e.name.clone(),
                properties: e.properties.clone(),
                occurred_at: e.occurred_at,
                processed: true,
                ..NewEvent::default()
            },
            e.occurred_at,
        )
        .await?;
    }
    let mut entry = Ok(String::new());
    match &campaign.trigger {
        Trigger::Event { name, when } => {
            let mut made_up = false;
            if lead.sample.event.is_empty()
                && let Some(when) = when
            {
                satisfy(when, &mut lead.sample.event);
                made_up = !lead.sample.event.is_empty();
                if made_up && lead.event_source == EventSource::Given {
                    lead.event_source = EventSource::MadeUp;
                }
            }
            tx.insert_event(
                &NewEvent {
                    contact_id: contact.id,
                    name: name.clone(),
                    properties: lead.sample.event.clone(),
                    occurred_at: start_ms,
                    ..NewEvent::default()
                },
                start_ms,
            )
            .await?;
            let props = if lead.sample.event.is_empty() {
                String::new()
            } else {
                format!(
                    " ({}{})",
                    pairs(&lead.sample.event),
                    if made_up {
                        ", made up to pass the trigger's `when`"
                    } else {
                        ""
                    }
                )
            };
            entry = Ok(match lead.event_source {
                EventSource::Stored(at) => format!(
                    "enrolled by the contact's latest `{name}` event, recorded {} UTC{props}, replayed at the start",
                    at.format("%Y-%m-%d %H:%M")
                ),
                EventSource::NoneStored => format!(
                    "enrolled by a made-up `{name}` event at the start{props}: the contact has no stored `{name}` event{}",
                    if when.is_some() {
                        " that passes the trigger's `when`"
                    } else {
                        ""
                    }
                ),
                EventSource::Given | EventSource::MadeUp => {
                    format!("enrolled by a `{name}` event at the start{props}")
                }
            });
        }
        Trigger::Schedule { .. } | Trigger::Score(_) => {}
    }
    tx.commit().await?;
    if let Trigger::Score(op) = &campaign.trigger {
        entry = match engine.enroll(id, &lead.sample.email, start).await? {
            EnrollOutcome::Enrolled(_) => Ok(format!(
                "enrolled by hand at the start (the trigger is the score crossing {{{}: {}}}: a real lead enters when its score crosses it)",
                op.key(),
                match op {
                    nurture_campaign::Op::Gte(v)
                    | nurture_campaign::Op::Gt(v)
                    | nurture_campaign::Op::Lte(v)
                    | nurture_campaign::Op::Lt(v)
                    | nurture_campaign::Op::Equals(v)
                    | nurture_campaign::Op::NotEquals(v) => v.to_string(),
                    _ => String::new(),
                }
            )),
            other => Err(refusal(&other, lead)),
        };
    }
    if let Trigger::Schedule { cron, timezone } = &campaign.trigger {
        entry = match engine.enroll(id, &lead.sample.email, start).await? {
            EnrollOutcome::Enrolled(_) => Ok(format!(
                "enrolled by hand at the start (the trigger is the schedule `{cron}` in {timezone}: a real lead enters at a firing)"
            )),
            other => Err(refusal(&other, lead)),
        };
    }

    let courier = std::sync::Arc::new(Rehearsal {
        mailer: Mailer::with_secret(config, "simulate")?,
        subjects: Mutex::new(HashMap::new()),
    });
    let mut lead_lines = Vec::new();
    let mut t = start;
    let mut next = 0;
    for round in 0.. {
        if round == MAX_ROUNDS {
            anyhow::bail!("the simulation did not settle after {MAX_ROUNDS} rounds of work");
        }
        while let Some(s) = script.get(next)
            && s.at <= t
        {
            let note = act(engine, &lead.sample.email, id, s).await?;
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
        engine.deliver(&courier, t, 1).await?;
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

    // Read back what the engine recorded.
    let subjects = courier
        .subjects
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let mut tx = engine.store().begin().await?;
    let contact = tx
        .contact_by_email(&lead.sample.email)
        .await?
        .context("the simulated lead vanished")?;
    let enrollments = tx.contact_enrollments(contact.id).await?;
    let messages = tx.contact_messages(contact.id).await?;
    let mut lines = Vec::new();
    for (n, e) in enrollments.iter().enumerate() {
        let runs = tx.step_runs(e.id).await?;
        for run in &runs {
            let mut line = Line {
                at: from_ms(run.at),
                order: (n, run.seq * 2),
                step: Some(run.step_id.clone()),
                outcome: run.outcome.clone(),
                reason: run.reason.clone().unwrap_or_default(),
                subject: None,
            };
            if run.outcome == "queued" {
                match messages
                    .iter()
                    .find(|m| m.enrollment_id == e.id && m.seq == run.seq)
                {
                    Some(m) if m.state == "sent" => {
                        line.outcome = "sent".into();
                        line.at = m.sent_at.map_or(line.at, from_ms);
                        line.subject = subjects.get(&m.id).cloned();
                        line.reason = line.subject.clone().unwrap_or_default();
                    }
                    Some(m) => {
                        line.outcome.clone_from(&m.state);
                        line.reason = m.error.clone().unwrap_or_default();
                    }
                    None => {}
                }
            } else if line.reason.is_empty() {
                line.reason = action_reason(campaign, &run.step_id);
            }
            lines.push(line);
        }
        for d in tx.decisions(e.id).await? {
            lines.push(Line {
                at: from_ms(d.at),
                order: (n, d.seq * 2 + 1),
                step: Some(d.step_id),
                outcome: d.kind,
                reason: d.detail,
                subject: None,
            });
        }
        let ended = e.ended_at.map(from_ms).unwrap_or(end);
        let last_exit = runs.last().is_some_and(|r| r.outcome == "exited");
        match e.state.as_str() {
            "completed" => lines.push(Line {
                at: ended,
                order: (n, i64::MAX),
                step: None,
                outcome: "completed".into(),
                reason: "the last step has run".into(),
                subject: None,
            }),
            "exited" if !last_exit => lines.push(Line {
                at: ended,
                order: (n, i64::MAX),
                step: e.step_id.clone(),
                outcome: "exited".into(),
                reason: e.exit_reason.clone().unwrap_or_default(),
                subject: None,
            }),
            _ => {}
        }
    }
    tx.commit().await?;
    lines.sort_by_key(|l| (l.at, l.order));
    if entry.is_ok() && enrollments.is_empty() {
        entry = Err(why_not_enrolled(campaign, lead, start));
    }
    let last = enrollments.last().cloned();
    Ok(Sim {
        entry,
        inactive,
        rendered: messages.iter().filter(|m| m.state == "sent").count(),
        failed: messages.iter().filter(|m| m.state == "failed").count(),
        lines,
        lead_lines,
        last,
    })
}

/// Applies one scripted action to the simulated lead; returns a note when it had no effect.
async fn act(
    engine: &Engine,
    email: &str,
    campaign: &str,
    s: &Scripted,
) -> anyhow::Result<Option<String>> {
    let at = s.at.timestamp_millis();
    let mut tx = engine.store().begin().await?;
    let contact = tx
        .contact_by_email(email)
        .await?
        .context("the simulated lead vanished")?;
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
                    .find(|m| m.enrollment_id == e.id && m.step_id == *step && m.state == "sent"),
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

/// What a step that runs no email did, in words.
fn action_reason(campaign: &nurture_campaign::Campaign, step: &str) -> String {
    let Some(step) = campaign.steps.iter().find(|s| s.id.as_str() == step) else {
        return String::new();
    };
    let did = match &step.action {
        Action::Tag(tags) => format!("adds the tag {}", tags.join(", ")),
        Action::Untag(tags) => format!("removes the tag {}", tags.join(", ")),
        Action::Set(values) => values
            .iter()
            .map(|(k, v)| format!("sets {k} = {}", text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Action::Goto(target) => format!("continues at `{target}`"),
        Action::Wait => "a pure wait".into(),
        Action::Exit => "leaves the campaign".into(),
        Action::Split(arms) => format!(
            "splits between {}",
            arms.iter()
                .map(|a| format!("`{}` → `{}`", a.id, a.goto))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Action::Webhook(h) => format!("posts to {}", h.url),
        Action::Send(_) => String::new(),
    };
    match &step.when {
        Some(when) => format!("{did}; {when} held"),
        None => did,
    }
}
