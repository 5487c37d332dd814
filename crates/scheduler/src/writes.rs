//! A round's pending writes: what advancing a batch of enrollments will store, gathered so it
//! goes out at the end in a few multi-row statements. Its own module because both the state
//! machine (`advance`) and variant choice (`split`) fill it.

use std::collections::HashMap;

use nurture_store::{Advance, Enrollment, EnrollmentState, NewMessage, NewStepRun, Tx};

use crate::Result;

/// The writes of a batch that are the same for every enrollment, made at the end of the batch
/// in a few multi-row statements (inside the same transaction, so a crash still loses or
/// doubles nothing).
#[derive(Default)]
pub(crate) struct Writes {
    pub(crate) step_runs: Vec<NewStepRun>,
    pub(crate) messages: Vec<NewMessage>,
    pub(crate) webhooks: Vec<nurture_store::NewWebhook>,
    pub(crate) advances: Vec<Advance>,
    /// What steps changed in contacts' tags and attributes (applied to the stored rows as
    /// they are at the end of the batch, not written from the batch's copy, which another
    /// writer may have changed since it was read).
    pub(crate) profiles: std::collections::BTreeMap<i64, nurture_store::ProfileChange>,
    /// The called winners of `auto_winner` tests, read once per batch and step.
    pub(crate) winners: HashMap<(String, String), Option<String>>,
}

impl Writes {
    /// Records a step run (no variant) with its outcome and, for a skip or an exit, its reason.
    pub(crate) fn step_run(
        &mut self,
        e: &Enrollment,
        seq: i64,
        step: &str,
        outcome: &'static str,
        reason: Option<String>,
    ) {
        self.step_runs.push(NewStepRun {
            enrollment_id: e.id,
            seq,
            step_id: step.to_string(),
            outcome,
            reason,
            variant: None,
        });
    }

    /// Writes everything; returns how many emails were queued.
    pub(crate) async fn flush(self, tx: &mut Tx, now_ms: i64) -> Result<u64> {
        let profiles: Vec<(i64, &nurture_store::ProfileChange)> =
            self.profiles.iter().map(|(id, c)| (*id, c)).collect();
        tx.apply_profile_changes(&profiles, now_ms).await?;
        tx.insert_step_runs(&self.step_runs, now_ms).await?;
        // An enrollment that leaves by its goal (or because its contact can no longer be
        // mailed) takes its mail still waiting for a retry with it; one that ends at an
        // `exit` step keeps it, as a completed one does. Mail queued by this batch comes
        // after, and stays.
        for (reason, why) in [
            ("goal", "not sent: the enrollment reached its goal"),
            ("unsubscribed", "not sent: the contact is unsubscribed"),
            ("bounced", "not sent: the contact is bounced"),
            ("complained", "not sent: the contact is complained"),
        ] {
            let ids: Vec<i64> = self
                .advances
                .iter()
                .filter(|a| {
                    a.state == EnrollmentState::Exited && a.exit_reason.as_deref() == Some(reason)
                })
                .map(|a| a.id)
                .collect();
            if !ids.is_empty() {
                tx.suppress_waiting_messages(
                    nurture_store::Waiting::Enrollments(&ids),
                    why,
                    now_ms,
                )
                .await?;
            }
        }
        let queued = tx.queue_messages(&self.messages, now_ms).await?;
        tx.queue_webhooks(&self.webhooks, now_ms).await?;
        let moved = tx.advance_enrollments(&self.advances, now_ms).await?;
        if moved != self.advances.len() as u64 {
            // Someone else advanced one: impossible while we hold the rows, so refuse to
            // commit.
            return Err(crate::EngineError::Store(
                nurture_store::StoreError::Corrupt(format!(
                    "{} of {} enrollments changed while they were being advanced",
                    self.advances.len() as u64 - moved,
                    self.advances.len()
                )),
            ));
        }
        Ok(queued)
    }
}
