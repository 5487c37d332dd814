//! The courier's seams, against a real Postfix smtp-sink: what it tells its observer for
//! each SMTP attempt, how a refusal maps onto the scheduler's failure, and which settings
//! errors are the user's (exit 2) rather than the machine's.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nurture_scheduler::Failure;
use nurture_sender::{
    BuiltMessage, CourierError, CourierSettings, Mailer, OutgoingEmail, ReplyClass, SendObserver,
    build_message,
};
use nurture_testkit::SmtpSink;

/// Remembers every call.
#[derive(Default)]
struct Recorder {
    sends: Mutex<Vec<ReplyClass>>,
    lost: Mutex<u64>,
}

impl SendObserver for Recorder {
    fn observe_send(&self, _latency: Duration, reply: ReplyClass) {
        self.sends.lock().unwrap().push(reply);
    }

    fn observe_lost(&self, n: u64) {
        *self.lost.lock().unwrap() += n;
    }
}

fn settings<'a>(dir: &'a Path, smtp_url: Option<&'a str>) -> CourierSettings<'a> {
    CourierSettings {
        templates_dir: dir,
        smtp_url,
        smtp_timeout: Duration::from_secs(5),
        smtp_ca_file: None,
        outbox_dir: dir,
        base_url: "https://n.example",
        postal_address: None,
        rate_per_second: 1000,
        dkim_domain: None,
        dkim_selector: None,
        dkim_private_key: None,
        dkim_algorithm: None,
        webhook_secret: None,
        webhook_hosts: &[],
    }
}

fn message(to: &str) -> BuiltMessage {
    build_message(
        &OutgoingEmail {
            from_name: None,
            from_address: "ana@leadcraft.example",
            reply_to: None,
            to_name: None,
            to_address: to,
            subject: "Hello",
            html: "<p>Hello</p>",
            text: "Hello",
            unsubscribe_url: "https://n.example/u/T",
            campaign: "ebook",
            step: "welcome",
            date: SystemTime::UNIX_EPOCH,
        },
        None,
    )
    .unwrap()
}

fn mailer_for(sink: &SmtpSink, dir: &Path) -> (Mailer, Arc<Recorder>) {
    let url = sink.url();
    let mut mailer = Mailer::with_secret(&settings(dir, Some(&url)), "secret").unwrap();
    let recorder = Arc::new(Recorder::default());
    mailer.metrics = Some(recorder.clone());
    (mailer, recorder)
}

#[tokio::test]
async fn an_accepted_send_reaches_the_sink_and_is_observed_as_2xx() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start();
    let (mailer, recorder) = mailer_for(&sink, dir.path());

    let reply = mailer.transmit(&message("lee@x.example")).await.unwrap();
    mailer.close().await;

    assert!(reply.starts_with("250"), "{reply}");
    let got = sink.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert_eq!(*recorder.sends.lock().unwrap(), vec![ReplyClass::Accepted]);
    assert_eq!(
        *recorder.lost.lock().unwrap(),
        0,
        "only the round's driver reports lost"
    );
}

#[tokio::test]
async fn a_refused_recipient_is_permanent_and_observed_as_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::builder().hard_reject("RCPT").start();
    let (mailer, recorder) = mailer_for(&sink, dir.path());

    let failure = mailer
        .transmit(&message("lee@x.example"))
        .await
        .unwrap_err();

    assert!(matches!(failure, Failure::Permanent(_)), "{failure:?}");
    assert_eq!(*recorder.sends.lock().unwrap(), vec![ReplyClass::Permanent]);
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn the_outbox_is_not_observed() {
    let dir = tempfile::tempdir().unwrap();
    let mut mailer = Mailer::with_secret(&settings(dir.path(), None), "secret").unwrap();
    let recorder = Arc::new(Recorder::default());
    mailer.metrics = Some(recorder.clone());

    let reply = mailer.transmit(&message("lee@x.example")).await.unwrap();

    assert!(reply.starts_with("written to "), "{reply}");
    assert!(recorder.sends.lock().unwrap().is_empty());
}

/// The error of settings that must not build a mailer.
fn refused(settings: &CourierSettings<'_>) -> CourierError {
    match Mailer::with_secret(settings, "s") {
        Ok(_) => panic!("a mailer was built"),
        Err(e) => e,
    }
}

#[test]
fn settings_errors_say_whose_fault_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let bad_url = refused(&settings(dir.path(), Some("http://x")));
    assert!(matches!(bad_url, CourierError::SmtpUrl(_)), "{bad_url:?}");
    assert!(bad_url.is_invalid_input());
    assert!(
        bad_url.to_string().starts_with("invalid smtp_url: "),
        "{bad_url}"
    );

    let partial = CourierSettings {
        dkim_domain: Some("leadcraft.example"),
        ..settings(dir.path(), None)
    };
    let e = refused(&partial);
    assert!(matches!(e, CourierError::DkimIncomplete) && e.is_invalid_input());

    // A templates path that is a file, not a folder: the machine's problem, not the config's.
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    let e = refused(&settings(&file, None));
    assert!(matches!(e, CourierError::Templates(_)), "{e:?}");
    assert!(!e.is_invalid_input());
}
