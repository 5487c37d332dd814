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

    /// Claims a schedule firing; true for the one process that gets it. The firing starts
    /// open, with no contact handled: see [`Tx::lock_open_firing`].
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

    /// The firing times of a schedule whose enrollment has not run to the end (a process
    /// stopped midway, or is still at it), oldest first.
    pub async fn open_firings(&mut self, campaign_id: &str) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT fire_at FROM schedule_firings WHERE campaign_id = $1 AND completed_at IS NULL ORDER BY fire_at",
        )
        .bind(campaign_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// The last contact id an open firing has handled, locking the firing until this
    /// transaction ends; `None` once it is completed.
    ///
    /// Two processes may resume the same firing; the lock makes the second wait here until
    /// the first commits its batch, and then read the cursor that batch left (PostgreSQL
    /// `FOR UPDATE` returns the newest committed row after waiting; a SQLite transaction holds
    /// the write lock from its `BEGIN IMMEDIATE`).
    pub async fn lock_open_firing(
        &mut self,
        campaign_id: &str,
        fire_at: i64,
    ) -> Result<Option<i64>> {
        let sql = self.pick(
            "SELECT enrolled_through FROM schedule_firings WHERE campaign_id = $1 AND fire_at = $2 AND completed_at IS NULL FOR UPDATE",
            "SELECT enrolled_through FROM schedule_firings WHERE campaign_id = $1 AND fire_at = $2 AND completed_at IS NULL",
        );
        let row = sqlx::query(sql)
            .bind(campaign_id)
            .bind(fire_at)
            .fetch_optional(self.conn())
            .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    /// Moves an open firing's cursor from `from` to `through` (the last contact id of the
    /// batch enrolled in this transaction), and completes it if `done`. Guarded on the
    /// cursor it leaves: false, and nothing changed, if another process moved it first —
    /// the caller then rolls its batch back.
    pub async fn advance_firing(
        &mut self,
        campaign_id: &str,
        fire_at: i64,
        from: i64,
        through: i64,
        done: bool,
        now: i64,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE schedule_firings SET enrolled_through = $1, completed_at = CASE WHEN $2 = 1 THEN $3 ELSE NULL END
             WHERE campaign_id = $4 AND fire_at = $5 AND enrolled_through = $6 AND completed_at IS NULL",
        )
        .bind(through)
        .bind(i64::from(done))
        .bind(now)
        .bind(campaign_id)
        .bind(fire_at)
        .bind(from)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
