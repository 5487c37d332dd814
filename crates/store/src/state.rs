//! The state columns' values as Rust enums, each mapped to its SQL `CHECK` list here and
//! nowhere else: a misspelt state does not compile, and a stored name this schema does not
//! know reads as [`StoreError::Corrupt`], never as a default. `schema_checks` holds each
//! enum against the CHECK lists of both backends' migrations.

use std::fmt;
use std::str::FromStr;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, StoreError};

/// A name that is not one of an enum's stored values (from [`FromStr`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct UnknownState {
    /// Which column's values were expected (`message state`).
    pub what: &'static str,
    /// The name given.
    pub value: String,
}

/// Defines a `Copy` enum whose variants are the stored names of one column, with `ALL`,
/// `as_str`, `parse`, [`FromStr`], [`fmt::Display`] and `Serialize` (all as the stored name).
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order of the CHECK constraint.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The stored name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// The value stored as `s`, or `None` for a name the schema does not allow.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;

            fn from_str(s: &str) -> std::result::Result<Self, UnknownState> {
                Self::parse(s).ok_or_else(|| UnknownState {
                    what: $what,
                    value: s.to_string(),
                })
            }
        }

        /// Serialised as its stored name, as `--json` output shows it.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

/// Reads a stored name; one the schema does not allow means the database was written by
/// something other than this code.
pub(crate) fn decode<T: FromStr<Err = UnknownState>>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|e: UnknownState| StoreError::Corrupt(e.to_string()))
}

/// Reads the state column `index` (a name or a position) of `row`.
pub(crate) fn column<T: FromStr<Err = UnknownState>, I: sqlx::ColumnIndex<AnyRow>>(
    row: &AnyRow,
    index: I,
) -> Result<T> {
    decode(&row.try_get::<String, _>(index)?)
}

stored_enum! {
    /// Where an enrollment stands: `enrollments.state`.
    pub enum EnrollmentState ("enrollment state") {
        /// Walking the campaign: a step is due at `next_run_at`.
        Active = "active",
        /// Ran its last step.
        Completed = "completed",
        /// Left early (a goal, an exit step, unsubscribed, ...): see `exit_reason`.
        Exited = "exited",
        /// Stopped by an error.
        Failed = "failed",
    }
}

stored_enum! {
    /// Where an email stands in the delivery queue: `messages.state` (SPEC §6).
    pub enum MessageState ("message state") {
        /// Waiting for its first attempt.
        Queued = "queued",
        /// Handed to SMTP; the outcome is not recorded yet.
        Sending = "sending",
        /// Accepted by the server.
        Sent = "sent",
        /// Waiting for a retry.
        Deferred = "deferred",
        /// Given up.
        Failed = "failed",
        /// Permanently refused; the contact is bounced.
        Bounced = "bounced",
        /// The contact can no longer be mailed.
        Suppressed = "suppressed",
        /// The process died during delivery; never re-sent blindly.
        Unknown = "unknown",
    }
}

stored_enum! {
    /// Whether a contact may be mailed: `contacts.status`.
    pub enum ContactStatus ("contact status") {
        /// Mailable.
        Subscribed = "subscribed",
        /// Asked to stop.
        Unsubscribed = "unsubscribed",
        /// Hard bounce.
        Bounced = "bounced",
        /// Marked as spam.
        Complained = "complained",
        /// Submitted a double opt-in form and has not confirmed yet: mailed nothing but the
        /// confirmation.
        Pending = "pending",
    }
}

stored_enum! {
    /// Where a webhook call stands in its queue: `webhook_deliveries.state` (SPEC §11).
    pub enum WebhookState ("webhook state") {
        /// Waiting for its first attempt.
        Queued = "queued",
        /// Being posted; the outcome is not recorded yet.
        Sending = "sending",
        /// The endpoint answered 2xx.
        Sent = "sent",
        /// Waiting for a retry.
        Deferred = "deferred",
        /// Given up.
        Failed = "failed",
        /// The process died while posting; never re-sent blindly.
        Unknown = "unknown",
    }
}

stored_enum! {
    /// Where a double opt-in confirmation email stands: `form_submissions.mail_state`.
    pub enum MailState ("confirmation mail state") {
        /// No confirmation to send (a single opt-in form, or a resend held back).
        None = "none",
        /// Waiting to be sent.
        Queued = "queued",
        /// Handed to SMTP; the outcome is not recorded yet.
        Sending = "sending",
        /// Accepted by the server.
        Sent = "sent",
        /// Given up.
        Failed = "failed",
        /// The process died while sending; never re-sent blindly.
        Unknown = "unknown",
        /// The contact can no longer be mailed.
        Suppressed = "suppressed",
    }
}

stored_enum! {
    /// What a delivery report says happened to a message: `signals.kind`.
    pub enum SignalKind ("signal kind") {
        /// A permanent failure: the address does not take mail.
        Hard = "hard",
        /// A temporary failure the relay gave up on (mailbox full, greylisted too long).
        Soft = "soft",
        /// The recipient marked the message as spam.
        Complaint = "complaint",
        /// The provider confirms the mailbox took the message: ends a run of soft bounces.
        Delivered = "delivered",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_as_its_value() {
        for s in MessageState::ALL {
            assert_eq!(s.as_str().parse::<MessageState>(), Ok(*s));
            assert_eq!(s.to_string(), s.as_str());
        }
        // Tables line states up with `{:<9}`: Display pads like a string.
        assert_eq!(format!("[{:<9}]", MessageState::Sent), "[sent     ]");
        for s in MailState::ALL {
            assert_eq!(MailState::parse(s.as_str()), Some(*s));
        }
    }

    #[test]
    fn an_unknown_name_is_an_error_not_a_default() {
        assert_eq!(
            "Active".parse::<EnrollmentState>(),
            Err(UnknownState {
                what: "enrollment state",
                value: "Active".into()
            })
        );
        let e = decode::<ContactStatus>("subscribd").unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "stored data is corrupt: unknown contact status `subscribd`"
        );
    }
}
