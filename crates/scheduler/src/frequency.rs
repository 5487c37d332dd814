//! Frequency caps across campaigns (SPEC §13): `[[frequency]] max = 2, per = "1d"`.
//!
//! [`first_fit`] is the policy, pure: given the times a contact's capped emails went out and
//! the caps, the first moment from `now` at which one more email stays within every cap.
//! [`admit`] applies it where it holds across daemons: in the delivery transaction that marks
//! messages `sending`, after locking the contacts' rows, so a second worker deciding for the
//! same contact waits and then sees the first one's email. A message that does not fit goes
//! back to the queue until the first moment it fits (then the next opening of its send
//! window, if it has one), is never dropped, and the postponement is written to the decision
//! history for `explain` and `simulate`.

use std::collections::HashMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use nurture_campaign::{Action, Delay};
use nurture_store::{MessageRow, Tx};

use crate::{Engine, Result, from_ms, to_ms};

/// One cap: at most `max` capped emails per contact in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrequencyCap {
    /// Emails allowed in a window (at least 1).
    pub max: u32,
    /// The window's length.
    pub per: Delay,
}

impl std::fmt::Display for FrequencyCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} per {}", self.max, self.per)
    }
}

/// The first moment at or after `now` at which one more email fits every cap, given the
/// times earlier capped emails went out (any order; those outside every window are ignored).
///
/// An email at `s` counts in the window `(t - per, t]`: it stops counting at `s + per`.
/// Moving later only lets emails fall out of windows, so the answer is found by pushing `t`
/// forward until no cap is full.
pub fn first_fit(
    sent: &[DateTime<Utc>],
    caps: &[FrequencyCap],
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let mut sent: Vec<DateTime<Utc>> = sent.iter().copied().filter(|s| *s <= now).collect();
    sent.sort_unstable();
    let mut t = now;
    loop {
        let mut moved = false;
        for cap in caps {
            let per = cap.per.to_chrono();
            let recent: Vec<DateTime<Utc>> =
                sent.iter().copied().filter(|s| *s > t - per).collect();
            let max = cap.max.max(1) as usize;
            if recent.len() >= max {
                // The oldest emails must leave the window until only max - 1 remain.
                let leaves = recent[recent.len() - max] + per;
                if leaves > t {
                    t = leaves;
                    moved = true;
                }
            }
        }
        if !moved {
            return t;
        }
    }
}

/// The longest window of the caps (how far back sends matter).
pub fn longest(caps: &[FrequencyCap]) -> Duration {
    caps.iter()
        .map(|c| c.per.to_chrono())
        .max()
        .unwrap_or_default()
}

