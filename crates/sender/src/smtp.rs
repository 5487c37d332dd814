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

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

use crate::message::BuiltMessage;
use crate::trust::{TlsTrust, tls_problem};

/// How to secure the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain text (`?tls=none`).
    None,
    /// STARTTLS when the server offers it, plain text otherwise (`?tls=starttls`, the default
    /// for `smtp://`). The certificate is verified whenever TLS is used. Credentials are never
    /// sent unencrypted in this mode: a server without STARTTLS gets no AUTH (say `tls=none`
    /// to allow it, e.g. for a relay on localhost).
    Opportunistic,
    /// STARTTLS, refusing to send without it (`?tls=required`).
    Required,
    /// TLS from the first byte (`smtps://`, port 465 by default).
    Implicit,
}

/// A password: kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A parsed `smtp_url`. The password never appears in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Security.
    pub tls: Tls,
    user: Option<String>,
    password: Option<Secret>,
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls == Tls::Implicit {
            "smtps"
        } else {
            "smtp"
        };
        match &self.user {
            Some(u) => write!(f, "{scheme}://{u}:…@{}", self.server()),
            None => write!(f, "{scheme}://{}", self.server()),
        }
    }
}

/// An `smtp_url` that cannot be used. The message never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SmtpUrlError(String);

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl SmtpUrl {
    /// `host:port` (an IPv6 host in brackets), as messages name the server.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Parses `smtp://[user:pass@]host[:port][?tls=none|starttls|required]` or
    /// `smtps://[user:pass@]host[:port]`. User and password may be percent-encoded
    /// (`me%40x.example`). Defaults: port 25 and [`Tls::Opportunistic`] for `smtp://`,
    /// port 465 and [`Tls::Implicit`] for `smtps://`. IPv6 hosts go in brackets.
    pub fn parse(url: &str) -> Result<Self, SmtpUrlError> {
        let err = |m: String| Err(SmtpUrlError(m));
        let (implicit, rest) = if let Some(r) = url.strip_prefix("smtps://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("smtp://") {
            (false, r)
        } else {
            return err("smtp_url must start with smtp:// or smtps://".into());
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (user, password) = match auth {
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (Some(percent_decode(u)), Some(Secret(percent_decode(p)))),
                None => (Some(percent_decode(a)), None),
            },
            None => (None, None),
        };
        let default_port = if implicit { 465 } else { 25 };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return err(format!("`{hostport}` has no closing `]`"));
            };
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return err(format!("unexpected `{after}` after the host")),
            }
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return err(format!("`{p}` is not a port number")),
            },
            None => default_port,
        };
        if host.is_empty() {
            return err("smtp_url has no host".into());
        }
        let mut tls = if implicit {
            Tls::Implicit
        } else {
            Tls::Opportunistic
        };
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            match pair.split_once('=') {
                Some(("tls", "none")) if !implicit => tls = Tls::None,
                Some(("tls", "starttls")) if !implicit => tls = Tls::Opportunistic,
                Some(("tls", "required")) if !implicit => tls = Tls::Required,
                Some(("tls", _)) if implicit => {
                    return err("smtps:// is always TLS; `tls=` is for smtp:// URLs".into());
                }
                _ => {
                    return err(format!(
                        "unknown smtp_url option `{pair}` (use tls=none, tls=starttls or tls=required)"
                    ));
                }
            }
        }
        Ok(Self {
            host: host.to_string(),
            port,
            tls,
            user,
            password,
        })
    }
}

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
enum Verdict {
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

