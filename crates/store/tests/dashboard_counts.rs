//! The dashboard's enrollment counters (triggers of migration 0011) agree with a direct
//! COUNT over the enrollments after a realistic mix of changes, on SQLite and PostgreSQL
//! (including two writers at once and unfolded deltas), and the migration's backfill gives
//! the numbers the old queries gave on a database populated before it. The same for the
//! per-step sent, opened and clicked of migration 0012, against `campaign_stats` (which
//! counts them from the messages and events).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use nurture_store::{CampaignTotals, Funnel, StepTotals, Store};
use sqlx::{Executor, Row};

/// Contacts, two campaigns and their versions, with fixed ids so no sequence is involved.
const SEED: &str = "
    INSERT INTO contacts (id, email, email_key, created_at, updated_at) VALUES
        (1, 'a@x.example', 'a@x.example', 1, 1), (2, 'b@x.example', 'b@x.example', 1, 1),
        (3, 'c@x.example', 'c@x.example', 1, 1), (4, 'd@x.example', 'd@x.example', 1, 1),
        (5, 'e@x.example', 'e@x.example', 1, 1), (6, 'f@x.example', 'f@x.example', 1, 1);
    INSERT INTO campaign_versions (id, campaign_id, fingerprint, definition, created_at) VALUES
        (1, 'welcome', 'fp1', '{}', 1), (2, 'winback', 'fp2', '{}', 1);
    INSERT INTO campaigns (id, version_id, status, updated_at) VALUES
        ('welcome', 1, 'active', 1), ('winback', 2, 'active', 1);";

/// Enrolls, advances, reaches the goal, exits (unsubscribed, an exit step), completes,
/// re-enrolls, moves several at once (a removed step) and deletes: every way the
/// enrollments change.
const MIX: &[&str] = &[
    "INSERT INTO enrollments (id, campaign_id, contact_id, state, step_id, next_run_at, enrolled_at) VALUES
        (1, 'welcome', 1, 'active', 'intro', 1, 1), (2, 'welcome', 2, 'active', 'intro', 1, 1),
        (3, 'welcome', 3, 'active', 'intro', 1, 1), (4, 'welcome', 4, 'active', 'intro', 1, 1),
        (5, 'winback', 5, 'active', 'nudge', 1, 1)",
    "INSERT INTO enrollments (id, campaign_id, contact_id, state, step_id, next_run_at, enrolled_at)
        VALUES (6, 'welcome', 6, 'active', 'intro', 1, 259200005)",
    // Sends: queued then sent, a second email to the same enrollment, one sent at once.
    "INSERT INTO messages (id, enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, created_at, updated_at) VALUES
        (1, 1, 0, 1, 'welcome', 1, 'intro', 'queued', 1, 1), (2, 2, 0, 2, 'welcome', 1, 'intro', 'queued', 1, 1),
        (3, 6, 0, 6, 'welcome', 1, 'intro', 'sent', 1, 1), (4, 3, 0, 3, 'welcome', 1, 'intro', 'queued', 1, 1)",
    "UPDATE messages SET state = 'sent' WHERE id IN (1, 2)",
    "UPDATE messages SET state = 'deferred' WHERE id = 4",
    "INSERT INTO messages (id, enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, created_at, updated_at)
        VALUES (5, 1, 1, 1, 'welcome', 1, 'follow-up', 'sent', 2, 2)",
    "UPDATE messages SET state = 'sent' WHERE id = 5",
    // Opens twice, a click before any open, an event of another kind.
    "INSERT INTO events (id, contact_id, name, occurred_at, enrollment_id, step_id, created_at) VALUES
        (1, 1, 'email.opened', 2, 1, 'intro', 2), (2, 1, 'email.opened', 3, 1, 'intro', 3)",
    "INSERT INTO events (id, contact_id, name, occurred_at, enrollment_id, step_id, created_at)
        VALUES (3, 6, 'email.clicked', 3, 6, 'intro', 3)",
    "INSERT INTO events (id, contact_id, name, occurred_at, enrollment_id, step_id, created_at)
        VALUES (4, 6, 'email.opened', 4, 6, 'intro', 4)",
    "INSERT INTO events (id, contact_id, name, occurred_at, enrollment_id, step_id, created_at)
        VALUES (5, 2, 'email.unsubscribed', 4, 2, 'intro', 4)",
    "INSERT INTO events (id, contact_id, name, occurred_at, enrollment_id, step_id, created_at)
        VALUES (6, 1, 'email.clicked', 5, 1, 'follow-up', 5)",
    "UPDATE enrollments SET step_id = 'follow-up', seq = 1 WHERE id IN (1, 2, 3)",
    "UPDATE enrollments SET state = 'exited', exit_reason = 'goal', ended_at = 3, next_run_at = NULL WHERE id = 1",
    "UPDATE enrollments SET state = 'exited', exit_reason = 'unsubscribed', ended_at = 3, next_run_at = NULL WHERE id = 2",
    "UPDATE enrollments SET state = 'completed', step_id = NULL, ended_at = 4, next_run_at = NULL WHERE id = 3",
    "UPDATE enrollments SET state = 'exited', exit_reason = 'goal', ended_at = 4, next_run_at = NULL WHERE id = 5",
    // A no-op update and one that changes nothing counted.
    "UPDATE enrollments SET next_run_at = 9 WHERE id = 4",
    "UPDATE enrollments SET step_id = 'intro' WHERE id = 6",
    // Re-enrollment of the contact that reached the goal.
    "INSERT INTO enrollments (id, campaign_id, contact_id, state, step_id, next_run_at, enrolled_at)
        VALUES (7, 'welcome', 1, 'active', 'intro', 1, 864000000)",
    // A step removed by an edit: everyone waiting at it moves at once.
    "UPDATE enrollments SET step_id = 'follow-up' WHERE campaign_id = 'welcome' AND state = 'active' AND step_id = 'intro'",
    "UPDATE enrollments SET state = 'failed', exit_reason = 'render', ended_at = 6, next_run_at = NULL WHERE id = 6",
    // An open of an enrollment deleted afterwards: its marks go with it.
    "INSERT INTO events (id, contact_id, name, occurred_at, enrollment_id, step_id, created_at)
        VALUES (7, 4, 'email.opened', 6, 4, 'intro', 6)",
    "DELETE FROM enrollments WHERE id = 4",
];

