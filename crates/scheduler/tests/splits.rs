//! A/B splits and variants (SPEC §13) on SQLite and PostgreSQL: assignment follows the
//! stable hash of campaign, address and step; the variant is recorded and sent; a split's
//! arm routes the contact; with `auto_winner` later contacts get only the called winner,
//! and none is called before the minimum sample.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use nurture_campaign::{CampaignFile, SourceFile, parse_campaign};
use nurture_scheduler::split::assign;
use nurture_scheduler::{Courier, Engine, Failure, Job};
use nurture_store::NewEvent;

#[macro_use]
mod support;

use support::{Backend, World};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn load(id: &str, text: &str) -> CampaignFile {
    parse_campaign(SourceFile::new(format!("{id}.yaml"), text), id).unwrap()
}

const VARIANTS: &str = r#"
id: subjects
from: ana@leadcraft.example
trigger: { event: lead.captured }
steps:
  - id: hello
    send: hello
    subject: Hello
    variants:
      - { id: plain }
      - { id: bold, weight: 3, subject: "HELLO!", send: hello-bold }
"#;

const SPLIT: &str = r#"
id: paths
from: ana@leadcraft.example
trigger: { event: lead.captured }
exit_when: { event: purchase.completed }
steps:
  - id: fork
    split:
      - { id: short, goto: short-path }
      - { id: long, goto: long-path }
    auto_winner: true
    min_sample: 5
  - id: short-path
    send: short
    subject: Short
  - id: short-end
    exit: true
  - id: long-path
    send: long
    subject: Long
"#;

/// Accepts everything; records (email, step, subject, template) of each send.
#[derive(Default)]
struct Accepting(Mutex<Vec<(String, String, String, String)>>);

impl Courier for Accepting {
    type Prepared = (String, String, String, String);

    fn prepare(&self, job: &Job<'_>) -> Result<(String, Self::Prepared), Failure> {
        Ok((
            format!("<{}@test>", job.message.id),
            (
                job.contact.email.clone(),
                job.step.id.to_string(),
                job.send.subject.clone(),
                job.send.template.to_string(),
            ),
        ))
    }

    async fn send(&self, p: Self::Prepared) -> Result<String, Failure> {
        self.0.lock().unwrap().push(p);
        Ok("250 ok".into())
    }
}

async fn variants_are_assigned_by_the_stable_hash_and_sent(backend: Backend) {
    // Arrange
    let w = World::new(backend).await;
    let e = &w.engine;
    let t0 = at("2026-03-02T09:00:00Z");
    e.sync(&[load("subjects", VARIANTS)], true, t0)
        .await
        .unwrap();
    let mut leads = Vec::new();
    for i in 0..40 {
        let email = format!("lead{i}@x.example");
        leads.push((
            support::capture(e, &email, "lead.captured", t0).await,
            email,
        ));
    }
    let courier = Arc::new(Accepting::default());

    // Act
    e.run_once(t0).await.unwrap();
    e.deliver(&courier, t0, 2).await.unwrap();

    // Assert: each message carries the variant the hash picks, and was sent as that variant.
    let sent = courier.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 40);
    let mut bold = 0;
    for (id, email) in &leads {
        let want = assign("subjects", email, "hello", &[("plain", 1), ("bold", 3)]).unwrap();
        let mut tx = e.store().begin().await.unwrap();
        let m = tx.contact_messages(*id).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(m[0].variant.as_deref(), Some(want));
        let (_, _, subject, template) = sent.iter().find(|s| &s.0 == email).unwrap();
        match want {
            "bold" => {
                bold += 1;
                assert_eq!(
                    (subject.as_str(), template.as_str()),
                    ("HELLO!", "hello-bold")
                );
            }
            _ => assert_eq!((subject.as_str(), template.as_str()), ("Hello", "hello")),
        }
    }
    // Both variants are in use (the weights are 1:3).
    assert!(bold > 0 && bold < 40, "{bold} of 40 bold");
    let mut tx = e.store().begin().await.unwrap();
    let counts = tx.email_variant_counts("subjects", "hello").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(counts.iter().map(|c| c.sent).sum::<i64>(), 40);
    assert_eq!(counts.iter().find(|c| c.id == "bold").unwrap().sent, bold);
}