/// Of `marks` (messages about to be marked `sending` in `tx`), keeps those within the caps
/// and postpones the rest. Returns the kept ones, the ids of those that count toward the
/// caps (to stamp once marked), and the ids postponed (their leases are given back).
#[allow(clippy::type_complexity)]
pub(crate) async fn admit<'a, P>(
    engine: &Engine,
    tx: &mut Tx,
    marks: Vec<(&'a MessageRow, String, P)>,
    now: DateTime<Utc>,
) -> Result<(Vec<(&'a MessageRow, String, P)>, Vec<i64>, Vec<i64>)> {
    let caps = &engine.config.frequency;
    if caps.is_empty() || marks.is_empty() {
        return Ok((marks, Vec::new(), Vec::new()));
    }
    // Which messages the caps apply to (not `frequency: exempt`).
    let mut capped = Vec::with_capacity(marks.len());
    for (m, ..) in &marks {
        let c = engine.version(m.version_id).await?;
        let exempt = c
            .steps
            .iter()
            .find(|s| s.id.as_str() == m.step_id)
            .is_none_or(|s| c.frequency_exempt(s));
        capped.push(!exempt);
    }
    let contacts: Vec<i64> = marks
        .iter()
        .zip(&capped)
        .filter(|(_, c)| **c)
        .map(|((m, ..), _)| m.contact_id)
        .collect();
    if contacts.is_empty() {
        return Ok((marks, Vec::new(), Vec::new()));
    }
    // The lock first, then the count: a worker that counted before another's mark
    // committed could send past the cap.
    tx.lock_contacts(&contacts).await?;
    let mut sent: HashMap<i64, Vec<DateTime<Utc>>> = HashMap::new();
    for (contact, at) in tx
        .capped_sends(&contacts, to_ms(now - longest(caps)))
        .await?
    {
        sent.entry(contact).or_default().push(from_ms(at));
    }
    let mut kept = Vec::with_capacity(marks.len());
    let mut counted = Vec::new();
    let mut postponed = Vec::new();
    for ((m, message_id, p), capped) in marks.into_iter().zip(capped) {
        if !capped {
            kept.push((m, message_id, p));
            continue;
        }
        let times = sent.entry(m.contact_id).or_default();
        let fits = first_fit(times, caps, now);
        if fits <= now {
            // Later messages of this contact in the same round count this one.
            times.push(now);
            counted.push(m.id);
            kept.push((m, message_id, p));
            continue;
        }
        let until = in_window(engine, tx, m, fits).await?;
        if tx
            .postpone_message(m.id, to_ms(until), to_ms(now), engine.owner)
            .await?
        {
            let full: Vec<String> = caps
                .iter()
                .filter(|c| {
                    let per = c.per.to_chrono();
                    times.iter().filter(|s| **s > now - per).count() >= c.max as usize
                })
                .map(ToString::to_string)
                .collect();
            tx.insert_decision(
                m.enrollment_id,
                m.seq,
                &m.step_id,
                "postponed",
                &format!(
                    "(frequency cap) the contact has had the most emails allowed ({}); it goes out at {}",
                    full.join(", "),
                    until.to_rfc3339_opts(SecondsFormat::Secs, true)
                ),
                to_ms(now),
            )
            .await?;
            tracing::debug!(message = m.id, until = %until, "postponed by the frequency cap");
        }
        postponed.push(m.id);
    }
    Ok((kept, counted, postponed))
}

/// `at`, or the next opening of the message's send window after it.
async fn in_window(
    engine: &Engine,
    tx: &mut Tx,
    m: &MessageRow,
    at: DateTime<Utc>,
) -> Result<DateTime<Utc>> {
    let c = engine.version(m.version_id).await?;
    let Some(step) = c.steps.iter().find(|s| s.id.as_str() == m.step_id) else {
        return Ok(at);
    };
    let (Action::Send(_), Some(window)) = (&step.action, c.window_for(step)) else {
        return Ok(at);
    };
    let tz = tx
        .contacts(&[m.contact_id])
        .await?
        .first()
        .and_then(|contact| contact.attributes.get("timezone")?.as_str()?.parse().ok())
        .unwrap_or(engine.config.default_timezone);
    Ok(window.next_opening(at, window.zone(tz)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cap(max: u32, per: &str) -> FrequencyCap {
        FrequencyCap {
            max,
            per: per.parse().unwrap(),
        }
    }

    #[test]
    fn first_moment_that_fits_every_cap() {
        let now = "2026-03-02T10:00:00Z";
        // (sent, caps, expected)
        let cases: &[(&[&str], Vec<FrequencyCap>, &str)] = &[
            // No caps, no sends: now.
            (&[], vec![], now),
            (&[], vec![cap(1, "1d")], now),
            // One email an hour ago, 1 per day: a day after it.
            (
                &["2026-03-02T09:00:00Z"],
                vec![cap(1, "1d")],
                "2026-03-03T09:00:00Z",
            ),
            // One email exactly a day ago has left the window.
            (&["2026-03-01T10:00:00Z"], vec![cap(1, "1d")], now),
            // 2 per day with one sent: fits now.
            (&["2026-03-02T09:00:00Z"], vec![cap(2, "1d")], now),
            // 2 per day with two sent: when the older leaves.
            (
                &["2026-03-02T09:00:00Z", "2026-03-01T12:00:00Z"],
                vec![cap(2, "1d")],
                "2026-03-02T12:00:00Z",
            ),
            // Several windows: 1 per 6h fits at 15:00, but 2 per week pushes to when the
            // oldest of the week leaves.
            (
                &["2026-03-02T09:00:00Z", "2026-02-27T08:00:00Z"],
                vec![cap(1, "6h"), cap(2, "1w")],
                "2026-03-06T08:00:00Z",
            ),
            // The wait for one cap can make another matter: 1 per 1d and 3 per 3d.
            (
                &[
                    "2026-03-02T08:00:00Z",
                    "2026-03-01T08:00:00Z",
                    "2026-02-28T09:00:00Z",
                ],
                vec![cap(1, "1d"), cap(3, "3d")],
                "2026-03-03T09:00:00Z",
            ),
            // Sends in the future (another clock) do not count.
            (&["2026-03-02T11:00:00Z"], vec![cap(1, "1d")], now),
        ];
        for (sent, caps, want) in cases {
            let sent: Vec<DateTime<Utc>> = sent.iter().map(|s| t(s)).collect();
            assert_eq!(
                first_fit(&sent, caps, t(now)),
                t(want),
                "sent {sent:?} caps {caps:?}"
            );
        }
    }

    #[test]
    fn longest_window() {
        assert_eq!(longest(&[]), Duration::zero());
        assert_eq!(longest(&[cap(1, "6h"), cap(2, "1w")]), Duration::days(7));
    }
}