async fn pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}

/// (campaign, state, exit reason, step) -> count, straight from the rows, the slow way.
async fn recount(url: &str) -> BTreeMap<(String, String, String, String), i64> {
    let pool = pool(url).await;
    let rows = sqlx::query(
        "SELECT campaign_id, state, COALESCE(exit_reason, ''), COALESCE(step_id, ''), COUNT(*)
         FROM enrollments GROUP BY campaign_id, state, COALESCE(exit_reason, ''), COALESCE(step_id, '')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| {
            (
                (
                    r.try_get(0).unwrap(),
                    r.try_get(1).unwrap(),
                    r.try_get(2).unwrap(),
                    r.try_get(3).unwrap(),
                ),
                r.try_get(4).unwrap(),
            )
        })
        .collect()
}

/// What the dashboard reads, as (totals, waiting per step, goals per step) of each campaign.
type Read = (
    BTreeMap<String, CampaignTotals>,
    BTreeMap<String, Vec<(String, i64)>>,
    BTreeMap<String, Vec<(String, i64)>>,
);

async fn dashboard(store: &Store) -> Read {
    let mut tx = store.begin().await.unwrap();
    let totals = tx.campaign_totals().await.unwrap();
    let mut waiting = BTreeMap::new();
    let mut goals = BTreeMap::new();
    for c in ["welcome", "winback"] {
        waiting.insert(c.to_string(), tx.waiting_at_steps(c).await.unwrap());
        goals.insert(c.to_string(), tx.goals_by_step(c).await.unwrap());
    }
    tx.commit().await.unwrap();
    (totals, waiting, goals)
}

