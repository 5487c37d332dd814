//! SMTP delivery over connections we build ourselves.
//!
//! lettre's pooled transport sends a NOOP before each reuse and leaves Nagle on (23
//! messages/s per connection into smtp-sink); here each connection is a tokio `TcpStream`
//! with `TCP_NODELAY`, driven command by command (MAIL, RCPT, DATA) so we know which phase a
//! reply belongs to. A refused recipient leaves the connection usable (RSET); a network error
//! or timeout drops it and the next message reconnects. Transient versus permanent is decided
//! here and nowhere else.

use std::fmt;
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::ClientId;

use crate::message::BuiltMessage;

/// How to secure the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain text (`?tls=none`).
    None,
    /// STARTTLS when the server offers it (`?tls=starttls`, the default for `smtp://`).
    Opportunistic,
    /// STARTTLS, refusing to send without it (`?tls=required`).
    Required,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// A parsed `smtp_url`. The password never appears in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Security.
    pub tls: Tls,
    user: Option<String>,
    password: Option<String>,
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
            Some(u) => write!(f, "{scheme}://{u}:…@{}:{}", self.host, self.port),
            None => write!(f, "{scheme}://{}:{}", self.host, self.port),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
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
    /// Parses `smtp://[user:pass@]host[:port][?tls=none|starttls|required]` or `smtps://…`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (implicit, rest) = if let Some(r) = url.strip_prefix("smtps://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("smtp://") {
            (false, r)
        } else {
            return Err("smtp_url must start with smtp:// or smtps://".into());
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
                Some((u, p)) => (Some(percent_decode(u)), Some(percent_decode(p))),
                None => (Some(percent_decode(a)), None),
            },
            None => (None, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_matches(['[', ']']).to_string(),
                p.parse::<u16>()
                    .map_err(|_| format!("`{p}` is not a port number"))?,
            ),
            _ => (hostport.to_string(), if implicit { 465 } else { 25 }),
        };
        if host.is_empty() {
            return Err("smtp_url has no host".into());
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
                _ => {
                    return Err(format!(
                        "unknown smtp_url option `{pair}` (use tls=none, tls=starttls or tls=required)"
                    ));
                }
            }
        }
        Ok(Self {
            host,
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
    /// DATA and the message.
    Data,
}

/// A delivery failure, classified once.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reply}")]
pub struct SendError {
    /// Where it failed.
    pub phase: Phase,
    /// The SMTP reply code, when the server answered.
    pub code: Option<u16>,
    /// The reply text or the local reason.
    pub reply: String,
    permanent: bool,
}

impl SendError {
    /// Worth retrying later (4xx, timeouts, refused or broken connections).
    pub fn is_transient(&self) -> bool {
        !self.permanent
    }

    /// Never worth retrying: a 5xx reply to RCPT or DATA (the recipient bounced).
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    fn from_lettre(phase: Phase, e: &lettre::transport::smtp::Error) -> Self {
        let code = e
            .status()
            .map(|c| c.to_string().parse::<u16>().unwrap_or(0));
        // A 5xx to MAIL FROM or during connect is about us (sender, credentials, policy),
        // not the recipient: retry rather than bounce the contact.
        let permanent = e.is_permanent() && matches!(phase, Phase::Rcpt | Phase::Data);
        Self {
            phase,
            code,
            reply: format!("{phase:?} failed: {e}").to_lowercase(),
            permanent,
        }
    }

    fn timeout(phase: Phase) -> Self {
        Self {
            phase,
            code: None,
            reply: format!("{phase:?}: the server did not answer in time").to_lowercase(),
            permanent: false,
        }
    }
}

/// One SMTP connection, (re)opened as needed. Not shared: each delivery worker owns one.
pub struct SmtpConnection {
    url: SmtpUrl,
    conn: Option<AsyncSmtpConnection>,
    timeout: Duration,
    hello: ClientId,
}

impl fmt::Debug for SmtpConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConnection")
            .field("url", &self.url)
            .field("open", &self.conn.is_some())
            .finish()
    }
}

async fn within<T>(
    limit: Duration,
    phase: Phase,
    f: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, SendError> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(SendError::from_lettre(phase, &e)),
        Err(_) => Err(SendError::timeout(phase)),
    }
}

impl SmtpConnection {
    /// A connection to `url`, opened on the first send.
    pub fn new(url: SmtpUrl) -> Self {
        Self {
            url,
            conn: None,
            timeout: Duration::from_secs(30),
            hello: ClientId::default(),
        }
    }

