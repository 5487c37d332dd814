//! Several writers changing one contact at once (the HTTP API, imports, the engine's `tag`
//! and `set` steps in another daemon) lose none of each other's changes.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, Utc};
use nurture_campaign::{SourceFile, parse_campaign};
use nurture_store::Upsert;
use serde_json::{Map, json};

mod support;

use support::{Backend, World};

const TAGGING: &str = r#"
from: ana@leadcraft.example
trigger: { event: lead.captured }
reentry: after_exit
steps:
  - id: mark
    tag: [nurtured]
  - id: stage
    set: { stage: mql }
"#;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn concurrent_writers_keep_every_change(backend: Backend) {
    let t0 = at("2026-11-02T10:00:00Z");
    let w = World::new(backend).await;
    let file = parse_campaign(SourceFile::new("tagging.yaml", TAGGING), "tagging").unwrap();
    w.engine.sync(&[file], true, t0).await.unwrap();
    let leads = 20;
    let writers = 8;
    let rounds = 5;
    for round in 0..rounds {
        let t = t0 + Duration::minutes(round);
        // Each lead gets a new event (the engine will tag it)...
        for i in 0..leads {
            support::capture(&w.engine, &format!("lead{i}@x.example"), "lead.captured", t).await;
        }
        // ...while writers on their own connections set attributes on every lead, one
        // attribute per writer and round, and the engine runs in another "process".
        let mut tasks = Vec::new();
        for writer in 0..writers {
            let store = nurture_store::Store::open(&w.url).await.unwrap();
            tasks.push(tokio::spawn(async move {
                for i in 0..leads {
                    let mut attributes = Map::new();
                    attributes.insert(format!("w{writer}_r{round}"), json!(i));
                    let mut tx = store.begin().await.unwrap();
                    tx.upsert_contact(
                        &Upsert {
                            email: format!("LEAD{i}@x.example"),
                            attributes,
                            tags: vec![format!("w{writer}")],
                            ..Default::default()
                        },
                        t.timestamp_millis(),
                    )
                    .await
                    .unwrap();
                    tx.commit().await.unwrap();
                }
            }));
        }
        let engine = w.another().await;
        let run = tokio::spawn(async move { engine.run_once(t).await.unwrap() });
        for task in tasks {
            task.await.unwrap();
        }
        run.await.unwrap();
        // The next round's events re-enter the campaign (its enrollments completed).
        w.engine.run_once(t).await.unwrap();
    }
    let mut tx = w.engine.store().begin().await.unwrap();
    for i in 0..leads {
        let c = tx
            .contact_by_email(&format!("lead{i}@x.example"))
            .await
            .unwrap()
            .unwrap();
        for round in 0..rounds {
            for writer in 0..writers {
                let key = format!("w{writer}_r{round}");
                assert_eq!(
                    c.attributes.get(&key),
                    Some(&json!(i)),
                    "lead{i} lost {key}: {:?}",
                    c.attributes
                );
            }
        }
        assert_eq!(c.attributes.get("stage"), Some(&json!("mql")), "lead{i}");
        for tag in (0..writers)
            .map(|w| format!("w{w}"))
            .chain(["nurtured".to_string()])
        {
            assert!(
                c.tags.contains(&tag),
                "lead{i} lost tag {tag}: {:?}",
                c.tags
            );
        }
    }
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_keep_every_change_sqlite() {
    concurrent_writers_keep_every_change(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_keep_every_change_postgres() {
    concurrent_writers_keep_every_change(Backend::Postgres).await;
}