/// The same three reads computed from a direct count.
fn expected(counts: &BTreeMap<(String, String, String, String), i64>) -> Read {
    let mut totals: BTreeMap<String, CampaignTotals> = BTreeMap::new();
    let mut waiting: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    let mut goals: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for c in ["welcome", "winback"] {
        waiting.insert(c.to_string(), Vec::new());
        goals.insert(c.to_string(), Vec::new());
    }
    for ((campaign, state, reason, step), &n) in counts {
        let t = totals
            .entry(campaign.clone())
            .or_insert_with(|| CampaignTotals {
                id: campaign.clone(),
                ..CampaignTotals::default()
            });
        t.enrolled += n;
        match (state.as_str(), reason.as_str()) {
            ("active", _) => {
                t.active += n;
                waiting.get_mut(campaign).unwrap().push((step.clone(), n));
            }
            ("completed", _) => t.completed += n,
            ("exited", "goal") => {
                t.goal += n;
                goals.get_mut(campaign).unwrap().push((step.clone(), n));
            }
            _ => t.exited += n,
        }
    }
    (totals, waiting, goals)
}

/// The funnel windows the tests look at: each campaign from the UTC days 0, 3, 10 and 11.
const WINDOWS: &[(&str, i64)] = &[
    ("welcome", 0),
    ("welcome", 3),
    ("welcome", 10),
    ("welcome", 11),
    ("winback", 0),
    ("winback", 3),
];

/// The funnels as the dashboard reads them (counters).
async fn funnels(store: &Store) -> Vec<Funnel> {
    let mut tx = store.begin().await.unwrap();
    let mut out = Vec::new();
    for (c, day) in WINDOWS {
        out.push(tx.funnel(c, day * 86_400_000).await.unwrap());
    }
    tx.commit().await.unwrap();
    out
}

/// The same funnels from the query the dashboard used before migration 0011: one probe of
/// the messages and events per enrollment of the window.
async fn old_funnels(url: &str) -> Vec<Funnel> {
    let pool = pool(url).await;
    let mut out = Vec::new();
    for (c, day) in WINDOWS {
        let row = sqlx::query(
            "SELECT COUNT(*),
                COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM messages m WHERE m.enrollment_id = en.id AND m.state = 'sent') THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM events ev WHERE ev.enrollment_id = en.id AND ev.name = 'email.opened') THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM events ev WHERE ev.enrollment_id = en.id AND ev.name = 'email.clicked') THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN en.exit_reason = 'goal' THEN 1 ELSE 0 END), 0)
             FROM enrollments en WHERE en.campaign_id = $1 AND en.enrolled_at >= $2",
        )
        .bind(*c)
        .bind(day * 86_400_000)
        .fetch_one(&pool)
        .await
        .unwrap();
        out.push(Funnel {
            enrolled: row.try_get(0).unwrap(),
            emailed: row.try_get(1).unwrap(),
            opened: row.try_get(2).unwrap(),
            clicked: row.try_get(3).unwrap(),
            goal: row.try_get(4).unwrap(),
        });
    }
    pool.close().await;
    out
}

/// Sent, opened and clicked per step of each campaign as the dashboard reads them (counters).
type Steps = BTreeMap<String, BTreeMap<String, StepTotals>>;

async fn steps(store: &Store) -> Steps {
    let mut tx = store.begin().await.unwrap();
    let mut out = BTreeMap::new();
    for c in ["welcome", "winback"] {
        out.insert(c.to_string(), tx.step_totals(c).await.unwrap());
    }
    tx.commit().await.unwrap();
    out
}

/// The same from `campaign_stats`, which counts the messages and events directly (steps
/// with nothing sent, opened or clicked left out, as the counters leave them out).
async fn counted_steps(store: &Store) -> Steps {
    let mut tx = store.begin().await.unwrap();
    let mut out = BTreeMap::new();
    for c in ["welcome", "winback"] {
        let stats = tx.campaign_stats(c).await.unwrap();
        let per: BTreeMap<String, StepTotals> = stats
            .steps
            .iter()
            .map(|s| {
                (
                    s.id.clone(),
                    StepTotals {
                        sent: s.sent,
                        opened: s.opened,
                        clicked: s.clicked,
                    },
                )
            })
            .filter(|(_, t)| *t != StepTotals::default())
            .collect();
        out.insert(c.to_string(), per);
    }
    tx.commit().await.unwrap();
    out
}

