//! Lead scoring and the webhook step against real databases (SQLite and PostgreSQL): points
//! as events arrive, half-life decay, score conditions, score triggers once per upward
//! crossing, and webhook deliveries at most once per step with retries on transient errors,
//! claimed one at a time so a slow receiver cannot run out the lease of the next.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use nurture_campaign::{CampaignFile, Scoring, SourceFile, WebhookAction, parse_campaign};
use nurture_scheduler::{Clock, Engine, ManualClock, PostOutcome, Poster, score_at};
use serde_json::{Value, json};

#[macro_use]
mod support;

use support::{Backend, World};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn campaign(id: &str, yaml: &str) -> CampaignFile {
    parse_campaign(SourceFile::new(format!("{id}.yaml"), yaml), id)
        .unwrap_or_else(|d| panic!("{d:#?}"))
}

fn scoring(yaml: &str) -> Arc<Scoring> {
    Arc::new(
        Scoring::parse(SourceFile::new("scoring.yaml", yaml)).unwrap_or_else(|d| panic!("{d:#?}")),
    )
}

const RULES: &str = "
decay: { half_life: 10d }
rules:
  - { event: pricing.viewed, points: 20 }
  - { event: webinar.attended, when: { property: live, equals: true }, points: 30 }
  - { clicked: any, points: 5 }
  - { when: { attribute: role, in: [cto, vp] }, points: 15 }
";

async fn world(backend: Backend, files: &[CampaignFile], t0: DateTime<Utc>) -> (World, Engine) {
    let w = World::new(backend).await;
    let engine = w.engine.clone().with_scoring(Some(scoring(RULES)));
    engine.sync(files, true, t0).await.unwrap();
    (w, engine)
}

