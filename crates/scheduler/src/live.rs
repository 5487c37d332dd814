//! The campaigns in use: synced from files into versioned rows, and cached per version.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use nurture_campaign::{Campaign, CampaignFile, Status};

use crate::{Engine, EngineError, Result, to_ms};

/// A campaign as currently in use.
#[derive(Debug, Clone)]
pub struct LiveCampaign {
    /// The version in use.
    pub version_id: i64,
    /// `active`, `paused`, `draft` or `removed`.
    pub status: String,
    /// The definition.
    pub campaign: Arc<Campaign>,
}

#[derive(Default)]
pub(crate) struct Live {
    by_id: HashMap<String, LiveCampaign>,
    versions: HashMap<i64, Arc<Campaign>>,
}

impl Live {
    pub(crate) fn get(&self, id: &str) -> Option<LiveCampaign> {
        self.by_id.get(id).cloned()
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &LiveCampaign> {
        self.by_id.values()
    }
}

/// What a sync changed.
#[derive(Debug, Default, Clone)]
pub struct SyncReport {
    /// Campaigns whose content changed (new version in use).
    pub changed: Vec<String>,
    /// Campaigns stopped because their file is gone.
    pub removed: Vec<String>,
    /// Enrollments moved off removed steps: (campaign, from step, to step or "completed", count).
    pub remapped: Vec<(String, String, String, u64)>,
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Active => "active",
        Status::Paused => "paused",
        Status::Draft => "draft",
    }
}

/// The SHA-256 of a campaign's definition, in hex: stored with each version, so it must not
/// change between builds (as `DefaultHasher`'s output may between Rust releases).
fn fingerprint(text: &str) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Where enrollments waiting at `removed` go under the new definition: the next step of the
/// old order that still exists, else nowhere (they complete).
pub fn remap_target<'a>(old: &'a Campaign, new: &Campaign, removed: &str) -> Option<&'a str> {
    let at = old.steps.iter().position(|s| s.id.as_str() == removed)?;
    old.steps[at + 1..]
        .iter()
        .map(|s| s.id.as_str())
        .find(|id| new.steps.iter().any(|n| n.id.as_str() == *id))
}

pub(crate) async fn sync(
    engine: &Engine,
    files: &[CampaignFile],
    complete: bool,
    now: DateTime<Utc>,
) -> Result<SyncReport> {
    let now_ms = to_ms(now);
    let mut report = SyncReport::default();
    let mut tx = engine.store.begin().await?;
    let existing: HashMap<String, nurture_store::CampaignRow> = tx
        .campaigns()
        .await?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    let mut seen = HashSet::new();
    for file in files {
        let c = &file.campaign;
        let id = c.id.as_str();
        seen.insert(id.to_string());
        let definition =
            serde_json::to_string(c).map_err(|e| EngineError::BadVersion(0, e.to_string()))?;
        let (version_id, changed) = tx
            .put_campaign(
                id,
                &fingerprint(&definition),
                &definition,
                status_name(c.status),
                now_ms,
            )
            .await?;
        if !changed {
            continue;
        }
        // A paused (or draft) campaign holds its waiting mail; resuming releases it. Mail
        // queued by a worker that had not seen the pause yet is held when it is about to go
        // (the send-time check in delivery).
        let was_active = existing.get(id).is_none_or(|old| old.status == "active");
        let is_active = c.status == Status::Active;
        if was_active != is_active {
            let n = tx.hold_campaign_messages(id, !is_active, now_ms).await?;
            if n > 0 {
                tracing::info!(
                    campaign = id,
                    messages = n,
                    held = !is_active,
                    "campaign status changed; its waiting mail is {}",
                    if is_active { "released" } else { "held" }
                );
            }
        }
        report.changed.push(id.to_string());
        let Some(old) = existing.get(id) else {
            continue;
        };
        if old.version_id == version_id {
            continue;
        }
        let old_campaign: Campaign = serde_json::from_str(&old.definition)
            .map_err(|e| EngineError::BadVersion(old.version_id, e.to_string()))?;
        for (step, _) in tx.waiting_by_step(id).await? {
            if c.steps.iter().any(|s| s.id.as_str() == step) {
                continue;
            }
            let to = remap_target(&old_campaign, c, &step);
            let n = tx.remap_step(id, &step, to, now_ms).await?;
            tracing::info!(campaign = id, from = %step, to = to.unwrap_or("completed"), enrollments = n, "step removed by an edit; enrollments moved");
            report.remapped.push((
                id.to_string(),
                step,
                to.unwrap_or("completed").to_string(),
                n,
            ));
        }
    }
    if complete {
        for (id, row) in &existing {
            if seen.contains(id) || row.status == "removed" {
                continue;
            }
            tx.remove_campaign(id, now_ms).await?;
            let n = tx
                .exit_campaign_enrollments(id, "campaign_removed", now_ms)
                .await?;
            tracing::warn!(campaign = %id, enrollments = n, "campaign file removed; its enrollments stop");
            report.removed.push(id.clone());
        }
    }
    tx.commit().await?;
    refresh(engine).await?;
    Ok(report)
}

pub(crate) async fn refresh(engine: &Engine) -> Result<()> {
    let mut tx = engine.store.begin().await?;
    let rows = tx.campaigns().await?;
    tx.commit().await?;
    let mut live = engine.live.write().await;
    let mut by_id = HashMap::new();
    for row in rows {
        let campaign = match live.versions.get(&row.version_id) {
            Some(c) => c.clone(),
            None => {
                let c: Campaign = serde_json::from_str(&row.definition)
                    .map_err(|e| EngineError::BadVersion(row.version_id, e.to_string()))?;
                let c = Arc::new(c);
                live.versions.insert(row.version_id, c.clone());
                c
            }
        };
        by_id.insert(
            row.id.clone(),
            LiveCampaign {
                version_id: row.version_id,
                status: row.status,
                campaign,
            },
        );
    }
    live.by_id = by_id;
    Ok(())
}

pub(crate) async fn version(engine: &Engine, version_id: i64) -> Result<Arc<Campaign>> {
    if let Some(c) = engine.live.read().await.versions.get(&version_id) {
        return Ok(c.clone());
    }
    let mut tx = engine.store.begin().await?;
    let row = tx.version(version_id).await?;
    tx.commit().await?;
    let row = row.ok_or_else(|| EngineError::BadVersion(version_id, "missing".into()))?;
    let c: Campaign = serde_json::from_str(&row.definition)
        .map_err(|e| EngineError::BadVersion(version_id, e.to_string()))?;
    let c = Arc::new(c);
    engine
        .live
        .write()
        .await
        .versions
        .insert(version_id, c.clone());
    Ok(c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprints_are_sha256_and_stable() {
        assert_eq!(
            super::fingerprint("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
