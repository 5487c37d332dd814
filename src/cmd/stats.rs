//! `nurture stats`: per campaign and per step counts, as a table or JSON (SPEC §7).

use std::process::ExitCode;

use serde_json::json;

use super::common::{now_or, open_engine, sync_campaigns};
use crate::config::Config;
use crate::exit::invalid;

pub async fn stats(config: &Config, only: Option<&str>, as_json: bool) -> anyhow::Result<ExitCode> {
    let engine = open_engine(config).await?;
    sync_campaigns(&engine, config, now_or(None)?).await?;
    let mut tx = engine.store().begin_read().await?;
    let rows = tx.campaigns().await?;
    if let Some(id) = only
        && !rows.iter().any(|r| r.id == id)
    {
        tx.commit().await?;
        return Err(invalid(format!("there is no campaign `{id}`")));
    }
    let mut campaigns = Vec::new();
    for row in rows.iter().filter(|r| only.is_none_or(|id| id == r.id)) {
        let mut s = tx.campaign_stats(&row.id).await?;
        // Order steps as the campaign lists them, with every step present.
        if let Some(live) = engine.campaign(&row.id).await {
            let mut ordered = Vec::new();
            for step in &live.campaign.steps {
                let found = s.steps.iter().position(|x| x.id == step.id.as_str());
                ordered.push(match found {
                    Some(i) => s.steps.remove(i),
                    None => nurture_store::StepStats {
                        id: step.id.to_string(),
                        ..Default::default()
                    },
                });
            }
            ordered.append(&mut s.steps);
            s.steps = ordered;
        }
        campaigns.push((row.status.clone(), s));
    }
    let forms = tx.form_counts().await?;
    tx.commit().await?;
    if as_json {
        let mut doc = json!({
            "campaigns": campaigns.iter().map(|(status, s)| {
                let mut exited = serde_json::Map::new();
                for key in ["goal", "unsubscribed", "bounced", "campaign_removed"] {
                    exited.insert(key.into(), json!(0));
                }
                for (k, v) in &s.exited {
                    exited.insert(k.clone(), json!(v));
                }
                json!({
                    "id": s.id,
                    "status": status,
                    "enrolled": s.enrolled,
                    "active": s.active,
                    "completed": s.completed,
                    "exited": exited,
                    "steps": s.steps,
                })
            }).collect::<Vec<_>>()
        });
        doc["forms"] = super::forms::counts_json(&forms);
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    super::forms::print_counts(&forms);
    if campaigns.is_empty() {
        outln!("no campaigns yet");
    }
    for (status, s) in &campaigns {
        let exited: Vec<String> = s.exited.iter().map(|(k, v)| format!("{k} {v}")).collect();
        outln!(
            "{} ({status}): enrolled {}, active {}, completed {}, exited {}",
            s.id,
            s.enrolled,
            s.active,
            s.completed,
            if exited.is_empty() {
                "0".to_string()
            } else {
                exited.join(", ")
            }
        );
        outln!(
            "  {:<20} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
            "step",
            "sent",
            "failed",
            "opened",
            "clicked",
            "unsub",
            "bounced",
            "unknown"
        );
        for st in &s.steps {
            outln!(
                "  {:<20} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
                st.id,
                st.sent,
                st.failed,
                st.opened,
                st.clicked,
                st.unsubscribed,
                st.bounced,
                st.unknown
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
