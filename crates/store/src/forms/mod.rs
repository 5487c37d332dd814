//! Form submissions (SPEC §9): the consent record of every submission and confirmation, the
//! queue of confirmation emails, and per-form counters of refused submissions.
//!
//! A submission decides the contact's fate in one transaction: a new address becomes
//! `pending` and gets a confirmation email queued; a subscribed one is not asked again (its
//! event is recorded at once); an unsubscribed or bounced one keeps its status until it
//! confirms. The HTTP server only inserts queued rows; the daemon's delivery round claims and
//! sends them (`queued → sending → sent`, every transition guarded on the state it leaves),
//! so a confirmation is neither lost when the server answers nor sent twice by two daemons.
//!
//! `submissions` records a submission and its consent, `confirm` follows the link in the
//! confirmation email, `mail` is the queue of those emails, `counts` the per-form counters.

mod confirm;
mod counts;
mod mail;
mod submissions;

pub use confirm::Confirmed;
pub use counts::FormCounts;
pub use mail::{FormMail, MailOutcome};
pub use submissions::{Consent, NewSubmission, Submitted};
