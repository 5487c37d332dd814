//! SMTP delivery over connections we build ourselves.
//!
//! lettre's pooled transport sends a NOOP before each reuse and leaves Nagle on (an extra
//! round trip, and small commands held back), and `AsyncSmtpConnection::send` aborts the
//! connection on any refusal without saying which command failed. Here each connection is a
//! tokio `TcpStream` with `TCP_NODELAY`, driven command by command (MAIL, RCPT, DATA, the
//! content) so we know which [`Phase`] a reply belongs to:
//!
//! - a refused sender or recipient leaves the connection usable (RSET);
//! - a network error or timeout drops it, and the next message reconnects;
//! - a reused connection the server closed while idle (a `421` or EOF on MAIL) is replaced
//!   and the message tried once more on a fresh one: nothing of it had been sent yet.
//!
//! Every wait on the server is bounded (see [`SmtpConnection::with_timeout`]): a server that
//! accepts the connection and then says nothing, or stops answering at any command, costs
//! one timeout, never a stuck sender. Before the content is sent a timeout is transient (the
//! message is deferred and retried); once the content is sent and the final reply does not
//! come, the outcome is unknown (the message is never re-sent blindly).
//!
//! TLS (STARTTLS or implicit) trusts a [`TlsTrust`]: the operating system's store plus
//! `smtp_ca_file`. A certificate it refuses is one transient sentence naming the server and
//! the reason ("cannot deliver through host:port: the server's certificate is not trusted
//! (unknown issuer); …"), so the message waits until the operator fixes the trust.
//!
//! Whether a failure is transient, permanent or of unknown outcome is decided here, in
//! [`SendError`], and nowhere else.
//!
//! | module | what |
//! |---|---|
//! | (this) | [`SmtpConnection`]: send one message, reuse or replace the connection |
//! | url | [`SmtpUrl`], [`Tls`], [`SmtpUrlError`]: the `smtp_url` setting |
//! | failure | [`SendError`], [`Phase`]: what a failure means for the message |
//! | timeouts | [`DEFAULT_SMTP_TIMEOUT`] and the bounded waits |
//! | handshake | opening a connection: greeting, EHLO, STARTTLS, AUTH |
//! | transaction | MAIL, RCPT, DATA (pipelined when offered) and the content |

mod failure;
mod handshake;
mod timeouts;
mod transaction;
mod url;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::Rset;
use lettre::transport::smtp::extension::ClientId;

use failure::Verdict;
pub use failure::{Phase, SendError};
pub use timeouts::DEFAULT_SMTP_TIMEOUT;
use timeouts::{Timeouts, abort, within};
pub use url::{SmtpUrl, SmtpUrlError, Tls};

use crate::message::BuiltMessage;
use crate::trust::TlsTrust;

/// One SMTP connection, (re)opened as needed. Not shared: each concurrent sender owns one.
/// Every wait on the server is bounded ([`SmtpConnection::with_timeout`]).
pub struct SmtpConnection {
    url: SmtpUrl,
    /// Boxed: every send's future holds it (lettre's connection is ~1.2 KB).
    conn: Option<Box<AsyncSmtpConnection>>,
    /// The open connection's server advertised PIPELINING (RFC 2920).
    pipelining: bool,
    timeouts: Timeouts,
    hello: ClientId,
    /// The certificate authorities TLS trusts.
    trust: Arc<TlsTrust>,
}

impl fmt::Debug for SmtpConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConnection")
            .field("url", &self.url)
            .field("open", &self.conn.is_some())
            .finish()
    }
}

impl SmtpConnection {
    /// A connection to `url`, opened on the first send. TLS trusts the operating system's
    /// certificate store ([`TlsTrust::system`]) unless [`SmtpConnection::with_trust`] says
    /// otherwise.
    pub fn new(url: SmtpUrl) -> Self {
        Self {
            url,
            conn: None,
            pipelining: false,
            timeouts: Timeouts::from_base(DEFAULT_SMTP_TIMEOUT),
            hello: ClientId::default(),
            trust: TlsTrust::system(),
        }
    }

    /// Trusts these certificate authorities for TLS (e.g. the system's plus `smtp_ca_file`,
    /// [`TlsTrust::with_ca_file`]).
    #[must_use]
    pub fn with_trust(mut self, trust: Arc<TlsTrust>) -> Self {
        self.trust = trust;
        self
    }

    /// Bounds every wait on the server by `base` ([`DEFAULT_SMTP_TIMEOUT`] otherwise): opening a
    /// connection (TCP connect, greeting, EHLO, STARTTLS, AUTH) in all, and each command's
    /// reply; writing the content and the final reply to it get twice `base`.
    #[must_use]
    pub fn with_timeout(mut self, base: Duration) -> Self {
        self.timeouts = Timeouts::from_base(base);
        self
    }

    /// Sends one message; returns the server's final reply (e.g. `250 2.0.0 Ok: queued`).
    ///
    /// On a reused connection that turns out to be closed (the server's idle timeout), the
    /// message is tried once more on a new connection. A refusal (4xx/5xx) keeps the
    /// connection for the next message; anything else drops it.
    pub async fn send(&mut self, m: &BuiltMessage) -> Result<String, SendError> {
        let reused = self.conn.as_ref().is_some_and(|c| !c.has_broken());
        let first = self.attempt(m).await;
        match first {
            Err(e) if reused && e.stale_connection() => {
                tracing::debug!(server = %self.url, reply = %e, "idle connection was closed; reconnecting");
                Box::pin(self.attempt(m)).await
            }
            other => other,
        }
    }

    async fn attempt(&mut self, m: &BuiltMessage) -> Result<String, SendError> {
        let mut conn = match self.conn.take() {
            Some(c) if !c.has_broken() => c,
            // Boxed, like the other rare paths below: the future of every send would
            // otherwise be as large as connecting (TLS included), ~13 KB copied per message.
            _ => Box::new(Box::pin(self.open()).await?),
        };
        let result = self.transaction(&mut conn, m).await;
        match &result {
            Ok(_) => self.conn = Some(conn),
            // The server refused politely: the connection is still good once reset.
            Err(e) if e.code.is_some_and(|c| c != 421) && !conn.has_broken() => {
                if Box::pin(within(
                    self.timeouts.command,
                    e.phase,
                    "RSET",
                    conn.command(Rset),
                ))
                .await
                .is_ok()
                {
                    self.conn = Some(conn);
                } else {
                    Box::pin(self.drop_connection(conn)).await;
                }
            }
            Err(_) => Box::pin(self.drop_connection(conn)).await,
        }
        if let Err(e) = &result {
            tracing::debug!(server = %self.url, phase = %e.phase, code = ?e.code, reply = %e.reply, "send failed");
        }
        result
    }

    /// Closes a connection without waiting on a server that may not answer.
    async fn drop_connection(&self, mut conn: Box<AsyncSmtpConnection>) {
        abort(&mut conn, self.timeouts.command).await;
    }

    /// Says QUIT and closes.
    pub async fn close(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = tokio::time::timeout(self.timeouts.command, c.quit()).await;
        }
    }
}
