//! DKIM end to end: what `nurture tick` delivers to a real SMTP server with `dkim_*` set
//! verifies with dkimpy, for an RSA and an Ed25519 key; a `dkim_algorithm` that is not the
//! key's stops the run before anything is sent.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nurture_testkit::SmtpSink;

use crate::support::Project;

const CAMPAIGN: &str = r#"name: Welcome
from: "Ana <ana@leadcraft.example>"
trigger: { event: lead.captured }
steps:
  - id: hello
    send: hello
    subject: "Welcome, {{default contact.first_name \"there\"}} — your guide"
"#;

fn openssl(args: &[&str], dir: &Path) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .status()
        .expect("openssl is not installed")
        .success();
    assert!(ok, "openssl {args:?} failed");
}

/// dkimpy's verdict on `message` (LF line ends, as smtp-sink stores it) with the public key
/// `pub.der` (SubjectPublicKeyInfo) of type `k` in `dir`.
fn verifies(dir: &Path, k: &str, message: &[u8]) -> Result<(), String> {
    let crlf = String::from_utf8_lossy(message).replace('\n', "\r\n");
    std::fs::write(dir.join("got.eml"), crlf).unwrap();
    let script = r#"
import base64, sys
import dkim
k = sys.argv[1]
der = open("pub.der", "rb").read()
# Ed25519's record holds the raw 32-byte key, the end of its SubjectPublicKeyInfo.
p = base64.b64encode(der[-32:] if k == "ed25519" else der).decode()
record = ("v=DKIM1; k=%s; p=%s" % (k, p)).encode()
def dns(name, timeout=5):
    assert name == b"nurture._domainkey.leadcraft.example.", name
    return record
sys.exit(0 if dkim.verify(open("got.eml", "rb").read(), dnsfunc=dns) else "does not verify")
"#;
    let out = Command::new("python3")
        .args(["-c", script, k])
        .current_dir(dir)
        .output()
        .expect("python3 is not installed");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn delivered_mail_verifies_with_dkimpy_for_rsa_and_ed25519_keys() {
    for (k, generate) in [
        ("rsa", vec!["genrsa", "-out", "key.pem", "2048"]),
        (
            "ed25519",
            vec!["genpkey", "-algorithm", "ed25519", "-out", "key.pem"],
        ),
    ] {
        let sink = SmtpSink::start();
        let p = Project::new();
        p.file("campaigns/welcome.yaml", CAMPAIGN).file(
            "templates/hello.html.hbs",
            "<p>Hi   {{default contact.first_name \"there\"}},</p>\n\n<p>your   guide.</p>  \n\n<a href=\"{{unsubscribe_url}}\">Unsubscribe</a>\n\n\n",
        );
        openssl(&generate, p.path());
        openssl(
            &[
                "pkey", "-in", "key.pem", "-pubout", "-outform", "DER", "-out", "pub.der",
            ],
            p.path(),
        );
        p.nurture(&[
            "event",
            "zoe@x.example",
            "lead.captured",
            "--attr",
            "first_name=Zoë",
        ])
        .output()
        .success();
        p.nurture(&["tick"])
            .env("NURTURE_SMTP_URL", &sink.url())
            .env("NURTURE_DKIM_DOMAIN", "leadcraft.example")
            .env("NURTURE_DKIM_SELECTOR", "nurture")
            .env("NURTURE_DKIM_PRIVATE_KEY", "key.pem")
            .env("NURTURE_DKIM_ALGORITHM", k)
            .output()
            .success();
        let got = sink.wait_for(1, Duration::from_secs(10));
        assert_eq!(got.len(), 1, "{k}: {got:?}");
        let signature = got[0].header("DKIM-Signature").unwrap();
        assert!(signature.contains(&format!("a={k}-sha256;")), "{signature}");
        verifies(p.path(), k, got[0].message()).unwrap_or_else(|e| panic!("{k}: {e}"));
        // The check is real: one changed byte of the body and dkimpy refuses.
        let mut changed = got[0].message().to_vec();
        let last = changed.len() - 3;
        changed[last] ^= 1;
        assert!(
            verifies(p.path(), k, &changed).is_err(),
            "{k}: a changed body verified"
        );
    }
}

#[test]
fn a_dkim_algorithm_other_than_the_keys_is_invalid_input() {
    let sink = SmtpSink::start();
    let p = Project::new();
    p.file("campaigns/welcome.yaml", CAMPAIGN).file(
        "templates/hello.html.hbs",
        "<p>Hi</p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a>",
    );
    openssl(
        &["genpkey", "-algorithm", "ed25519", "-out", "key.pem"],
        p.path(),
    );
    p.nurture(&["event", "zoe@x.example", "lead.captured"])
        .output()
        .success();
    let out = p
        .nurture(&["tick"])
        .env("NURTURE_SMTP_URL", &sink.url())
        .env("NURTURE_DKIM_DOMAIN", "leadcraft.example")
        .env("NURTURE_DKIM_SELECTOR", "nurture")
        .env("NURTURE_DKIM_PRIVATE_KEY", "key.pem")
        .env("NURTURE_DKIM_ALGORITHM", "rsa")
        .output();
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("dkim_algorithm is `rsa`"),
        "{}",
        out.stderr
    );
    assert!(sink.messages().is_empty());
}
