//! Campaign definitions: the YAML a marketer writes, turned into a validated [`Campaign`].
//!
//! This crate owns the campaign format of SPEC §3: parsing with positions, every validation
//! rule, diagnostics that point at `file:line:col`, the JSON Schema, and the pure policy the
//! engine applies to a campaign (conditions, durations, send windows, cron). It reads only the
//! files it is given and knows nothing of databases, SMTP or the CLI.

// Diagnostics are large and only travel on the error path of a one-shot load.
#![allow(clippy::result_large_err)]

mod address;
mod condition;
mod decode;
mod diagnostic;
mod duration;
pub mod form;
mod host;
mod load;
mod model;
mod name;
mod schedule;
pub mod schema;
pub mod scoring;
mod stamp;
mod window;
pub mod yaml;

pub use address::{AddressError, Mailbox, check_address};
pub use condition::{Condition, Facts, OPERATORS, Op};
pub use decode::did_you_mean;
pub use diagnostic::{Diagnostic, SourceFile, Span};
pub use duration::{Delay, DelayError};
pub use form::{
    After, DoubleOptIn, Field, FieldKind, Form, FormFile, LoadedForms, load_forms, parse_form,
};
pub use load::{CampaignFile, Loaded, campaign_files, load_paths, parse_campaign};
pub use model::{
    AbTest, Action, Arm, Campaign, CampaignId, Metric, Reentry, SendAction, Status, Step, StepId,
    TemplateName, Tracking, Trigger, Variant, WebhookAction,
};
pub use schedule::Cron;
pub use scoring::{Decay, Rule, RuleSource, Scoring};
pub use stamp::{Stamp, stamp};
pub use window::{Hours, SendWindow, WindowZone, parse_weekday};
