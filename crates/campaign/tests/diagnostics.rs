//! One test per diagnostic: a valid campaign with one mistake, and the exact place and words
//! of the problem reported.

#![allow(clippy::unwrap_used)]

use nurture_campaign::{Action, SourceFile, Status, Trigger, parse_campaign};

const VALID: &str = r#"name: Ebook nurture
from: "Ana <ana@leadcraft.example>"
trigger:
  event: lead.captured
  when: { property: source, equals: ebook }
steps:
  - id: welcome
    send: ebook/welcome
    subject: Your ebook
  - id: case-study
    after: 2d
    send: ebook/case-study
    subject: A case study
  - id: nudge
    after: 3d
    when: { not: { clicked: case-study } }
    send: ebook/nudge
    subject: Did you read it?
"#;

/// (line, col, message, hint) of every problem in `yaml`.
fn problems(yaml: &str) -> Vec<(usize, usize, String, String)> {
    match parse_campaign(SourceFile::new("c.yaml", yaml), "c") {
        Ok(_) => Vec::new(),
        Err(diags) => diags
            .into_iter()
            .map(|d| {
                let s = d.span.unwrap_or_default();
                (s.line, s.col, d.message, d.hint.unwrap_or_default())
            })
            .collect(),
    }
}

fn one(yaml: &str) -> (usize, usize, String, String) {
    let p = problems(yaml);
    assert_eq!(p.len(), 1, "expected one problem, got {p:#?}");
    p.into_iter().next().unwrap()
}

fn with(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "{from}");
    VALID.replacen(from, to, 1)
}

#[test]
fn valid_campaign_loads_with_defaults() {
    let file = parse_campaign(SourceFile::new("ebook.yaml", VALID), "ebook").unwrap();
    let c = file.campaign;
    assert_eq!(c.id.as_str(), "ebook");
    assert_eq!(c.status, Status::Active);
    assert!(
        matches!(c.trigger, Trigger::Event { ref name, when: Some(_) } if name == "lead.captured")
    );
    assert_eq!(c.steps.len(), 3);
    assert_eq!(c.steps[1].after.unwrap().as_secs(), 2 * 86_400);
    assert!(matches!(c.steps[0].action, Action::Send(_)));
    assert!(c.tracking.opens && c.tracking.clicks);
}

#[test]
fn unknown_key_suggests_the_near_miss() {
    let (line, col, msg, hint) = one(&with("    subject: Your ebook", "    subjet: Your ebook"));
    assert_eq!((line, col), (9, 5));
    assert_eq!(msg, "unknown key `subjet` in a step");
    assert_eq!(hint, "did you mean `subject`?");
}

#[test]
fn unknown_top_level_key() {
    let (line, col, msg, hint) = one(&format!("{VALID}tracks: false\n"));
    assert_eq!((line, col), (19, 1));
    assert_eq!(msg, "unknown key `tracks` in a campaign");
    assert_eq!(hint, "did you mean `tracking`?");
}

#[test]
fn wrong_type_is_named() {
    let (line, col, msg, _) = one(&with("    subject: Your ebook", "    subject: [a, b]"));
    assert_eq!((line, col), (9, 14));
    assert_eq!(msg, "`subject` must be text, found a list");
}

#[test]
fn invalid_duration() {
    let (line, col, msg, hint) = one(&with("after: 2d", "after: 2 days"));
    assert_eq!((line, col), (11, 12));
    assert!(msg.starts_with("`2 days` is not a valid duration"), "{msg}");
    assert!(hint.contains("1d12h"));
}

#[test]
fn invalid_cron() {
    let yaml = with(
        "  event: lead.captured\n  when: { property: source, equals: ebook }",
        "  schedule: \"0 25 * * mon\"",
    );
    let (line, col, msg, _) = one(&yaml);
    assert_eq!((line, col), (4, 13));
    assert!(
        msg.starts_with("invalid cron schedule `0 25 * * mon`"),
        "{msg}"
    );
}

#[test]
fn unknown_time_zone_suggests() {
    let yaml = with(
        "  event: lead.captured\n  when: { property: source, equals: ebook }",
        "  schedule: \"0 9 * * mon\"\n  timezone: Europe/Berln",
    );
    let (line, col, msg, hint) = one(&yaml);
    assert_eq!((line, col), (5, 13));
    assert_eq!(msg, "unknown time zone `Europe/Berln`");
    assert_eq!(hint, "did you mean `Europe/Berlin`?");
}

#[test]
fn invalid_from_address() {
    let (line, col, msg, _) = one(&with("ana@leadcraft.example", "ana.leadcraft.example"));
    assert_eq!((line, col), (2, 7));
    assert!(msg.starts_with("invalid `from` address"), "{msg}");
}

