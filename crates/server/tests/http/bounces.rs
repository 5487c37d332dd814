//! `POST /webhooks/bounces/*`: each provider's notification, signed the way that provider
//! signs it, changes the contact (status, enrollments, waiting mail, the message named by
//! its Message-ID, a signal row naming the source); the same request tampered with is
//! refused with 401/403 and changes nothing.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine;
use nurture_server::Limits;
use nurture_server::bounces::{Fetch, SendgridKey, Webhooks};
use nurture_store::ContactStatus;
use serde_json::json;

use crate::support::{API_KEY, Seeded, TestApp, ms, spawn_app_full};

const NOW: &str = "2026-11-02T09:00:00Z";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What the world looks like for one contact after a webhook call.
#[derive(Debug, PartialEq)]
struct Seen {
    status: ContactStatus,
    enrollment: String,
    /// The sent message's state, then the queued one's.
    messages: Vec<String>,
    /// `(kind, source, matched a message)` per signal.
    signals: Vec<(String, String, bool)>,
}

async fn seen(app: &TestApp, s: &Seeded) -> Seen {
    let mut tx = app.store.begin().await.unwrap();
    let contact = tx.contact(s.contact_id).await.unwrap().unwrap();
    let enrollment = tx.enrollment(s.enrollment_id).await.unwrap().unwrap();
    let messages = tx
        .contact_messages(s.contact_id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.state.to_string())
        .collect();
    let signals = tx
        .contact_signals(s.contact_id)
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.kind, g.source, g.message_id.is_some()))
        .collect();
    tx.rollback().await.unwrap();
    Seen {
        status: contact.status,
        enrollment: enrollment.state.to_string(),
        messages,
        signals,
    }
}

/// Before any report: subscribed, active, one message sent and one waiting.
fn untouched() -> Seen {
    Seen {
        status: ContactStatus::Subscribed,
        enrollment: "active".into(),
        messages: vec!["sent".into(), "queued".into()],
        signals: vec![],
    }
}

/// Seeds `email` with its first message sent as `message_id` and a second one queued.
async fn sent(app: &TestApp, email: &str, message_id: &str) -> Seeded {
    let now = ms(NOW);
    let s = app.seed(email, now).await;
    let mut tx = app.store.begin().await.unwrap();
    let claimed = tx.claim_messages(now, now + 60_000, 10, 7).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(
        tx.mark_sending(s.message_id, message_id, now + 60_000, now, 7)
            .await
            .unwrap()
    );
    assert_eq!(
        tx.finish_sent(&[s.message_id], now, 7).await.unwrap(),
        [s.message_id]
    );
    let version = tx.message(s.message_id).await.unwrap().unwrap().version_id;
    tx.queue_message(
        s.enrollment_id,
        1,
        s.contact_id,
        crate::support::CAMPAIGN,
        version,
        "second",
        now + 86_400_000,
        now,
    )
    .await
    .unwrap()
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(seen(app, &s).await, untouched());
    s
}

fn exited(status: ContactStatus, kind: &str, source: &str, matched: bool) -> Seen {
    Seen {
        status,
        enrollment: "exited".into(),
        messages: vec![
            if kind == "hard" && matched {
                "bounced".into()
            } else {
                "sent".into()
            },
            "suppressed".into(),
        ],
        signals: vec![(kind.into(), source.into(), matched)],
    }
}

async fn app_with(hooks: Webhooks) -> TestApp {
    spawn_app_full(Some(API_KEY), Limits::default(), hooks).await
}

fn hooks() -> Webhooks {
    Webhooks::new(Arc::new(FakeSns::default()))
}

// ---------------------------------------------------------------- generic

