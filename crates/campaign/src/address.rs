//! Sender addresses as written in campaigns: `Ana <ana@example.com>` or `ana@example.com`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A checked address with an optional display name. The address has one `@`, a non-empty
/// local part of printable ASCII, and a domain of dot-separated letters, digits and hyphens;
/// the name has no control characters (so it can never break a header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mailbox {
    name: Option<String>,
    address: String,
}

impl Mailbox {
    /// The display name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The bare address (`ana@example.com`).
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// Why an address did not parse; one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError(pub String);

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AddressError {}

/// Checks a bare address (`local@domain`).
pub fn check_address(addr: &str) -> Result<(), AddressError> {
    let err = |m: &str| {
        Err(AddressError(format!(
            "`{addr}` is not a valid address: {m}"
        )))
    };
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return err("it has no `@`");
    };
    if local.is_empty() || local.len() > 64 {
        return err("the part before `@` is empty or too long");
    }
    if !local.chars().all(|c| {
        c.is_ascii_graphic()
            && !matches!(
                c,
                '@' | '<' | '>' | '(' | ')' | ',' | ';' | ':' | '\\' | '"' | '[' | ']'
            )
    }) || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return err("the part before `@` has characters an address cannot have");
    }
    if domain.is_empty() || domain.len() > 253 {
        return err("the domain is empty or too long");
    }
    for label in domain.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return err("the domain is not a valid host name");
        }
    }
    Ok(())
}

impl FromStr for Mailbox {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.chars().any(char::is_control) {
            return Err(AddressError(
                "an address cannot contain line breaks or control characters".into(),
            ));
        }
        let (name, address) = match (s.rfind('<'), s.ends_with('>')) {
            (Some(open), true) => {
                let name = s[..open].trim().trim_matches('"').trim();
                let addr = s[open + 1..s.len() - 1].trim();
                (
                    (!name.is_empty()).then(|| name.to_string()),
                    addr.to_string(),
                )
            }
            (None, false) => (None, s.to_string()),
            _ => {
                return Err(AddressError(format!(
                    "`{s}` is not a valid address: write `Name <user@example.com>` or `user@example.com`"
                )));
            }
        };
        check_address(&address)?;
        Ok(Self { name, address })
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) if n.chars().any(|c| !c.is_alphanumeric() && c != ' ') => {
                write!(f, "\"{}\" <{}>", n.replace('"', "'"), self.address)
            }
            Some(n) => write!(f, "{n} <{}>", self.address),
            None => f.write_str(&self.address),
        }
    }
}

impl TryFrom<String> for Mailbox {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Mailbox> for String {
    fn from(m: Mailbox) -> String {
        m.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_name_and_address_forms() {
        let m: Mailbox = "Ana from Leadcraft <ana@leadcraft.example>"
            .parse()
            .unwrap();
        assert_eq!(m.name(), Some("Ana from Leadcraft"));
        assert_eq!(m.address(), "ana@leadcraft.example");
        let m: Mailbox = "hello@leadcraft.example".parse().unwrap();
        assert_eq!(m.name(), None);
        let m: Mailbox = "\"Ana, Leadcraft\" <ana@x.example>".parse().unwrap();
        assert_eq!(m.name(), Some("Ana, Leadcraft"));
        assert_eq!(m.to_string(), "\"Ana, Leadcraft\" <ana@x.example>");
    }

    #[test]
    fn rejects_broken_addresses() {
        for s in [
            "ana",
            "ana@",
            "@x.example",
            "Ana <ana@x.example",
            "ana@x..example",
            "ana@-x.example",
            "Ana\r\nBcc: v@x.example <ana@x.example>",
            "a b@x.example",
        ] {
            assert!(s.parse::<Mailbox>().is_err(), "{s:?} should fail");
        }
    }
}
