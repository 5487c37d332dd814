//! Rendering cost (issue 7): microseconds per message for each example template in the
//! repository's `templates/`, in the `base` layout, with a preheader, open and click tracking,
//! as the sender renders them (CSS inlined once per template where possible).
//!
//! A second column adds building the MIME message from it (headers, quoted-printable
//! parts), as the courier does before SMTP.
//!
//! `cargo bench -p nurture-sender --bench render` (NURTURE_BENCH_N sets the messages per
//! template, 2,000 by default).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use nurture_sender::{OutgoingEmail, RenderRequest, Templates, Tracking, build_message, context};
use serde_json::{Map, json};

fn main() {
    let n: usize = std::env::var("NURTURE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let templates = Templates::load(&dir).expect("the repository's templates load");
    let attributes: Map<String, serde_json::Value> = serde_json::from_value(
        json!({"first_name": "Ana", "company": "Acme", "timezone": "Europe/Paris"}),
    )
    .unwrap();
    let mut names = Vec::new();
    for group in std::fs::read_dir(&dir).unwrap() {
        let group = group.unwrap().path();
        let g = group.file_name().unwrap().to_string_lossy().into_owned();
        if !group.is_dir() || g == "layouts" || g == "partials" {
            continue;
        }
        for f in std::fs::read_dir(&group).unwrap() {
            let f = f.unwrap().file_name().to_string_lossy().into_owned();
            if let Some(stem) = f.strip_suffix(".html.hbs") {
                names.push(format!("{g}/{stem}"));
            }
        }
    }
    names.sort();
    println!("rendering {n} messages per template (layout base, preheader, tracking)");
    let (mut total, mut total_built) = (0.0, 0.0);
    for name in &names {
        let started = Instant::now();
        let mut bytes = 0;
        let mut building = std::time::Duration::ZERO;
        for i in 0..n {
            let ctx = context(
                &format!("lead{i}@example.com"),
                &attributes,
                &["vip".to_string()],
                &Map::new(),
                "bench",
                "Bench",
                "step",
                "https://n.example/u/TOKEN",
                Some("1 Main St"),
            );
            let out = templates
                .render(&RenderRequest {
                    template: name,
                    layout: Some("base"),
                    subject: "Hi {{default contact.first_name \"there\"}}",
                    preheader: Some("A short preview"),
                    context: &ctx,
                    tracking: Tracking {
                        open_pixel: Some("https://n.example/o/TOKEN".into()),
                        click: Some(Arc::new(|u: &str| {
                            format!("https://n.example/c/{}", u.len())
                        })),
                        keep: Some("https://n.example/u/TOKEN".into()),
                    },
                })
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            bytes = out.html.len() + out.text.len();
            let to = format!("lead{i}@example.com");
            let build_started = Instant::now();
            let built = build_message(
                &OutgoingEmail {
                    from_name: Some("Ana from Leadcraft"),
                    from_address: "ana@leadcraft.example",
                    reply_to: None,
                    to_name: Some("Ana"),
                    to_address: &to,
                    subject: &out.subject,
                    html: &out.html,
                    text: &out.text,
                    unsubscribe_url: "https://n.example/u/TOKEN",
                    campaign: "bench",
                    step: "step",
                    date: std::time::SystemTime::UNIX_EPOCH,
                },
                None,
            )
            .unwrap();
            building += build_started.elapsed();
            std::hint::black_box(built);
        }
        let built_us = building.as_secs_f64() * 1e6 / n as f64;
        let us = started.elapsed().as_secs_f64() * 1e6 / n as f64 - built_us;
        total += us;
        total_built += us + built_us;
        println!(
            "{name:28} {us:8.1} µs/message, {:8.1} with the MIME message  ({bytes} bytes of HTML and text)",
            us + built_us
        );
    }
    println!(
        "{:28} {:8.1} µs/message, {:8.1} with the MIME message, on one core",
        "mean",
        total / names.len() as f64,
        total_built / names.len() as f64
    );
}