#[tokio::test]
async fn generic_hard_bounce_with_the_api_key_bounces_the_contact_and_matches_the_message() {
    let app = app_with(hooks()).await;
    let s = sent(&app, "ana@acme.example", "<m1@leadcraft.example>").await;
    let body = json!({"email": "ana@acme.example", "type": "hard", "message_id": "m1@leadcraft.example", "reason": "550 5.1.1 no such user"}).to_string();

    let wrong = app
        .request(
            "POST",
            "/webhooks/bounces/generic",
            &[("Authorization", "Bearer not-the-key")],
            body.as_bytes(),
        )
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    let none = app
        .request("POST", "/webhooks/bounces/generic", &[], body.as_bytes())
        .await;
    assert_eq!(none.status, 401);
    assert_eq!(seen(&app, &s).await, untouched());

    let ok = app.post_json("/webhooks/bounces/generic", &body).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["recorded"], 1);
    assert_eq!(
        seen(&app, &s).await,
        exited(ContactStatus::Bounced, "hard", "generic", true)
    );
    let mut tx = app.store.begin().await.unwrap();
    let c = tx.contact(s.contact_id).await.unwrap().unwrap();
    assert_eq!(
        c.status_reason.as_deref(),
        Some("hard bounce reported by generic: 550 5.1.1 no such user")
    );
    let m = tx.message(s.message_id).await.unwrap().unwrap();
    assert_eq!(
        m.error.as_deref(),
        Some("hard bounce reported by generic: 550 5.1.1 no such user")
    );
}

#[tokio::test]
async fn soft_bounces_suppress_at_the_limit_and_a_delivery_resets_the_run() {
    let app = app_with(hooks()).await;
    let s = sent(&app, "sam@globex.example", "<m2@leadcraft.example>").await;
    let soft =
        json!({"email": "sam@globex.example", "type": "soft", "reason": "452 4.2.2 mailbox full"})
            .to_string();
    let delivered = json!({"email": "sam@globex.example", "type": "delivered"}).to_string();
    for body in [&soft, &soft, &delivered, &soft, &soft] {
        let r = app.post_json("/webhooks/bounces/generic", body).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Two, a delivery, two: never three in a row.
    let now = seen(&app, &s).await;
    assert_eq!(now.status, ContactStatus::Subscribed);
    assert_eq!(now.enrollment, "active");
    let r = app.post_json("/webhooks/bounces/generic", &soft).await;
    assert_eq!(r.status, 200);
    let now = seen(&app, &s).await;
    assert_eq!(now.status, ContactStatus::Bounced);
    assert_eq!(now.enrollment, "exited");
    assert_eq!(now.messages, ["sent", "suppressed"]);
    assert_eq!(now.signals.len(), 6);
    let mut tx = app.store.begin().await.unwrap();
    let c = tx.contact(s.contact_id).await.unwrap().unwrap();
    assert_eq!(
        c.status_reason.as_deref(),
        Some(
            "3 soft bounces in a row; the last soft bounce reported by generic: 452 4.2.2 mailbox full"
        )
    );
}

#[tokio::test]
async fn a_report_about_an_unknown_address_is_taken_and_ignored() {
    let app = app_with(hooks()).await;
    let body = json!({"email": "nobody@nowhere.example", "type": "hard"}).to_string();
    let r = app.post_json("/webhooks/bounces/generic", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"recorded": 0, "ignored": 1}));
    let bad = app
        .post_json(
            "/webhooks/bounces/generic",
            r#"{"email": "a@b.example", "type": "bounce"}"#,
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.text().contains("hard, soft, complaint"),
        "{}",
        bad.text()
    );
}

// ---------------------------------------------------------------- postmark

