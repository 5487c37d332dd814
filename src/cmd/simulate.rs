//! `nurture simulate`: builds the inputs of `nurture_scheduler::simulate` from the
//! configuration and the arguments, renders with the real `Mailer`, and prints the report
//! (a table, or SPEC §7's JSON with `--json`). The simulation itself lives in the scheduler.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use nurture_campaign::{CampaignFile, SourceFile, load_paths};
use nurture_scheduler::simulate::{
    Lead, Rehearse, Rehearsed, ScriptError, SimulateError, Simulation, parse_script, whole_seconds,
};
use nurture_scheduler::{EngineConfig, Failure, Job};
use nurture_sender::StepEmail;

use super::common::{email_arg, now_or};
use super::send::{campaign_from_files, sample_from_file};
use crate::config::Config;
use crate::delivery::Mailer;
use crate::exit::invalid;

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
    let start = whole_seconds(now_or(args.start)?);
    let script = match args.events {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
            parse_script(&SourceFile::new(path, text), &file.campaign, start)
                .map_err(script_error)?
        }
        None => Vec::new(),
    };
    let mut lead = match (args.contact, args.data) {
        (Some(email), _) => Lead::stored(
            config.database_url.expose(),
            &email_arg(email)?,
            &file.campaign,
            start,
        )
        .await
        .map_err(simulate_error)?,
        (None, Some(path)) => {
            let s = sample_from_file(path)?;
            let origin = format!("from {}", path.display());
            Lead::new(origin, s.email, s.attributes, s.tags, s.event)
        }
        (None, None) => Lead::made_up(),
    };
    lead.email = email_arg(&lead.email)?;
    let sim = Simulation {
        file: &file,
        lead,
        script: &script,
        start,
        days: args.days,
        config: EngineConfig {
            default_timezone: config.default_timezone,
            frequency: config.frequency.clone(),
            ..EngineConfig::default()
        },
    };
    let renderer = Rehearsal(crate::delivery::with_secret(config, "simulate")?);
    let report = nurture_scheduler::simulate::simulate(sim, renderer)
        .await
        .map_err(simulate_error)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        let _ = write!(std::io::stdout().lock(), "{report}");
    }
    Ok(ExitCode::SUCCESS)
}

/// An unknown contact is the user's input (exit 2); the rest are runtime failures (exit 1).
fn simulate_error(e: SimulateError) -> anyhow::Error {
    if e.is_invalid_input() {
        invalid(e.to_string())
    } else {
        anyhow::Error::new(e)
    }
}

/// Every events file problem is the user's input (exit 2); a YAML one shows its snippet.
fn script_error(e: ScriptError) -> anyhow::Error {
    if let ScriptError::Yaml { diagnostic, .. } = &e {
        super::validate::print_diagnostics(std::slice::from_ref(diagnostic));
    }
    invalid(e.to_string())
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

/// Renders and builds every email exactly as delivery does; the scheduler sends none.
struct Rehearsal(Mailer);

impl Rehearse for Rehearsal {
    fn rehearse(&self, job: &Job<'_>) -> Result<Rehearsed, Failure> {
        let email = StepEmail::of(job);
        let built = self.0.build(&email, Some(job.message.id), None, "")?;
        // The subject as the lead would read it (the message holds it encoded).
        let subject = self.0.render_parts(&email).ok().map(|parts| parts.subject);
        Ok(Rehearsed {
            message_id: built.message_id,
            subject,
        })
    }
}
