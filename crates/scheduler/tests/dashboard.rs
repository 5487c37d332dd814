//! The dashboard's store queries (`nurture_store` module `dashboard`) on both backends, over
//! enrollments the engine made: totals per campaign, goals per step, the funnel of a window,
//! and the contact search with its keyset pages.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, Utc};
use nurture_campaign::{SourceFile, parse_campaign};
use nurture_store::{CampaignTotals, Funnel};

mod support;

use support::{Backend, World};

const DRIP: &str = r#"
from: ana@leadcraft.example
trigger: { event: lead.captured }
exit_when: { event: purchase.completed }
steps:
  - id: first
    tag: [one]
  - id: second
    after: 2d
    tag: [two]
"#;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn dashboard_counts_match_what_the_engine_did(backend: Backend) {
    // Arrange: five leads on day 0, one more on day 10; lead 2 buys, so at day 3 it reaches
    // the goal while waiting for `second`, and the other early ones complete.
    let t0 = at("2026-11-02T10:00:00Z");
    let w = World::new(backend).await;
    let file = parse_campaign(SourceFile::new("drip.yaml", DRIP), "drip").unwrap();
    w.engine.sync(&[file], true, t0).await.unwrap();
    for i in 0..5 {
        support::capture(
            &w.engine,
            &format!("Lead{i}@x.example"),
            "lead.captured",
            t0,
        )
        .await;
    }
    w.engine.run_once(t0).await.unwrap();
    support::capture(&w.engine, "lead2@x.example", "purchase.completed", t0).await;
    w.engine.run_once(t0 + Duration::days(3)).await.unwrap();
    let t10 = t0 + Duration::days(10);
    support::capture(&w.engine, "late@x.example", "lead.captured", t10).await;
    w.engine.run_once(t10).await.unwrap();

    // Act and assert.
    let mut tx = w.engine.store().begin_read().await.unwrap();
    let totals = tx.campaign_totals().await.unwrap();
    assert_eq!(
        totals.get("drip"),
        Some(&CampaignTotals {
            id: "drip".into(),
            enrolled: 6,
            active: 1,
            completed: 4,
            goal: 1,
            exited: 0,
        })
    );
    assert_eq!(
        tx.goals_by_step("drip").await.unwrap(),
        vec![("second".to_string(), 1)]
    );
    assert_eq!(
        tx.waiting_by_step("drip").await.unwrap(),
        vec![("second".to_string(), 1)]
    );
    // The window: everyone since day 0; only the late lead since day 5.
    let all = tx.funnel("drip", t0.timestamp_millis()).await.unwrap();
    assert_eq!((all.enrolled, all.goal, all.emailed), (6, 1, 0));
    let late = tx
        .funnel("drip", (t0 + Duration::days(5)).timestamp_millis())
        .await
        .unwrap();
    assert_eq!(
        late,
        Funnel {
            enrolled: 1,
            ..Funnel::default()
        }
    );

    // Search: by prefix in any case, in address order, two at a time.
    let page1 = tx.search_contacts("LEAD", None, 2).await.unwrap();
    let emails =
        |p: &[nurture_store::ContactHit]| p.iter().map(|h| h.email.clone()).collect::<Vec<_>>();
    assert_eq!(emails(&page1), ["Lead0@x.example", "Lead1@x.example"]);
    let page2 = tx
        .search_contacts("lead", Some(&page1[1].key), 2)
        .await
        .unwrap();
    assert_eq!(emails(&page2), ["Lead2@x.example", "Lead3@x.example"]);
    let page3 = tx
        .search_contacts("lead", Some(&page2[1].key), 2)
        .await
        .unwrap();
    assert_eq!(emails(&page3), ["Lead4@x.example"]);
    assert!(
        tx.search_contacts("nobody", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        emails(
            &tx.search_contacts("late@x.example", None, 10)
                .await
                .unwrap()
        ),
        ["late@x.example"]
    );
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_counts_match_what_the_engine_did_sqlite() {
    dashboard_counts_match_what_the_engine_did(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_counts_match_what_the_engine_did_postgres() {
    dashboard_counts_match_what_the_engine_did(Backend::Postgres).await;
}