#[tokio::test]
async fn postmark_spam_complaint_with_basic_auth_marks_the_contact_complained() {
    let mut h = hooks();
    h.postmark_auth = Some(("postmark".into(), "pm-pass-9c1".into()));
    let app = app_with(h).await;
    let s = sent(&app, "lee@initech.example", "<m3@leadcraft.example>").await;
    // Postmark's spam complaint webhook, as its documentation shows it.
    let body = json!({
        "RecordType": "SpamComplaint", "MessageStream": "outbound", "ID": 42,
        "Type": "SpamComplaint", "TypeCode": 512, "Name": "Spam complaint",
        "Tag": "", "MessageID": "00000000-0000-0000-0000-000000000000",
        "ServerID": 1234, "Description": "", "Details": "Test spam complaint details",
        "Email": "lee@initech.example", "From": "ana@leadcraft.example",
        "BouncedAt": "2026-11-02T10:00:00Z", "DumpAvailable": true,
        "Inactive": true, "CanActivate": false, "Subject": "Your ebook"
    })
    .to_string();
    let basic = |u: &str, p: &str| format!("Basic {}", B64.encode(format!("{u}:{p}")));

    for auth in [basic("postmark", "wrong"), basic("other", "pm-pass-9c1")] {
        let r = app
            .request(
                "POST",
                "/webhooks/bounces/postmark",
                &[("Authorization", &auth)],
                body.as_bytes(),
            )
            .await;
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(r.header("www-authenticate").is_some());
    }
    assert_eq!(seen(&app, &s).await, untouched());

    let auth = basic("postmark", "pm-pass-9c1");
    let r = app
        .request(
            "POST",
            "/webhooks/bounces/postmark",
            &[("Authorization", &auth)],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        seen(&app, &s).await,
        exited(ContactStatus::Complained, "complaint", "postmark", false)
    );
    // Postmark retries until it gets a 2xx: the same record again changes nothing.
    let again = app
        .request(
            "POST",
            "/webhooks/bounces/postmark",
            &[("Authorization", &auth)],
            body.as_bytes(),
        )
        .await;
    assert_eq!(again.json(), json!({"recorded": 0, "ignored": 1}));
    assert_eq!(seen(&app, &s).await.signals.len(), 1);
}

// ---------------------------------------------------------------- mailgun

fn mailgun_sign(key: &str, timestamp: &str, token: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{timestamp}{token}").as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn mailgun_permanent_failure_with_a_valid_hmac_bounces_the_contact() {
    let key = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
    let mut h = hooks();
    h.mailgun_key = Some(key.into());
    let app = app_with(h).await;
    let s = sent(&app, "kim@hooli.example", "<m4@leadcraft.example>").await;
    let (timestamp, token) = (
        "1793610000",
        "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
    );
    let body = |signature: &str, recipient: &str| {
        json!({
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": {
                "id": "G9Bn5sl1TC6nu79C8C0bwg",
                "event": "failed", "severity": "permanent", "reason": "bounce",
                "recipient": recipient,
                // Mailgun drops the brackets of the Message-ID.
                "message": {"headers": {"message-id": "m4@leadcraft.example"}},
                "delivery-status": {"code": 550, "message": "5.1.1 The email account that you tried to reach does not exist"}
            }
        })
        .to_string()
    };
    let good = mailgun_sign(key, timestamp, token);
    let forged = mailgun_sign("another-key", timestamp, token);
    let r = app
        .request(
            "POST",
            "/webhooks/bounces/mailgun",
            &[("Content-Type", "application/json")],
            body(&forged, "kim@hooli.example").as_bytes(),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let unsigned = app
        .request(
            "POST",
            "/webhooks/bounces/mailgun",
            &[],
            json!({"event-data": {"event": "failed", "severity": "permanent", "recipient": "kim@hooli.example"}})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(unsigned.status, 403);
    assert_eq!(seen(&app, &s).await, untouched());

    let r = app
        .request(
            "POST",
            "/webhooks/bounces/mailgun",
            &[("Content-Type", "application/json")],
            body(&good, "kim@hooli.example").as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        seen(&app, &s).await,
        exited(ContactStatus::Bounced, "hard", "mailgun", true)
    );
}

// ---------------------------------------------------------------- sendgrid

/// The DER SubjectPublicKeyInfo prefix of a P-256 public key (the point follows).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[tokio::test]
async fn sendgrid_events_with_a_valid_ecdsa_signature_are_applied_and_a_tampered_batch_is_not() {
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    let mut h = hooks();
    h.sendgrid_key = Some(SendgridKey::from_base64(&B64.encode(&spki)).unwrap());
    let app = app_with(h).await;
    let hard = sent(&app, "ana@acme.example", "<m5@leadcraft.example>").await;
    let spam = sent(&app, "lee@initech.example", "<m6@leadcraft.example>").await;
    let body = json!([
        {"email": "ana@acme.example", "timestamp": 1793610000, "smtp-id": "<m5@leadcraft.example>",
         "event": "bounce", "type": "bounce", "status": "5.1.1",
         "reason": "550 5.1.1 The email account that you tried to reach does not exist",
         "sg_event_id": "ZGVsaXZlcmVkLTAtMjQ2", "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"},
        {"email": "lee@initech.example", "timestamp": 1793610001, "event": "spamreport",
         "sg_event_id": "c3BhbXJlcG9ydC0w", "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.1"},
        {"email": "lee@initech.example", "timestamp": 1793610002, "event": "open",
         "sg_event_id": "b3Blbi0w"}
    ])
    .to_string();
    let timestamp = "1793610003";
    let sign = |payload: &str| {
        let sig = pair
            .sign(&rng, format!("{timestamp}{payload}").as_bytes())
            .unwrap();
        B64.encode(sig.as_ref())
    };
    let signature = sign(&body);
    let headers = |sig: &str| {
        vec![
            (
                "X-Twilio-Email-Event-Webhook-Signature".to_string(),
                sig.to_string(),
            ),
            (
                "X-Twilio-Email-Event-Webhook-Timestamp".to_string(),
                timestamp.to_string(),
            ),
        ]
    };
    let post = |h: Vec<(String, String)>, b: String| {
        let app = &app;
        async move {
            let h: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            app.request("POST", "/webhooks/bounces/sendgrid", &h, b.as_bytes())
                .await
        }
    };

    // The same signature over a batch someone edited (the complaint moved to another lead).
    let tampered = body.replace("lee@initech.example", "kim@hooli.example");
    assert_ne!(tampered, body);
    let r = post(headers(&signature), tampered).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = post(Vec::new(), body.clone()).await;
    assert_eq!(r.status, 403);
    assert_eq!(seen(&app, &hard).await, untouched());
    assert_eq!(seen(&app, &spam).await, untouched());

    let r = post(headers(&signature), body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"recorded": 2, "ignored": 0}));
    assert_eq!(
        seen(&app, &hard).await,
        exited(ContactStatus::Bounced, "hard", "sendgrid", true)
    );
    assert_eq!(
        seen(&app, &spam).await,
        exited(ContactStatus::Complained, "complaint", "sendgrid", false)
    );
}