    /// Sets the per-command timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn open(&mut self) -> Result<AsyncSmtpConnection, SendError> {
        let url = &self.url;
        let connect_err = |e: std::io::Error| SendError {
            phase: Phase::Connect,
            code: None,
            reply: format!("cannot connect to {}:{}: {e}", url.host, url.port),
            permanent: false,
        };
        let tls_params = || {
            TlsParameters::new(url.host.clone()).map_err(|e| SendError {
                phase: Phase::Connect,
                code: None,
                reply: format!("TLS setup failed: {e}"),
                permanent: false,
            })
        };
        let mut conn = if url.tls == Tls::Implicit {
            within(
                self.timeout,
                Phase::Connect,
                AsyncSmtpConnection::connect_tokio1(
                    (url.host.as_str(), url.port),
                    Some(self.timeout),
                    &self.hello,
                    Some(tls_params()?),
                    None,
                ),
            )
            .await?
        } else {
            let stream = tokio::time::timeout(
                self.timeout,
                tokio::net::TcpStream::connect((url.host.as_str(), url.port)),
            )
            .await
            .map_err(|_| SendError::timeout(Phase::Connect))?
            .map_err(connect_err)?;
            stream.set_nodelay(true).map_err(connect_err)?;
            within(
                self.timeout,
                Phase::Connect,
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello),
            )
            .await?
        };
        let wants_tls = matches!(url.tls, Tls::Opportunistic | Tls::Required);
        if wants_tls && conn.can_starttls() {
            within(
                self.timeout,
                Phase::Connect,
                conn.starttls(tls_params()?, &self.hello),
            )
            .await?;
        } else if url.tls == Tls::Required {
            return Err(SendError {
                phase: Phase::Connect,
                code: None,
                reply: "the server does not offer STARTTLS and smtp_url says tls=required".into(),
                permanent: false,
            });
        }
        if let (Some(user), Some(pass)) = (&url.user, &url.password) {
            let creds = Credentials::new(user.clone(), pass.clone());
            within(
                self.timeout,
                Phase::Connect,
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds),
            )
            .await?;
        }
        Ok(conn)
    }

    /// Sends one message; returns the server's final reply (e.g. `250 2.0.0 Ok`).
    pub async fn send(&mut self, m: &BuiltMessage) -> Result<String, SendError> {
        let mut conn = match self.conn.take() {
            Some(c) if !c.has_broken() => c,
            _ => self.open().await?,
        };
        let result = self.transaction(&mut conn, m).await;
        match &result {
            Ok(_) => self.conn = Some(conn),
            // The server refused politely: the connection is still good once reset.
            Err(e) if e.code.is_some() && !conn.has_broken() => {
                if within(self.timeout, e.phase, conn.command(Rset))
                    .await
                    .is_ok()
                {
                    self.conn = Some(conn);
                }
            }
            Err(_) => conn.abort().await,
        }
        result
    }

    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        m: &BuiltMessage,
    ) -> Result<String, SendError> {
        let bad = |what: &str| SendError {
            phase: Phase::Mail,
            code: None,
            reply: format!("`{what}` is not a valid address"),
            permanent: true,
        };
        let from: Address = m.from.parse().map_err(|_| bad(&m.from))?;
        let to: Address = m.to.parse().map_err(|_| SendError {
            phase: Phase::Rcpt,
            ..bad(&m.to)
        })?;
        within(
            self.timeout,
            Phase::Mail,
            conn.command(Mail::new(Some(from), vec![])),
        )
        .await?;
        within(
            self.timeout,
            Phase::Rcpt,
            conn.command(Rcpt::new(to, vec![])),
        )
        .await?;
        within(self.timeout, Phase::Data, conn.command(Data)).await?;
        let reply = within(self.timeout, Phase::Data, conn.message(&m.bytes)).await?;
        Ok(format!(
            "{} {}",
            reply.code(),
            reply.message().collect::<Vec<_>>().join(" ")
        ))
    }

    /// Says QUIT and closes.
    pub async fn close(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = tokio::time::timeout(self.timeout, c.quit()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(u.password.as_deref(), Some("s3cr:t"));
        assert!(!format!("{u:?} {u}").contains("s3cr"));
        let u = SmtpUrl::parse("smtp://mail.example").unwrap();
        assert_eq!((u.port, u.tls), (25, Tls::Opportunistic));
        assert_eq!(
            SmtpUrl::parse("smtp://h?tls=required").unwrap().tls,
            Tls::Required
        );
        for bad in ["http://x", "smtp://", "smtp://h:port", "smtp://h?tls=maybe"] {
            assert!(SmtpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
