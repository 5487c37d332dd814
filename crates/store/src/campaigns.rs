//! Campaign versions: a snapshot of every validated campaign that ran, and which version is
//! current. Enrollments keep running on the last good version when a file breaks.

use sqlx::Row;

use crate::{Result, Tx};

/// The current version of a campaign.
#[derive(Debug, Clone)]
pub struct CampaignRow {
    /// Campaign id.
    pub id: String,
    /// Current version.
    pub version_id: i64,
    /// `active`, `paused`, `draft` or `removed`.
    pub status: String,
    /// The version's definition (JSON).
    pub definition: String,
}

/// A stored version.
#[derive(Debug, Clone)]
pub struct VersionRow {
    /// Version id.
    pub id: i64,
    /// Campaign id.
    pub campaign_id: String,
    /// The definition (JSON).
    pub definition: String,
}

impl Tx {
    /// Stores a version (once per distinct content) and makes it current; returns its id and
    /// whether the current version changed.
    pub async fn put_campaign(
        &mut self,
        id: &str,
        fingerprint: &str,
        definition: &str,
        status: &str,
        now: i64,
    ) -> Result<(i64, bool)> {
        sqlx::query(
            "INSERT INTO campaign_versions (campaign_id, fingerprint, definition, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (campaign_id, fingerprint) DO NOTHING",
        )
        .bind(id)
        .bind(fingerprint)
        .bind(definition)
        .bind(now)
        .execute(self.conn())
        .await?;
        let version_id: i64 = sqlx::query(
            "SELECT id FROM campaign_versions WHERE campaign_id = $1 AND fingerprint = $2",
        )
        .bind(id)
        .bind(fingerprint)
        .fetch_one(self.conn())
        .await?
        .try_get(0)?;
        let changed = sqlx::query(
            "INSERT INTO campaigns (id, version_id, status, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET version_id = excluded.version_id, status = excluded.status, updated_at = excluded.updated_at
             WHERE campaigns.version_id <> excluded.version_id OR campaigns.status <> excluded.status",
        )
        .bind(id)
        .bind(version_id)
        .bind(status)
        .bind(now)
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0;
        Ok((version_id, changed))
    }

    /// Every campaign with its current version.
    pub async fn campaigns(&mut self) -> Result<Vec<CampaignRow>> {
        let rows = sqlx::query(
            "SELECT c.id, c.version_id, c.status, v.definition FROM campaigns c JOIN campaign_versions v ON v.id = c.version_id ORDER BY c.id",
        )
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CampaignRow {
                    id: r.try_get("id")?,
                    version_id: r.try_get("version_id")?,
                    status: r.try_get("status")?,
                    definition: r.try_get("definition")?,
                })
            })
            .collect()
    }

    /// A version by id.
    pub async fn version(&mut self, id: i64) -> Result<Option<VersionRow>> {
        let row =
            sqlx::query("SELECT id, campaign_id, definition FROM campaign_versions WHERE id = $1")
                .bind(id)
                .fetch_optional(self.conn())
                .await?;
        row.map(|r| {
            Ok(VersionRow {
                id: r.try_get("id")?,
                campaign_id: r.try_get("campaign_id")?,
                definition: r.try_get("definition")?,
            })
        })
        .transpose()
    }

    /// Marks a campaign removed; returns true if it was not already.
    pub async fn remove_campaign(&mut self, id: &str, now: i64) -> Result<bool> {
        let n = sqlx::query("UPDATE campaigns SET status = 'removed', updated_at = $1 WHERE id = $2 AND status <> 'removed'")
            .bind(now)
            .bind(id)
            .execute(self.conn())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// When a campaign was first stored (ms): schedules fire only for times after it.
    pub async fn campaign_first_seen(&mut self, campaign_id: &str) -> Result<Option<i64>> {
        let row =
            sqlx::query("SELECT MIN(created_at) FROM campaign_versions WHERE campaign_id = $1")
                .bind(campaign_id)
                .fetch_one(self.conn())
                .await?;
        Ok(row.try_get(0)?)
    }

    /// The latest recorded firing of a schedule (ms).
    pub async fn last_firing(&mut self, campaign_id: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT MAX(fire_at) FROM schedule_firings WHERE campaign_id = $1")
            .bind(campaign_id)
            .fetch_one(self.conn())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Claims a schedule firing; true for the one process that gets it.
    pub async fn claim_firing(
        &mut self,
        campaign_id: &str,
        fire_at: i64,
        now: i64,
    ) -> Result<bool> {
        let n = sqlx::query(
            "INSERT INTO schedule_firings (campaign_id, fire_at, fired_at) VALUES ($1, $2, $3) ON CONFLICT (campaign_id, fire_at) DO NOTHING",
        )
        .bind(campaign_id)
        .bind(fire_at)
        .bind(now)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
