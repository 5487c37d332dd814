//! Rendering cost (issue 7): microseconds per message for each example template in the
//! repository's `templates/`, in the `base` layout, with a preheader, open and click tracking,
//! as the sender renders them (CSS inlined once per template where possible).
//!
//! `cargo bench -p nurture-sender --bench render` (NURTURE_BENCH_N sets the messages per
//! template, 2,000 by default).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use nurture_sender::{RenderRequest, Templates, Tracking, context};
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
    let mut total = 0.0;
    for name in &names {
        let started = Instant::now();
        let mut bytes = 0;
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
        }
        let us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
        total += us;
        println!("{name:28} {us:8.1} µs/message  ({bytes} bytes of HTML and text)");
    }
    println!(
        "{:28} {:8.1} µs/message on one core",
        "mean",
        total / names.len() as f64
    );
}
