//! `plan`: what an edit will do to the leads in the middle of a sequence — counted from the
//! real enrollments, routed by the engine's own remap rule — while changing nothing.

use std::path::Path;

use crate::support::Project;

fn database_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("nurture.db") && !name.ends_with("-shm")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn lead(p: &Project, email: &str, at: &str) {
    p.nurture(&[
        "event",
        email,
        "lead.captured",
        "--prop",
        "source=ebook",
        "--at",
        at,
    ])
    .output()
    .success();
}

fn tick(p: &Project, now: &str) {
    p.nurture(&["tick", "--now", now]).output().success();
}

/// Three leads wait at `nudge`, one at `case-study`.
fn project_mid_sequence() -> Project {
    let p = Project::new();
    p.with_examples();
    for email in ["a@x.example", "b@x.example", "c@x.example"] {
        lead(&p, email, "2026-11-02T10:00:00Z");
    }
    tick(&p, "2026-11-02T10:00:00Z");
    lead(&p, "d@x.example", "2026-11-04T10:00:00Z");
    tick(&p, "2026-11-04T10:00:00Z");
    p
}

/// Removes `nudge`, rewords `playbook`, adds `webinar-invite` after it.
fn edit_ebook(p: &Project) {
    let path = p.path().join("campaigns/ebook-nurture.yaml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    let from = text.find("  # Day 5: only for those").unwrap();
    let to = text.find("  # Marks the lead as nurtured").unwrap();
    text.replace_range(from..to, "");
    let text = text
        .replace(
            "subject: 'A 5-step lead scoring model you can set up this week'",
            "subject: 'A 6-step lead scoring model'",
        )
        .replace(
            "  # Day 14: the ask.",
            "  - id: webinar-invite\n    after: 2d\n    send: ebook/playbook\n    subject: Join our webinar\n\n  # Day 14: the ask.",
        );
    std::fs::write(&path, text).unwrap();
}

#[test]
fn plan_counts_the_leads_an_edit_touches_and_where_they_go() {
    let p = project_mid_sequence();
    let out = p.nurture(&["plan"]).output().success();
    assert!(
        out.stdout
            .contains("ebook-nurture: unchanged (4 active leads)"),
        "{}",
        out.stdout
    );

    edit_ebook(&p);
    let before = database_bytes(p.path());
    let out = p.nurture(&["plan"]).output().success();
    let expected = "\
ebook-nurture: changed (4 active leads)
  - removed `nudge`
      3 leads wait at `nudge`, which is removed; they will continue at `mark-nurtured`
      1 lead before it will no longer get it
  ~ changed `playbook`: subject \"A 5-step lead scoring model you can set up this week\" → \"A 6-step lead scoring model\"
      4 leads at or before it will get the new version
  + added `webinar-invite` (after `playbook`)
      4 leads at or before it will get it
    unchanged steps: welcome, case-study, mark-nurtured, demo-offer
";
    assert!(out.stdout.contains(expected), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("plan: 1 changed, 0 new, 0 removed, 3 unchanged; nothing was changed"),
        "{}",
        out.stdout
    );
    // Nothing was synced: the database is as it was, and the same plan comes out again.
    assert_eq!(database_bytes(p.path()), before);
    assert_eq!(p.nurture(&["plan"]).output().success().stdout, out.stdout);

    // The engine does what the plan said: the next tick moves the three to `mark-nurtured`,
    // which runs at once, and they wait for `playbook`.
    tick(&p, "2026-11-04T10:00:01Z");
    let show: serde_json::Value = serde_json::from_str(
        &p.nurture(&["contacts", "show", "a@x.example", "--json"])
            .output()
            .success()
            .stdout,
    )
    .unwrap();
    assert_eq!(show["enrollments"][0]["step"], "mark-nurtured");
    tick(&p, "2026-11-07T10:00:00Z");
    let show: serde_json::Value = serde_json::from_str(
        &p.nurture(&["contacts", "show", "a@x.example", "--json"])
            .output()
            .success()
            .stdout,
    )
    .unwrap();
    assert_eq!(show["enrollments"][0]["step"], "playbook");
    assert_eq!(show["tags"], serde_json::json!(["nurtured"]));
    let out = p.nurture(&["plan"]).output().success();
    assert!(
        out.stdout
            .contains("plan: 0 changed, 0 new, 0 removed, 4 unchanged"),
        "{}",
        out.stdout
    );
}

#[test]
fn plan_lists_new_and_removed_campaigns_and_leads_at_a_removed_last_step() {
    let p = project_mid_sequence();
    std::fs::remove_file(p.path().join("campaigns/webinar-follow-up.yaml")).unwrap();
    p.file(
        "campaigns/trial.yaml",
        "name: Trial\nfrom: \"Ana <ana@leadcraft.example>\"\ntrigger: { event: trial.started }\nsteps:\n  - id: mark\n    tag: [trial]\n",
    );
    // Keep only the first two steps: the leads at `nudge` have nowhere to go.
    let path = p.path().join("campaigns/ebook-nurture.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cut = text.find("  # Day 5: only for those").unwrap();
    std::fs::write(&path, &text[..cut]).unwrap();
    let out = p.nurture(&["plan"]).output().success();
    for needle in [
        "3 leads wait at `nudge`, which is removed; they will complete, since no later step remains",
        "  - removed `demo-offer`\n      4 leads before it will no longer get it",
        "trial: new campaign, 1 step: mark",
        "webinar-follow-up: its file is gone; the campaign stops (no active lead)",
        "plan: 1 changed, 1 new, 1 removed, 2 unchanged; nothing was changed",
    ] {
        assert!(
            out.stdout.contains(needle),
            "missing {needle}:\n{}",
            out.stdout
        );
    }
    // Files named one by one say nothing about the campaigns left out.
    let out = p
        .nurture(&["plan", "campaigns/trial.yaml"])
        .output()
        .success();
    assert!(
        out.stdout
            .contains("plan: 0 changed, 1 new, 0 removed, 0 unchanged"),
        "{}",
        out.stdout
    );
}

#[test]
fn plan_refuses_invalid_files_and_needs_no_database() {
    let p = Project::new();
    p.with_examples();
    let out = p.nurture(&["plan"]).output().success();
    assert!(
        out.stdout
            .contains("plan: 0 changed, 4 new, 0 removed, 0 unchanged"),
        "{}",
        out.stdout
    );
    assert!(
        !p.path().join("nurture.db").exists(),
        "plan creates no database"
    );
    p.file("campaigns/broken.yaml", "name: Broken\nsubjet: typo\n");
    let out = p.nurture(&["plan"]).output();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("unknown key `subjet`"),
        "{}",
        out.stderr
    );
}
