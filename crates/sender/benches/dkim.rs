//! DKIM signing cost (issue 21): microseconds of one core per signed message, for a
//! 2048-bit RSA key (`rsa-sha256`, OpenSSL) and an Ed25519 key (`ed25519-sha256`), each with
//! relaxed/relaxed canonicalisation of a 7 KB message; `openssl speed` is the reference for
//! the bare signature (printed by bench/run-all beside it).
//!
//! `cargo bench -p nurture-sender --bench dkim` (NURTURE_BENCH_N sets the signatures, 2,000).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;
use std::time::Instant;

use nurture_sender::DkimSigner;

fn main() {
    let n: usize = std::env::var("NURTURE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let body =
        "<p>Hello   there, a line of a newsletter with some words in it.</p>\r\n".repeat(100);
    let message = format!(
        "From: Ana <ana@leadcraft.example>\r\nTo: Lee <lee@x.example>\r\nSubject: Your guide\r\n\
         Date: Thu, 26 Sep 2026 10:00:00 +0000\r\nMessage-ID: <abc@leadcraft.example>\r\n\
         List-Unsubscribe: <https://n.example/u/T>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n{body}"
    );
    for (name, args) in [
        (
            "rsa-sha256 (2048-bit)",
            vec!["genrsa", "-out", "k.pem", "2048"],
        ),
        (
            "ed25519-sha256",
            vec!["genpkey", "-algorithm", "ed25519", "-out", "k.pem"],
        ),
    ] {
        let ok = Command::new("openssl")
            .args(&args)
            .current_dir(dir.path())
            .output()
            .expect("openssl is installed")
            .status
            .success();
        assert!(ok);
        let pem = std::fs::read_to_string(dir.path().join("k.pem")).unwrap();
        let signer = DkimSigner::new("leadcraft.example", "nurture", &pem).unwrap();
        let t = Instant::now();
        let mut bytes = 0;
        for i in 0..n {
            bytes += signer.sign(message.as_bytes(), i as u64).unwrap().len();
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!(
            "{name:24} {us:8.1} µs per {} byte message signed ({n} signatures, {bytes} bytes out)",
            message.len()
        );
    }
}