async fn run_mix(url: &str, fold_between: Option<&Store>) {
    let pool = pool(url).await;
    pool.execute(SEED).await.unwrap();
    for (i, sql) in MIX.iter().enumerate() {
        pool.execute(*sql).await.unwrap();
        if i % 3 == 0
            && let Some(store) = fold_between
        {
            store.fold_state_counts().await.unwrap();
        }
    }
    pool.close().await;
}

#[tokio::test]
async fn sqlite_counters_equal_a_direct_count_after_a_mix_of_changes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("d.db").display());
    let store = Store::open(&url).await.unwrap();

    run_mix(&url, None).await;

    let counts = recount(&url).await;
    assert_eq!(dashboard(&store).await, expected(&counts));
    // The mix really produced every kind of row.
    let (totals, waiting, goals) = dashboard(&store).await;
    let w = &totals["welcome"];
    assert_eq!(
        (w.enrolled, w.active, w.completed, w.goal, w.exited),
        (5, 1, 1, 1, 2)
    );
    assert_eq!(waiting["welcome"], vec![("follow-up".to_string(), 1)]);
    assert_eq!(goals["winback"], vec![("nudge".to_string(), 1)]);
    let f = funnels(&store).await;
    assert_eq!(f, old_funnels(&url).await);
    // Two opens and a click before the open count once each; the deferred email not at all.
    assert_eq!(
        f[0],
        Funnel {
            enrolled: 5,
            emailed: 3,
            opened: 2,
            clicked: 2,
            goal: 1
        }
    );
    let st = steps(&store).await;
    assert_eq!(st, counted_steps(&store).await);
    // Two opens of one email count once; the deferred email is not sent.
    assert_eq!(
        st["welcome"]["intro"],
        StepTotals {
            sent: 3,
            opened: 2,
            clicked: 1
        }
    );
    assert_eq!(
        st["welcome"]["follow-up"],
        StepTotals {
            sent: 1,
            opened: 0,
            clicked: 1
        }
    );
    store.close().await;
}

#[tokio::test]
async fn postgres_counters_equal_a_direct_count_before_and_after_folding() {
    let db = nurture_testkit::Postgres::fresh_database();
    let store = Store::open(db.url()).await.unwrap();

    run_mix(db.url(), Some(&store)).await;

    let counts = recount(db.url()).await;
    let old = old_funnels(db.url()).await;
    let counted = counted_steps(&store).await;
    assert_eq!(dashboard(&store).await, expected(&counts), "unfolded");
    assert_eq!(funnels(&store).await, old, "unfolded");
    assert_eq!(steps(&store).await, counted, "unfolded");
    store.fold_state_counts().await.unwrap();
    assert_eq!(dashboard(&store).await, expected(&counts), "folded");
    assert_eq!(funnels(&store).await, old, "folded");
    assert_eq!(steps(&store).await, counted, "folded");
    assert_eq!(old[0].opened, 2);
    assert_eq!(counted["welcome"]["intro"].opened, 2);
    let p = pool(db.url()).await;
    let left: i64 = sqlx::query("SELECT COUNT(*) FROM enrollment_deltas")
        .fetch_one(&p)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(left, 0, "the fold leaves no deltas");
    let left: i64 = sqlx::query("SELECT COUNT(*) FROM step_deltas")
        .fetch_one(&p)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(left, 0, "the fold leaves no step deltas");
    p.close().await;
    store.close().await;
}

