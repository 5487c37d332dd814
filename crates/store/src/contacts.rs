//! Contacts: one row per email address (compared case-insensitively), with attributes, tags
//! and a mailability status.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::state::{self, ContactStatus};
use crate::{Result, StoreError, Tx, json_text};

/// A stored contact.
#[derive(Debug, Clone)]
pub struct Contact {
    /// Row id.
    pub id: i64,
    /// Address as first given.
    pub email: String,
    /// Mailability.
    pub status: ContactStatus,
    /// Why the status last changed (`unsubscribe link`, `smtp 550 ...`).
    pub status_reason: Option<String>,
    /// When the status last changed (ms).
    pub status_changed_at: Option<i64>,
    /// Attributes (`first_name`, `timezone`, ...).
    pub attributes: Map<String, Value>,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// When created (ms).
    pub created_at: i64,
}

/// What to write for a contact: attributes are merged into what is stored, tags added.
#[derive(Debug, Clone, Default)]
pub struct Upsert {
    /// Address (checked by the caller).
    pub email: String,
    /// Attributes to set.
    pub attributes: Map<String, Value>,
    /// Tags to add.
    pub tags: Vec<String>,
    /// Tags to remove.
    pub untag: Vec<String>,
    /// Where consent came from (`api`, `import`, `cli`).
    pub consent_source: Option<String>,
}

fn decode(row: &AnyRow) -> Result<Contact> {
    let attributes: String = row.try_get("attributes")?;
    let tags: String = row.try_get("tags")?;
    let status: String = row.try_get("status")?;
    Ok(Contact {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        status: state::decode(&status)?,
        status_reason: row.try_get("status_reason")?,
        status_changed_at: row.try_get("status_changed_at")?,
        attributes: serde_json::from_str(&attributes)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        tags: serde_json::from_str(&tags).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: row.try_get("created_at")?,
    })
}

/// Applies an upsert to a stored contact: attributes set, tags added and removed. True when
/// anything changed.
fn merge(contact: &mut Contact, u: &Upsert) -> bool {
    apply(contact, &u.attributes, &u.tags, &u.untag)
}

fn apply(
    contact: &mut Contact,
    attributes: &Map<String, Value>,
    tags: &[String],
    untag: &[String],
) -> bool {
    let before_attrs = contact.attributes.clone();
    let before_tags = contact.tags.clone();
    for (k, v) in attributes {
        contact.attributes.insert(k.clone(), v.clone());
    }
    for t in tags {
        if !contact.tags.contains(t) {
            contact.tags.push(t.clone());
        }
    }
    contact.tags.retain(|t| !untag.contains(t));
    contact.tags.sort();
    contact.attributes != before_attrs || contact.tags != before_tags
}

/// What steps did to one contact's profile, in order, kept as a change (not a copy of the
/// profile) so that it is applied to the stored row as it is when written.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    /// Attributes set.
    pub set: Map<String, Value>,
    /// Tags added (none of them in `untag`).
    pub tag: Vec<String>,
    /// Tags removed (none of them in `tag`).
    pub untag: Vec<String>,
}

impl ProfileChange {
    /// Adds a tag (after whatever came before).
    pub fn tag(&mut self, t: &str) {
        self.untag.retain(|u| u != t);
        if !self.tag.iter().any(|x| x == t) {
            self.tag.push(t.to_string());
        }
    }

    /// Removes a tag (after whatever came before).
    pub fn untag(&mut self, t: &str) {
        self.tag.retain(|x| x != t);
        if !self.untag.iter().any(|u| u == t) {
            self.untag.push(t.to_string());
        }
    }

    /// Sets an attribute.
    pub fn set(&mut self, k: &str, v: Value) {
        self.set.insert(k.to_string(), v);
    }
}