#[test]
fn invalid_reply_to_address() {
    let (line, _, msg, _) = one(&format!("{VALID}reply_to: hello@\n"));
    assert_eq!(line, 19);
    assert!(msg.starts_with("invalid `reply_to` address"), "{msg}");
}

#[test]
fn duplicate_step_id() {
    let (line, col, msg, _) = one(&with("  - id: nudge", "  - id: welcome"));
    assert_eq!((line, col), (14, 9));
    assert_eq!(
        msg,
        "duplicate step id `welcome` (also step 1 of this campaign)"
    );
}

#[test]
fn goto_unknown_step() {
    let (line, col, msg, hint) = one(&format!("{VALID}  - id: again\n    goto: welcom\n"));
    assert_eq!((line, col), (20, 11));
    assert_eq!(msg, "`goto` names an unknown step `welcom`");
    assert_eq!(hint, "did you mean `welcome`?");
}

#[test]
fn goto_loop_without_wait() {
    let yaml = with("  - id: welcome\n", "  - id: top\n  - id: welcome\n");
    let yaml = format!("{yaml}  - id: again\n    goto: top\n");
    // `top` has no `after`, but `case-study` waits 2d, so this loop is fine.
    assert!(problems(&yaml).is_empty(), "{:#?}", problems(&yaml));
    let spin = format!("{VALID}  - id: a\n  - id: b\n    goto: a\n");
    let (line, col, msg, hint) = one(&spin);
    assert_eq!((line, col), (21, 11));
    assert!(
        msg.contains("forms a loop in which no step waits (b → a)") || msg.contains("(a → b)"),
        "{msg}"
    );
    assert!(hint.contains("after"));
}

#[test]
fn clicked_must_name_an_earlier_send_step() {
    let (line, col, msg, _) = one(&with("{ clicked: case-study }", "{ clicked: nudge }"));
    assert_eq!((line, col), (16, 29));
    assert_eq!(
        msg,
        "`clicked: nudge` names a step that does not come before this one"
    );
    let (_, _, msg, hint) = one(&with("{ clicked: case-study }", "{ clicked: case-studdy }"));
    assert_eq!(
        msg,
        "`clicked: case-studdy` names a step that does not exist"
    );
    assert_eq!(hint, "did you mean `case-study`?");
}

#[test]
fn opened_in_audience_is_refused() {
    let (_, _, msg, _) = one(&format!("{VALID}audience: {{ opened: welcome }}\n"));
    assert!(msg.contains("has not received before entering"), "{msg}");
}

#[test]
fn empty_steps() {
    let yaml = VALID.split("steps:").next().unwrap().to_string() + "steps: []\n";
    let (line, col, msg, _) = one(&yaml);
    assert_eq!((line, col), (6, 8));
    assert_eq!(msg, "the campaign has no steps");
}

#[test]
fn malformed_window_hours() {
    let (line, col, msg, hint) = one(&format!(
        "{VALID}send_window:\n  days: [mon, fri]\n  hours: \"17:00-09:00\"\n"
    ));
    assert_eq!((line, col), (21, 10));
    assert!(msg.contains("ends before it starts"), "{msg}");
    assert!(hint.contains("09:00-17:00"));
    let (_, _, msg, _) = one(&format!("{VALID}send_window:\n  hours: 9-5\n"));
    assert!(msg.contains("is not an hour range"), "{msg}");
    let (_, _, msg, hint) = one(&format!("{VALID}send_window:\n  days: [mon, funday]\n"));
    assert_eq!(msg, "`funday` is not a day");
    assert!(hint.contains("mon, tue"));
}

#[test]
fn missing_subject_and_trigger_both_reported() {
    let yaml = with("    subject: Your ebook\n", "").replace(
        "trigger:\n  event: lead.captured\n  when: { property: source, equals: ebook }\n",
        "",
    );
    let p = problems(&yaml);
    let msgs: Vec<&str> = p.iter().map(|p| p.2.as_str()).collect();
    assert!(msgs.contains(&"the campaign has no `trigger`"), "{msgs:?}");
    assert!(
        msgs.contains(&"this email step has no `subject`"),
        "{msgs:?}"
    );
}

#[test]
fn every_problem_in_a_file_is_reported() {
    let yaml = with("after: 2d", "after: 2x")
        .replacen("subject: Your ebook", "subjet: Your ebook", 1)
        .replacen("ana@leadcraft.example", "nobody", 1);
    assert_eq!(problems(&yaml).len(), 3, "{:#?}", problems(&yaml)); // subjet, duration, from
}

#[test]
fn two_actions_in_one_step() {
    let (_, _, msg, _) = one(&with(
        "    subject: Your ebook\n",
        "    subject: Your ebook\n    tag: [x]\n",
    ));
    assert_eq!(
        msg,
        "a step has at most one action, this one has `send` and `tag`"
    );
}