    fn from_lettre(phase: Phase, e: &lettre::transport::smtp::Error) -> Self {
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
    fn timeout(phase: Phase, what: &str, limit: Duration) -> Self {
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

    fn local(phase: Phase, reply: String, verdict: Verdict) -> Self {
        Self {
            phase,
            code: None,
            reply,
            verdict,
        }
    }

    /// The server hung up or timed out on a reused connection before this message's first
    /// command was answered: the connection was stale, not the message's fault.
    fn stale_connection(&self) -> bool {
        self.phase == Phase::Mail && matches!(self.code, None | Some(421))
    }
}

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
struct Timeouts {
    /// Opening a connection, all steps together: TCP connect, greeting and EHLO, STARTTLS,
    /// the second EHLO, AUTH.
    connect: Duration,
    /// Each command's reply: MAIL FROM, RCPT TO, DATA, RSET, QUIT.
    command: Duration,
    /// Writing the content and the server's final reply to it.
    content: Duration,
}

impl Timeouts {
    fn from_base(base: Duration) -> Self {
        Self {
            connect: base,
            command: base,
            content: base.saturating_mul(2),
        }
    }
}

/// The base of [`Timeouts`] unless [`SmtpConnection::with_timeout`] says otherwise.
pub const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Runs one exchange with the server, giving up after `limit` (`what` names the wait).
async fn within<T>(
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

/// Closes a connection without waiting long on a server that may not answer: lettre's
/// `abort` says QUIT and reads the reply unless it already saw the connection break.
async fn abort(conn: &mut AsyncSmtpConnection, limit: Duration) {
    let _ = tokio::time::timeout(Duration::from_secs(1).min(limit), conn.abort()).await;
}

/// What ending a refused pipelined transaction with an empty message waits for.
const EMPTY_END: &str = "the reply to an empty message";

/// Several commands written as one (PIPELINING).
struct Grouped(String);

impl fmt::Display for Grouped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The DATA content in one piece: dot-stuffed (RFC 5321 §4.5.2) and terminated, byte for
/// byte what lettre's `message` sends, but in one write instead of two (two TCP segments
/// with Nagle off, and two reads for the server). `None` for content that is not UTF-8
/// (ours is ASCII), which goes through lettre.
fn data_block(bytes: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(bytes).ok()?;
    let mut out = String::with_capacity(s.len() + 64);
    if s.starts_with('.') {
        out.push('.');
    }
    let mut last = 0;
    for (i, _) in s.match_indices("\r\n.") {
        out.push_str(&s[last..i + 2]);
        out.push('.');
        last = i + 2;
    }
    out.push_str(&s[last..]);
    out.push_str("\r\n.\r\n");
    Some(out)
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

    async fn open(&mut self) -> Result<AsyncSmtpConnection, SendError> {
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

    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        m: &BuiltMessage,
    ) -> Result<String, SendError> {
        let from: Address = m.from.parse().map_err(|_| {
            SendError::local(
                Phase::Mail,
                format!("`{}` is not a valid sender address", m.from),
                Verdict::Transient,
            )
        })?;
        let to: Address = m.to.parse().map_err(|_| {
            SendError::local(
                Phase::Rcpt,
                format!("`{}` is not a valid address", m.to),
                Verdict::Permanent,
            )
        })?;
        // What lettre's own `send` adds: SMTPUTF8 for non-ASCII addresses, 8BITMIME for a
        // non-ASCII message (ours are ASCII: quoted-printable bodies, RFC 2047 headers).
        let info = conn.server_info();
        let mut params = Vec::new();
        if !m.from.is_ascii() || !m.to.is_ascii() {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                let (phase, verdict) = if m.to.is_ascii() {
                    (Phase::Mail, Verdict::Transient)
                } else {
                    (Phase::Rcpt, Verdict::Permanent)
                };
                return Err(SendError::local(
                    phase,
                    "the address is not ASCII and the server does not support SMTPUTF8".into(),
                    verdict,
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !m.bytes.is_ascii() && info.supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let mail = Mail::new(Some(from), params);
        let rcpt = Rcpt::new(to, vec![]);
        let limit = self.timeouts.command;
        if self.pipelining {
            // RFC 2920: MAIL, RCPT and DATA in one write, their three replies read in order,
            // so a message costs two round trips instead of four.
            let group = Grouped(format!("{mail}{rcpt}{Data}"));
            let mail = match tokio::time::timeout(limit, conn.command(group)).await {
                Ok(reply) => reply.map_err(|e| SendError::from_lettre(Phase::Mail, &e)),
                // A server answers a pipelined group when it reaches DATA: that is where it
                // hangs (still before any content, so transient).
                Err(_) => {
                    return Err(SendError::timeout(
                        Phase::Data,
                        "the replies to MAIL FROM, RCPT TO and DATA",
                        limit,
                    ));
                }
            };
            if let Err(e) = mail {
                if e.code.is_none() {
                    // A broken connection (a stale one is retried on a new connection).
                    return Err(e);
                }
                let rcpt = within(limit, Phase::Rcpt, "RCPT TO", conn.read_response()).await;
                let data = within(limit, Phase::Data, "DATA", conn.read_response()).await;
                if rcpt.is_err() && data.is_ok() {
                    let _ = within(limit, Phase::Message, EMPTY_END, conn.message(b"")).await;
                }
                return Err(e);
            }
            let rcpt = within(limit, Phase::Rcpt, "RCPT TO", conn.read_response()).await;
            if let Err(e) = &rcpt
                && e.code.is_none()
            {
                return rcpt.map(|_| String::new());
            }
            let data = within(limit, Phase::Data, "DATA", conn.read_response()).await;
            if rcpt.is_err() && data.is_ok() {
                // The server took DATA without a valid envelope: end the empty message so
                // the connection stays in step (it will refuse it).
                let _ = within(limit, Phase::Message, EMPTY_END, conn.message(b"")).await;
            }
            rcpt?;
            data?;
        } else {
            within(limit, Phase::Mail, "MAIL FROM", conn.command(mail)).await?;
            within(limit, Phase::Rcpt, "RCPT TO", conn.command(rcpt)).await?;
            within(limit, Phase::Data, "DATA", conn.command(Data)).await?;
        }
        // A timeout here may come while the content is still being written (the server
        // stopped reading) and the server then cannot have accepted it; but the content of
        // our messages fits in the sockets' buffers, so the write is done at once and the
        // wait is for the final reply: `unknown`, never re-sent.
        let content = self.timeouts.content;
        let what = "the final reply to the content";
        let reply = match data_block(&m.bytes) {
            Some(block) => {
                within(content, Phase::Message, what, conn.command(Grouped(block))).await?
            }
            None => within(content, Phase::Message, what, conn.message(&m.bytes)).await?,
        };
        Ok(format!(
            "{} {}",
            reply.code(),
            reply.message().collect::<Vec<_>>().join(" ")
        ))
    }

    /// Says QUIT and closes.
    pub async fn close(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = tokio::time::timeout(self.timeouts.command, c.quit()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_block_stuffs_dots_like_lettre() {
        let cases: [&[u8]; 6] = [
            b"Subject: x\r\n\r\nbody\r\n",
            b".starts with a dot\r\n..two\r\n.\r\nend",
            b"a\r\n.\r\n.\r\n",
            b"no newline at all",
            b"bare\n.lf is not a line start\r.either",
            b"",
        ];
        for case in cases {
            let mut want = Vec::new();
            let mut at_line_start = true;
            let mut after_cr = false;
            for &b in case {
                want.push(b);
                if b == b'.' && at_line_start {
                    want.push(b'.');
                }
                at_line_start = after_cr && b == b'\n';
                after_cr = b == b'\r';
            }
            want.extend_from_slice(b"\r\n.\r\n");
            let got = data_block(case).unwrap();
            assert_eq!(
                got.as_bytes(),
                want.as_slice(),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
        assert!(data_block(b"\xff").is_none());
    }

    #[test]
    fn parses_urls() {
        let u = SmtpUrl::parse("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("127.0.0.1", 2525, Tls::None)
        );
        let u = SmtpUrl::parse("smtps://me%40x.example:s3cr%3At@mail.example").unwrap();
        assert_eq!((u.port, u.tls), (465, Tls::Implicit));
        assert_eq!(u.user.as_deref(), Some("me@x.example"));
        assert_eq!(u.password, Some(Secret("s3cr:t".into())));
        assert!(!format!("{u:?} {u}").contains("s3cr"), "{u:?} {u}");
        let u = SmtpUrl::parse("smtp://mail.example").unwrap();
        assert_eq!((u.port, u.tls), (25, Tls::Opportunistic));
        assert_eq!(
            SmtpUrl::parse("smtp://h?tls=required").unwrap().tls,
            Tls::Required
        );
        let u = SmtpUrl::parse("smtp://u:p@[::1]:2525/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 2525));
        assert_eq!(u.to_string(), "smtp://u:…@[::1]:2525");
        let u = SmtpUrl::parse("smtp://[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 25));
        for bad in [
            "http://x",
            "smtp://",
            "smtp://h:port",
            "smtp://h:0",
            "smtp://h:99999",
            "smtp://h?tls=maybe",
            "smtps://h?tls=none",
            "smtp://[::1",
            "smtp://[::1]x",
        ] {
            assert!(SmtpUrl::parse(bad).is_err(), "{bad}");
        }
        let e = SmtpUrl::parse("smtp://user:hunter2@h:nope").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

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
