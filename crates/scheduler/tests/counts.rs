//! The state counts behind `/metrics` (kept by triggers, migration 0010) agree with the
//! messages and enrollments themselves after a busy mix of work by several engines at once.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use nurture_campaign::{SourceFile, parse_campaign};
use nurture_scheduler::{Courier, Failure, Job};
use sqlx::Row;

#[macro_use]
mod support;

use support::{Backend, World, capture};

const DRIP: &str = r#"
from: ana@leadcraft.example
trigger: { event: lead.captured }
steps:
  - id: welcome
    send: welcome
    subject: Welcome
  - id: follow-up
    after: 1d
    send: follow-up
    subject: Later
"#;

/// Sends most mail, defers every fifth, bounces every seventh, leaves every eleventh
/// `unknown`: every message state the queue has.
struct Mixed;

impl Courier for Mixed {
    type Prepared = i64;

    fn prepare(&self, job: &Job<'_>) -> Result<(String, i64), Failure> {
        Ok((format!("<{}@test>", job.message.id), job.contact.id))
    }

    async fn send(&self, contact: i64) -> Result<String, Failure> {
        tokio::task::yield_now().await;
        match contact {
            c if c % 11 == 0 => Err(Failure::Unknown("no reply".into())),
            c if c % 7 == 0 => Err(Failure::Permanent("550 no such user".into())),
            c if c % 5 == 0 => Err(Failure::Transient("451 later".into())),
            _ => Ok("250 ok".into()),
        }
    }
}

/// (state, count) straight from the rows, the slow way.
async fn recount(url: &str, table: &str) -> Vec<(String, i64)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let sql = match table {
        "messages" => "SELECT state, COUNT(*) FROM messages GROUP BY state ORDER BY state",
        _ => "SELECT state, COUNT(*) FROM enrollments GROUP BY state ORDER BY state",
    };
    let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
    let counts = rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect();
    pool.close().await;
    counts
}

/// Counts by state as the stored names, to compare with [`recount`].
fn named<T: std::fmt::Display>(counts: Vec<(T, i64)>) -> Vec<(String, i64)> {
    counts
        .into_iter()
        .map(|(s, n)| (s.to_string(), n))
        .collect()
}

async fn counts_follow_every_change(backend: Backend) {
    let t0: DateTime<Utc> = "2026-11-02T10:00:00Z".parse().unwrap();
    let w = World::new(backend).await;
    let file = parse_campaign(SourceFile::new("drip.yaml", DRIP), "drip").unwrap();
    w.engine.sync(&[file], true, t0).await.unwrap();
    for i in 0..120 {
        capture(
            &w.engine,
            &format!("lead{i}@x.example"),
            "lead.captured",
            t0,
        )
        .await;
    }
    let courier = Arc::new(Mixed);
    let (a, b) = (w.another().await, w.another().await);
    // Three engines at once, over two days: enrollments advance, mail is sent, deferred,
    // retried, bounced (which exits enrollments) and left unknown.
    for t in [
        t0,
        t0 + Duration::minutes(5),
        t0 + Duration::days(1) + Duration::hours(1),
    ] {
        let (x, y, z) = tokio::join!(
            w.engine.run_and_deliver(&courier, t, 4),
            a.run_and_deliver(&courier, t, 4),
            b.run_and_deliver(&courier, t, 4),
        );
        x.unwrap();
        y.unwrap();
        z.unwrap();
    }

    let mut tx = w.engine.store().begin_read().await.unwrap();
    let messages = named(tx.count_messages_by_state().await.unwrap());
    let enrollments = named(tx.count_enrollments_by_state().await.unwrap());
    tx.rollback().await.unwrap();
    let expected_messages = recount(&w.url, "messages").await;
    assert_eq!(messages, expected_messages);
    assert_eq!(enrollments, recount(&w.url, "enrollments").await);
    // The workload did reach the states it means to (the comparison is not of empty lists).
    for state in ["sent", "deferred", "bounced", "unknown"] {
        assert!(
            expected_messages.iter().any(|(s, n)| s == state && *n > 0),
            "no {state} message in {expected_messages:?}"
        );
    }

    // Folding (the engine does it every round) changes no count.
    w.engine.store().fold_state_counts().await.unwrap();
    let mut tx = w.engine.store().begin_read().await.unwrap();
    assert_eq!(
        named(tx.count_messages_by_state().await.unwrap()),
        expected_messages
    );
    tx.rollback().await.unwrap();
}

both!(counts_follow_every_change);
