//! The database stores Unix milliseconds; the engine thinks in `DateTime<Utc>`.

use chrono::{DateTime, TimeZone, Utc};

/// Milliseconds since the epoch.
pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// From milliseconds since the epoch (out-of-range values clamp to the epoch).
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// The engine's notion of the current time while a round runs.
///
/// A round is asked to do what is due as of its `now` (the daemon's wall clock, or `tick
/// --now T`); but leases, retry times and outcome times must move on while the round runs,
/// since a round can last minutes (a slow server, a paced daemon, a large batch). Without a
/// clock of its own, the engine measures them from the round's `now` plus the time elapsed
/// since the round began; tests set a [`Clock`] to drive that time by hand.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// A clock moved by hand, for tests.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock showing `t`.
    pub fn new(t: DateTime<Utc>) -> Self {
        Self(std::sync::Mutex::new(t))
    }

    /// Moves the clock by `d`.
    pub fn advance(&self, d: chrono::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += d;
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How the time of a round moves on.
#[derive(Clone, Default)]
pub(crate) enum Timing {
    /// The round's `now` plus the time elapsed since the round began.
    #[default]
    Elapsed,
    /// Always the round's `now`.
    Still,
    /// A clock of the caller's.
    Clock(std::sync::Arc<dyn Clock>),
}

/// The time during one round, as its [`Timing`] says.
#[derive(Clone)]
pub(crate) struct RoundClock {
    start: DateTime<Utc>,
    started: std::time::Instant,
    timing: Timing,
}

impl RoundClock {
    pub(crate) fn new(start: DateTime<Utc>, timing: Timing) -> Self {
        Self {
            start,
            started: std::time::Instant::now(),
            timing,
        }
    }

    /// The current time.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        match &self.timing {
            Timing::Clock(c) => c.now(),
            Timing::Still => self.start,
            Timing::Elapsed => {
                self.start
                    + chrono::Duration::from_std(self.started.elapsed())
                        .unwrap_or(chrono::Duration::zero())
            }
        }
    }
}
