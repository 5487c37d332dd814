//! Rendering and delivery for nurture.
//!
//! This crate owns what happens between "this step is due for this contact" and "the server
//! said 250": loading the Handlebars templates (with layouts and partials) and checking them
//! for `validate`, rendering a message strictly (a missing variable fails the message, nothing
//! half-rendered leaves), building a standards-correct MIME message with lettre, and the two
//! transports — SMTP over connections we manage ourselves, and an outbox folder of `.eml`
//! files. Whether a failure is transient or permanent is decided here, once. It knows nothing
//! of SQL, scheduling or campaigns' YAML.

mod message;
mod outbox;
mod render;
mod smtp;
mod templates;
mod tokens;
mod tracking;

pub use message::{
    BuiltMessage, DkimSigner, MessageError, OutgoingEmail, build_message, sanitize_header_text,
};
pub use outbox::Outbox;
pub use render::{RenderError, RenderRequest, Rendered, context};
pub use smtp::{SendError, SmtpConnection, SmtpUrl, Tls};
pub use templates::{LoadError, TemplateProblem, Templates};
pub use tokens::{Claim, Signer, random_secret};
pub use tracking::{LinkRewriter, Tracking, rewrite_links};