#[test]
fn subject_without_send() {
    let (_, _, msg, _) = one(&format!(
        "{VALID}  - id: mark\n    tag: [nurtured]\n    subject: hi\n"
    ));
    assert_eq!(msg, "`subject` only applies to a step that sends an email");
}

#[test]
fn condition_grammar_errors() {
    let (_, _, msg, _) = one(&with(
        "{ property: source, equals: ebook }",
        "{ property: source, equal: ebook }",
    ));
    assert_eq!(msg, "unknown key `equal` in a condition");
    let (_, _, msg, _) = one(&with(
        "{ property: source, equals: ebook }",
        "{ property: source }",
    ));
    assert_eq!(msg, "this `property` condition has no comparison");
    let (_, _, msg, _) = one(&with(
        "{ property: source, equals: ebook }",
        "{ property: source, in: ebook }",
    ));
    assert_eq!(msg, "`in` takes a list of values, found `ebook`");
    let (_, _, msg, _) = one(&with(
        "{ property: source, equals: ebook }",
        "{ tag: a, event: b }",
    ));
    assert_eq!(
        msg,
        "a condition tests one thing, this one has `tag` and `event`"
    );
}

#[test]
fn reentry_forms() {
    for ok in [
        "reentry: never",
        "reentry: after_exit",
        "reentry: { after: 30d }",
    ] {
        assert!(problems(&format!("{VALID}{ok}\n")).is_empty(), "{ok}");
    }
    let (_, _, msg, _) = one(&format!("{VALID}reentry: sometimes\n"));
    assert!(msg.starts_with("`reentry` must be"), "{msg}");
}

#[test]
fn tracking_forms() {
    let f = parse_campaign(
        SourceFile::new("c.yaml", format!("{VALID}tracking: {{opens: false}}\n")),
        "c",
    )
    .unwrap();
    assert!(!f.campaign.tracking.opens && f.campaign.tracking.clicks);
    let f = parse_campaign(
        SourceFile::new("c.yaml", format!("{VALID}tracking: false\n")),
        "c",
    )
    .unwrap();
    assert!(!f.campaign.tracking.opens && !f.campaign.tracking.clicks);
}

#[test]
fn yaml_syntax_error_points_at_the_place() {
    let p = problems("name: x\nsteps: [a, b\n");
    assert_eq!(p.len(), 1);
    assert!(p[0].2.starts_with("invalid YAML"), "{:?}", p[0]);
    assert!(p[0].0 >= 2);
}

#[test]
fn never_panics_on_odd_input() {
    for odd in [
        "",
        "---",
        "[]",
        "- a\n- b",
        "x",
        "steps:",
        "steps: {a: 1}",
        "trigger: 3",
        "&a [*a]",
        "? [a]\n: b",
        "a: !!binary aGk=",
        "\u{feff}name: x",
        "steps:\n  - 12\n  - ~\n",
    ] {
        let _ = problems(odd);
    }
}

#[test]
fn cron_that_never_fires_points_at_the_schedule() {
    let yaml = with(
        "  event: lead.captured\n  when: { property: source, equals: ebook }",
        "  schedule: \"0 9 30 2 *\"",
    );
    let (line, col, msg, hint) = one(&yaml);
    assert_eq!((line, col), (4, 13));
    assert_eq!(
        msg,
        "invalid cron schedule `0 9 30 2 *`: this cron schedule never fires"
    );
    assert!(hint.contains("day-of-month"), "{hint}");
}

#[test]
fn cron_with_day_of_month_and_weekday_validates() {
    let yaml = with(
        "  event: lead.captured\n  when: { property: source, equals: ebook }",
        "  schedule: \"0 9 1 * mon\"\n  timezone: Europe/Berlin",
    );
    assert!(problems(&yaml).is_empty(), "{:#?}", problems(&yaml));
}

#[test]
fn cron_out_of_range_says_which_value() {
    for (expr, why) in [
        ("0 25 * * mon", "`25` is not a valid hour (0-23)"),
        ("0 9 * * 8", "`8` is not a valid day of week"),
        ("0 9 1 feb-x *", "`feb-x` is not a valid month"),
        ("0 9 * *", "a cron schedule has 5 fields"),
    ] {
        let yaml = with(
            "  event: lead.captured\n  when: { property: source, equals: ebook }",
            &format!("  schedule: \"{expr}\""),
        );
        let (line, col, msg, _) = one(&yaml);
        assert_eq!((line, col), (4, 13), "{expr}");
        assert!(
            msg.starts_with(&format!("invalid cron schedule `{expr}`: {why}")),
            "{msg}"
        );
    }
}