#[tokio::test]
async fn postgres_counters_stay_exact_with_two_writers_at_once() {
    let db = nurture_testkit::Postgres::fresh_database();
    let store = Store::open(db.url()).await.unwrap();
    let p = pool(db.url()).await;
    p.execute(SEED).await.unwrap();

    // Two transactions open at once, each enrolling and advancing its own contacts, committed
    // in the opposite order to the one they began in.
    let mut a = p.begin().await.unwrap();
    let mut b = p.begin().await.unwrap();
    sqlx::query("INSERT INTO enrollments (id, campaign_id, contact_id, state, step_id, next_run_at, enrolled_at) VALUES (1, 'welcome', 1, 'active', 'intro', 1, 1), (2, 'welcome', 2, 'active', 'intro', 1, 1)")
        .execute(&mut *a).await.unwrap();
    sqlx::query("INSERT INTO enrollments (id, campaign_id, contact_id, state, step_id, next_run_at, enrolled_at) VALUES (3, 'welcome', 3, 'active', 'intro', 1, 1), (4, 'winback', 4, 'active', 'nudge', 1, 1)")
        .execute(&mut *b).await.unwrap();
    sqlx::query("UPDATE enrollments SET state = 'exited', exit_reason = 'goal', ended_at = 2, next_run_at = NULL WHERE id = 1")
        .execute(&mut *a)
        .await
        .unwrap();
    sqlx::query("UPDATE enrollments SET step_id = 'follow-up' WHERE id IN (3, 4)")
        .execute(&mut *b)
        .await
        .unwrap();
    b.commit().await.unwrap();
    store.fold_state_counts().await.unwrap();
    a.commit().await.unwrap();

    // The same open recorded by two transactions at once: the second waits for the first's
    // mark and then adds none, so the enrollment is counted as opened once.
    let open = "INSERT INTO events (contact_id, name, occurred_at, enrollment_id, step_id, created_at) VALUES (3, 'email.opened', 2, 3, 'intro', 2)";
    let mut a = p.begin().await.unwrap();
    sqlx::query(open).execute(&mut *a).await.unwrap();
    let second = {
        let p = p.clone();
        tokio::spawn(async move {
            let mut b = p.begin().await.unwrap();
            sqlx::query(open).execute(&mut *b).await.unwrap();
            b.commit().await.unwrap();
        })
    };
    a.commit().await.unwrap();
    second.await.unwrap();
    let old = old_funnels(db.url()).await;
    assert_eq!(funnels(&store).await, old);
    assert_eq!(old[0].opened, 1);
    let counted = counted_steps(&store).await;
    assert_eq!(steps(&store).await, counted);
    assert_eq!(counted["welcome"]["intro"].opened, 1);
    p.close().await;

    let counts = recount(db.url()).await;
    assert_eq!(dashboard(&store).await, expected(&counts), "unfolded");
    store.fold_state_counts().await.unwrap();
    assert_eq!(dashboard(&store).await, expected(&counts), "folded");
    assert_eq!(steps(&store).await, counted, "folded");
    assert_eq!(dashboard(&store).await.0["welcome"].enrolled, 3);
    store.close().await;
}

/// Migrates a database up to 0010 with the migrations of `backend`, then runs `SEED` and
/// `MIX` on it, so migrations 0011 and 0012 find a populated database.
async fn populated_before_0011(backend: &str, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../migrations")
        .join(backend);
    for f in std::fs::read_dir(&source).unwrap() {
        let name = f.unwrap().file_name().into_string().unwrap();
        if name.as_str() < "0011" {
            std::fs::copy(source.join(&name), migrations.join(&name)).unwrap();
        }
    }
    let p = pool(url).await;
    sqlx::migrate::Migrator::new(migrations.as_path())
        .await
        .unwrap()
        .run(&p)
        .await
        .unwrap();
    p.close().await;
    run_mix(url, None).await;
}

#[tokio::test]
async fn sqlite_backfill_gives_the_numbers_of_a_direct_count() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    populated_before_0011("sqlite", &format!("{url}?mode=rwc")).await;
    let counts = recount(&url).await;

    let old = old_funnels(&url).await;

    let store = Store::open(&url).await.unwrap();

    assert_eq!(dashboard(&store).await, expected(&counts));
    assert_eq!(funnels(&store).await, old);
    let st = steps(&store).await;
    assert_eq!(st, counted_steps(&store).await);
    assert_eq!(st["welcome"]["intro"].opened, 2);
    store.close().await;
}

#[tokio::test]
async fn postgres_backfill_gives_the_numbers_of_a_direct_count() {
    let db = nurture_testkit::Postgres::fresh_database();
    populated_before_0011("postgres", db.url()).await;
    let counts = recount(db.url()).await;

    let old = old_funnels(db.url()).await;

    let store = Store::open(db.url()).await.unwrap();

    assert_eq!(dashboard(&store).await, expected(&counts));
    assert_eq!(funnels(&store).await, old);
    let st = steps(&store).await;
    assert_eq!(st, counted_steps(&store).await);
    assert_eq!(st["welcome"]["intro"].opened, 2);
    store.close().await;
}
