//! Delivery into a real Postfix smtp-sink: bytes on the wire, reply classification by phase,
//! reuse of one connection, recovery when the server comes back or closes an idle
//! connection, and bounded waits on a server that stops answering.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use nurture_sender::{BuiltMessage, OutgoingEmail, Phase, SmtpConnection, SmtpUrl, build_message};
use nurture_testkit::{SmtpSink, free_port};

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

/// How many SMTP connections the code under test opened (smtp-sink started with `-v` logs
/// each one; the first is the test kit's readiness probe).
fn connections(sink: &SmtpSink) -> usize {
    sink.log()
        .matches("connect (AF_INET")
        .count()
        .saturating_sub(1)
}

fn connect(sink: &SmtpSink) -> SmtpConnection {
    SmtpConnection::new(SmtpUrl::parse(&sink.url()).unwrap()).with_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn three_messages_on_one_connection_arrive_intact() {
    let sink = SmtpSink::builder().arg("-v").start();
    let mut conn = connect(&sink);
    let mut ids = Vec::new();
    for i in 0..3 {
        let m = message(&format!("lead{i}@x.example"), &format!("Hello {i}"));
        let reply = conn.send(&m).await.unwrap();
        assert!(reply.starts_with("250"), "{reply}");
        ids.push(m.message_id);
    }
    conn.close().await;
    let got = sink.wait_for(3, Duration::from_secs(5));
    assert_eq!(got.len(), 3);
    assert_eq!(connections(&sink), 1, "{}", sink.log());
    for (i, id) in ids.iter().enumerate() {
        let m = got
            .iter()
            .find(|m| m.header("Subject").as_deref() == Some(&*format!("Hello {i}")))
            .unwrap();
        assert_eq!(m.rcpt_to(), [format!("lead{i}@x.example")]);
        assert_eq!(m.mail_from().as_deref(), Some("ana@leadcraft.example"));
        assert_eq!(
            m.header("To").as_deref(),
            Some(&*format!("Lee <lead{i}@x.example>"))
        );
        assert_eq!(m.header("Message-ID").as_deref(), Some(id.as_str()));
        assert_eq!(m.header("X-Nurture-Step").as_deref(), Some("welcome"));
        assert_eq!(
            m.header("List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        // The lone dot survives dot-stuffing (and the body is quoted-printable anyway).
        let text = m.message_text();
        assert!(text.contains("Hello\n.\na lone dot above"), "{text}");
    }
}

#[tokio::test]
async fn four_xx_at_rcpt_is_transient_and_five_xx_is_permanent() {
    let soft = SmtpSink::builder().soft_reject("RCPT").start();
    let mut conn = connect(&soft);
    let e = conn.send(&message("a@x.example", "s")).await.unwrap_err();
    assert!(
        e.is_transient() && !e.is_permanent() && !e.is_unknown(),
        "{e:?}"
    );
    assert_eq!((e.phase, e.code), (Phase::Rcpt, Some(450)));

    let hard = SmtpSink::builder().hard_reject("RCPT").arg("-v").start();
    let mut conn = connect(&hard);
    let e = conn.send(&message("a@x.example", "s")).await.unwrap_err();
    assert!(e.is_permanent() && !e.is_transient(), "{e:?}");
    assert_eq!((e.phase, e.code), (Phase::Rcpt, Some(500)));
    assert!(e.reply.contains("RCPT TO"), "{}", e.reply);
    // The connection survives a refused recipient.
    let e2 = conn.send(&message("b@x.example", "s")).await.unwrap_err();
    assert!(e2.is_permanent());
    assert!(hard.messages().is_empty());
    assert_eq!(connections(&hard), 1, "kept one connection: {}", hard.log());
}

#[tokio::test]
async fn five_xx_at_data_or_after_the_content_is_permanent() {
    for (command, phase) in [("DATA", Phase::Data), (".", Phase::Message)] {
        let sink = SmtpSink::builder().hard_reject(command).start();
        let mut conn = connect(&sink);
        let e = conn.send(&message("a@x.example", "s")).await.unwrap_err();
        assert!(e.is_permanent(), "{command}: {e:?}");
        assert_eq!(e.phase, phase, "{command}");
        assert_eq!(e.code.map(|c| c / 100), Some(5));
    }
}

#[tokio::test]
async fn five_xx_at_mail_from_is_about_us_and_transient() {
    let sink = SmtpSink::builder().hard_reject("MAIL").start();
    let mut conn = connect(&sink);
    let e = conn.send(&message("a@x.example", "s")).await.unwrap_err();
    assert!(e.is_transient(), "the contact must not bounce: {e:?}");
    assert_eq!((e.phase, e.code.map(|c| c / 100)), (Phase::Mail, Some(5)));
}

#[tokio::test]
async fn nothing_listening_is_transient() {
    let url = format!("smtp://127.0.0.1:{}", free_port());
    let mut conn =
        SmtpConnection::new(SmtpUrl::parse(&url).unwrap()).with_timeout(Duration::from_secs(5));
    let e = conn.send(&message("a@x.example", "s")).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert_eq!((e.phase, e.code), (Phase::Connect, None));
    assert!(e.reply.contains("cannot connect"), "{}", e.reply);
}

#[tokio::test]
async fn server_down_is_transient_and_recovery_reconnects() {
    let mut sink = SmtpSink::start();
    let mut conn = connect(&sink);
    conn.send(&message("a@x.example", "before")).await.unwrap();
    sink.stop();
    let e = conn
        .send(&message("a@x.example", "during"))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    sink.restart();
    conn.send(&message("a@x.example", "after")).await.unwrap();
    let got = sink.wait_for(2, Duration::from_secs(5));
    let subjects: Vec<_> = got.iter().filter_map(|m| m.header("Subject")).collect();
    assert!(subjects.iter().any(|s| s == "after"), "{subjects:?}");
    assert!(!subjects.iter().any(|s| s == "during"), "{subjects:?}");
}

#[tokio::test]
async fn an_idle_connection_the_server_closed_is_replaced_without_failing_the_message() {
    let mut sink = SmtpSink::start();
    let mut conn = connect(&sink);
    conn.send(&message("a@x.example", "first")).await.unwrap();
    // The server goes away and comes back while our connection sits idle: the socket we
    // hold is dead, which we only learn when the next message's MAIL FROM gets no answer.
    sink.restart();
    let reply = conn.send(&message("a@x.example", "second")).await;
    assert!(reply.is_ok(), "{reply:?}");
    let got = sink.wait_for(2, Duration::from_secs(5));
    assert!(
        got.iter()
            .any(|m| m.header("Subject").as_deref() == Some("second"))
    );
}

#[tokio::test]
async fn a_server_that_closes_with_421_at_mail_is_transient() {
    let sink = SmtpSink::builder().arg("-Q").arg("MAIL").start();
    let mut conn = connect(&sink);
    let e = conn.send(&message("a@x.example", "s")).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert_eq!((e.phase, e.code), (Phase::Mail, Some(421)));
}

#[tokio::test]
async fn hang_up_at_data_is_transient_not_unknown() {
    let sink = SmtpSink::builder().hang_up_on("DATA").start();
    let mut conn = connect(&sink);
    let e = conn.send(&message("a@x.example", "s")).await.unwrap_err();
    assert!(e.is_transient() && !e.is_unknown(), "{e:?}");
    assert_eq!(e.phase, Phase::Data);
}

#[tokio::test]
async fn no_answer_after_the_content_is_unknown_and_bounded_in_time() {
    // smtp-sink waits 30 s before answering the final `.`: the message may well be accepted.
    let sink = SmtpSink::builder().arg("-W").arg(".:30").start();
    let mut conn = SmtpConnection::new(SmtpUrl::parse(&sink.url()).unwrap())
        .with_timeout(Duration::from_secs(1));
    let e = conn.send(&message("a@x.example", "s")).await.unwrap_err();
    assert!(
        e.is_unknown() && !e.is_transient() && !e.is_permanent(),
        "{e:?}"
    );
    assert_eq!((e.phase, e.code), (Phase::Message, None));
    // The configured bound, not the 30 s default: the final reply gets twice the base.
    assert!(e.to_string().contains("waited 2s"), "{e}");
}

#[tokio::test]
async fn no_answer_to_data_is_transient() {
    let sink = SmtpSink::builder().arg("-w").arg("30").start();
    let mut conn = SmtpConnection::new(SmtpUrl::parse(&sink.url()).unwrap())
        .with_timeout(Duration::from_secs(1));
    let e = conn.send(&message("a@x.example", "s")).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert_eq!((e.phase, e.code), (Phase::Data, None));
    assert!(e.to_string().contains("waited 1s"), "{e}");
}

#[tokio::test]
async fn a_password_is_never_sent_in_clear_unless_tls_none_says_so() {
    let sink = SmtpSink::start();
    let url = format!("smtp://ana:hunter2@127.0.0.1:{}", sink.port());
    let mut conn =
        SmtpConnection::new(SmtpUrl::parse(&url).unwrap()).with_timeout(Duration::from_secs(5));
    let e = conn.send(&message("a@x.example", "s")).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(e.reply.contains("tls=none"), "{}", e.reply);
    assert!(!format!("{e} {e:?} {conn:?}").contains("hunter2"));

    let mut conn = SmtpConnection::new(SmtpUrl::parse(&format!("{url}?tls=none")).unwrap())
        .with_timeout(Duration::from_secs(5));
    conn.send(&message("a@x.example", "authenticated"))
        .await
        .unwrap();
    sink.wait_for(1, Duration::from_secs(5));
}

#[tokio::test]
async fn tls_required_without_starttls_is_refused() {
    let sink = SmtpSink::start();
    let url = format!("smtp://127.0.0.1:{}?tls=required", sink.port());
    let mut conn =
        SmtpConnection::new(SmtpUrl::parse(&url).unwrap()).with_timeout(Duration::from_secs(5));
    let e = conn.send(&message("a@x.example", "s")).await.unwrap_err();
    assert!(e.is_transient() && e.phase == Phase::Connect, "{e:?}");
    assert!(e.reply.contains("STARTTLS"), "{}", e.reply);
    assert!(sink.messages().is_empty());
}

/// Where a [`Stalling`] server stops answering (and keeps the connection open, reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// Accepts the connection and never says `220`.
    Greeting,
    /// The `n`-th command of the conversation (0-based, the first EHLO is 0).
    Command(usize),
    /// Reads the content up to the final `.` and never answers it.
    FinalReply,
}

/// A scripted SMTP server on a real TCP listener: answers like a plain server (EHLO with the
/// given extensions, 250 to MAIL, RCPT, RSET, 235 to AUTH, 354 to DATA) until it reaches
/// `stall`, then goes silent without closing. Each connection gets the same script.
struct Stalling {
    port: u16,
}

impl Stalling {
    fn start(stall: Stall, extensions: &'static [&'static str]) -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut out = stream.try_clone().unwrap();
                    let mut lines = BufReader::new(stream);
                    // Reads (and drops) everything until the client hangs up.
                    let drain = |lines: &mut BufReader<std::net::TcpStream>| {
                        let mut sink = Vec::new();
                        let _ = std::io::Read::read_to_end(lines, &mut sink);
                    };
                    if stall == Stall::Greeting {
                        return drain(&mut lines);
                    }
                    let _ = out.write_all(b"220 stalling.example ESMTP\r\n");
                    let mut command = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if stall == Stall::Command(command) {
                            return drain(&mut lines);
                        }
                        command += 1;
                        let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
                        let reply = match verb.as_str() {
                            "EHLO" => {
                                let mut r = String::from("250-stalling.example\r\n");
                                for e in extensions {
                                    r.push_str(&format!("250-{e}\r\n"));
                                }
                                r.push_str("250 8BITMIME\r\n");
                                r
                            }
                            "AUTH" => "235 2.7.0 ok\r\n".into(),
                            "DATA" => {
                                let _ = out.write_all(b"354 go ahead\r\n");
                                // The content, up to the lone dot.
                                loop {
                                    line.clear();
                                    if lines.read_line(&mut line).unwrap_or(0) == 0 {
                                        return;
                                    }
                                    if line == ".\r\n" {
                                        break;
                                    }
                                }
                                if stall == Stall::FinalReply {
                                    return drain(&mut lines);
                                }
                                "250 2.0.0 queued\r\n".into()
                            }
                            "QUIT" => {
                                let _ = out.write_all(b"221 bye\r\n");
                                return;
                            }
                            _ => "250 2.0.0 ok\r\n".into(),
                        };
                        let _ = out.write_all(reply.as_bytes());
                    }
                });
            }
        });
        Self { port }
    }

    fn url(&self, user: &str) -> String {
        format!("smtp://{user}127.0.0.1:{}?tls=none", self.port)
    }
}

