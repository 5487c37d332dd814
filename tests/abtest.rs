//! Frequency caps and A/B tests end to end (SPEC §13): `[[frequency]]` in nurture.toml holds
//! the second campaign's email to the next day (tick, explain, stats), `NURTURE_FREQUENCY`
//! overrides it, `simulate` shows the cap and the split, and `stats --json` shows the
//! variants with no winner on a small sample.

use serde_json::Value;

use crate::support::Project;

const TEMPLATE: &str =
    "<p>Hello {{contact.email}}</p><p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p>\n";

fn campaign(id: &str, steps: &str) -> String {
    format!(
        "id: {id}\nfrom: ana@leadcraft.example\ntrigger: {{ event: lead.captured }}\nsteps:\n{steps}"
    )
}

fn greeting(id: &str) -> String {
    campaign(
        id,
        &format!("  - id: hello\n    send: hello\n    subject: Hello from {id}\n"),
    )
}

fn project(toml: &str, campaigns: &[(&str, String)]) -> Project {
    let p = Project::new();
    p.file("templates/hello.html.hbs", TEMPLATE)
        .file("templates/hello-b.html.hbs", TEMPLATE)
        .file("nurture.toml", toml);
    for (id, text) in campaigns {
        p.file(&format!("campaigns/{id}.yaml"), text);
    }
    p
}

fn outbox(p: &Project) -> usize {
    std::fs::read_dir(p.path().join("outbox"))
        .map(|d| d.filter(|e| e.is_ok()).count())
        .unwrap_or(0)
}

const CAP: &str = "[[frequency]]\nmax = 1\nper = \"1d\"\n";

#[test]
fn cap_of_one_a_day_postpones_the_second_campaign_to_the_next_day() {
    // Arrange
    let p = project(
        CAP,
        &[("alpha", greeting("alpha")), ("beta", greeting("beta"))],
    );
    p.nurture(&[
        "event",
        "ana@x.example",
        "lead.captured",
        "--at",
        "2026-03-02T09:00:00Z",
    ])
    .output()
    .success();

    // Act: the day the lead arrives, and the next.
    p.nurture(&["tick", "--now", "2026-03-02T09:00:00Z"])
        .output()
        .success();
    let first_day = outbox(&p);
    p.nurture(&["tick", "--now", "2026-03-03T08:59:00Z"])
        .output()
        .success();
    let almost = outbox(&p);
    let explain = p
        .nurture(&["explain", "ana@x.example"])
        .output()
        .success()
        .stdout;
    p.nurture(&["tick", "--now", "2026-03-03T09:00:00Z"])
        .output()
        .success();

    // Assert
    assert_eq!((first_day, almost, outbox(&p)), (1, 1, 2));
    assert!(
        explain.contains("postponed  (frequency cap)") && explain.contains("2026-03-03T09:00:00Z"),
        "{explain}"
    );
    let stats: Value =
        serde_json::from_str(&p.nurture(&["stats", "--json"]).output().success().stdout).unwrap();
    let postponed: i64 = stats["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["steps"][0]["postponed_by_frequency_cap"]
                .as_i64()
                .unwrap()
        })
        .sum();
    assert_eq!(postponed, 1, "{stats:#}");
}

#[test]
fn nurture_frequency_overrides_the_file() {
    let p = project(
        CAP,
        &[("alpha", greeting("alpha")), ("beta", greeting("beta"))],
    );
    p.nurture(&[
        "event",
        "ana@x.example",
        "lead.captured",
        "--at",
        "2026-03-02T09:00:00Z",
    ])
    .output()
    .success();
    p.nurture(&["tick", "--now", "2026-03-02T09:00:00Z"])
        .env("NURTURE_FREQUENCY", "none")
        .output()
        .success();
    assert_eq!(outbox(&p), 2);

    let bad = p
        .nurture(&["stats"])
        .env("NURTURE_FREQUENCY", "lots")
        .output();
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("NURTURE_FREQUENCY"), "{}", bad.stderr);
    let zero = project("[[frequency]]\nmax = 0\nper = \"1d\"\n", &[]);
    let out = zero.nurture(&["stats"]).output();
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("`max` must be at least 1"),
        "{}",
        out.stderr
    );
}

#[test]
fn simulate_shows_the_cap_and_the_split() {
    let steps = "  - id: fork\n    split:\n      - { id: quick, goto: first }\n      - { id: also, goto: first }\n  - id: first\n    send: hello\n    subject: First\n  - id: second\n    after: 1h\n    send: hello\n    subject: Second\n";
    let p = project(CAP, &[("drip", campaign("drip", steps))]);
    p.file("lead.json", r#"{"contact": {"email": "ana@x.example"}}"#);
    let out = p
        .nurture(&[
            "simulate",
            "drip",
            "--data",
            "lead.json",
            "--start",
            "2026-03-02T09:00:00Z",
            "--json",
        ])
        .output()
        .success();
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    let timeline = doc["timeline"].as_array().unwrap();
    let find = |step: &str, outcome: &str| {
        timeline
            .iter()
            .find(|l| l["step"] == step && l["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {step} {outcome} in {doc:#}"))
    };
    let arm = nurture_scheduler::split::assign(
        "drip",
        "ana@x.example",
        "fork",
        &[("quick", 1), ("also", 1)],
    )
    .unwrap();
    assert_eq!(
        find("fork", "split")["reason"],
        format!("arm `{arm}`: went on to `first`")
    );
    assert_eq!(find("first", "sent")["at"], "2026-03-02T09:00:00Z");
    let postponed = find("second", "postponed");
    assert_eq!(postponed["at"], "2026-03-02T10:00:00Z");
    assert!(
        postponed["reason"]
            .as_str()
            .unwrap()
            .starts_with("(frequency cap)"),
        "{postponed}"
    );
    assert_eq!(find("second", "sent")["at"], "2026-03-03T09:00:00Z");
}

#[test]
fn stats_show_variants_and_no_winner_on_a_small_sample() {
    let steps = "  - id: hello\n    send: hello\n    subject: Hello\n    variants:\n      - { id: a }\n      - { id: b, subject: Hey, send: hello-b }\n";
    let p = project("", &[("greet", campaign("greet", steps))]);
    for i in 0..6 {
        p.nurture(&[
            "event",
            &format!("lead{i}@x.example"),
            "lead.captured",
            "--at",
            "2026-03-02T09:00:00Z",
        ])
        .output()
        .success();
    }
    p.nurture(&["tick", "--now", "2026-03-02T09:00:00Z"])
        .output()
        .success();
    let stats: Value = serde_json::from_str(
        &p.nurture(&["stats", "greet", "--json"])
            .output()
            .success()
            .stdout,
    )
    .unwrap();
    let step = &stats["campaigns"][0]["steps"][0];
    let variants = step["variants"].as_array().unwrap();
    let ids: Vec<&str> = variants.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b"]);
    let sent: i64 = variants.iter().map(|v| v["sent"].as_i64().unwrap()).sum();
    assert_eq!(sent, 6);
    for v in variants {
        for key in ["opened", "clicked", "goal"] {
            assert_eq!(v[key], 0, "{v}");
        }
    }
    assert_eq!(step["winner"], Value::Null);
    let table = p.nurture(&["stats", "greet"]).output().success().stdout;
    assert!(table.contains("A/B test at `hello` on clicked"), "{table}");
    assert!(table.contains("no winner yet"), "{table}");
}
