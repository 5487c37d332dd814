//! The engine commands end to end on the embedded defaults (SQLite file, outbox folder).

use crate::support::Project;

const DRIP: &str = r#"name: Drip
from: "Ana <ana@leadcraft.example>"
trigger: { event: lead.captured }
steps:
  - id: welcome
    send: welcome
    subject: "Welcome {{default contact.first_name \"there\"}}"
  - id: later
    after: 2d
    send: later
    subject: Two days later
"#;

fn project() -> Project {
    let p = Project::new();
    p.file("campaigns/drip.yaml", DRIP)
        .file("templates/welcome.html.hbs", "<p>Hi {{default contact.first_name \"there\"}}</p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a>")
        .file("templates/later.html.hbs", "<p>Later</p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a>");
    p
}

fn outbox(p: &Project) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p.path().join("outbox"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn event_then_ticks_deliver_each_step_once_at_its_time() {
    let p = project();
    p.nurture(&[
        "event",
        "lead@x.example",
        "lead.captured",
        "--attr",
        "first_name=Lee",
        "--at",
        "2026-11-02T10:00:00Z",
    ])
    .output()
    .success();
    let out = p
        .nurture(&["tick", "--now", "2026-11-02T10:00:00Z"])
        .output()
        .success();
    assert!(out.stdout.contains("1 enrolled"), "{}", out.stdout);
    assert_eq!(outbox(&p).len(), 1);
    p.nurture(&["tick", "--now", "2026-11-04T09:59:00Z"])
        .output()
        .success();
    assert_eq!(outbox(&p).len(), 1, "the two-day wait must not fire early");
    p.nurture(&["tick", "--now", "2026-11-04T10:00:00Z"])
        .output()
        .success();
    p.nurture(&["tick", "--now", "2026-11-05T10:00:00Z"])
        .output()
        .success();
    assert_eq!(outbox(&p).len(), 2);

    let show = p
        .nurture(&["contacts", "show", "LEAD@x.example", "--json"])
        .output()
        .success();
    let doc: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(doc["status"], "subscribed");
    assert_eq!(doc["attributes"]["first_name"], "Lee");
    assert_eq!(doc["enrollments"][0]["campaign"], "drip");
    assert_eq!(doc["enrollments"][0]["state"], "completed");
    let steps: Vec<&str> = doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["welcome", "later"]);
    assert!(
        doc["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "sent")
    );

    let stats = p.nurture(&["stats", "--json"]).output().success();
    let doc: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    let c = &doc["campaigns"][0];
    assert_eq!(
        (
            c["id"].as_str(),
            c["enrolled"].as_i64(),
            c["completed"].as_i64()
        ),
        (Some("drip"), Some(1), Some(1))
    );
    assert_eq!(c["steps"][0]["id"], "welcome");
    assert_eq!(c["steps"][0]["sent"], 1);
}

#[test]
fn unsubscribed_contact_gets_nothing_more() {
    let p = project();
    p.nurture(&[
        "event",
        "u@x.example",
        "lead.captured",
        "--at",
        "2026-11-02T10:00:00Z",
    ])
    .output()
    .success();
    p.nurture(&["tick", "--now", "2026-11-02T10:00:00Z"])
        .output()
        .success();
    let out = p
        .nurture(&["contacts", "unsubscribe", "u@x.example"])
        .output()
        .success();
    assert!(
        out.stdout.contains("1 active enrollment(s) stopped"),
        "{}",
        out.stdout
    );
    p.nurture(&["tick", "--now", "2026-11-09T10:00:00Z"])
        .output()
        .success();
    assert_eq!(outbox(&p).len(), 1);
    let show = p
        .nurture(&["contacts", "show", "u@x.example", "--json"])
        .output()
        .success();
    let doc: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(doc["status"], "unsubscribed");
    assert_eq!(doc["enrollments"][0]["exit_reason"], "unsubscribed");
}

#[test]
fn csv_import_reports_bad_rows_by_line_and_keeps_the_rest() {
    let p = project();
    p.file(
        "leads.csv",
        "email,first_name,tags\na@x.example,Ann,vip;beta\nnot-an-email,Bob,\nc@x.example,Cy\nd@x.example,Di,x,extra\nA@X.example,Annie,\n",
    );
    let out = p
        .nurture(&[
            "contacts",
            "import",
            "leads.csv",
            "--tag",
            "imported",
            "--event",
            "lead.captured",
        ])
        .output()
        .success();
    assert_eq!(out.stdout.trim(), "imported 2, updated 1, skipped 2");
    assert!(
        out.stderr
            .contains("leads.csv:3: skipped: `not-an-email` is not a valid address"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("leads.csv:5: skipped: the row has 4 fields, the header has 3"),
        "{}",
        out.stderr
    );
    let show = p
        .nurture(&["contacts", "show", "a@x.example", "--json"])
        .output()
        .success();
    let doc: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(doc["attributes"]["first_name"], "Annie");
    assert_eq!(doc["tags"], serde_json::json!(["beta", "imported", "vip"]));
    // The import's event enrolls on the next tick.
    let tick = p.nurture(&["tick"]).output().success();
    assert!(tick.stdout.contains("2 enrolled"), "{}", tick.stdout);
}

#[test]
fn import_without_email_column_is_an_input_error() {
    let p = project();
    p.file("x.csv", "name\nBob\n");
    let out = p.nurture(&["contacts", "import", "x.csv"]).output();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("there is no `email` column"),
        "{}",
        out.stderr
    );
}

#[test]
fn broken_edit_keeps_the_last_good_version_running() {
    let p = project();
    p.nurture(&[
        "event",
        "k@x.example",
        "lead.captured",
        "--at",
        "2026-11-02T10:00:00Z",
    ])
    .output()
    .success();
    p.nurture(&["tick", "--now", "2026-11-02T10:00:00Z"])
        .output()
        .success();
    p.file(
        "campaigns/drip.yaml",
        &DRIP.replace("after: 2d", "after: soon"),
    );
    let out = p
        .nurture(&["tick", "--now", "2026-11-04T10:00:00Z"])
        .output()
        .success();
    assert!(out.stderr.contains("campaign refused"), "{}", out.stderr);
    assert_eq!(outbox(&p).len(), 2, "the last good version still sends");
}

#[test]
fn enroll_by_hand_obeys_reentry() {
    let p = project();
    p.nurture(&[
        "event",
        "h@x.example",
        "signed.up",
        "--at",
        "2026-11-02T10:00:00Z",
    ])
    .output()
    .success();
    p.nurture(&[
        "enroll",
        "drip",
        "h@x.example",
        "--at",
        "2026-11-02T10:00:00Z",
    ])
    .output()
    .success();
    let again = p
        .nurture(&[
            "enroll",
            "drip",
            "h@x.example",
            "--at",
            "2026-11-02T10:00:00Z",
        ])
        .output();
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already in drip"), "{}", again.stderr);
    let unknown = p.nurture(&["enroll", "nope", "h@x.example"]).output();
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("there is no campaign `nope`"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn daemon_sends_a_new_leads_email_promptly_and_stops_cleanly_on_sigterm() {
    let p = project();
    let port = nurture_testkit::free_port().to_string();
    let mut daemon = p
        .nurture(&["run"])
        .env("NURTURE_LISTEN", &format!("127.0.0.1:{port}"))
        .spawn();
    crate::support::wait_until(20, "nurture run answers /healthz", || {
        crate::support::healthy(&port)
    });
    p.nurture(&["event", "live@x.example", "lead.captured"])
        .output()
        .success();
    crate::support::wait_until(20, "the welcome email after the event", || {
        !outbox(&p).is_empty()
    });
    assert_eq!(outbox(&p).len(), 1, "one welcome email");
    // An edit to a campaign file is picked up without a restart: `plan` (which compares the
    // files with the versions in use) sees it as changed until the daemon has synced it.
    p.file(
        "campaigns/drip.yaml",
        &DRIP.replace("name: Drip", "name: Drip v2"),
    );
    crate::support::wait_until(20, "the daemon syncs the edited campaign", || {
        p.nurture(&["plan"])
            .output()
            .stdout
            .contains("drip: unchanged")
    });
    let status = std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = daemon.wait().unwrap();
    assert_eq!(code.code(), Some(0), "SIGTERM stops the daemon cleanly");
    let stats = p.nurture(&["stats", "--json"]).output().success();
    assert!(stats.stdout.contains("\"active\": 1"), "{}", stats.stdout);
}
