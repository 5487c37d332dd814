//! The `smtp_url` setting parsed into a host, a port, the [`Tls`] mode and credentials. Its own
//! module because the password must stay out of every `Debug`, `Display` and error text, and
//! that is easiest to check in one place.

use std::fmt;

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
pub(super) struct Secret(pub(super) String);

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
    pub(super) user: Option<String>,
    pub(super) password: Option<Secret>,
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
}
