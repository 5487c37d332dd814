//! Frequency caps across campaigns (SPEC §13) on SQLite and PostgreSQL: the email that would
//! exceed the cap is postponed to the first moment it fits (never dropped), exempt emails
//! pass, the send window still applies, and two engines racing for the same contacts never
//! both send past the cap. Times are fixed; nothing sleeps.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use nurture_campaign::{CampaignFile, SourceFile, parse_campaign};
use nurture_scheduler::{Courier, Engine, EngineConfig, Failure, FrequencyCap, Job};
use nurture_store::Store;

#[macro_use]
mod support;

use support::{Backend, World};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn campaign(id: &str, extra: &str) -> CampaignFile {
    let text = format!(
        "id: {id}\nfrom: ana@leadcraft.example\ntrigger: {{ event: lead.captured }}\n{extra}steps:\n  - id: hello\n    send: hello\n    subject: Hello from {id}\n"
    );
    parse_campaign(SourceFile::new(format!("{id}.yaml"), text.as_str()), id).unwrap()
}

fn caps(list: &[(u32, &str)]) -> EngineConfig {
    EngineConfig {
        frequency: list
            .iter()
            .map(|(max, per)| FrequencyCap {
                max: *max,
                per: per.parse().unwrap(),
            })
            .collect(),
        ..EngineConfig::default()
    }
}

/// Accepts everything; records (contact, campaign) of each send.
#[derive(Default)]
struct Accepting(Mutex<Vec<(i64, String)>>);

impl Courier for Accepting {
    type Prepared = (i64, String);

    fn prepare(&self, job: &Job<'_>) -> Result<(String, Self::Prepared), Failure> {
        Ok((
            format!("<{}@test>", job.message.id),
            (job.contact.id, job.campaign.id.to_string()),
        ))
    }

    async fn send(&self, p: Self::Prepared) -> Result<String, Failure> {
        self.0.lock().unwrap().push(p);
        Ok("250 ok".into())
    }
}

/// (campaign, state, next_attempt_at) of a contact's messages, by campaign.
async fn messages(engine: &Engine, contact: i64) -> Vec<(String, String, Option<i64>)> {
    let mut tx = engine.store().begin().await.unwrap();
    let mut out: Vec<_> = tx
        .contact_messages(contact)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.campaign_id, m.state.to_string(), m.next_attempt_at))
        .collect();
    tx.commit().await.unwrap();
    out.sort();
    out
}

async fn engine(w: &World, config: EngineConfig) -> Engine {
    // Time stands still in each round (as `tick --now` does), so times are exact.
    Engine::new(Store::open(&w.url).await.unwrap(), config).with_time_standing_still()
}

async fn second_campaign_waits_for_the_next_day(backend: Backend) {
    // Arrange: two campaigns that both greet a new lead, and a cap of 1 email a day.
    let w = World::new(backend).await;
    let e = engine(&w, caps(&[(1, "1d")])).await;
    let t0 = at("2026-03-02T09:00:00Z");
    e.sync(&[campaign("alpha", ""), campaign("beta", "")], true, t0)
        .await
        .unwrap();
    let lead = support::capture(&e, "ana@x.example", "lead.captured", t0).await;
    let courier = Arc::new(Accepting::default());

    // Act: the day the lead arrives.
    e.run_once(t0).await.unwrap();
    let first = e.deliver(&courier, t0, 2).await.unwrap();

    // Assert: one email went out, the other waits exactly a day.
    assert_eq!(first.sent, 1);
    let next_day = (t0 + Duration::days(1)).timestamp_millis();
    let m = messages(&e, lead).await;
    let states: Vec<&str> = m.iter().map(|(_, s, _)| s.as_str()).collect();
    assert!(
        states.contains(&"sent") && states.contains(&"queued"),
        "{m:?}"
    );
    let (waiting, _, due) = m.iter().find(|(_, s, _)| s == "queued").unwrap();
    assert_eq!(*due, Some(next_day));

    // The postponement is told in the decision history, for explain and simulate.
    let mut tx = e.store().begin().await.unwrap();
    let enrollments = tx.contact_enrollments(lead).await.unwrap();
    let mut decisions = Vec::new();
    for en in &enrollments {
        decisions.extend(tx.decisions(en.id).await.unwrap());
    }
    tx.commit().await.unwrap();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(decisions[0].kind, "postponed");
    assert!(
        decisions[0].detail.starts_with("(frequency cap)")
            && decisions[0].detail.contains("1 per 1d")
            && decisions[0].detail.contains("2026-03-03T09:00:00Z"),
        "{}",
        decisions[0].detail
    );

    // Not a minute early.
    let almost = e
        .deliver(&courier, t0 + Duration::days(1) - Duration::minutes(1), 2)
        .await
        .unwrap();
    assert_eq!(almost.sent, 0);
    // The next day it goes out.
    let later = e
        .deliver(&courier, t0 + Duration::days(1), 2)
        .await
        .unwrap();
    assert_eq!(later.sent, 1);
    let sent: Vec<String> = courier
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(_, c)| c.clone())
        .collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(&sent[1], waiting);

    // Counted for stats.
    let mut tx = e.store().begin().await.unwrap();
    let mut postponed = 0;
    for c in ["alpha", "beta"] {
        postponed += tx.cap_postponements(c).await.unwrap().values().sum::<i64>();
    }
    tx.commit().await.unwrap();
    assert_eq!(postponed, 1);
}

