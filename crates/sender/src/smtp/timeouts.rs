//! How long each wait on the server may last, and the bounded waits themselves. Every exchange
//! goes through [`within`] (or the opening's deadline), so a server that stops answering costs
//! one timeout, never a stuck sender.

use std::time::Duration;

use lettre::transport::smtp::client::AsyncSmtpConnection;

use super::{Phase, SendError};

/// How long each wait on the server may last, all derived from one base (`smtp_timeout`).
///
/// RFC 5321 §4.5.3.2 asks a client to wait minutes (5 for the greeting, MAIL and RCPT, 10
/// for the final reply): right for a store-and-forward relay, too long for a sender whose
/// message holds a 5-minute lease and one of a handful of connections while it waits. A
/// healthy server answers a command in milliseconds; one that takes more than the base is
/// broken or overloaded, and deferring costs only a retry a minute later. The final reply
/// gets twice the base: the server may scan the content before answering, and giving up
/// there is costly (the outcome is unknown, so the message is never re-sent). With the
/// default base of 30 s a message's worst case (30 s to connect, greet, EHLO, STARTTLS and
/// AUTH in all; 30 s for each of MAIL, RCPT and DATA; 60 s for the final reply) stays within
/// its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Timeouts {
    /// Opening a connection, all steps together: TCP connect, greeting and EHLO, STARTTLS,
    /// the second EHLO, AUTH.
    pub(super) connect: Duration,
    /// Each command's reply: MAIL FROM, RCPT TO, DATA, RSET, QUIT.
    pub(super) command: Duration,
    /// Writing the content and the server's final reply to it.
    pub(super) content: Duration,
}

impl Timeouts {
    pub(super) fn from_base(base: Duration) -> Self {
        Self {
            connect: base,
            command: base,
            content: base.saturating_mul(2),
        }
    }
}

/// The base of [`Timeouts`] unless
/// [`SmtpConnection::with_timeout`](super::SmtpConnection::with_timeout) says otherwise.
pub const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one exchange with the server, giving up after `limit` (`what` names the wait).
pub(super) async fn within<T>(
    limit: Duration,
    phase: Phase,
    what: &str,
    f: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, SendError> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(SendError::from_lettre(phase, &e)),
        Err(_) => Err(SendError::timeout(phase, what, limit)),
    }
}

/// Closes a connection without waiting long on a server that may not answer: lettre's
/// `abort` says QUIT and reads the reply unless it already saw the connection break.
pub(super) async fn abort(conn: &mut AsyncSmtpConnection, limit: Duration) {
    let _ = tokio::time::timeout(Duration::from_secs(1).min(limit), conn.abort()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::{SmtpConnection, SmtpUrl};

    #[test]
    fn the_final_reply_gets_twice_the_base_timeout() {
        let t = Timeouts::from_base(DEFAULT_SMTP_TIMEOUT);
        assert_eq!(
            (t.connect, t.command, t.content),
            (
                Duration::from_secs(30),
                Duration::from_secs(30),
                Duration::from_secs(60)
            )
        );
        let conn = SmtpConnection::new(SmtpUrl::parse("smtp://h").unwrap())
            .with_timeout(Duration::from_secs(1));
        assert_eq!(conn.timeouts.content, Duration::from_secs(2));
    }
}