impl Tx {
    /// A contact by id.
    pub async fn contact(&mut self, id: i64) -> Result<Option<Contact>> {
        let row = sqlx::query(
            "SELECT id, email, status, status_reason, status_changed_at, attributes, tags, created_at FROM contacts WHERE id = $1",
        )
            .bind(id)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Contacts by id, in any order; ids without a row are left out.
    pub async fn contacts(&mut self, ids: &[i64]) -> Result<Vec<Contact>> {
        let mut out = Vec::with_capacity(ids.len());
        if self.backend() == crate::Backend::Sqlite {
            for chunk in ids.chunks(crate::CHUNK) {
                let q = self.by_ids(
                    "SELECT json_group_array(json_array(id, email, status, status_reason, status_changed_at, json(attributes), json(tags), created_at))
                     FROM contacts WHERE id IN ({ids})",
                    chunk,
                );
                type Packed = (
                    i64,
                    String,
                    String,
                    Option<String>,
                    Option<i64>,
                    Map<String, Value>,
                    Vec<String>,
                    i64,
                );
                for (id, email, status, reason, changed, attributes, tags, created) in
                    self.fetch_packed::<Packed>(q).await?
                {
                    out.push(Contact {
                        id,
                        email,
                        status: state::decode(&status)?,
                        status_reason: reason,
                        status_changed_at: changed,
                        attributes,
                        tags,
                        created_at: created,
                    });
                }
            }
            return Ok(out);
        }
        for chunk in ids.chunks(crate::CHUNK) {
            let q = self.by_ids(
                "SELECT id, email, status, status_reason, status_changed_at, attributes, tags, created_at FROM contacts WHERE id IN ({ids})",
                chunk,
            );
            let rows = q.fetch_all(self.conn()).await?;
            for row in &rows {
                out.push(decode(row)?);
            }
        }
        Ok(out)
    }

    /// A contact by email (any case).
    pub async fn contact_by_email(&mut self, email: &str) -> Result<Option<Contact>> {
        let row = sqlx::query(
            "SELECT id, email, status, status_reason, status_changed_at, attributes, tags, created_at FROM contacts WHERE email_key = $1",
        )
            .bind(email.to_lowercase())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// A contact by email, its row locked until the transaction ends (PostgreSQL; on SQLite
    /// the transaction already holds the only write lock): what a read-merge-write needs so
    /// that two writers do not lose each other's changes.
    async fn contact_by_email_locked(&mut self, key: &str) -> Result<Option<Contact>> {
        let sql = self.pick(
            "SELECT id, email, status, status_reason, status_changed_at, attributes, tags, created_at FROM contacts WHERE email_key = $1 FOR UPDATE",
            "SELECT id, email, status, status_reason, status_changed_at, attributes, tags, created_at FROM contacts WHERE email_key = $1",
        );
        let row = sqlx::query(sql)
            .bind(key)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Applies profile changes to the stored contacts, each on the row as it is now (locked
    /// while it is merged), so a change another writer made since the engine read the
    /// contact is kept.
    pub async fn apply_profile_changes(
        &mut self,
        changes: &[(i64, &ProfileChange)],
        now: i64,
    ) -> Result<()> {
        for chunk in changes.chunks(crate::CHUNK) {
            let mut ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
            ids.sort_unstable();
            // In id order, so two writers locking overlapping sets cannot deadlock.
            let lock = if self.backend() == crate::Backend::Postgres {
                " ORDER BY id FOR UPDATE"
            } else {
                ""
            };
            let sql = format!(
                "SELECT id, email, status, status_reason, status_changed_at, attributes, tags, created_at FROM contacts WHERE id IN ({}){lock}",
                crate::id_list(&ids)
            );
            let mut stored: HashMap<i64, Contact> = HashMap::new();
            for row in crate::dynamic(sql).fetch_all(self.conn()).await? {
                let c = decode(&row)?;
                stored.insert(c.id, c);
            }
            let mut changed = Vec::new();
            for (id, change) in chunk {
                if let Some(c) = stored.get_mut(id)
                    && apply(c, &change.set, &change.tag, &change.untag)
                {
                    changed.push(*id);
                }
            }
            let profiles: Vec<&Contact> = changed.iter().filter_map(|id| stored.get(id)).collect();
            self.write_profiles(&profiles, now).await?;
        }
        Ok(())
    }

    /// Creates or updates a contact; returns it and whether it was created.
    pub async fn upsert_contact(&mut self, u: &Upsert, now: i64) -> Result<(Contact, bool)> {
        let key = u.email.to_lowercase();
        let inserted = sqlx::query(
            "INSERT INTO contacts (email, email_key, attributes, tags, consent_source, consent_at, created_at, updated_at)
             VALUES ($1, $2, '{}', '[]', $3, $4, $4, $4)
             ON CONFLICT (email_key) DO NOTHING",
        )
        .bind(&u.email)
        .bind(&key)
        .bind(u.consent_source.as_deref())
        .bind(now)
        .execute(self.conn())
        .await?
        .rows_affected()
            == 1;
        let mut contact = self
            .contact_by_email_locked(&key)
            .await?
            .ok_or_else(|| StoreError::Corrupt("contact vanished during upsert".into()))?;
        if merge(&mut contact, u) {
            self.write_profile(&contact, now).await?;
        }
        Ok((contact, inserted))
    }

    /// [`Tx::upsert_contact`] for many contacts in a few statements (an import batch):
    /// returns each contact after its upsert, in order, and whether that upsert created it.
    /// The same address twice in one batch is created once, then updated.
    pub async fn upsert_contacts(
        &mut self,
        upserts: &[Upsert],
        now: i64,
    ) -> Result<Vec<(Contact, bool)>> {
        let mut out = Vec::with_capacity(upserts.len());
        for chunk in upserts.chunks(crate::CHUNK) {
            let mut sql = String::from(
                "INSERT INTO contacts (email, email_key, attributes, tags, consent_source, consent_at, created_at, updated_at) VALUES ",
            );
            let mut p = self.placeholders();
            for (i, _) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                let (email, key, source) = (p.next(), p.next(), p.next());
                sql.push_str(&format!(
                    "({email}, {key}, '{{}}', '[]', {source}, {now}, {now}, {now})"
                ));
            }
            sql.push_str(" ON CONFLICT (email_key) DO NOTHING RETURNING email_key");
            let keys: Vec<String> = chunk.iter().map(|u| u.email.to_lowercase()).collect();
            let mut q = crate::dynamic(sql);
            for (u, key) in chunk.iter().zip(&keys) {
                q = q
                    .bind(u.email.as_str())
                    .bind(key.as_str())
                    .bind(u.consent_source.as_deref());
            }
            let mut created: HashSet<String> = HashSet::new();
            for row in q.fetch_all(self.conn()).await? {
                created.insert(row.try_get(0)?);
            }
            let mut p = self.placeholders();
            let params: Vec<String> = keys.iter().map(|_| p.next()).collect();
            // Locked (PostgreSQL) in id order until the merged profiles are written.
            let lock = if self.backend() == crate::Backend::Postgres {
                " ORDER BY id FOR UPDATE"
            } else {
                ""
            };
            let sql = format!(
                "SELECT id, email_key, email, status, status_reason, status_changed_at, attributes, tags, created_at FROM contacts WHERE email_key IN ({}){lock}",
                params.join(",")
            );
            let mut q = crate::dynamic(sql);
            for key in &keys {
                q = q.bind(key.as_str());
            }
            let mut stored: HashMap<String, Contact> = HashMap::new();
            for row in q.fetch_all(self.conn()).await? {
                stored.insert(row.try_get("email_key")?, decode(&row)?);
            }
            let mut changed: Vec<String> = Vec::new();
            for (u, key) in chunk.iter().zip(&keys) {
                let contact = stored
                    .get_mut(key)
                    .ok_or_else(|| StoreError::Corrupt("contact vanished during upsert".into()))?;
                if merge(contact, u) && !changed.contains(key) {
                    changed.push(key.clone());
                }
                out.push((contact.clone(), created.remove(key)));
            }
            let profiles: Vec<&Contact> = changed.iter().filter_map(|k| stored.get(k)).collect();
            self.write_profiles(&profiles, now).await?;
        }
        Ok(out)
    }

    /// [`Tx::write_profile`] for many contacts in one statement per chunk.
    pub(crate) async fn write_profiles(&mut self, contacts: &[&Contact], now: i64) -> Result<()> {
        use std::fmt::Write;
        for chunk in contacts.chunks(crate::CHUNK) {
            let mut p = self.placeholders();
            let (mut attributes, mut tags) = (String::new(), String::new());
            for c in chunk {
                let _ = write!(attributes, " WHEN {} THEN {}", c.id, p.next());
            }
            for c in chunk {
                let _ = write!(tags, " WHEN {} THEN {}", c.id, p.next());
            }
            let ids: Vec<i64> = chunk.iter().map(|c| c.id).collect();
            let sql = format!(
                "UPDATE contacts SET attributes = CASE id{attributes} END, tags = CASE id{tags} END, updated_at = {now} WHERE id IN ({})",
                crate::id_list(&ids)
            );
            let mut q = crate::dynamic(sql);
            for c in chunk {
                q = q.bind(json_text(&c.attributes));
            }
            for c in chunk {
                q = q.bind(json_text(&c.tags));
            }
            q.execute(self.conn()).await?;
        }
        Ok(())
    }

    /// Stores a contact's attributes and tags as they are in `contact`.
    pub(crate) async fn write_profile(&mut self, contact: &Contact, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE contacts SET attributes = $1, tags = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(json_text(&contact.attributes))
        .bind(json_text(&contact.tags))
        .bind(now)
        .bind(contact.id)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Changes a contact's status (unsubscribe, bounce); returns false if it already had it.
    pub async fn set_contact_status(
        &mut self,
        id: i64,
        status: ContactStatus,
        reason: &str,
        now: i64,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE contacts SET status = $1, status_reason = $2, status_changed_at = $3, updated_at = $3
             WHERE id = $4 AND status <> $1",
        )
        .bind(status.as_str())
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Contacts with id greater than `after_id`, in id order, for batch scans (schedules).
    pub async fn contacts_after(&mut self, after_id: i64, limit: i64) -> Result<Vec<Contact>> {
        let rows = sqlx::query(
            "SELECT id, email, status, status_reason, status_changed_at, attributes, tags, created_at
             FROM contacts WHERE id > $1 AND status = 'subscribed' ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(decode).collect()
    }
}