/// Sends one message with a one-second timeout; a generous outer deadline turns a hang
/// (the bug) into a failure instead of a stuck test run.
async fn send_with_short_timeout(url: &str) -> Result<String, nurture_sender::SendError> {
    let mut conn =
        SmtpConnection::new(SmtpUrl::parse(url).unwrap()).with_timeout(Duration::from_secs(1));
    tokio::time::timeout(
        Duration::from_secs(60),
        conn.send(&message("a@x.example", "s")),
    )
    .await
    .expect("the send is bounded by its timeout, not stuck")
}

#[tokio::test]
async fn a_server_that_accepts_and_never_greets_is_a_transient_connect_timeout() {
    let server = Stalling::start(Stall::Greeting, &[]);
    let e = send_with_short_timeout(&server.url("")).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert_eq!((e.phase, e.code), (Phase::Connect, None));
    assert!(e.reply.contains("in time"), "{}", e.reply);
}

#[tokio::test]
async fn a_server_silent_at_any_step_before_the_content_is_transient_after_it_unknown() {
    // (where it stalls, its EHLO extensions, credentials in the URL, what the send reports)
    let cases: &[(Stall, &[&str], &str, Phase)] = &[
        (Stall::Command(0), &[], "", Phase::Connect), // EHLO
        (Stall::Command(1), &[], "", Phase::Connect), // the second EHLO (for PIPELINING)
        (
            Stall::Command(2),
            &["AUTH PLAIN LOGIN"],
            "ana:pw@",
            Phase::Connect,
        ), // AUTH
        (Stall::Command(2), &[], "", Phase::Mail),
        (Stall::Command(3), &[], "", Phase::Rcpt),
        (Stall::Command(4), &[], "", Phase::Data),
        // Pipelined: MAIL, RCPT and DATA go as one group, answered when DATA is reached.
        (Stall::Command(2), &["PIPELINING"], "", Phase::Data),
    ];
    for &(stall, extensions, user, phase) in cases {
        let server = Stalling::start(stall, extensions);
        let e = send_with_short_timeout(&server.url(user))
            .await
            .unwrap_err();
        assert!(
            e.is_transient() && !e.is_unknown(),
            "{stall:?} {extensions:?}: {e:?}"
        );
        assert_eq!((e.phase, e.code), (phase, None), "{stall:?} {extensions:?}");
    }
    // With STARTTLS offered (and so tried): no answer to STARTTLS.
    let server = Stalling::start(Stall::Command(1), &["STARTTLS"]);
    let url = format!("smtp://127.0.0.1:{}", server.port);
    let e = send_with_short_timeout(&url).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert_eq!(e.phase, Phase::Connect);

    // The whole content sent, the final reply never comes: it may have been accepted.
    for extensions in [&[][..], &["PIPELINING"][..]] {
        let server = Stalling::start(Stall::FinalReply, extensions);
        let e = send_with_short_timeout(&server.url("")).await.unwrap_err();
        assert!(
            e.is_unknown() && !e.is_transient() && !e.is_permanent(),
            "{extensions:?}: {e:?}"
        );
        assert_eq!((e.phase, e.code), (Phase::Message, None));
    }
    // And the scripted server does deliver when nothing stalls.
    let server = Stalling::start(Stall::Command(usize::MAX), &["PIPELINING"]);
    let reply = send_with_short_timeout(&server.url("")).await.unwrap();
    assert!(reply.starts_with("250"), "{reply}");
}
