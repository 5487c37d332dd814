//! The state enums against the schema: each enum's values must be exactly the CHECK list of
//! its column in the SQLite migrations, so a state added on one side only fails here rather
//! than as a constraint violation (or an unmatched name) in production.

use std::collections::BTreeSet;

use crate::{ContactStatus, EnrollmentState, MessageState};

/// The SQLite migrations, in the order they apply.
fn migrations() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/sqlite");
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

/// The values of `CHECK (column IN (...))` in the last `CREATE TABLE table` (or of a
/// `table_new` that is renamed to it) across the migrations.
fn check_values(table: &str, column: &str) -> BTreeSet<String> {
    let mut last = None;
    for (file, text) in migrations() {
        let text: String = text
            .lines()
            .map(|l| l.split("--").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        for statement in text.split(';') {
            let words: Vec<&str> = statement.split_whitespace().collect();
            let name = match words.as_slice() {
                ["CREATE", "TABLE", "IF", "NOT", "EXISTS", name, ..]
                | ["CREATE", "TABLE", name, ..] => name.trim_end_matches('('),
                _ => continue,
            };
            if name != table && name != format!("{table}_new") {
                continue;
            }
            let flat = words.join(" ");
            let marker = format!("CHECK ({column} IN (");
            let Some(at) = flat.find(&marker) else {
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
    last.unwrap_or_else(|| panic!("no CREATE TABLE {table} in the SQLite migrations"))
}

fn names(values: impl IntoIterator<Item = &'static str>) -> BTreeSet<String> {
    values.into_iter().map(str::to_string).collect()
}

#[test]
fn message_states_are_the_check_list() {
    assert_eq!(
        names(MessageState::ALL.map(MessageState::as_str)),
        check_values("messages", "state")
    );
}

#[test]
fn enrollment_states_are_the_check_list() {
    assert_eq!(
        names(EnrollmentState::ALL.map(EnrollmentState::as_str)),
        check_values("enrollments", "state")
    );
    for s in EnrollmentState::ALL {
        assert_eq!(EnrollmentState::parse(s.as_str()), Some(s));
    }
    assert_eq!(EnrollmentState::parse("Active"), None);
}

#[test]
fn contact_statuses_are_the_check_list() {
    assert_eq!(
        names(ContactStatus::ALL.map(ContactStatus::as_str)),
        check_values("contacts", "status")
    );
    for s in ContactStatus::ALL {
        assert_eq!(ContactStatus::parse(s.as_str()), s);
    }
}
