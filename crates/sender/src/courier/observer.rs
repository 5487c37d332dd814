//! What a [`Mailer`](crate::Mailer) reports about its sends, for whoever counts them (the
//! daemon's `/metrics`). A trait rather than the server's counters: the sender must not
//! depend on the HTTP crate, so the binary adapts one to the other.

use std::time::Duration;

/// The class of an SMTP reply, as `/metrics` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyClass {
    /// 2xx: accepted.
    Accepted,
    /// 4xx: a transient refusal.
    Transient,
    /// 5xx: a permanent refusal.
    Permanent,
    /// No reply (refused connection, timeout, TLS failure) or a code that made no sense.
    NoReply,
}

impl ReplyClass {
    /// The class of an SMTP reply code; `None` is no reply at all.
    pub fn from_code(code: Option<u16>) -> Self {
        match code {
            Some(200..=299) => Self::Accepted,
            Some(400..=499) => Self::Transient,
            Some(500..=599) => Self::Permanent,
            _ => Self::NoReply,
        }
    }

    /// The label: `"2xx"`, `"4xx"`, `"5xx"` or `"error"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "2xx",
            Self::Transient => "4xx",
            Self::Permanent => "5xx",
            Self::NoReply => "error",
        }
    }
}

/// Counts a mailer's sends; must be cheap (it runs on the send path).
pub trait SendObserver: Send + Sync {
    /// One SMTP attempt: how long the server took and how it answered. The mailer calls it.
    fn observe_send(&self, latency: Duration, reply: ReplyClass);
    /// Outcomes of a round that missed their guard (the scheduler's `Delivered::lost`), each a
    /// lease that ran out while its worker still worked. Whoever drives the rounds calls it.
    fn observe_lost(&self, n: u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_are_classed() {
        for (code, label) in [
            (Some(250), "2xx"),
            (Some(451), "4xx"),
            (Some(550), "5xx"),
            (Some(0), "error"),
            (Some(600), "error"),
            (None, "error"),
        ] {
            assert_eq!(ReplyClass::from_code(code).as_str(), label, "{code:?}");
        }
    }
}
