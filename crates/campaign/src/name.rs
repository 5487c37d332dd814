//! The names a campaign file gives: campaign ids, step ids and template names. Each is a
//! newtype checked once by the loader, so later code never re-checks one; conditions, the
//! model and the decoder all name steps with them.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks and wraps a name.
            pub fn new(s: impl Into<String>) -> Result<Self, String> {
                let s = s.into();
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s).map(|()| Self(s))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

fn check_slug(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 100 {
        return Err(format!("a {what} must have 1 to 100 characters"));
    }
    if !s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "`{s}` is not a valid {what}: use letters, digits, `-`, `_` and `.`, starting with a letter or digit"
        ));
    }
    Ok(())
}

name_type!(
    /// A campaign's stable id (defaults to the file stem).
    CampaignId,
    "campaign id",
    |s| check_slug("campaign id", s)
);
name_type!(
    /// A step's id, unique within its campaign; enrollments point at it.
    StepId,
    "step id",
    |s| check_slug("step id", s)
);
name_type!(
    /// A template or layout name: a relative path without suffix, like `ebook/welcome`.
    TemplateName,
    "template name",
    |s| {
        if s.is_empty()
            || s.starts_with('/')
            || s.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..")
            || !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        {
            return Err(format!(
                "`{s}` is not a template name: use a relative path such as `ebook/welcome`, without `..`"
            ));
        }
        Ok(())
    }
);
