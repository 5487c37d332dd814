//! Opening a connection: TCP (with `TCP_NODELAY`) or implicit TLS, the greeting and EHLO,
//! STARTTLS, a second EHLO to learn PIPELINING, AUTH. All of it shares one deadline, and a TLS
//! failure becomes one sentence an operator can act on; that is why it is its own module.

use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::Ehlo;

use super::timeouts::abort;
use super::{Phase, SendError, SmtpConnection, Tls, Verdict};
use crate::trust::tls_problem;

/// One step of opening a connection to `server` (`host:port`), bounded by what is left of
/// the opening's deadline. A failed TLS handshake is said in one sentence naming the server
/// and the reason (an untrusted or expired certificate, a wrong name): it is a setup problem
/// an operator must see, not a line of rustls internals. It stays transient: the message
/// waits until the trust store or the server is fixed.
async fn opening<T>(
    deadline: tokio::time::Instant,
    limit: Duration,
    server: &str,
    what: &str,
    f: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, SendError> {
    match tokio::time::timeout_at(deadline, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(match tls_problem(&e) {
            Some(problem) => SendError::local(
                Phase::Connect,
                format!("cannot deliver through {server}: {problem}"),
                Verdict::Transient,
            ),
            None => SendError::from_lettre(Phase::Connect, &e),
        }),
        Err(_) => Err(SendError::timeout(Phase::Connect, what, limit)),
    }
}

impl SmtpConnection {
    pub(super) async fn open(&mut self) -> Result<AsyncSmtpConnection, SendError> {
        let url = &self.url;
        let limit = self.timeouts.connect;
        // One deadline for the whole opening: a server that answers each step just in time
        // must not stretch it to several timeouts.
        let deadline = tokio::time::Instant::now() + limit;
        let connect_err = |e: std::io::Error| {
            SendError::local(
                Phase::Connect,
                format!("cannot connect to {}:{}: {e}", url.host, url.port),
                Verdict::Transient,
            )
        };
        let server = url.server();
        let server = server.as_str();
        let tls_params = || {
            self.trust.parameters(&url.host).map_err(|e| {
                SendError::local(
                    Phase::Connect,
                    format!("TLS setup failed: {e}"),
                    Verdict::Transient,
                )
            })
        };
        tracing::debug!(server = %url, "connecting");
        let mut conn = if url.tls == Tls::Implicit {
            opening(
                deadline,
                limit,
                server,
                "the connection, TLS and the greeting",
                AsyncSmtpConnection::connect_tokio1(
                    (url.host.as_str(), url.port),
                    Some(limit),
                    &self.hello,
                    Some(tls_params()?),
                    None,
                ),
            )
            .await?
        } else {
            let stream = tokio::time::timeout_at(
                deadline,
                tokio::net::TcpStream::connect((url.host.as_str(), url.port)),
            )
            .await
            .map_err(|_| SendError::timeout(Phase::Connect, "the TCP connection", limit))?
            .map_err(connect_err)?;
            stream.set_nodelay(true).map_err(connect_err)?;
            opening(
                deadline,
                limit,
                server,
                "the greeting and EHLO",
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello),
            )
            .await?
        };
        let quit = self.timeouts.command;
        let wants_tls = matches!(url.tls, Tls::Opportunistic | Tls::Required);
        if wants_tls && conn.can_starttls() {
            let tls = tls_params()?;
            // On failure the connection is only dropped, never told QUIT: once the server said
            // 220 to STARTTLS lettre has handed its stream to the handshake, and a failed (or
            // timed-out) handshake leaves it none to write to (lettre panics on a write then).
            // Plain text after an accepted STARTTLS would be wrong anyway.
            opening(
                deadline,
                limit,
                server,
                "STARTTLS",
                conn.starttls(tls, &self.hello),
            )
            .await?;
        } else if url.tls == Tls::Required {
            abort(&mut conn, quit).await;
            return Err(SendError::local(
                Phase::Connect,
                "the server does not offer STARTTLS and smtp_url says tls=required".into(),
                Verdict::Transient,
            ));
        }
        // lettre keeps only the EHLO keywords it knows, and PIPELINING is not one of them:
        // ask again (one round trip per connection) to learn whether commands may be grouped.
        self.pipelining = match opening(
            deadline,
            limit,
            server,
            "EHLO",
            conn.command(Ehlo::new(self.hello.clone())),
        )
        .await
        {
            Ok(ehlo) => ehlo.message().any(|line| {
                line.split_whitespace()
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
            }),
            // A server that refuses a second EHLO is simply not pipelined.
            Err(e) if e.code.is_some() => false,
            Err(e) => {
                abort(&mut conn, quit).await;
                return Err(e);
            }
        };
        if let (Some(user), Some(pass)) = (&url.user, &url.password) {
            if !conn.is_encrypted() && url.tls != Tls::None {
                abort(&mut conn, quit).await;
                return Err(SendError::local(
                    Phase::Connect,
                    "the server offers no STARTTLS: the SMTP password is not sent unencrypted (add ?tls=none to smtp_url to allow it)".into(),
                    Verdict::Transient,
                ));
            }
            let creds = Credentials::new(user.clone(), pass.0.clone());
            if let Err(e) = opening(
                deadline,
                limit,
                server,
                "AUTH",
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds),
            )
            .await
            {
                abort(&mut conn, quit).await;
                return Err(e);
            }
        }
        Ok(conn)
    }
}
