//! DKIM: the signature covers the headers SPEC §5 lists and verifies with an independent
//! verifier (Python's dkimpy, given our public key instead of a DNS lookup), for RSA keys in
//! PKCS#8 and PKCS#1 and for Ed25519 (RFC 8463), with every combination of simple and relaxed
//! canonicalisation, on built messages and on hand-written ones with odd white space.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use nurture_sender::{Canonicalization, DkimSigner, OutgoingEmail, build_message};

fn openssl(args: &[&str], dir: &Path) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .status()
        .expect("openssl is not installed")
        .success();
    assert!(ok, "openssl {args:?} failed");
}

/// Keys made with openssl: (file, DNS record's `k=`, file with the public key's DER).
fn keys(dir: &Path) -> [(&'static str, &'static str); 3] {
    // OpenSSL 3 writes PKCS#8 (`BEGIN PRIVATE KEY`); PKCS#1 is what older ones wrote.
    openssl(&["genrsa", "-out", "rsa8.pem", "2048"], dir);
    openssl(
        &["rsa", "-in", "rsa8.pem", "-traditional", "-out", "rsa1.pem"],
        dir,
    );
    openssl(
        &[
            "rsa", "-in", "rsa8.pem", "-pubout", "-outform", "DER", "-out", "rsa.pub",
        ],
        dir,
    );
    openssl(
        &["genpkey", "-algorithm", "ed25519", "-out", "ed25519.pem"],
        dir,
    );
    [
        ("rsa8.pem", "rsa"),
        ("rsa1.pem", "rsa"),
        ("ed25519.pem", "ed25519"),
    ]
}

