//! The daemon loop's policy around [`Engine`] rounds: how long to wait after a failed round
//! ([`Backoff`]: 1 s doubling to 30 s, each kind of failure logged once), the wait itself
//! ([`pause`]: cut short when the database answers again or a stop is asked), and what is
//! logged when a round does not stop within [`STOP_GRACE`] of SIGTERM. The loop itself and
//! the daemon's health for `/healthz` stay with the caller (this crate knows no HTTP).

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::Engine;

/// How long `run` waits, after SIGTERM, for the round in progress to stop (it claims nothing
/// new at once; this bounds the sends and the writes already under way).
pub const STOP_GRACE: Duration = Duration::from_secs(30);
/// The first wait after a failed round; it doubles with each failure in a row...
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// ...up to this.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Failed rounds in a row: how long to wait before the next, and what was logged.
#[derive(Debug, Default)]
pub struct Backoff {
    in_a_row: u32,
    since: Option<Instant>,
    /// The last error logged: the same error again is not logged again (a database that is
    /// away fails every round the same way).
    logged: Option<String>,
}

impl Backoff {
    /// Records a failed round (`why`: its error chain) and logs it unless the previous
    /// failure said the same; returns how long to wait before the next.
    pub fn failed(&mut self, why: &str) -> Duration {
        let (delay, log) = self.record(why);
        if log {
            tracing::error!(
                retry_in_s = delay.as_secs(),
                "round failed; retrying with backoff while it keeps failing: {why}"
            );
        } else {
            tracing::debug!(failures = self.in_a_row, "round failed again: {why}");
        }
        delay
    }

    /// The policy: the wait after this failure (1 s, doubling, at most 30 s) and whether to
    /// log it (not when the previous failure said the same).
    fn record(&mut self, why: &str) -> (Duration, bool) {
        self.in_a_row += 1;
        self.since.get_or_insert_with(Instant::now);
        let delay = FIRST_RETRY
            .saturating_mul(1 << self.in_a_row.saturating_sub(1).min(16))
            .min(MAX_RETRY);
        let log = self.logged.as_deref() != Some(why);
        if log {
            self.logged = Some(why.to_string());
        }
        (delay, log)
    }

    /// Records a round that worked: after failures, says the rounds work again, and starts
    /// over.
    pub fn succeeded(&mut self) {
        if self.in_a_row > 0 {
            let for_s = self.since.map_or(0, |t| t.elapsed().as_secs());
            tracing::warn!(failed_rounds = self.in_a_row, for_s, "rounds work again");
        }
        *self = Self::default();
    }
}

/// Completes once a stop was requested on `stop`.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the signal task is gone; then no stop will come.
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Waits `delay` after a failed round; returns true when a stop was requested meanwhile.
/// When the database did not answer at the start, the wait ends as soon as it does (checked
/// every second), so the daemon resumes within a second or two of its return.
pub async fn pause(engine: &Engine, delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let until = tokio::time::Instant::now() + delay;
    let mut answered = ping(engine).await;
    loop {
        let step = until
            .saturating_duration_since(tokio::time::Instant::now())
            .min(Duration::from_secs(1));
        tokio::select! {
            () = tokio::time::sleep(step) => {}
            () = stopped(stop) => return true,
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        let answers = ping(engine).await;
        if answers && !answered {
            tracing::info!("the database answers again; retrying now");
            return false;
        }
        answered = answers;
    }
}

/// Whether the database answers within two seconds.
async fn ping(engine: &Engine) -> bool {
    tokio::time::timeout(Duration::from_secs(2), engine.store().ping())
        .await
        .unwrap_or(false)
}

/// Logged when the round did not stop within [`STOP_GRACE`] of SIGTERM: how many messages
/// are still `sending` (read within two seconds, else 0).
pub async fn in_flight_at_timeout(engine: &Engine) {
    let sending = tokio::time::timeout(Duration::from_secs(2), async {
        let mut tx = engine.store().begin_read().await.ok()?;
        let counts = tx.count_messages_by_state().await.ok()?;
        let _ = tx.rollback().await;
        counts
            .into_iter()
            .find(|(s, _)| *s == nurture_store::MessageState::Sending)
            .map(|(_, n)| n)
    })
    .await
    .ok()
    .flatten();
    tracing::warn!(
        grace_s = STOP_GRACE.as_secs(),
        sending = sending.unwrap_or(0),
        "the round did not stop in time; exiting anyway. Messages still `sending` become `unknown` when their lease runs out (never re-sent); the rest of the queue waits for the next start"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_rounds_back_off_from_1_s_to_30_s_and_log_each_kind_of_failure_once() {
        let mut f = Backoff::default();
        let down = "pool timed out while waiting for an open connection";
        let got: Vec<(u64, bool)> = [down, down, down, "refused", down, down, down, down]
            .into_iter()
            .map(|why| {
                let (delay, log) = f.record(why);
                (delay.as_secs(), log)
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, true),
                (2, false),
                (4, false),
                (8, true),
                (16, true),
                (30, false),
                (30, false),
                (30, false)
            ]
        );
        // A round that works starts over.
        f.succeeded();
        assert_eq!(f.record(down), (Duration::from_secs(1), true));
    }

    #[test]
    fn the_wait_stays_at_30_s_however_long_the_failures_last() {
        let mut f = Backoff::default();
        let last = (0..100).map(|_| f.failed("down")).last();
        assert_eq!(last, Some(MAX_RETRY));
    }

    #[tokio::test]
    async fn a_stop_ends_the_pause_at_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let url = format!("sqlite://{}", dir.path().join("n.db").display());
        let store = nurture_store::Store::open(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let engine = Engine::new(store, crate::EngineConfig::default());
        let (tx, mut rx) = watch::channel(false);
        let _ = tx.send(true);
        let started = Instant::now();
        assert!(pause(&engine, Duration::from_secs(30), &mut rx).await);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
