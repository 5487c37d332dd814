//! Rendering and delivery for nurture.
//!
//! This crate owns what happens between "this step is due for this contact" and "the server
//! said 250": loading the Handlebars templates (with layouts and partials) and checking them
//! for `validate`, rendering a message strictly (a missing variable fails the message, nothing
//! half-rendered leaves), building a standards-correct MIME message with lettre, and the two
//! transports — SMTP over connections we manage ourselves, and an outbox folder of `.eml`
//! files. Whether a failure is transient, permanent or of unknown outcome is decided here,
//! once ([`SendError`]). It knows nothing of SQL or campaigns' YAML; it plugs into the
//! scheduler's delivery rounds through the scheduler's traits (`courier`, `hooks`). The lower
//! modules take the `Date` header and outbox file-name stamps from the caller; only the
//! courier reads the wall clock, for the moment a message really leaves.
//!
//! | module | what |
//! |---|---|
//! | templates | [`Templates::load`], [`Templates::check_send`] and [`TemplateProblem`] |
//! | render | [`Templates::render`], the [`context`] of SPEC §4, the helpers |
//! | tracking | [`Tracking`]: click-through links and the open pixel |
//! | message | [`build_message`]: `multipart/alternative`, headers, DKIM |
//! | dkim | [`DkimSigner`]: RFC 6376 signatures (`rsa-sha256` with ring, `ed25519-sha256`) |
//! | smtp | [`SmtpUrl`], [`SmtpConnection`], [`SendError`] by [`Phase`] |
//! | trust | [`TlsTrust`]: the system's certificate store plus `smtp_ca_file` |
//! | outbox | [`Outbox`]: one `.eml` file per message, written atomically |
//! | courier | [`Mailer`]: the scheduler's [`Courier`](nurture_scheduler::Courier) over these, [`run_and_deliver`] |
//! | hooks | [`Hooks`]: the webhook client as the scheduler's [`Poster`](nurture_scheduler::Poster) |
//! | confirm | [`deliver_confirmations`]: the double opt-in emails the server queued, [`sender_of`] |
//!
//! Link tokens ([`Signer`], [`Claim`]) live in `nurture-token`, re-exported here.

mod confirm;
mod courier;
mod dkim;
mod hooks;
mod inline;
mod message;
mod outbox;
mod plain_text;
mod render;
mod smtp;
mod templates;
mod tracking;
mod trust;
mod webhook;

pub use confirm::{deliver_confirmations, sender_of};
pub use courier::{
    CourierError, CourierSettings, Mailer, ReplyClass, SendObserver, StepEmail, StepRenderError,
    Transport, run_and_deliver,
};
pub use dkim::{Canonicalization, DkimError, DkimSigner, SIGNED_HEADERS};
pub use hooks::Hooks;
pub use message::{BuiltMessage, MessageError, OutgoingEmail, build_message, sanitize_header_text};
pub use nurture_token::{Claim, NoRandomness, Signer, random_secret};
pub use outbox::Outbox;
pub use render::{RenderError, RenderRequest, Rendered, context};
pub use smtp::{
    DEFAULT_SMTP_TIMEOUT, Phase, SendError, SmtpConnection, SmtpUrl, SmtpUrlError, Tls,
};
pub use templates::{LoadError, TemplateProblem, Templates};
pub use tracking::{LinkRewriter, Tracking, rewrite_links};
pub use trust::{TlsTrust, TrustError};
pub use webhook::{WEBHOOK_TIMEOUT, WebhookClient, WebhookReply, render_body};