/// dkimpy verifies every `*.eml` in `dir` against the record in the file named by its
/// `.key` companion; returns the names of those that do not verify, with dkimpy's reason.
fn failing(dir: &Path) -> Vec<String> {
    let script = r#"
import glob, sys
try:
    import dkim
except ImportError:
    sys.exit("python3 module dkim missing: pip install dkimpy")
try:
    import nacl
except ImportError:
    sys.exit("python3 module nacl missing (dkimpy needs it for Ed25519): pip install pynacl")
for eml in sorted(glob.glob("*.eml")):
    record = open(eml[:-4] + ".key", "rb").read()
    def dns(name, timeout=5):
        assert name == b"nurture._domainkey.leadcraft.example.", name
        return record
    d = dkim.DKIM(open(eml, "rb").read())
    try:
        ok = d.verify(dnsfunc=dns)
    except Exception as e:
        ok, why = False, repr(e)
    else:
        why = "signature does not verify"
    if not ok:
        print(eml, why)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("python3 is not installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The DNS TXT record for `signer`: `k=` and the public key (openssl's SubjectPublicKeyInfo
/// for RSA, which is what operators publish; the signer's own for Ed25519).
fn record(dir: &Path, k: &str, signer: &DkimSigner) -> String {
    let p = match k {
        "rsa" => base64_of_file(&dir.join("rsa.pub")),
        _ => signer.public_key_base64(),
    };
    format!("v=DKIM1; k={k}; p={p}")
}

fn base64_of_file(path: &Path) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

fn unfolded_signature(bytes: &[u8]) -> String {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let head = text.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
    head.lines()
        .find(|l| l.starts_with("DKIM-Signature:"))
        .unwrap()
        .to_string()
}

fn tag<'a>(sig: &'a str, name: &str) -> &'a str {
    sig.trim_start_matches("DKIM-Signature:")
        .split(';')
        .filter_map(|t| t.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
        .unwrap()
}

const CANONS: [(Canonicalization, Canonicalization); 4] = [
    (Canonicalization::Relaxed, Canonicalization::Relaxed),
    (Canonicalization::Simple, Canonicalization::Simple),
    (Canonicalization::Relaxed, Canonicalization::Simple),
    (Canonicalization::Simple, Canonicalization::Relaxed),
];

/// Hand-written messages whose bytes a canonicalisation has to get exactly right: folded
/// headers with tabs and runs of spaces, white space around colons and at line ends, and
/// bodies with trailing white space, trailing empty lines, or none at all.
fn raw_messages() -> Vec<Vec<u8>> {
    let head = "From: Ana <ana@leadcraft.example>\r\n\
        To:   \"Lee\t Long-Name\"   <lee@x.example>  \r\n\
        Subject: a subject folded\r\n\tonce with a tab\r\n     and   again with  spaces   \r\n\
        Date: Thu, 26 Sep 2026 10:00:00 +0000\r\n\
        Message-ID:  \t <abc@leadcraft.example>\r\n\
        List-Unsubscribe: <https://n.example/u/T>\r\n\
        List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\
        X-Not-Signed: changes\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\r\n";
    [
        "Hello  there,\t\tLee   \r\n\tindented\r\nend \t \r\n\r\n \r\n\t\r\n\r\n",
        "no final line break",
        "",
        "\r\n\r\n\r\n",
        "  leading white space\r\n\r\n\r\ninner empty lines\r\n",
    ]
    .iter()
    .map(|body| format!("{head}{body}").into_bytes())
    .collect()
}

fn built_message(signer: &DkimSigner, long: bool) -> Vec<u8> {
    let subject = if long {
        "Ihr E-Book über nachhaltiges Wachstum — Kapitel für Kapitel, mit Übungen ".repeat(3)
    } else {
        "Your ebook".to_string()
    };
    let html = if long {
        format!(
            "<html><body><p>Hello   there,\t\tZoë</p>\n{}\n<p>trailing   </p>  \n\n\n</body></html>\n\n\n",
            "<a href=\"https://leadcraft.example/x?a=1&amp;b=2\">a   long   line</a> ".repeat(20)
        )
    } else {
        "<p>Hello</p>".to_string()
    };
    let text = if long {
        "Hello   there,\t Zoë  \nsecond line   \n\n\n\n"
    } else {
        "Hello"
    };
    let to_name = if long {
        "Zoë O'Brien-Łukasz, \"the\" reader with a display name long enough to be folded"
    } else {
        "Lee"
    };
    build_message(
        &OutgoingEmail {
            from_name: Some("Ana"),
            from_address: "ana@leadcraft.example",
            reply_to: Some((Some("Ana's desk"), "hello@leadcraft.example")),
            to_name: Some(to_name),
            to_address: "lee@x.example",
            subject: &subject,
            html: &html,
            text,
            unsubscribe_url: "https://n.example/u/T",
            campaign: "ebook",
            step: "welcome",
            date: SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
        },
        Some(signer),
    )
    .unwrap()
    .bytes
}

#[test]
fn every_key_and_canonicalisation_verifies_with_dkimpy_and_tampering_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut n = 0;
    let mut tampered = Vec::new();
    for (key, k) in keys(dir) {
        let pem = std::fs::read_to_string(dir.join(key)).unwrap();
        for (header, body) in CANONS {
            let signer = DkimSigner::new("leadcraft.example", "nurture", &pem)
                .unwrap()
                .with_canonicalization(header, body);
            let record = record(dir, k, &signer);
            let mut messages = vec![built_message(&signer, false), built_message(&signer, true)];
            for raw in raw_messages() {
                messages.push(signer.sign(&raw, 1_790_000_000).unwrap());
            }
            for m in messages {
                let sig = unfolded_signature(&m);
                let h = tag(&sig, "h");
                for want in nurture_sender::SIGNED_HEADERS {
                    assert!(
                        h.split(':').any(|x| x == want.to_ascii_lowercase()),
                        "{want} not signed: {sig}"
                    );
                }
                assert_eq!(tag(&sig, "a"), format!("{k}-sha256"), "{sig}");
                let name = format!("{n:03}-{key}-{header:?}-{body:?}");
                std::fs::write(dir.join(format!("{name}.eml")), &m).unwrap();
                std::fs::write(dir.join(format!("{name}.key")), &record).unwrap();
                // The same message with one more space inside a body line: relaxed body
                // canonicalisation keeps a space between words, so every algorithm must
                // refuse it; and with a changed signed header.
                let text = String::from_utf8(m).unwrap();
                for (what, changed) in [
                    ("body", text.replacen("\r\n\r\n", "\r\n\r\nX", 1)),
                    (
                        "header",
                        text.replacen("ana@leadcraft.example>", "eve@leadcraft.example>", 1),
                    ),
                ] {
                    assert_ne!(changed, text);
                    let bad = format!("{name}-tampered-{what}");
                    std::fs::write(dir.join(format!("{bad}.eml")), changed).unwrap();
                    std::fs::write(dir.join(format!("{bad}.key")), &record).unwrap();
                    tampered.push(format!("{bad}.eml"));
                }
                n += 1;
            }
        }
    }
    assert_eq!(n, 3 * 4 * 7);
    let mut failed = failing(dir);
    let mut refused: Vec<String> = Vec::new();
    failed.retain(|line| {
        let eml = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        if tampered.contains(&eml) {
            refused.push(eml);
            false
        } else {
            true
        }
    });
    assert!(failed.is_empty(), "dkimpy refused:\n{}", failed.join("\n"));
    refused.sort();
    tampered.sort();
    assert_eq!(refused, tampered, "dkimpy accepted a tampered message");
}

#[test]
fn rsa_public_key_of_the_signer_is_a_record_dkimpy_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    keys(dir);
    let pem = std::fs::read_to_string(dir.join("rsa1.pem")).unwrap();
    let signer = DkimSigner::new("leadcraft.example", "nurture", &pem).unwrap();
    std::fs::write(dir.join("m.eml"), built_message(&signer, true)).unwrap();
    let record = format!("v=DKIM1; k=rsa; p={}", signer.public_key_base64());
    std::fs::write(dir.join("m.key"), record).unwrap();
    assert_eq!(failing(dir), Vec::<String>::new());
}

#[test]
fn unusable_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.pem",
        ],
        dir.path(),
    );
    let ec = std::fs::read_to_string(dir.path().join("ec.pem")).unwrap();
    for pem in ["not a key", ec.as_str()] {
        let e = DkimSigner::new("x.example", "s", pem).unwrap_err();
        assert!(e.to_string().contains("DKIM private key"), "{e}");
        assert!(!e.to_string().contains("BEGIN"), "{e}");
    }
}
