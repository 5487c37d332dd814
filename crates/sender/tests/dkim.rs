//! DKIM: the signature covers the headers SPEC §5 lists and verifies with an independent
//! verifier (Python's dkimpy, given our public key instead of a DNS lookup).

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::SystemTime;

use nurture_sender::{DkimSigner, OutgoingEmail, build_message};

fn openssl(args: &[&str], dir: &std::path::Path) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .status()
        .expect("openssl is not installed")
        .success();
    assert!(ok, "openssl {args:?} failed");
}

#[test]
fn signature_covers_the_listed_headers_and_verifies_independently() {
    let dir = tempfile::tempdir().unwrap();
    // OpenSSL 3 writes PKCS#8 (`BEGIN PRIVATE KEY`); check PKCS#1 too.
    openssl(&["genrsa", "-out", "key8.pem", "2048"], dir.path());
    openssl(
        &["rsa", "-in", "key8.pem", "-traditional", "-out", "key1.pem"],
        dir.path(),
    );
    openssl(
        &[
            "rsa", "-in", "key8.pem", "-pubout", "-outform", "DER", "-out", "pub.der",
        ],
        dir.path(),
    );
    let long_subject =
        "Ihr E-Book über nachhaltiges Wachstum — Kapitel für Kapitel, mit Übungen ".repeat(3);
    let html = format!(
        "<p>Hello   there,\t\tZoë</p>\n{}\n<p>trailing   </p>  \n\n\n",
        "<a href=\"https://leadcraft.example/x?a=1&amp;b=2\">a   long   line</a> ".repeat(20)
    );
    let cases = [
        (
            "key8.pem",
            "Your ebook",
            Some("Lee"),
            "<p>Hello</p>".to_string(),
            "Hello",
        ),
        (
            "key1.pem",
            long_subject.as_str(),
            Some("Zoë O'Brien-Łukasz, \"the\" reader"),
            html,
            "Hello   there,\t Zoë  \nsecond line   \n\n",
        ),
    ];
    for (key, subject, to_name, html, text) in &cases {
        let pem = std::fs::read_to_string(dir.path().join(key)).unwrap();
        let signer = DkimSigner::new("leadcraft.example", "nurture", &pem).unwrap();
        let m = build_message(
            &OutgoingEmail {
                from_name: Some("Ana"),
                from_address: "ana@leadcraft.example",
                reply_to: Some((Some("Ana's desk"), "hello@leadcraft.example")),
                to_name: *to_name,
                to_address: "lee@x.example",
                subject,
                html,
                text,
                unsubscribe_url: "https://n.example/u/T",
                campaign: "ebook",
                step: "welcome",
                date: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000),
            },
            Some(&signer),
        )
        .unwrap();
        let text = String::from_utf8(m.bytes.clone()).unwrap();
        let sig = text
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .replace("\r\n ", " ")
            .replace("\r\n\t", " ");
        let sig = sig
            .lines()
            .find(|l| l.starts_with("DKIM-Signature:"))
            .unwrap()
            .to_ascii_lowercase();
        for h in [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
        ] {
            assert!(
                sig.split("h=")
                    .nth(1)
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
                    .split(':')
                    .any(|x| x.trim() == h),
                "{h} not signed: {sig}"
            );
        }
        std::fs::write(dir.path().join("msg.eml"), &m.bytes).unwrap();
        let script = r#"
import base64, sys
try:
    import dkim
except ImportError:
    sys.exit("python3 module dkim missing: pip install dkimpy")
pub = base64.b64encode(open("pub.der", "rb").read()).decode()
txt = ("v=DKIM1; k=rsa; p=" + pub).encode()
def dns(name, timeout=5):
    assert name == b"nurture._domainkey.leadcraft.example.", name
    return txt
ok = dkim.verify(open("msg.eml", "rb").read(), dnsfunc=dns)
sys.exit(0 if ok else "signature does not verify")
"#;
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .current_dir(dir.path())
            .output()
            .expect("python3 is not installed");
        assert!(
            out.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn unusable_key_is_a_clear_error() {
    let e = DkimSigner::new("x.example", "s", "not a key").unwrap_err();
    assert!(e.to_string().contains("DKIM private key"), "{e}");
}
