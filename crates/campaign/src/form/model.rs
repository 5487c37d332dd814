//! What a validated form is: its fields, its double opt-in, the pages shown after, and the
//! consent version that ties a stored agreement to the exact wording shown.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Mailbox;
use crate::diagnostic::{Diagnostic, SourceFile, Span};
use crate::duration::Delay;
use crate::model::TemplateName;

/// A validated form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Form {
    /// Stable id, used in `/f/ID`.
    pub id: String,
    /// The page's title and heading.
    pub title: String,
    /// A paragraph under the heading.
    pub description: Option<String>,
    /// The fields, in page order; exactly one is the `email` field.
    pub fields: Vec<Field>,
    /// The submit button's text.
    pub button: String,
    /// The event recorded when the lead is confirmed (or at once without double opt-in).
    pub event: String,
    /// The event's properties.
    pub properties: Map<String, Value>,
    /// Tags set on the contact.
    pub tags: Vec<String>,
    /// Confirmation by email, when on.
    pub double_opt_in: Option<DoubleOptIn>,
    /// Sender of the confirmation; when unset, the `from` of a campaign the form's event
    /// triggers.
    pub from: Option<Mailbox>,
    /// The consent text shown next to the button.
    pub consent: String,
    /// Its version: a fingerprint of the text, so a record says which wording was agreed to.
    pub consent_version: String,
    /// Origins (`https://www.acme.example`) allowed to post from other sites.
    pub allowed_origins: Vec<String>,
    /// What the submitter sees after submitting.
    pub after_submit: After,
    /// What they see after confirming.
    pub after_confirm: After,
    /// Keep the submitter's IP address and user agent in the consent record.
    pub record_ip: bool,
}

/// One input of a form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    /// The attribute it sets (`email` is the address).
    pub name: String,
    /// Its kind.
    pub kind: FieldKind,
    /// Whether it must be filled.
    pub required: bool,
    /// The label shown.
    pub label: String,
    /// The longest value accepted, in characters.
    pub max_length: usize,
}

/// The kinds of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// An email address.
    Email,
    /// One line of text.
    Text,
    /// A phone number.
    Tel,
    /// A URL.
    Url,
    /// A number.
    Number,
    /// Several lines of text.
    Textarea,
    /// A tick box (`true` when ticked).
    Checkbox,
}

impl FieldKind {
    /// The `type` attribute of the `<input>`.
    pub fn input_type(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Text | Self::Textarea => "text",
            Self::Tel => "tel",
            Self::Url => "url",
            Self::Number => "number",
            Self::Checkbox => "checkbox",
        }
    }
}

/// Double opt-in: the confirmation email and how long its link works.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DoubleOptIn {
    /// `templates/NAME.html.hbs`.
    pub template: TemplateName,
    /// The subject (a Handlebars string).
    pub subject: String,
    /// How long the confirmation link works (default 7 days).
    pub expires: Delay,
}

/// What to show after a submission or a confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum After {
    /// A short page with this message.
    Message(String),
    /// A redirect to this URL.
    Redirect(String),
}

/// A form with the file it came from.
#[derive(Debug, Clone)]
pub struct FormFile {
    /// The file.
    pub source: SourceFile,
    /// The validated form.
    pub form: Form,
    /// Spans by key (`id`, `event`, `double_opt_in.send`, ...).
    pub spans: BTreeMap<String, Span>,
}

impl FormFile {
    /// A diagnostic at the place `key` is written (the file's start if unknown).
    pub fn diagnostic(&self, key: &str, message: impl Into<String>) -> Diagnostic {
        let span = self
            .spans
            .get(key)
            .copied()
            .unwrap_or_else(|| self.source.span(0, 0));
        Diagnostic::at(&self.source, span, message)
    }
}

/// The outcome of loading form files.
#[derive(Debug, Default)]
pub struct LoadedForms {
    /// Forms that validated.
    pub forms: Vec<FormFile>,
    /// Every problem found.
    pub diagnostics: Vec<Diagnostic>,
    /// How many files were read.
    pub files: usize,
}

/// A stable, short fingerprint of a text (FNV-1a, 64 bits, hex): the consent version.
pub fn fingerprint(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
