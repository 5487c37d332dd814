//! Even spacing of SMTP sends under `rate_per_second`, shared by every concurrent sender of
//! one [`Mailer`](crate::Mailer): each send takes the next free slot, so the rate holds
//! however many connections are open.

use std::time::Duration;

use tokio::sync::Mutex;

/// Spaces sends evenly under `rate_per_second` across all concurrent senders.
pub(super) struct Pacer {
    /// Messages per second.
    pub(super) rate: u32,
    interval: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl Pacer {
    /// A pacer for `rate` messages per second (at least 1).
    pub(super) fn new(rate: u32) -> Self {
        Self {
            rate: rate.max(1),
            interval: Duration::from_secs(1) / rate.max(1),
            next: Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for this send's slot.
    pub(super) async fn wait(&self) {
        let (slot, now) = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            (take_slot(&mut next, now, self.interval), now)
        };
        // A slot already due needs no timer (registering one costs more than the rest).
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
    }
}

/// The slot of a send asking at `now`: the next free one, or `now` when the pacer has been
/// idle (an idle spell earns no burst); `next` moves one interval past it.
fn take_slot(
    next: &mut tokio::time::Instant,
    now: tokio::time::Instant,
    interval: Duration,
) -> tokio::time::Instant {
    let slot = (*next).max(now);
    *next = slot + interval;
    slot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_take_consecutive_slots_and_idleness_earns_no_burst() {
        let t0 = tokio::time::Instant::now();
        let half = Duration::from_millis(500);
        let mut next = t0;
        // Three asking at once: at once, half a second later, a second later.
        assert_eq!(take_slot(&mut next, t0, half), t0);
        assert_eq!(take_slot(&mut next, t0, half), t0 + half);
        assert_eq!(take_slot(&mut next, t0, half), t0 + 2 * half);
        // After ten idle seconds, the next goes at once and the one after waits again.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(take_slot(&mut next, later, half), later);
        assert_eq!(take_slot(&mut next, later, half), later + half);
    }

    #[test]
    fn a_zero_rate_counts_as_one() {
        assert_eq!(Pacer::new(0).rate, 1);
    }
}