// ---------------------------------------------------------------- ses (sns)

/// SNS as the tests see it: hands out the test's certificate and records every URL asked.
#[derive(Default)]
struct FakeSns {
    cert: Vec<u8>,
    asked: Mutex<Vec<String>>,
}

impl Fetch for FakeSns {
    fn get<'a>(
        &'a self,
        url: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>> + Send + 'a>>
    {
        Box::pin(async move {
            self.asked.lock().unwrap().push(url.to_string());
            if url.ends_with(".pem") {
                Ok(self.cert.clone())
            } else {
                Ok(b"<ConfirmSubscriptionResponse/>".to_vec())
            }
        })
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cannot run openssl: install Debian's openssl package");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An RSA key and a self-signed certificate like SNS's, made by openssl in `dir`.
fn sns_identity(dir: &Path) -> Vec<u8> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=sns.amazonaws.com",
        ],
    );
    std::fs::read(dir.join("cert.pem")).unwrap()
}

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-bounces";
const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem";

/// Signs an SNS message with the key in `dir`, as SNS does (`version` 1: SHA1, 2: SHA256).
fn sns_sign(dir: &Path, mut msg: serde_json::Value, version: &str) -> serde_json::Value {
    let fields: &[&str] = if msg["Type"] == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let mut text = String::new();
    for f in fields {
        if let Some(v) = msg.get(*f).and_then(|v| v.as_str()) {
            text.push_str(&format!("{f}\n{v}\n"));
        }
    }
    std::fs::write(dir.join("to-sign"), text).unwrap();
    let digest = if version == "1" { "-sha1" } else { "-sha256" };
    let sig = openssl(dir, &["dgst", digest, "-sign", "key.pem", "to-sign"]);
    msg["SignatureVersion"] = version.into();
    msg["Signature"] = B64.encode(sig).into();
    msg["SigningCertURL"] = CERT_URL.into();
    msg
}

