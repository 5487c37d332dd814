//! In-process delivery counters and the Prometheus text format (0.0.4) that reports them.
//!
//! The delivery code calls [`Metrics::observe_send`] once per SMTP attempt (through the
//! sender's `SendObserver`, which the binary adapts to these counters: this crate does not
//! depend on the sender, and the sender classes the reply codes); `/metrics`
//! renders these counters beside the gauges it reads from the database at scrape time. The
//! format is a handful of lines, so it is written here rather than through a registry
//! crate: a counter is an atomic, a histogram is one atomic per bucket.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the send latency histogram's buckets.
pub(crate) const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The classes of SMTP replies counted, in the order they are reported.
pub(crate) const REPLY_CLASSES: [&str; 4] = ["2xx", "4xx", "5xx", "error"];

/// Counters the delivery code updates, safe to share between tasks (`Arc<Metrics>`).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sends whose latency fell in each bucket (not cumulative; the last is `+Inf`).
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Total latency, in nanoseconds (584 years before it wraps).
    sum_nanos: AtomicU64,
    /// SMTP replies by class, in the order of [`REPLY_CLASSES`].
    replies: [AtomicU64; REPLY_CLASSES.len()],
    /// Outcomes the daemon could not record as its own: the message's lease had run out
    /// and another worker had taken it over.
    lost: AtomicU64,
}

impl Metrics {
    /// Empty counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one delivery attempt: how long SMTP took and how the server answered.
    /// `reply_class` is `"2xx"`, `"4xx"`, `"5xx"`, or `"error"` when no reply came (refused
    /// connection, timeout, TLS failure); anything else counts as `"error"`.
    pub fn observe_send(&self, latency: Duration, reply_class: &str) {
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        let class = REPLY_CLASSES
            .iter()
            .position(|c| *c == reply_class)
            .unwrap_or(REPLY_CLASSES.len() - 1);
        self.replies[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts outcomes that missed their guard (the scheduler's `Delivered::lost`):
    /// each means a lease ran out while its worker still worked, which an operator should
    /// look into (a stalled process, a clock far off).
    pub fn observe_lost(&self, n: u64) {
        self.lost.fetch_add(n, Ordering::Relaxed);
    }

    /// Appends the latency histogram and the reply counters in Prometheus text format.
    pub(crate) fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP nurture_send_latency_seconds Time from handing a message to SMTP to the server's reply.\n\
             # TYPE nurture_send_latency_seconds histogram\n",
        );
        let mut cumulative = 0u64;
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "nurture_send_latency_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "nurture_send_latency_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n\
             nurture_send_latency_seconds_sum {sum}\n\
             nurture_send_latency_seconds_count {cumulative}"
        );
        out.push_str(
            "# HELP nurture_smtp_replies_total SMTP replies by class since the daemon started (error: no reply).\n\
             # TYPE nurture_smtp_replies_total counter\n",
        );
        for (class, n) in REPLY_CLASSES.iter().zip(&self.replies) {
            let _ = writeln!(
                out,
                "nurture_smtp_replies_total{{class=\"{class}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP nurture_delivery_lost_leases_total Delivery outcomes not recorded as this daemon's: the message's lease had run out and another worker had taken it over.\n\
             # TYPE nurture_delivery_lost_leases_total counter\n\
             nurture_delivery_lost_leases_total {}",
            self.lost.load(Ordering::Relaxed)
        );
    }
}

/// Appends a gauge with one line per state, every state in `all` (0 when absent from
/// `counts`): a state's series exists before its first row does.
pub(crate) fn render_states<T: Copy + PartialEq + std::fmt::Display>(
    out: &mut String,
    name: &str,
    help: &str,
    all: &[T],
    counts: &[(T, i64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for state in all {
        let n = counts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "{name}{{state=\"{state}\"}} {n}");
    }
}

#[cfg(test)]
mod tests {
    use nurture_store::EnrollmentState;

    use super::*;

    #[test]
    fn histogram_is_cumulative_and_sums_seconds() {
        let m = Metrics::new();
        m.observe_send(Duration::from_millis(3), "2xx");
        m.observe_send(Duration::from_millis(10), "2xx");
        m.observe_send(Duration::from_millis(700), "4xx");
        m.observe_send(Duration::from_secs(30), "error");
        m.observe_send(Duration::from_millis(1), "weird");
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "nurture_send_latency_seconds_bucket{le=\"0.005\"} 2",
            "nurture_send_latency_seconds_bucket{le=\"0.01\"} 3",
            "nurture_send_latency_seconds_bucket{le=\"0.5\"} 3",
            "nurture_send_latency_seconds_bucket{le=\"1\"} 4",
            "nurture_send_latency_seconds_bucket{le=\"10\"} 4",
            "nurture_send_latency_seconds_bucket{le=\"+Inf\"} 5",
            "nurture_send_latency_seconds_sum 30.714",
            "nurture_send_latency_seconds_count 5",
            "nurture_smtp_replies_total{class=\"2xx\"} 2",
            "nurture_smtp_replies_total{class=\"4xx\"} 1",
            "nurture_smtp_replies_total{class=\"5xx\"} 0",
            "nurture_smtp_replies_total{class=\"error\"} 2",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line} in\n{out}");
        }
    }

    #[test]
    fn every_known_state_is_reported() {
        let mut out = String::new();
        render_states(
            &mut out,
            "x",
            "help",
            EnrollmentState::ALL,
            &[(EnrollmentState::Exited, 2)],
        );
        assert_eq!(
            out,
            "# HELP x help\n# TYPE x gauge\nx{state=\"active\"} 0\nx{state=\"completed\"} 0\nx{state=\"exited\"} 2\nx{state=\"failed\"} 0\n"
        );
    }
}