/// Records a click on the email of `step` of the contact's enrollment.
async fn click(e: &Engine, contact: i64, step: &str, t: DateTime<Utc>) {
    let mut tx = e.store().begin().await.unwrap();
    let en = tx.contact_enrollments(contact).await.unwrap();
    tx.insert_event(
        &NewEvent {
            contact_id: contact,
            name: "email.clicked".into(),
            occurred_at: t.timestamp_millis(),
            enrollment_id: Some(en[0].id),
            step_id: Some(step.into()),
            processed: true,
            ..NewEvent::default()
        },
        t.timestamp_millis(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn split_routes_by_arm_and_auto_winner_takes_over(backend: Backend) {
    // Arrange: 30 leads split between two paths.
    let w = World::new(backend).await;
    let e = &w.engine;
    let t0 = at("2026-03-02T09:00:00Z");
    e.sync(&[load("paths", SPLIT)], true, t0).await.unwrap();
    let mut leads = Vec::new();
    for i in 0..30 {
        let email = format!("lead{i}@x.example");
        leads.push((
            support::capture(e, &email, "lead.captured", t0).await,
            email,
        ));
    }
    let courier = Arc::new(Accepting::default());
    e.run_once(t0).await.unwrap();
    e.deliver(&courier, t0, 2).await.unwrap();

    // Each lead got the email of its arm's step.
    let sent = courier.0.lock().unwrap().clone();
    let arms = [("short", 1), ("long", 1)];
    let mut short = Vec::new();
    for (id, email) in &leads {
        let arm = assign("paths", email, "fork", &arms).unwrap();
        let (_, step, ..) = sent.iter().find(|s| &s.0 == email).unwrap();
        assert_eq!(step, &format!("{arm}-path"));
        if arm == "short" {
            short.push(*id);
        }
    }
    assert!(
        short.len() >= 5 && short.len() <= 25,
        "{} short",
        short.len()
    );
    // The split is recorded with its arm, for explain and stats.
    let mut tx = e.store().begin().await.unwrap();
    let en = tx.contact_enrollments(leads[0].0).await.unwrap();
    let runs = tx.step_runs(en[0].id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(runs[0].outcome, "split");
    assert!(runs[0].reason.as_deref().unwrap().starts_with("arm `"));

    // Every short-path lead clicks, no long-path lead does: short wins at 95%.
    for id in &short {
        click(e, *id, "short-path", t0).await;
    }
    let mut tx = e.store().begin().await.unwrap();
    let counts = tx.split_arm_counts("paths", "fork").await.unwrap();
    tx.commit().await.unwrap();
    let short_counts = counts.iter().find(|c| c.id == "short").unwrap();
    assert_eq!(
        (short_counts.sent, short_counts.clicked),
        (short.len() as i64, short.len() as i64)
    );

    // Act: new leads arrive after the winner is called.
    let t1 = at("2026-03-03T09:00:00Z");
    let mut late = Vec::new();
    for i in 0..10 {
        let email = format!("late{i}@x.example");
        support::capture(e, &email, "lead.captured", t1).await;
        late.push(email);
    }
    e.run_once(t1).await.unwrap();
    e.deliver(&courier, t1, 2).await.unwrap();

    // Assert: all of them got the winner.
    let sent = courier.0.lock().unwrap().clone();
    for email in &late {
        let (_, step, ..) = sent.iter().find(|s| &s.0 == email).unwrap();
        assert_eq!(step, "short-path", "{email}");
    }
}

async fn no_winner_takes_over_below_the_minimum_sample(backend: Backend) {
    // 4 leads (under min_sample 5 per arm), all short-path leads click: still split by hash.
    let w = World::new(backend).await;
    let e = &w.engine;
    let t0 = at("2026-03-02T09:00:00Z");
    e.sync(&[load("paths", SPLIT)], true, t0).await.unwrap();
    let courier = Arc::new(Accepting::default());
    for i in 0..4 {
        let email = format!("lead{i}@x.example");
        let id = support::capture(e, &email, "lead.captured", t0).await;
        e.run_once(t0).await.unwrap();
        if assign("paths", &email, "fork", &[("short", 1), ("long", 1)]) == Some("short") {
            click(e, id, "short-path", t0).await;
        }
    }
    e.deliver(&courier, t0, 2).await.unwrap();
    let t1 = at("2026-03-03T09:00:00Z");
    let mut late = Vec::new();
    for i in 0..20 {
        let email = format!("late{i}@x.example");
        support::capture(e, &email, "lead.captured", t1).await;
        late.push(email);
    }
    e.run_once(t1).await.unwrap();
    e.deliver(&courier, t1, 2).await.unwrap();
    let sent = courier.0.lock().unwrap().clone();
    for email in &late {
        let arm = assign("paths", email, "fork", &[("short", 1), ("long", 1)]).unwrap();
        let (_, step, ..) = sent.iter().find(|s| &s.0 == email).unwrap();
        assert_eq!(step, &format!("{arm}-path"));
    }
}

both!(
    variants_are_assigned_by_the_stable_hash_and_sent,
    split_routes_by_arm_and_auto_winner_takes_over,
    no_winner_takes_over_below_the_minimum_sample,
);
