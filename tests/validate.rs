//! `nurture validate` and `nurture schema` as a marketer meets them.

use crate::support::Project;

const GOOD: &str = r#"name: Welcome
from: "Ana <ana@leadcraft.example>"
trigger: { event: lead.captured }
steps:
  - id: welcome
    send: welcome
    subject: Welcome
"#;

#[test]
fn broken_campaigns_report_every_problem_with_file_line_and_column() {
    let p = Project::new();
    p.file(
        "campaigns/typo.yaml",
        &GOOD.replace("    subject: Welcome", "    subjet: Welcome"),
    )
    .file(
        "campaigns/timing.yaml",
        &GOOD.replace("  - id: welcome\n", "  - id: welcome\n    after: 2 days\n"),
    )
    .file(
        "campaigns/zone.yml",
        &GOOD.replace(
            "trigger: { event: lead.captured }",
            "trigger: { schedule: \"0 9 * * mon\", timezone: Mars/Olympus }",
        ),
    )
    .file("campaigns/notes.txt", "not a campaign");
    let out = p.nurture(&["validate"]).output();
    assert_eq!(out.code, 2, "{out:?}");
    let e = &out.stderr;
    assert!(e.contains("[campaigns/typo.yaml:7:5]"), "{e}");
    assert!(e.contains("unknown key `subjet` in a step"), "{e}");
    assert!(e.contains("did you mean `subject`?"), "{e}");
    assert!(e.contains("[campaigns/timing.yaml:6:12]"), "{e}");
    assert!(e.contains("`2 days` is not a valid duration"), "{e}");
    assert!(e.contains("[campaigns/zone.yml:3:47]"), "{e}");
    assert!(e.contains("unknown time zone `Mars/Olympus`"), "{e}");
    assert!(e.contains("error: 3 problems in 3 files"), "{e}");
}

#[test]
fn two_files_with_the_same_campaign_id_are_refused() {
    let p = Project::new();
    p.file("campaigns/a.yaml", &format!("id: welcome\n{GOOD}"))
        .file("campaigns/b.yaml", &format!("id: welcome\n{GOOD}"));
    let out = p.nurture(&["validate", "campaigns"]).output();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("[campaigns/b.yaml:1:5]"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("campaign id `welcome` is already used by campaigns/a.yaml"),
        "{}",
        out.stderr
    );
}

#[test]
fn alias_bomb_is_refused_without_a_panic() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..15 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let p = Project::new();
    p.file("campaigns/bomb.yaml", &bomb);
    let out = p.nurture(&["validate"]).output();
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("the document is too large"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_path_is_an_input_error() {
    let p = Project::new();
    let out = p.nurture(&["validate", "nowhere"]).output();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("nowhere: no such file or folder"),
        "{}",
        out.stderr
    );
}

#[test]
fn schema_is_json_with_every_campaign_key() {
    let p = Project::new();
    let out = p.nurture(&["schema"]).output().success();
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let props = schema["properties"].as_object().unwrap();
    for key in [
        "id",
        "name",
        "status",
        "from",
        "trigger",
        "steps",
        "send_window",
        "exit_when",
        "reentry",
        "tracking",
    ] {
        assert!(props.contains_key(key), "{key}");
    }
    assert_eq!(schema["title"], "nurture campaign");
}

#[test]
fn example_campaigns_and_templates_validate() {
    let p = Project::new();
    p.with_examples();
    let out = p.nurture(&["validate"]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("ok: 4 campaigns valid"),
        "{}",
        out.stderr
    );
}

#[test]
fn shipped_schema_file_is_current() {
    let p = Project::new();
    let out = p.nurture(&["schema"]).output().success();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/campaign.schema.json"
    ))
    .unwrap();
    assert_eq!(
        out.stdout, shipped,
        "regenerate with: nurture schema > schema/campaign.schema.json"
    );
}

#[test]
fn template_problems_point_at_the_campaign_line() {
    let p = Project::new();
    p.file("campaigns/a.yaml", GOOD)
        .file("templates/welcome.html.hbs", "<p>No way out</p>");
    let out = p.nurture(&["validate"]).output();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("[campaigns/a.yaml:6:11]"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("never reaches {{unsubscribe_url}}"),
        "{}",
        out.stderr
    );
    p.file(
        "templates/welcome.html.hbs",
        "<p>{{#if x}}open</p>{{unsubscribe_url}}",
    );
    let out = p.nurture(&["validate"]).output();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("templates/welcome.html.hbs:1:"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("the template does not compile"),
        "{}",
        out.stderr
    );
    std::fs::remove_file(p.path().join("templates/welcome.html.hbs")).unwrap();
    let out = p.nurture(&["validate"]).output();
    assert!(
        out.stderr
            .contains("the template templates/welcome.html.hbs does not exist"),
        "{}",
        out.stderr
    );
}
