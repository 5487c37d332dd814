//! Pieces several commands share: the clock, opening the engine, loading campaigns.

use anyhow::Context;
use chrono::{DateTime, Utc};
use nurture_campaign::{check_address, load_paths};
use nurture_scheduler::{Engine, EngineConfig, SyncReport};
use nurture_store::Store;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::exit::invalid;

/// The current time, or the `--now`/`--at` the user gave. This is the one place the binary
/// reads the clock for the engine.
#[allow(clippy::disallowed_methods)]
pub fn now_or(at: Option<&str>) -> anyhow::Result<DateTime<Utc>> {
    match at {
        None => Ok(Utc::now()),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                invalid(format!(
                    "`{s}` is not an RFC 3339 time such as 2026-11-02T09:00:00Z: {e}"
                ))
            }),
    }
}

/// Opens the store (applying migrations) and builds the engine.
pub async fn open_engine(config: &Config) -> anyhow::Result<Engine> {
    let store = Store::open(config.database_url.expose())
        .await
        .context("cannot open the database")?;
    Ok(Engine::new(
        store,
        EngineConfig {
            default_timezone: config.default_timezone,
            frequency: config.frequency.clone(),
            ..EngineConfig::default()
        },
    )
    .with_scoring(load_scoring(config)?))
}

/// Reads `scoring_file` (absent: no scoring); a file that does not validate is refused
/// with its first problem at `file:line:col` (exit 2).
pub fn load_scoring(
    config: &Config,
) -> anyhow::Result<Option<std::sync::Arc<nurture_campaign::Scoring>>> {
    match nurture_campaign::Scoring::load(&config.scoring_file) {
        Ok(s) => Ok(s.map(std::sync::Arc::new)),
        Err(diags) => {
            let first = diags.first().map_or_else(String::new, |d| {
                format!(": {}: {}", d.location(), d.message)
            });
            Err(crate::exit::invalid(format!(
                "the scoring file {} is invalid{first}",
                config.scoring_file.display()
            )))
        }
    }
}

/// Reads the campaign files and makes them the versions in use. Broken files are logged and
/// skipped: their last good version keeps running.
pub async fn sync_campaigns(
    engine: &Engine,
    config: &Config,
    now: DateTime<Utc>,
) -> anyhow::Result<SyncReport> {
    let loaded = load_paths(std::slice::from_ref(&config.campaigns_dir));
    let mut broken = loaded.diagnostics.len();
    let template_problems = super::templates::check(config, &loaded.campaigns);
    let bad_files: std::collections::HashSet<_> =
        template_problems.iter().map(|d| d.path.clone()).collect();
    for d in loaded.diagnostics.iter().chain(&template_problems) {
        tracing::error!(location = %d.location(), "campaign refused: {}", d.message);
    }
    broken += template_problems.len();
    let good: Vec<_> = loaded
        .campaigns
        .into_iter()
        .filter(|c| !bad_files.contains(&c.source.path))
        .collect();
    let report = engine.sync(&good, broken == 0, now).await?;
    Ok(report)
}

/// Checks an email address given on the command line.
pub fn email_arg(email: &str) -> anyhow::Result<String> {
    let email = email.trim();
    check_address(email).map_err(|e| invalid(e.to_string()))?;
    Ok(email.to_string())
}

/// Parses `k=v` pairs into a JSON object (values are text).
pub fn key_values(pairs: &[String], what: &str) -> anyhow::Result<Map<String, Value>> {
    let mut map = Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(invalid(format!(
                "{what} `{pair}` must be written as key=value"
            )));
        };
        if k.trim().is_empty() {
            return Err(invalid(format!("{what} `{pair}` has an empty key")));
        }
        map.insert(k.trim().to_string(), Value::String(v.to_string()));
    }
    Ok(map)
}
