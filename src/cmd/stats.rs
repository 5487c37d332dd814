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
    // SPEC §13: per step, A/B tests and frequency-cap postponements.
    let mut tests = std::collections::BTreeMap::new();
    let mut postponed = std::collections::BTreeMap::new();
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
            tests.insert(
                row.id.clone(),
                super::ab::step_tests(&mut tx, &live.campaign).await?,
            );
        }
        postponed.insert(row.id.clone(), tx.cap_postponements(&row.id).await?);
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
                    "steps": s.steps.iter().map(|st| {
                        let mut v = serde_json::to_value(st).unwrap_or_default();
                        if let Some(o) = v.as_object_mut() {
                            let test = tests.get(&s.id).and_then(|t| t.get(&st.id));
                            for (k, x) in super::ab::json_fields(test) {
                                o.insert(k.into(), x);
                            }
                            let n = postponed.get(&s.id).and_then(|p| p.get(&st.id)).copied().unwrap_or(0);
                            o.insert("postponed_by_frequency_cap".into(), json!(n));
                        }
                        v
                    }).collect::<Vec<_>>(),
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
        for st in &s.steps {
            if let Some(n) = postponed.get(&s.id).and_then(|p| p.get(&st.id))
                && *n > 0
            {
                outln!("  {}: {n} postponed by the frequency cap", st.id);
            }
            if let Some(t) = tests.get(&s.id).and_then(|t| t.get(&st.id)) {
                for line in super::ab::lines(&st.id, t) {
                    outln!("{line}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
