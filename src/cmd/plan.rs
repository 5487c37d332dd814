//! `nurture plan [PATH..]`: what an edit to the campaign files will do to the leads already in
//! the middle of a sequence, before it is made — for a pull request, or before a deploy.
//!
//! The files are compared with the versions in use (the `campaigns` and `campaign_versions`
//! tables), and the active enrollments waiting at each step are counted. Where they go is
//! decided by the very function the engine's sync applies (`remap_target`), so the plan and
//! the edit cannot disagree. The database is opened read-only: nothing is synced, nothing
//! written; a missing SQLite file simply means nothing is in use yet.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nurture_campaign::{Campaign, CampaignFile, load_paths};
use nurture_scheduler::plan::{active, describe_change};
use nurture_store::Store;

use crate::config::Config;

/// A campaign as it is in use.
struct InUse {
    status: String,
    campaign: Option<Campaign>,
    /// Active enrollments by the step they wait at.
    waiting: BTreeMap<String, i64>,
}

pub async fn plan(config: &Config, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    // Only a folder is the whole set of campaigns: a campaign missing from it is removed.
    // Files named one by one say nothing about the others.
    let complete = paths.is_empty() || paths.iter().any(|p| p.is_dir());
    let paths = if paths.is_empty() {
        vec![config.campaigns_dir.clone()]
    } else {
        paths.to_vec()
    };
    let loaded = load_paths(&paths);
    let mut problems = loaded.diagnostics;
    problems.extend(super::templates::check(config, &loaded.campaigns));
    if !problems.is_empty() {
        super::validate::print_diagnostics(&problems);
        eprintln!(
            "error: {} problem{} in the campaign files; a plan compares valid files only",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::from(2));
    }
    let in_use = read_in_use(config).await?;
    let mut files: Vec<&CampaignFile> = loaded.campaigns.iter().collect();
    files.sort_by(|a, b| a.campaign.id.cmp(&b.campaign.id));

    let (mut changed, mut new, mut unchanged, mut removed) = (0, 0, 0, 0);
    let mut out: Vec<String> = Vec::new();
    for file in &files {
        let c = &file.campaign;
        let id = c.id.as_str();
        match in_use.get(id) {
            None => {
                new += 1;
                out.push(format!(
                    "{id}: new campaign, {}: {}",
                    count(c.steps.len(), "step", "steps"),
                    step_ids(c)
                ));
                out.push("    nobody is in it yet; it starts enrolling once it is synced".into());
            }
            Some(u) if u.status == "removed" => {
                new += 1;
                out.push(format!(
                    "{id}: comes back (its file had been removed); {}: {}",
                    count(c.steps.len(), "step", "steps"),
                    step_ids(c)
                ));
                out.push("    it enrolls new leads again; those it stopped stay stopped".into());
            }
            Some(InUse {
                campaign: Some(old),
                waiting,
                status,
            }) => {
                if old == c {
                    unchanged += 1;
                    out.push(format!("{id}: unchanged ({})", active(total(waiting))));
                } else {
                    changed += 1;
                    out.extend(describe_change(old, c, status, waiting));
                }
            }
            Some(InUse { campaign: None, .. }) => {
                changed += 1;
                out.push(format!(
                    "{id}: the version in use cannot be read back; syncing will replace it"
                ));
            }
        }
    }
    if complete {
        for (id, u) in &in_use {
            if u.status == "removed" || files.iter().any(|f| f.campaign.id.as_str() == id) {
                continue;
            }
            removed += 1;
            let n = total(&u.waiting);
            out.push(if n == 0 {
                format!("{id}: its file is gone; the campaign stops (no active lead)")
            } else {
                format!(
                    "{id}: its file is gone; {} will stop (exit reason campaign_removed)",
                    active(n)
                )
            });
        }
    }
    for line in &out {
        outln!("{line}");
    }
    if !out.is_empty() {
        outln!();
    }
    outln!(
        "plan: {changed} changed, {new} new, {removed} removed, {unchanged} unchanged; nothing was changed"
    );
    Ok(ExitCode::SUCCESS)
}

/// The campaigns in use and where their active enrollments wait, read without writing.
async fn read_in_use(config: &Config) -> anyhow::Result<BTreeMap<String, InUse>> {
    let mut out = BTreeMap::new();
    let Some(store) = Store::open_read_only(config.database_url.expose())
        .await
        .context("cannot open the database")?
    else {
        return Ok(out);
    };
    let mut tx = store.begin_read().await?;
    for row in tx.campaigns().await? {
        let waiting = tx.waiting_by_step(&row.id).await?.into_iter().collect();
        out.insert(
            row.id.clone(),
            InUse {
                status: row.status,
                campaign: serde_json::from_str(&row.definition).ok(),
                waiting,
            },
        );
    }
    tx.rollback().await?;
    store.close().await;
    Ok(out)
}

fn total(waiting: &BTreeMap<String, i64>) -> i64 {
    waiting.values().sum()
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn step_ids(c: &Campaign) -> String {
    c.steps
        .iter()
        .map(|s| s.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
