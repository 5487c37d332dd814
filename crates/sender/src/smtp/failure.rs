//! What a delivery failure means: [`SendError`] tagged with the [`Phase`] it happened in and
//! one verdict (transient, permanent or unknown). Kept apart so the rule that decides the
//! verdict is read, and changed, in one place.

use std::fmt;
use std::time::Duration;

/// Which part of the SMTP conversation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connecting, greeting, EHLO, STARTTLS, AUTH.
    Connect,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// The DATA command, up to the server's `354` (no content sent yet).
    Data,
    /// The message content and the server's final reply to it.
    Message,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Mail => "MAIL FROM",
            Self::Rcpt => "RCPT TO",
            Self::Data => "DATA",
            Self::Message => "message content",
        })
    }
}

/// What a failure means for the message; exactly one applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Transient,
    Permanent,
    Unknown,
}

/// A delivery failure, classified once: exactly one of [`SendError::is_transient`],
/// [`SendError::is_permanent`] and [`SendError::is_unknown`] is true.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reply}")]
pub struct SendError {
    /// Where it failed.
    pub phase: Phase,
    /// The SMTP reply code, when the server answered.
    pub code: Option<u16>,
    /// The reply text or the local reason (never a password).
    pub reply: String,
    verdict: Verdict,
}

impl SendError {
    /// Not delivered, worth retrying later: a 4xx reply, a timeout, a refused or broken
    /// connection before the content was sent, and any failure that is about our side (a 5xx
    /// to MAIL FROM or during connect/AUTH: sender or credentials, not the recipient).
    pub fn is_transient(&self) -> bool {
        self.verdict == Verdict::Transient
    }

    /// Not delivered and never will be: a 5xx reply to RCPT TO, DATA or the content (the
    /// recipient bounced), or an address this server cannot take (non-ASCII without
    /// SMTPUTF8).
    pub fn is_permanent(&self) -> bool {
        self.verdict == Verdict::Permanent
    }

    /// The content was sent but no final reply arrived (timeout or connection lost after the
    /// last byte was written): the server may have accepted the message. Re-sending could
    /// deliver it twice; SPEC §6 records such a message as `unknown`.
    pub fn is_unknown(&self) -> bool {
        self.verdict == Verdict::Unknown
    }

    pub(super) fn from_lettre(phase: Phase, e: &lettre::transport::smtp::Error) -> Self {
        let code = e.status().map(u16::from);
        // A 5xx to MAIL FROM or during connect is about us (sender, credentials, policy),
        // not the recipient: retry rather than bounce the contact.
        let verdict =
            if e.is_permanent() && matches!(phase, Phase::Rcpt | Phase::Data | Phase::Message) {
                Verdict::Permanent
            } else if code.is_none() && phase == Phase::Message {
                Verdict::Unknown
            } else {
                Verdict::Transient
            };
        Self {
            phase,
            code,
            reply: format!("{phase} failed: {e}"),
            verdict,
        }
    }

    /// No answer within `limit` while waiting for `what`. Only after the content was sent
    /// ([`Phase::Message`]) can the server have taken the message.
    pub(super) fn timeout(phase: Phase, what: &str, limit: Duration) -> Self {
        Self {
            phase,
            code: None,
            reply: format!(
                "{phase}: the server did not answer in time (waited {limit:?} for {what})"
            ),
            verdict: if phase == Phase::Message {
                Verdict::Unknown
            } else {
                Verdict::Transient
            },
        }
    }

    pub(super) fn local(phase: Phase, reply: String, verdict: Verdict) -> Self {
        Self {
            phase,
            code: None,
            reply,
            verdict,
        }
    }

    /// The server hung up or timed out on a reused connection before this message's first
    /// command was answered: the connection was stale, not the message's fault.
    pub(super) fn stale_connection(&self) -> bool {
        self.phase == Phase::Mail && matches!(self.code, None | Some(421))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_after_the_content_is_unknown_before_it_transient() {
        for (phase, verdict) in [
            (Phase::Connect, Verdict::Transient),
            (Phase::Mail, Verdict::Transient),
            (Phase::Rcpt, Verdict::Transient),
            (Phase::Data, Verdict::Transient),
            (Phase::Message, Verdict::Unknown),
        ] {
            let e = SendError::timeout(phase, "x", Duration::from_secs(1));
            assert_eq!(e.verdict, verdict, "{phase:?}");
            let flags = [e.is_transient(), e.is_permanent(), e.is_unknown()];
            assert_eq!(flags.iter().filter(|f| **f).count(), 1, "{phase:?}");
        }
    }
}
