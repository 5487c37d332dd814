//! Delivery into a real Postfix smtp-sink: bytes on the wire, reply classification, reuse
//! of one connection, and recovery when the server comes back.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use nurture_sender::{BuiltMessage, OutgoingEmail, SmtpConnection, SmtpUrl, build_message};
use nurture_testkit::SmtpSink;

fn message(to: &str, subject: &str) -> BuiltMessage {
    build_message(
        &OutgoingEmail {
            from_name: Some("Ana"),
            from_address: "ana@leadcraft.example",
            reply_to: None,
            to_name: Some("Lee"),
            to_address: to,
            subject,
            html: "<p>Hello</p>\n.\n<p>a lone dot above</p>",
            text: "Hello\n.\na lone dot above",
            unsubscribe_url: "https://n.example/u/T",
            campaign: "ebook",
            step: "welcome",
            date: SystemTime::UNIX_EPOCH,
        },
        None,
    )
    .unwrap()
}

#[tokio::test]
async fn three_messages_on_one_connection_arrive_intact() {
    let sink = SmtpSink::start();
    let mut conn = SmtpConnection::new(SmtpUrl::parse(&sink.url()).unwrap());
    for i in 0..3 {
        let reply = conn
            .send(&message(
                &format!("lead{i}@x.example"),
                &format!("Hello {i}"),
            ))
            .await
            .unwrap();
        assert!(reply.starts_with("250"), "{reply}");
    }
    conn.close().await;
    let got: Vec<String> = sink
        .wait_for(3, Duration::from_secs(5))
        .iter()
        .map(|m| m.message_text())
        .collect();
    assert_eq!(got.len(), 3);
    for i in 0..3 {
        let m = got
            .iter()
            .find(|m| m.contains(&format!("Subject: Hello {i}\n")))
            .unwrap();
        assert!(m.contains(&format!("To: Lee <lead{i}@x.example>")), "{m}");
        assert!(m.contains("X-Nurture-Step: welcome"), "{m}");
        assert!(
            m.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
            "{m}"
        );
    }
}

#[tokio::test]
async fn four_xx_is_transient_and_five_xx_is_permanent() {
    let soft = SmtpSink::builder().soft_reject("rcpt").start();
    let mut conn = SmtpConnection::new(SmtpUrl::parse(&soft.url()).unwrap());
    let e = conn.send(&message("a@x.example", "s")).await.unwrap_err();
    assert!(e.is_transient() && !e.is_permanent(), "{e:?}");
    assert_eq!(e.code.map(|c| c / 100), Some(4));

    let hard = SmtpSink::builder().hard_reject("rcpt").start();
    let mut conn = SmtpConnection::new(SmtpUrl::parse(&hard.url()).unwrap());
    let e = conn.send(&message("a@x.example", "s")).await.unwrap_err();
    assert!(e.is_permanent(), "{e:?}");
    assert_eq!(e.code.map(|c| c / 100), Some(5));
    // The connection survives a refused recipient.
    let e2 = conn.send(&message("b@x.example", "s")).await.unwrap_err();
    assert!(e2.is_permanent());
    assert!(hard.messages().is_empty());
}

#[tokio::test]
async fn server_down_is_transient_and_recovery_reconnects() {
    let mut sink = SmtpSink::start();
    let mut conn = SmtpConnection::new(SmtpUrl::parse(&sink.url()).unwrap())
        .with_timeout(Duration::from_secs(5));
    conn.send(&message("a@x.example", "before")).await.unwrap();
    sink.stop();
    let e = conn
        .send(&message("a@x.example", "during"))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    sink.restart();
    conn.send(&message("a@x.example", "after")).await.unwrap();
    let got: Vec<String> = sink
        .wait_for(2, Duration::from_secs(5))
        .iter()
        .map(|m| m.message_text())
        .collect();
    assert!(got.iter().any(|m| m.contains("Subject: after")), "{got:?}");
    assert!(!got.iter().any(|m| m.contains("Subject: during")));
}

#[tokio::test]
async fn hang_up_at_data_is_transient() {
    let sink = SmtpSink::builder().hang_up_on("data").start();
    let mut conn = SmtpConnection::new(SmtpUrl::parse(&sink.url()).unwrap())
        .with_timeout(Duration::from_secs(5));
    let e = conn.send(&message("a@x.example", "s")).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
}
