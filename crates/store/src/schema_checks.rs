//! The state enums against the schema: each enum's values must be exactly the CHECK list of
//! its column in both backends' migrations, so a state added on one side only fails here
//! rather than as a constraint violation (or an unknown name) in production.

use std::collections::BTreeSet;

use crate::{ContactStatus, EnrollmentState, MailState, MessageState, SignalKind, WebhookState};

/// One backend's migrations (`sqlite` or `postgres`), in the order they apply.
fn migrations(backend: &str) -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../migrations")
        .join(backend);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|f| f.expect("a readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("a readable migration");
            (p.display().to_string(), text)
        })
        .collect()
}

/// The values of the last `CHECK (column IN (...))` on `table` across one backend's
/// migrations: in a `CREATE TABLE table` (or a `table_new` that is renamed to it), or in an
/// `ALTER TABLE table ADD CONSTRAINT .. CHECK`.
fn check_values(backend: &str, table: &str, column: &str) -> BTreeSet<String> {
    let mut last = None;
    for (file, text) in migrations(backend) {
        let text: String = text
            .lines()
            .map(|l| l.split("--").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        for statement in text.split(';') {
            let words: Vec<&str> = statement.split_whitespace().collect();
            let (name, altered) = match words.as_slice() {
                ["CREATE", "TABLE", "IF", "NOT", "EXISTS", name, ..]
                | ["CREATE", "TABLE", name, ..] => (name.trim_end_matches('('), false),
                ["ALTER", "TABLE", name, "ADD", "CONSTRAINT", ..] => (*name, true),
                _ => continue,
            };
            if name != table && name != format!("{table}_new") {
                continue;
            }
            let flat = words.join(" ");
            let marker = format!("CHECK ({column} IN (");
            let Some(at) = flat.find(&marker) else {
                if altered {
                    continue;
                }
                panic!("{file}: `{name}` has no `{marker}`");
            };
            let rest = &flat[at + marker.len()..];
            let list = &rest[..rest.find(')').expect("a closed IN list")];
            last = Some(
                list.split(',')
                    .map(|v| v.trim().trim_matches('\'').to_string())
                    .collect(),
            );
        }
    }
    last.unwrap_or_else(|| panic!("no CHECK on {table}.{column} in the {backend} migrations"))
}

/// Asserts that `values` are the CHECK list of `table.column` on both backends.
fn assert_check_list(values: &[&'static str], table: &str, column: &str) {
    let ours: BTreeSet<String> = values.iter().map(|v| v.to_string()).collect();
    for backend in ["sqlite", "postgres"] {
        assert_eq!(
            ours,
            check_values(backend, table, column),
            "{table}.{column} on {backend}"
        );
    }
}

#[test]
fn message_states_are_the_check_list() {
    let names: Vec<_> = MessageState::ALL.iter().map(|s| s.as_str()).collect();
    assert_check_list(&names, "messages", "state");
}

#[test]
fn enrollment_states_are_the_check_list() {
    let names: Vec<_> = EnrollmentState::ALL.iter().map(|s| s.as_str()).collect();
    assert_check_list(&names, "enrollments", "state");
}

#[test]
fn contact_statuses_are_the_check_list() {
    let names: Vec<_> = ContactStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_check_list(&names, "contacts", "status");
}

#[test]
fn webhook_states_are_the_check_list() {
    let names: Vec<_> = WebhookState::ALL.iter().map(|s| s.as_str()).collect();
    assert_check_list(&names, "webhooks", "state");
}

#[test]
fn confirmation_mail_states_are_the_check_list() {
    let names: Vec<_> = MailState::ALL.iter().map(|s| s.as_str()).collect();
    assert_check_list(&names, "form_submissions", "mail_state");
}

#[test]
fn signal_kinds_are_the_check_list() {
    let names: Vec<_> = SignalKind::ALL.iter().map(|s| s.as_str()).collect();
    assert_check_list(&names, "signals", "kind");
}
