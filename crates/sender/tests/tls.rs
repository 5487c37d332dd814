//! SMTP over TLS with AUTH against a real server (aiosmtpd) whose certificate comes from a CA
//! made in the test: trusted through `smtp_ca_file` ([`TlsTrust::with_ca_file`]), refused in
//! one sentence without it, for STARTTLS and implicit TLS alike.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use nurture_sender::{
    BuiltMessage, OutgoingEmail, Phase, SmtpConnection, SmtpUrl, TlsTrust, build_message,
};
use nurture_testkit::{TestCa, TlsMode, TlsSmtpServer};

fn message(to: &str, subject: &str) -> BuiltMessage {
    build_message(
        &OutgoingEmail {
            from_name: Some("Ana"),
            from_address: "ana@leadcraft.example",
            reply_to: None,
            to_name: None,
            to_address: to,
            subject,
            html: "<p>Hello over TLS</p>\n.\n",
            text: "Hello over TLS\n.\n",
            unsubscribe_url: "https://n.example/u/T",
            campaign: "ebook",
            step: "welcome",
            date: SystemTime::UNIX_EPOCH,
        },
        None,
    )
    .unwrap()
}

fn connection(server: &TlsSmtpServer, trust: Option<&TestCa>) -> SmtpConnection {
    let conn = SmtpConnection::new(SmtpUrl::parse(&server.url()).unwrap())
        .with_timeout(Duration::from_secs(10));
    match trust {
        Some(ca) => conn.with_trust(TlsTrust::with_ca_file(&ca.ca_file()).unwrap()),
        None => conn,
    }
}

/// Sends two messages on one connection through a server of `mode` trusted via
/// `smtp_ca_file`, and checks what the server received.
async fn delivers_with_the_ca_file(mode: TlsMode) {
    let ca = TestCa::new();
    let server = TlsSmtpServer::start(mode, &ca);
    let mut conn = connection(&server, Some(&ca));
    let first = message("lee@x.example", "Welcome over TLS");
    let second = message("kim@y.example", "Second on the same connection");
    for m in [&first, &second] {
        let reply = conn.send(m).await.unwrap();
        assert!(reply.starts_with("250"), "{reply}");
    }
    conn.close().await;

    let got = server.wait_for(2, Duration::from_secs(10));
    assert_eq!(got.len(), 2, "{got:?}");
    for (received, sent) in got.iter().zip([&first, &second]) {
        assert_eq!(received.mail_from, "ana@leadcraft.example");
        assert_eq!(received.rcpt_to, [sent.to.as_str()]);
        assert_eq!(
            received.auth_user,
            TlsSmtpServer::USER,
            "AUTH did not happen"
        );
        assert!(received.tls.starts_with("TLSv1."), "{}", received.tls);
        // Byte for byte what was built, up to the line ends that SMTP's framing adds at the
        // end (the server unstuffs the dots).
        let trim = |b: &[u8]| {
            let mut b = b.to_vec();
            while b.ends_with(b"\r\n") {
                b.truncate(b.len() - 2);
            }
            b
        };
        assert_eq!(
            trim(&received.data),
            trim(&sent.bytes),
            "{}",
            received.text()
        );
    }
    assert!(got[0].text().contains("Subject: Welcome over TLS\r\n"));
}

#[tokio::test]
async fn starttls_with_auth_delivers_when_smtp_ca_file_names_the_servers_ca() {
    delivers_with_the_ca_file(TlsMode::StartTls).await;
}

#[tokio::test]
async fn implicit_tls_with_auth_delivers_when_smtp_ca_file_names_the_servers_ca() {
    delivers_with_the_ca_file(TlsMode::Implicit).await;
}

/// Without the CA the handshake fails: one transient sentence naming the server and the
/// reason, nothing delivered, no password sent.
async fn refused_without_the_ca(mode: TlsMode) {
    let ca = TestCa::new();
    let server = TlsSmtpServer::start(mode, &ca);
    let mut conn = connection(&server, None);
    let e = conn
        .send(&message("lee@x.example", "Never arrives"))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "cannot deliver through 127.0.0.1:{}: the server's certificate is not trusted (unknown issuer); add its CA to the system store or set smtp_ca_file",
            server.port()
        )
    );
    assert!(e.is_transient(), "{e:?}");
    assert_eq!((e.phase, e.code), (Phase::Connect, None));
    assert!(!e.to_string().contains(TlsSmtpServer::PASSWORD));
    // A retry fails the same way (the connection was dropped, not left half-open).
    let again = conn
        .send(&message("lee@x.example", "Never arrives"))
        .await
        .unwrap_err();
    assert_eq!(again.to_string(), e.to_string());
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn starttls_to_a_server_of_an_unknown_ca_fails_in_one_sentence() {
    refused_without_the_ca(TlsMode::StartTls).await;
}

#[tokio::test]
async fn implicit_tls_to_a_server_of_an_unknown_ca_fails_in_one_sentence() {
    refused_without_the_ca(TlsMode::Implicit).await;
}

#[test]
fn a_ca_file_is_trusted_on_top_of_the_system_store() {
    let ca = TestCa::new();
    let system = TlsTrust::system();
    let both = TlsTrust::with_ca_file(&ca.ca_file()).unwrap();
    assert_eq!(both.len(), system.len() + 1);
    // A bundle of two certificates adds both (a server certificate is a valid anchor too).
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.pem");
    let mut pem = std::fs::read(ca.ca_file()).unwrap();
    pem.extend(std::fs::read(ca.cert_file()).unwrap());
    std::fs::write(&bundle, pem).unwrap();
    assert_eq!(
        TlsTrust::with_ca_file(&bundle).unwrap().len(),
        system.len() + 2
    );
}
