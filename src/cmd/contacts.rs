//! `contacts import`, `contacts show`, `contacts unsubscribe`. An import's CSV reading and
//! row checks are here; each batch is saved by `nurture_store::Store::import_contacts`.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use nurture_store::{ContactStatus, EnrollmentState, Upsert};
use serde_json::{Map, Value, json};

use super::common::{email_arg, now_or, open_engine};
use crate::cli::ContactsCommand;
use crate::config::Config;
use crate::exit::invalid;

/// Rows written per transaction.
const IMPORT_BATCH: usize = 2_000;

pub async fn run(config: &Config, command: ContactsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ContactsCommand::Import {
            file,
            tags,
            event,
            at,
        } => import(config, &file, &tags, event.as_deref(), at.as_deref()).await,
        ContactsCommand::Show { email, json } => show(config, &email, json).await,
        ContactsCommand::Unsubscribe { email } => unsubscribe(config, &email).await,
    }
}

async fn import(
    config: &Config,
    path: &std::path::Path,
    tags: &[String],
    event: Option<&str>,
    at: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let now = now_or(at)?;
    let now_ms = now.timestamp_millis();
    let file = std::fs::File::open(path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(file);
    let headers = reader
        .headers()
        .map_err(|e| {
            invalid(format!(
                "{}: cannot read the header line: {e}",
                path.display()
            ))
        })?
        .clone();
    let Some(email_col) = headers.iter().position(|h| h.eq_ignore_ascii_case("email")) else {
        return Err(invalid(format!(
            "{}: there is no `email` column in the header line",
            path.display()
        )));
    };
    let tags_col = headers.iter().position(|h| h.eq_ignore_ascii_case("tags"));
    let engine = open_engine(config).await?;
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let (mut imported, mut updated, mut skipped) = (0u64, 0u64, 0u64);
    let mut record = csv::StringRecord::new();
    let mut pending: Vec<Upsert> = Vec::with_capacity(IMPORT_BATCH);
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                eprintln!("{}:{line}: skipped: {}", path.display(), csv_reason(&e));
                skipped += 1;
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.len() > headers.len() {
            eprintln!(
                "{}:{line}: skipped: the row has {} fields, the header has {}",
                path.display(),
                record.len(),
                headers.len()
            );
            skipped += 1;
            continue;
        }
        let email = record.get(email_col).unwrap_or_default().trim();
        if let Err(e) = nurture_campaign::check_address(email) {
            eprintln!(
                "{}:{line}: skipped: {}",
                path.display(),
                if email.is_empty() {
                    "the email is empty".to_string()
                } else {
                    e.to_string()
                }
            );
            skipped += 1;
            continue;
        }
        let mut attributes = Map::new();
        let mut row_tags: Vec<String> = tags.to_vec();
        for (i, (h, v)) in headers.iter().zip(record.iter()).enumerate() {
            if i == email_col || v.is_empty() {
                continue;
            }
            if Some(i) == tags_col {
                row_tags.extend(
                    v.split(';')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(String::from),
                );
            } else {
                attributes.insert(h.to_string(), Value::String(v.to_string()));
            }
        }
        pending.push(Upsert {
            email: email.to_string(),
            attributes,
            tags: row_tags,
            consent_source: Some("import".into()),
            ..Upsert::default()
        });
        if pending.len() >= IMPORT_BATCH {
            let (new, old) = engine
                .store()
                .import_contacts(&pending, event, now_ms)
                .await?;
            pending.clear();
            (imported, updated) = (imported + new, updated + old);
            if let Some(bar) = &progress {
                bar.set_position(record.position().map_or(0, |p| p.byte()));
            }
        }
    }
    let (new, old) = engine
        .store()
        .import_contacts(&pending, event, now_ms)
        .await
        .context("cannot save the last batch")?;
    (imported, updated) = (imported + new, updated + old);
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    outln!("imported {imported}, updated {updated}, skipped {skipped}");
    Ok(ExitCode::SUCCESS)
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("the row has {len} fields, the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "the row is not valid UTF-8".into(),
        _ => e.to_string(),
    }
}

fn time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| {
        Value::String(nurture_scheduler::from_ms(ms).to_rfc3339())
    })
}