async fn event(
    engine: &Engine,
    email: &str,
    name: &str,
    props: Value,
    attrs: Value,
    t: DateTime<Utc>,
) {
    let mut tx = engine.store().begin().await.unwrap();
    let (contact, _) = tx
        .upsert_contact(
            &nurture_store::Upsert {
                email: email.into(),
                attributes: attrs.as_object().cloned().unwrap_or_default(),
                ..Default::default()
            },
            t.timestamp_millis(),
        )
        .await
        .unwrap();
    tx.insert_event(
        &nurture_store::NewEvent {
            contact_id: contact.id,
            name: name.into(),
            properties: props.as_object().cloned().unwrap_or_default(),
            occurred_at: t.timestamp_millis(),
            ..Default::default()
        },
        t.timestamp_millis(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn score(engine: &Engine, email: &str, t: DateTime<Utc>) -> f64 {
    let mut tx = engine.store().begin().await.unwrap();
    let c = tx.contact_by_email(email).await.unwrap().unwrap();
    let s = tx.scores(&[c.id]).await.unwrap();
    tx.commit().await.unwrap();
    s.first().map_or(0.0, |r| {
        (score_at(r, t.timestamp_millis()) * 1000.0).round() / 1000.0
    })
}

async fn enrollments(engine: &Engine, email: &str, campaign: &str) -> usize {
    let mut tx = engine.store().begin().await.unwrap();
    let c = tx.contact_by_email(email).await.unwrap().unwrap();
    let e = tx.contact_enrollments(c.id).await.unwrap();
    tx.commit().await.unwrap();
    e.iter().filter(|e| e.campaign_id == campaign).count()
}

async fn score_trigger_fires_once_per_upward_crossing(backend: Backend) {
    let t0 = at("2026-03-02T09:00:00Z");
    let hot = campaign(
        "hot",
        "name: Hot lead\nfrom: a@x.example\nreentry: after_exit\ntrigger: { score: { gte: 50 } }\nsteps:\n  - { id: mark, tag: [hot] }\n",
    );
    let (_w, engine) = world(backend, &[hot], t0).await;
    let lead = "lead@x.example";
    let mut t = t0;
    let view = async |t: DateTime<Utc>| {
        event(&engine, lead, "pricing.viewed", json!({}), json!({}), t).await;
        engine.run_once(t).await.unwrap();
    };
    view(t).await;
    view(t).await;
    assert_eq!(score(&engine, lead, t).await, 40.0);
    assert_eq!(enrollments(&engine, lead, "hot").await, 0, "40 is below 50");
    view(t).await;
    assert_eq!(
        enrollments(&engine, lead, "hot").await,
        1,
        "40 -> 60 crosses 50"
    );
    view(t).await;
    assert_eq!(
        enrollments(&engine, lead, "hot").await,
        1,
        "60 -> 80 stays above: no new crossing"
    );

    // Four half-lives later 80 points are worth 5.
    t += Duration::days(40);
    assert_eq!(score(&engine, lead, t).await, 5.0);
    view(t).await; // ~25
    view(t).await; // ~45
    assert_eq!(enrollments(&engine, lead, "hot").await, 1);
    view(t).await; // ~65: rises through 50 again
    assert_eq!(
        enrollments(&engine, lead, "hot").await,
        2,
        "a fall and a rise is a new crossing"
    );
}

async fn points_follow_rules_filters_and_attributes(backend: Backend) {
    let t0 = at("2026-03-02T09:00:00Z");
    let nurture = campaign(
        "nurture",
        "name: N\nfrom: a@x.example\ntrigger: { event: webinar.attended }\nsteps:\n  - { id: hot, when: { score: { gte: 45 } }, tag: [hot] }\n",
    );
    let (_w, engine) = world(backend, &[nurture], t0).await;
    // Live webinar (30) and a CTO (15): 45, the step's condition holds.
    event(
        &engine,
        "cto@x.example",
        "webinar.attended",
        json!({"live": true}),
        json!({"role": "cto"}),
        t0,
    )
    .await;
    // A recording (the rule's `when` is false) and no role: 0.
    event(
        &engine,
        "dev@x.example",
        "webinar.attended",
        json!({"live": false}),
        json!({"role": "dev"}),
        t0,
    )
    .await;
    engine.run_once(t0).await.unwrap();
    assert_eq!(score(&engine, "cto@x.example", t0).await, 45.0);
    assert_eq!(score(&engine, "dev@x.example", t0).await, 0.0);
    let mut tx = engine.store().begin().await.unwrap();
    let cto = tx.contact_by_email("cto@x.example").await.unwrap().unwrap();
    let dev = tx.contact_by_email("dev@x.example").await.unwrap().unwrap();
    let points = tx.score_points(cto.id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(cto.tags, vec!["hot".to_string()]);
    assert!(dev.tags.is_empty());
    assert_eq!(points.len(), 1);
    assert_eq!(
        points[0].reason,
        "event webinar.attended when {property: live, equals: true}"
    );
}

/// Answers from a script, and remembers every delivery it was asked to make.
struct Scripted {
    answers: Mutex<Vec<PostOutcome>>,
    calls: Mutex<Vec<(String, Value)>>,
}

impl Poster for Scripted {
    fn post<'a>(
        &'a self,
        hook: &'a WebhookAction,
        webhook_id: &'a str,
        context: &'a Value,
        _now: DateTime<Utc>,
    ) -> futures_util::future::BoxFuture<'a, PostOutcome> {
        self.calls
            .lock()
            .unwrap()
            .push((format!("{} {webhook_id}", hook.url), context.clone()));
        let mut answers = self.answers.lock().unwrap();
        let answer = if answers.is_empty() {
            PostOutcome::Delivered("HTTP 200".into())
        } else {
            answers.remove(0)
        };
        Box::pin(std::future::ready(answer))
    }
}

async fn webhook_step_posts_once_and_retries_transient_failures(backend: Backend) {
    let t0 = at("2026-03-02T09:00:00Z");
    let handoff = campaign(
        "handoff",
        "name: Hand-off\nfrom: a@x.example\ntrigger: { score: { gte: 50 } }\nsteps:\n  - { id: crm, webhook: { url: \"https://crm.example.com/leads\" } }\n  - { id: chat, webhook: { url: \"https://chat.example.com/x\", body: { text: \"{{contact.email}} is hot\" } } }\n",
    );
    let (_w, engine) = world(backend, &[handoff], t0).await;
    let poster = Scripted {
        answers: Mutex::new(vec![
            PostOutcome::Transient("HTTP 503: busy".into()),
            PostOutcome::Permanent("HTTP 404".into()),
        ]),
        calls: Mutex::new(Vec::new()),
    };
    for _ in 0..3 {
        event(
            &engine,
            "lead@x.example",
            "pricing.viewed",
            json!({}),
            json!({"role": "vp"}),
            t0,
        )
        .await;
    }
    engine.run_once(t0).await.unwrap();
    engine.run_once(t0).await.unwrap();
    let first = engine.deliver_webhooks(&poster, t0).await.unwrap();
    // crm: 503 (deferred); chat: 404 (failed).
    assert_eq!((first.sent, first.deferred, first.failed), (0, 1, 1));
    let again = engine
        .deliver_webhooks(&poster, t0 + Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(again, Default::default(), "the retry waits for its backoff");
    let retry = engine
        .deliver_webhooks(&poster, t0 + Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(retry.sent, 1);
    let after = engine
        .deliver_webhooks(&poster, t0 + Duration::hours(5))
        .await
        .unwrap();
    assert_eq!(after, Default::default(), "nothing is posted twice");
    let calls = poster.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].0, calls[2].0, "a retry keeps its webhook-id");
    assert_eq!(calls[0].1["contact"]["email"], json!("lead@x.example"));
    assert_eq!(calls[0].1["campaign"]["id"], json!("handoff"));
    assert_eq!(calls[0].1["score"], json!(75.0));
    let mut tx = engine.store().begin().await.unwrap();
    let c = tx
        .contact_by_email("lead@x.example")
        .await
        .unwrap()
        .unwrap();
    let hooks = tx.contact_webhooks(c.id).await.unwrap();
    let attempts = tx.webhook_attempts(hooks[0].id).await.unwrap();
    tx.commit().await.unwrap();
    let states: Vec<(&str, &str)> = hooks
        .iter()
        .map(|h| (h.step_id.as_str(), h.state.as_str()))
        .collect();
    assert_eq!(states, vec![("crm", "sent"), ("chat", "failed")]);
    let replies: Vec<_> = attempts
        .iter()
        .map(|a| a.reply.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        replies,
        vec!["HTTP 503: busy".to_string(), "HTTP 200".to_string()]
    );
}

/// POSTs each delivery over a real TCP connection to the `http://HOST:PORT/PATH` of its
/// step, as the daemon's poster does, and classifies the status line.
struct HttpPoster;

impl Poster for HttpPoster {
    fn post<'a>(
        &'a self,
        hook: &'a WebhookAction,
        webhook_id: &'a str,
        context: &'a Value,
        _now: DateTime<Utc>,
    ) -> futures_util::future::BoxFuture<'a, PostOutcome> {
        Box::pin(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let rest = hook.url.strip_prefix("http://").unwrap();
            let (host, path) = rest.split_once('/').unwrap();
            let body = context.to_string();
            let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
            let request = format!(
                "POST /{path} HTTP/1.1\r\nHost: {host}\r\nwebhook-id: {webhook_id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await.unwrap();
            let status = reply.lines().next().unwrap_or_default().to_string();
            if status.contains(" 200 ") {
                PostOutcome::Delivered(status)
            } else {
                PostOutcome::Transient(status)
            }
        })
    }
}