fn ses_bounce(email: &str, message_id: &str) -> String {
    json!({
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent", "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": email, "action": "failed", "status": "5.1.1",
                                   "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
            "timestamp": "2026-11-02T09:00:05.000Z", "feedbackId": "0100017f-b2a1-4c5d-9e8f-000000000000-000000"
        },
        "mail": {
            "timestamp": "2026-11-02T09:00:00.000Z", "source": "ana@leadcraft.example",
            "messageId": "0100017fb2a14c5d-ses-internal-id-000000",
            "destination": [email],
            "commonHeaders": {"from": ["ana@leadcraft.example"], "to": [email], "messageId": message_id, "subject": "Your ebook"}
        }
    })
    .to_string()
}

#[tokio::test]
async fn ses_bounce_signed_by_sns_bounces_the_contact_and_a_tampered_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cert = sns_identity(dir.path());
    let sns = Arc::new(FakeSns {
        cert,
        asked: Mutex::default(),
    });
    let mut h = Webhooks::new(sns.clone());
    h.ses_topics = vec![TOPIC.into()];
    let app = app_with(h).await;
    let s = sent(&app, "ana@acme.example", "<m7@leadcraft.example>").await;
    let post = |v: &serde_json::Value| {
        let body = v.to_string();
        let app = &app;
        async move {
            app.request(
                "POST",
                "/webhooks/bounces/ses",
                &[("x-amz-sns-message-type", "Notification")],
                body.as_bytes(),
            )
            .await
        }
    };
    let notification = |message: String, id: &str| {
        json!({
            "Type": "Notification", "MessageId": id, "TopicArn": TOPIC,
            "Message": message, "Timestamp": "2026-11-02T09:00:06.000Z",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x"
        })
    };

    // Signed, then the recipient changed: the signature no longer covers the message.
    let signed = sns_sign(
        dir.path(),
        notification(
            ses_bounce("kim@hooli.example", "<x@leadcraft.example>"),
            "n-1",
        ),
        "1",
    );
    let mut tampered = signed.clone();
    tampered["Message"] = ses_bounce("ana@acme.example", "<m7@leadcraft.example>").into();
    let r = post(&tampered).await;
    assert_eq!(r.status, 403, "{}", r.text());
    // A certificate URL off SNS is refused before anything is fetched.
    let mut elsewhere = sns_sign(
        dir.path(),
        notification(
            ses_bounce("ana@acme.example", "<m7@leadcraft.example>"),
            "n-2",
        ),
        "2",
    );
    elsewhere["SigningCertURL"] =
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem".into();
    let r = post(&elsewhere).await;
    assert_eq!(r.status, 403, "{}", r.text());
    // A topic of someone else's, correctly signed by "SNS", is not ours to take.
    let mut foreign = notification(
        ses_bounce("ana@acme.example", "<m7@leadcraft.example>"),
        "n-3",
    );
    foreign["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:theirs".into();
    let r = post(&sns_sign(dir.path(), foreign, "2")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(seen(&app, &s).await, untouched());
    assert!(
        sns.asked.lock().unwrap().iter().all(|u| u == CERT_URL),
        "{:?}",
        sns.asked.lock().unwrap()
    );

    for version in ["1", "2"] {
        let good = sns_sign(
            dir.path(),
            notification(
                ses_bounce("ana@acme.example", "<m7@leadcraft.example>"),
                &format!("n-ok-{version}"),
            ),
            version,
        );
        let r = post(&good).await;
        assert_eq!(r.status, 200, "SignatureVersion {version}: {}", r.text());
    }
    let after = seen(&app, &s).await;
    assert_eq!(after.status, ContactStatus::Bounced);
    assert_eq!(after.enrollment, "exited");
    assert_eq!(after.messages, ["bounced", "suppressed"]);
    assert_eq!(
        after.signals,
        [
            ("hard".to_string(), "ses".to_string(), true),
            ("hard".to_string(), "ses".to_string(), true)
        ]
    );
    // The certificate was fetched once and then taken from the cache.
    let asked = sns.asked.lock().unwrap().clone();
    assert_eq!(
        asked.iter().filter(|u| *u == CERT_URL).count(),
        1,
        "{asked:?}"
    );
}

#[tokio::test]
async fn ses_subscription_confirmation_is_confirmed_only_when_signed_and_for_our_topic() {
    let dir = tempfile::tempdir().unwrap();
    let sns = Arc::new(FakeSns {
        cert: sns_identity(dir.path()),
        asked: Mutex::default(),
    });
    let mut h = Webhooks::new(sns.clone());
    h.ses_topics = vec![TOPIC.into()];
    let app = app_with(h).await;
    let subscribe = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-1:123456789012:ses-bounces&Token=2336412f37fb687f5d51e6e2425";
    let confirmation = json!({
        "Type": "SubscriptionConfirmation", "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e2425", "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic arn:aws:sns:us-east-1:123456789012:ses-bounces.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": subscribe, "Timestamp": "2026-11-02T08:00:00.000Z"
    });
    let signed = sns_sign(dir.path(), confirmation, "1");
    let mut tampered = signed.clone();
    tampered["SubscribeURL"] =
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=other".into();
    let r = app
        .request(
            "POST",
            "/webhooks/bounces/ses",
            &[],
            tampered.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        !sns.asked
            .lock()
            .unwrap()
            .iter()
            .any(|u| u.contains("ConfirmSubscription"))
    );

    let r = app
        .request(
            "POST",
            "/webhooks/bounces/ses",
            &[],
            signed.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        sns.asked.lock().unwrap().as_slice(),
        [CERT_URL.to_string(), subscribe.to_string()]
    );
}

#[tokio::test]
async fn every_provider_refuses_everything_until_configured() {
    let app = app_with(hooks()).await;
    let s = sent(&app, "ana@acme.example", "<m8@leadcraft.example>").await;
    for (provider, status) in [
        ("ses", 403),
        ("sendgrid", 403),
        ("postmark", 401),
        ("mailgun", 403),
    ] {
        let r = app
            .request(
                "POST",
                &format!("/webhooks/bounces/{provider}"),
                &[],
                br#"{"email": "ana@acme.example"}"#,
            )
            .await;
        assert_eq!(r.status, status, "{provider}: {}", r.text());
        assert!(r.text().contains("disabled"), "{provider}: {}", r.text());
    }
    assert_eq!(seen(&app, &s).await, untouched());
}

// ---------------------------------------------------------------- the policy on PostgreSQL

#[tokio::test]
async fn the_policy_runs_on_postgresql_too() {
    use nurture_server::bounces::{Applied, Signal, apply};
    use nurture_store::{SignalKind, Store, Upsert};
    let db = nurture_testkit::Postgres::fresh_database();
    let store = Store::open(db.url()).await.unwrap();
    let now = ms(NOW);
    let mut tx = store.begin().await.unwrap();
    let (c, _) = tx
        .upsert_contact(
            &Upsert {
                email: "ana@acme.example".into(),
                ..Upsert::default()
            },
            now,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let soft = |id: &str| Signal {
        email: Some("ANA@acme.example".into()),
        message_id: Some("<nowhere@leadcraft.example>".into()),
        kind: SignalKind::Soft,
        reason: Some("452 4.2.2 mailbox full".into()),
        external_id: Some(id.into()),
    };
    let first = apply(&store, "generic", &soft("e1"), 2, now).await.unwrap();
    assert!(
        matches!(
            first,
            Applied::Recorded {
                soft_run: 1,
                status: None,
                matched_message: false,
                ..
            }
        ),
        "{first:?}"
    );
    // The provider sends the same event again: not counted twice.
    assert_eq!(
        apply(&store, "generic", &soft("e1"), 2, now).await.unwrap(),
        Applied::Duplicate
    );
    let second = apply(&store, "generic", &soft("e2"), 2, now).await.unwrap();
    assert!(
        matches!(
            second,
            Applied::Recorded {
                soft_run: 2,
                status: Some(ContactStatus::Bounced),
                ..
            }
        ),
        "{second:?}"
    );
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.contact_signals(c.id).await.unwrap().len(), 2);
    assert_eq!(
        tx.contact(c.id).await.unwrap().unwrap().status,
        ContactStatus::Bounced
    );
    tx.rollback().await.unwrap();
    store.close().await;
}