async fn exempt_emails_neither_wait_nor_count(backend: Backend) {
    let w = World::new(backend).await;
    let e = engine(&w, caps(&[(1, "1d")])).await;
    let t0 = at("2026-03-02T09:00:00Z");
    e.sync(
        &[
            campaign("alpha", ""),
            campaign("receipt", "frequency: exempt\n"),
        ],
        true,
        t0,
    )
    .await
    .unwrap();
    let lead = support::capture(&e, "ana@x.example", "lead.captured", t0).await;
    let courier = Arc::new(Accepting::default());
    e.run_once(t0).await.unwrap();
    let out = e.deliver(&courier, t0, 2).await.unwrap();
    assert_eq!(out.sent, 2);
    let m = messages(&e, lead).await;
    assert!(m.iter().all(|(_, s, _)| s == "sent"), "{m:?}");
}

async fn send_window_applies_after_the_cap(backend: Backend) {
    // 1 email per 6 hours; alpha's went out at 10:00. The windowed campaign only sends
    // 09:00-12:00 UTC: at 11:00 the cap would let it go at 16:00, outside the window, so it
    // waits for 09:00 the next day.
    let w = World::new(backend).await;
    let e = engine(&w, caps(&[(1, "6h")])).await;
    let t0 = at("2026-03-02T10:00:00Z");
    let alpha = campaign("alpha", "");
    e.sync(std::slice::from_ref(&alpha), true, t0)
        .await
        .unwrap();
    let lead = support::capture(&e, "ana@x.example", "lead.captured", t0).await;
    let courier = Arc::new(Accepting::default());
    e.run_once(t0).await.unwrap();
    assert_eq!(e.deliver(&courier, t0, 1).await.unwrap().sent, 1);

    let t1 = at("2026-03-02T11:00:00Z");
    let windowed = campaign(
        "windowed",
        "send_window: { hours: \"09:00-12:00\", timezone: UTC }\n",
    );
    e.sync(&[alpha, windowed], true, t1).await.unwrap();
    e.enroll("windowed", "ana@x.example", t1).await.unwrap();
    e.run_once(t1).await.unwrap();
    assert_eq!(e.deliver(&courier, t1, 1).await.unwrap().sent, 0);
    let m = messages(&e, lead).await;
    assert_eq!(
        m[1],
        (
            "windowed".to_string(),
            "queued".to_string(),
            Some(at("2026-03-03T09:00:00Z").timestamp_millis())
        ),
        "{m:?}"
    );
}

async fn two_engines_racing_never_send_past_the_cap(backend: Backend) {
    // Arrange: 12 leads, each entering three campaigns at once; two engines (two daemons)
    // with small batches deliver at the same time.
    let w = World::new(backend).await;
    let config = EngineConfig {
        batch: 3,
        ..caps(&[(1, "1d")])
    };
    let a = engine(&w, config.clone()).await;
    let b = engine(&w, config).await;
    let t0 = at("2026-03-02T09:00:00Z");
    a.sync(
        &[campaign("c1", ""), campaign("c2", ""), campaign("c3", "")],
        true,
        t0,
    )
    .await
    .unwrap();
    let mut leads = Vec::new();
    for i in 0..12 {
        leads.push(support::capture(&a, &format!("lead{i}@x.example"), "lead.captured", t0).await);
    }
    a.run_once(t0).await.unwrap();
    let courier = Arc::new(Accepting::default());

    // Act
    let (da, db) = tokio::join!(a.deliver(&courier, t0, 2), b.deliver(&courier, t0, 2));

    // Assert: exactly one email per lead today, the rest waiting for tomorrow.
    assert_eq!(da.unwrap().sent + db.unwrap().sent, 12);
    let sent = courier.0.lock().unwrap().clone();
    for lead in &leads {
        assert_eq!(
            sent.iter().filter(|(c, _)| c == lead).count(),
            1,
            "lead {lead}: {sent:?}"
        );
        let m = messages(&a, *lead).await;
        assert_eq!(
            m.iter().filter(|(_, s, _)| s == "queued").count(),
            2,
            "{m:?}"
        );
    }
}

both!(
    second_campaign_waits_for_the_next_day,
    exempt_emails_neither_wait_nor_count,
    send_window_applies_after_the_cap,
    two_engines_racing_never_send_past_the_cap,
);
