//! Migration 0005 (forms) on a database that already holds contacts, enrollments, messages
//! and events: the SQLite table rebuild keeps every row and every reference, foreign keys
//! are enforced again afterwards, and `pending` is a status both backends accept.

#![allow(clippy::unwrap_used)]

use nurture_store::{ContactStatus, Store};
use sqlx::Executor;

const BEFORE: &[&str] = &[
    "0001_initial.sql",
    "0002_decisions.sql",
    "0003_firing_progress.sql",
    "0004_leases.sql",
];

#[tokio::test]
async fn sqlite_keeps_enrollments_messages_and_events_through_the_contacts_rebuild() {
    // Arrange: a database migrated up to 0004, with a contact that has history.
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/sqlite");
    for f in BEFORE {
        std::fs::copy(source.join(f), migrations.join(f)).unwrap();
    }
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(migrations.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool.execute(
        "INSERT INTO contacts (id, email, email_key, status, created_at, updated_at) VALUES (7, 'Ana@acme.example', 'ana@acme.example', 'unsubscribed', 1, 1);
         INSERT INTO campaign_versions (id, campaign_id, fingerprint, definition, created_at) VALUES (1, 'welcome', 'fp', '{}', 1);
         INSERT INTO campaigns (id, version_id, status, updated_at) VALUES ('welcome', 1, 'active', 1);
         INSERT INTO enrollments (id, campaign_id, contact_id, state, step_id, next_run_at, enrolled_at) VALUES (3, 'welcome', 7, 'active', 'intro', 100, 1);
         INSERT INTO messages (id, enrollment_id, seq, contact_id, campaign_id, version_id, step_id, state, created_at, updated_at) VALUES (5, 3, 0, 7, 'welcome', 1, 'intro', 'sent', 1, 1);
         INSERT INTO events (contact_id, name, occurred_at, created_at) VALUES (7, 'lead.captured', 1, 1);",
    )
    .await
    .unwrap();
    pool.close().await;

    // Act: open it with every migration.
    let store = Store::open(&url).await.unwrap();

    // Assert: everything is still there and still points at the contact.
    let mut tx = store.begin().await.unwrap();
    let ana = tx.contact(7).await.unwrap().unwrap();
    assert_eq!(ana.email, "Ana@acme.example");
    assert_eq!(ana.status, ContactStatus::Unsubscribed);
    assert_eq!(tx.contact_enrollments(7).await.unwrap().len(), 1);
    assert_eq!(tx.contact_messages(7).await.unwrap().len(), 1);
    assert!(tx.had_event(7, "lead.captured", None, 10).await.unwrap());
    assert!(
        tx.set_contact_status(7, ContactStatus::Pending, "form", 2)
            .await
            .unwrap()
    );
    assert_eq!(
        tx.contact(7).await.unwrap().unwrap().status,
        ContactStatus::Pending
    );
    tx.commit().await.unwrap();
    store.close().await;

    // Foreign keys are on again: an enrollment of a contact that does not exist is refused,
    // and the email key is still unique.
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let orphan = pool
        .execute("INSERT INTO enrollments (campaign_id, contact_id, state, step_id, next_run_at, enrolled_at) VALUES ('welcome', 999, 'active', 'intro', 1, 1)")
        .await;
    assert!(orphan.is_err(), "foreign keys are not enforced");
    let twin = pool
        .execute("INSERT INTO contacts (email, email_key, created_at, updated_at) VALUES ('ana@acme.example', 'ana@acme.example', 1, 1)")
        .await;
    assert!(twin.is_err(), "the email key is no longer unique");
    let bad = pool
        .execute("UPDATE contacts SET status = 'maybe' WHERE id = 7")
        .await;
    assert!(bad.is_err(), "the status CHECK is gone");
}

#[tokio::test]
async fn postgres_accepts_the_pending_status() {
    let db = nurture_testkit::Postgres::fresh_database();
    let store = Store::open(db.url()).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let (c, _) = tx
        .upsert_contact(
            &nurture_store::Upsert {
                email: "a@b.example".into(),
                ..Default::default()
            },
            1,
        )
        .await
        .unwrap();
    assert!(
        tx.set_contact_status(c.id, ContactStatus::Pending, "form", 2)
            .await
            .unwrap()
    );
    assert_eq!(
        tx.contact(c.id).await.unwrap().unwrap().status,
        ContactStatus::Pending
    );
    tx.commit().await.unwrap();
    store.close().await;
}