async fn show(config: &Config, email: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let email = email_arg(email)?;
    let engine = open_engine(config).await?;
    let mut tx = engine.store().begin_read().await?;
    let Some(contact) = tx.contact_by_email(&email).await? else {
        tx.commit().await?;
        return Err(invalid(format!("there is no contact {email}")));
    };
    let enrollments = tx.contact_enrollments(contact.id).await?;
    let messages = tx.contact_messages(contact.id).await?;
    let signals = tx.contact_signals(contact.id).await?;
    let score =
        nurture_scheduler::score(&mut tx, contact.id, now_or(None)?.timestamp_millis()).await?;
    let webhooks = tx.contact_webhooks(contact.id).await?;
    let consents = tx.consents(contact.id).await?;
    tx.commit().await?;
    let mut doc = json!({
        "email": contact.email,
        "status": contact.status.as_str(),
        "status_reason": contact.status_reason,
        "status_changed_at": time(contact.status_changed_at),
        "tags": contact.tags,
        "attributes": contact.attributes,
        "created_at": time(Some(contact.created_at)),
        "enrollments": enrollments.iter().map(|e| json!({
            "campaign": e.campaign_id,
            "state": e.state,
            "step": e.step_id,
            "next_run_at": time(e.next_run_at),
            "exit_reason": e.exit_reason,
            "enrolled_at": time(Some(e.enrolled_at)),
            "ended_at": time(e.ended_at),
        })).collect::<Vec<_>>(),
        "messages": messages.iter().map(|m| json!({
            "campaign": m.campaign_id,
            "step": m.step_id,
            "status": m.state,
            "message_id": m.message_id,
            "sent_at": time(m.sent_at),
            "error": m.error,
            "attempts": m.attempts,
            "next_attempt_at": time(m.next_attempt_at),
        })).collect::<Vec<_>>(),
        "signals": super::bounces::signals_json(&signals),
    });
    doc["score"] = json!(score.as_ref().map_or(0.0, |s| s.0));
    doc["score_reasons"] = json!(
        score
            .as_ref()
            .map(|s| s
                .1
                .iter()
                .map(|(reason, points)| json!({"reason": reason, "points": points}))
                .collect::<Vec<_>>())
            .unwrap_or_default()
    );
    doc["webhooks"] = super::scores::webhooks_json(&webhooks);
    doc["consents"] = super::forms::consents_json(&consents);
    if as_json {
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{}  ({})", contact.email, contact.status.as_str());
    if let Some(reason) = &contact.status_reason {
        outln!("  status reason: {reason}");
    }
    outln!(
        "  tags: {}",
        if contact.tags.is_empty() {
            "-".to_string()
        } else {
            contact.tags.join(", ")
        }
    );
    for (k, v) in &contact.attributes {
        outln!(
            "  {k}: {}",
            v.as_str().map_or_else(|| v.to_string(), String::from)
        );
    }
    if let Some((total, reasons)) = &score {
        outln!(
            "  score: {total} ({})",
            reasons
                .iter()
                .map(|(r, p)| format!("{r}: {p}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    outln!("enrollments:");
    if enrollments.is_empty() {
        outln!("  none");
    }
    for e in &enrollments {
        let detail = match e.state {
            EnrollmentState::Active => format!(
                "at {} due {}",
                e.step_id.as_deref().unwrap_or("-"),
                time(e.next_run_at).as_str().unwrap_or("-")
            ),
            _ => e
                .exit_reason
                .clone()
                .map(|r| format!("reason {r}"))
                .unwrap_or_default(),
        };
        outln!("  {:<24} {:<10} {detail}", e.campaign_id, e.state.as_str());
    }
    if !signals.is_empty() {
        outln!("bounces and complaints:");
        for line in nurture_scheduler::signal_lines(&signals, &messages) {
            outln!("  {line}");
        }
    }
    super::forms::print_consents(&consents);
    outln!("messages:");
    if messages.is_empty() {
        outln!("  none");
    }
    for m in &messages {
        let when = time(m.sent_at.or(m.next_attempt_at));
        outln!(
            "  {:<24} {:<16} {:<10} {}{}",
            m.campaign_id,
            m.step_id,
            m.state,
            when.as_str().unwrap_or("-"),
            m.error
                .as_deref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn unsubscribe(config: &Config, email: &str) -> anyhow::Result<ExitCode> {
    let email = email_arg(email)?;
    let now = now_or(None)?.timestamp_millis();
    let engine = open_engine(config).await?;
    let mut tx = engine.store().begin().await?;
    let Some(contact) = tx.contact_by_email(&email).await? else {
        tx.commit().await?;
        return Err(invalid(format!("there is no contact {email}")));
    };
    let changed = tx
        .set_contact_status(
            contact.id,
            ContactStatus::Unsubscribed,
            "unsubscribed from the command line",
            now,
        )
        .await?;
    let stopped = tx
        .exit_contact_enrollments(contact.id, "unsubscribed", now)
        .await?;
    tx.commit().await?;
    if changed {
        outln!("{email} is unsubscribed; {stopped} active enrollment(s) stopped");
    } else {
        outln!("{email} was already {}", contact.status.as_str());
    }
    Ok(ExitCode::SUCCESS)
}