/// Never asked to post: the other daemon of the slow-receiver test finds nothing to claim.
struct Unused;

impl Poster for Unused {
    fn post<'a>(
        &'a self,
        _hook: &'a WebhookAction,
        webhook_id: &'a str,
        _context: &'a Value,
        _now: DateTime<Utc>,
    ) -> futures_util::future::BoxFuture<'a, PostOutcome> {
        Box::pin(std::future::ready(PostOutcome::Permanent(format!(
            "the other daemon was handed {webhook_id}"
        ))))
    }
}

/// Reads one HTTP request from `stream` and returns its path.
async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the request ended before its head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the request ended before its body");
        buf.extend_from_slice(&chunk[..n]);
    }
    head.split_whitespace().nth(1).unwrap().to_string()
}

/// Session 7's fix: webhook deliveries are claimed one at a time. A real local receiver is
/// slow on the first POST (it moves the engine's clock past the whole 2-minute lease), and
/// while the second POST is in flight another daemon on the same database runs its round,
/// which marks as `unknown` every delivery still `sending` past its lease. Had both been
/// claimed in one batch, the second's lease would have run out while it waited behind the
/// first, and it would end `unknown` although the receiver got it.
async fn slow_webhook_does_not_expire_the_next_one(backend: Backend) {
    use tokio::io::AsyncWriteExt;
    let t0 = at("2026-03-02T09:00:00Z");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handoff = campaign(
        "handoff",
        &format!(
            "name: Hand-off\nfrom: a@x.example\ntrigger: {{ score: {{ gte: 50 }} }}\nsteps:\n  - {{ id: crm, webhook: {{ url: \"http://{addr}/crm\" }} }}\n  - {{ id: chat, webhook: {{ url: \"http://{addr}/chat\" }} }}\n"
        ),
    );
    let (w, engine) = world(backend, &[handoff], t0).await;
    let clock = Arc::new(ManualClock::new(t0));
    let engine = engine.with_clock(clock.clone());
    let other = w.another().await.with_clock(clock.clone());
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let other_reports: Arc<Mutex<Vec<nurture_scheduler::WebhookReport>>> = Arc::default();
    let receiver = {
        let (got, other_reports, clock) = (got.clone(), other_reports.clone(), clock.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let path = read_request(&mut stream).await;
                let n = {
                    let mut got = got.lock().unwrap();
                    got.push(path);
                    got.len()
                };
                if n == 1 {
                    // Slow: the answer comes after longer than the lease.
                    clock.advance(Duration::minutes(3));
                } else {
                    let report = other.deliver_webhooks(&Unused, clock.now()).await.unwrap();
                    other_reports.lock().unwrap().push(report);
                }
                stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await
                    .unwrap();
            }
        })
    };
    for _ in 0..3 {
        event(
            &engine,
            "lead@x.example",
            "pricing.viewed",
            json!({}),
            json!({"role": "vp"}),
            t0,
        )
        .await;
    }
    engine.run_once(t0).await.unwrap();
    engine.run_once(t0).await.unwrap();
    let report = engine.deliver_webhooks(&HttpPoster, t0).await.unwrap();
    receiver.abort();
    assert_eq!(
        got.lock().unwrap().clone(),
        vec!["/crm".to_string(), "/chat".to_string()],
        "the receiver gets both deliveries, in order"
    );
    assert_eq!(
        other_reports.lock().unwrap().clone(),
        vec![Default::default()],
        "the other daemon's round finds nothing expired and nothing to claim"
    );
    assert_eq!((report.sent, report.unknown), (2, 0));
    let mut tx = engine.store().begin().await.unwrap();
    let c = tx
        .contact_by_email("lead@x.example")
        .await
        .unwrap()
        .unwrap();
    let hooks = tx.contact_webhooks(c.id).await.unwrap();
    tx.commit().await.unwrap();
    let states: Vec<(&str, &str)> = hooks
        .iter()
        .map(|h| (h.step_id.as_str(), h.state.as_str()))
        .collect();
    assert_eq!(states, vec![("crm", "sent"), ("chat", "sent")]);
}

both!(
    score_trigger_fires_once_per_upward_crossing,
    points_follow_rules_filters_and_attributes,
    webhook_step_posts_once_and_retries_transient_failures,
    slow_webhook_does_not_expire_the_next_one,
);
