//! Forms (SPEC §9): `forms/*.yaml`, the public sign-up forms that capture leads.
//!
//! A form is decoded with the campaign decoder's machinery, so a typo gets the same
//! `file:line:col` diagnostic with a "did you mean" hint, and every problem of a file is
//! reported at once. [`RawForm`] mirrors the format for `nurture schema --forms`; a test keeps
//! its keys and the decoder's in step.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::decode::Decoder;
use crate::diagnostic::{Diagnostic, SourceFile, Span};
use crate::duration::Delay;
use crate::model::TemplateName;
use crate::yaml::{self, Kind, Node};
use crate::{Mailbox, campaign_files};

/// Keys of a form file.
pub const FORM_KEYS: &[&str] = &[
    "id",
    "title",
    "description",
    "fields",
    "button",
    "event",
    "properties",
    "tags",
    "double_opt_in",
    "from",
    "consent",
    "allowed_origins",
    "after_submit",
    "after_confirm",
    "record_ip",
];
/// Keys of one field.
pub const FIELD_KEYS: &[&str] = &["name", "type", "required", "label", "max_length"];
/// Keys of `double_opt_in`.
pub const OPT_IN_KEYS: &[&str] = &["send", "subject", "expires"];
/// Keys of `after_submit` / `after_confirm`.
pub const AFTER_KEYS: &[&str] = &["message", "redirect"];

/// Field names the form page itself uses (honeypot, signed time stamp, proof of work).
pub const RESERVED_FIELDS: &[&str] = &["nurture_hp", "nurture_ts", "nurture_pow", "website"];

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

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

fn valid_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains('/')
        && !rest.contains('?')
        && !rest.contains('#')
        && !rest.contains(char::is_whitespace)
}

fn valid_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://") || s.starts_with('/'))
        && !s.contains(char::is_whitespace)
}

impl Decoder<'_> {
    fn form(&mut self, root: &Node, default_id: &str) -> Option<Form> {
        let f = self.fields(root, "a form", FORM_KEYS)?;
        let top = root.span;
        let id = match f.get("id") {
            Some(n) => {
                self.record("id", n.span);
                self.string(n, "`id`")
            }
            None => Some(default_id.to_string()),
        };
        let id = id.and_then(|id| {
            if valid_id(&id) {
                Some(id)
            } else {
                self.error(
                    f.get("id").map_or(top, |n| n.span),
                    format!("`{id}` is not a valid form id"),
                    Some("use letters, digits, `-` and `_` (it appears in the URL /f/ID)".into()),
                );
                None
            }
        });
        let title = f.get("title").and_then(|n| self.string(n, "`title`"));
        let description = f
            .get("description")
            .map(|n| self.string(n, "`description`"));
        let button = f.get("button").map(|n| self.string(n, "`button`"));
        let fields = match f.get("fields") {
            Some(n) => self.form_fields(n),
            None => {
                self.error(
                    top,
                    "the form has no `fields`",
                    Some("add `fields: [{ name: email, type: email, required: true }]`".into()),
                );
                None
            }
        };
        let event = match f.get("event") {
            Some(n) => {
                self.record("event", n.span);
                self.string(n, "`event`")
            }
            None => {
                self.error(
                    top,
                    "the form has no `event`",
                    Some(
                        "add `event: lead.captured`: the event a campaign's trigger listens for"
                            .into(),
                    ),
                );
                None
            }
        };
        let properties = match f.get("properties") {
            None => Some(Map::new()),
            Some(n) => match n.to_json() {
                Value::Object(m) => Some(m),
                _ => {
                    self.error(
                        n.span,
                        format!("`properties` must be a mapping, found {}", n.describe()),
                        Some("write `properties: { source: ebook }`".into()),
                    );
                    None
                }
            },
        };
        let tags = f
            .get("tags")
            .map(|n| self.string_list(n, "`tags`"))
            .unwrap_or(Some(Vec::new()));
        let double_opt_in = match f.get("double_opt_in") {
            None => {
                self.error(
                    top,
                    "the form does not say whether it uses double opt-in",
                    Some("add `double_opt_in: { send: forms/confirm, subject: \"Please confirm your email\" }` or `double_opt_in: false`".into()),
                );
                None
            }
            Some(n) => self.opt_in(n),
        };
        let from = f.get("from").map(|n| {
            self.record("from", n.span);
            self.mailbox(n, "`from`")
        });
        let consent = match f.get("consent") {
            Some(n) => self.string(n, "`consent`"),
            None => {
                self.error(
                    top,
                    "the form has no `consent` text",
                    Some("add `consent: \"Send me the ebook and occasional emails. Unsubscribe any time.\"`: it is shown next to the button and kept with every submission".into()),
                );
                None
            }
        };
        let allowed_origins = match f.get("allowed_origins") {
            None => Some(Vec::new()),
            Some(n) => self.string_list(n, "`allowed_origins`").and_then(|list| {
                let bad: Vec<&String> = list.iter().filter(|o| !valid_origin(o)).collect();
                if let Some(b) = bad.first() {
                    self.error(
                        n.span,
                        format!("`{b}` is not an origin"),
                        Some("an origin is a scheme and a host, with no path: `https://www.acme.example`".into()),
                    );
                    return None;
                }
                Some(list)
            }),
        };
        let after_submit = match f.get("after_submit") {
            None => Some(After::Message(
                "Thank you. Please check your inbox to confirm your email address.".into(),
            )),
            Some(n) => self.after(n, "`after_submit`"),
        };
        let after_confirm = match f.get("after_confirm") {
            None => Some(After::Message(
                "Thank you: your email address is confirmed.".into(),
            )),
            Some(n) => self.after(n, "`after_confirm`"),
        };
        let record_ip = match f.get("record_ip") {
            None => Some(false),
            Some(n) => self.boolean(n, "`record_ip`"),
        };
        let consent = consent?;
        Some(Form {
            title: title.unwrap_or_else(|| id.clone().unwrap_or_default()),
            id: id?,
            description: description.flatten(),
            fields: fields?,
            button: button.flatten().unwrap_or_else(|| "Sign up".into()),
            event: event?,
            properties: properties?,
            tags: tags?,
            double_opt_in: double_opt_in?,
            from: from.flatten(),
            consent_version: fingerprint(&consent),
            consent,
            allowed_origins: allowed_origins?,
            after_submit: after_submit?,
            after_confirm: after_confirm?,
            record_ip: record_ip?,
        })
    }

    fn form_fields(&mut self, node: &Node) -> Option<Vec<Field>> {
        let Kind::Seq(items) = &node.kind else {
            self.error(
                node.span,
                format!("`fields` must be a list, found {}", node.describe()),
                Some("write `fields: [{ name: email, type: email, required: true }]`".into()),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut seen: HashMap<String, Span> = HashMap::new();
        let mut ok = true;
        for item in items {
            match self.form_field(item) {
                Some(field) => {
                    if seen.insert(field.name.clone(), item.span).is_some() {
                        self.error(
                            item.span,
                            format!("the field `{}` appears twice", field.name),
                            None,
                        );
                        ok = false;
                    }
                    out.push(field);
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        match out.iter().find(|f| f.name == "email") {
            None => {
                self.error(
                    node.span,
                    "the form has no `email` field",
                    Some("add `- { name: email, type: email, required: true }`".into()),
                );
                None
            }
            Some(e) if e.kind != FieldKind::Email => {
                self.error(node.span, "the `email` field must have `type: email`", None);
                None
            }
            Some(_) => Some(out),
        }
    }

    fn form_field(&mut self, node: &Node) -> Option<Field> {
        let f = self.fields(node, "a field", FIELD_KEYS)?;
        let name = match f.get("name") {
            Some(n) => self.string(n, "a field's `name`"),
            None => {
                self.error(
                    node.span,
                    "the field has no `name`",
                    Some("add `name: first_name`".into()),
                );
                None
            }
        }?;
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || name.is_empty()
            || RESERVED_FIELDS.contains(&name.as_str())
        {
            self.error(
                f.get("name").map_or(node.span, |n| n.span),
                format!("`{name}` cannot be a field name"),
                Some(format!(
                    "use letters, digits and `_` (it becomes the contact's attribute); {} are reserved",
                    RESERVED_FIELDS.join(", ")
                )),
            );
            return None;
        }
        let kind = match f.get("type") {
            None if name == "email" => Some(FieldKind::Email),
            None => Some(FieldKind::Text),
            Some(n) => match n.as_str() {
                Some("email") => Some(FieldKind::Email),
                Some("text") => Some(FieldKind::Text),
                Some("tel") => Some(FieldKind::Tel),
                Some("url") => Some(FieldKind::Url),
                Some("number") => Some(FieldKind::Number),
                Some("textarea") => Some(FieldKind::Textarea),
                Some("checkbox") => Some(FieldKind::Checkbox),
                _ => {
                    self.error(
                        n.span,
                        format!("unknown field type {}", n.describe()),
                        Some(
                            "the types are email, text, tel, url, number, textarea, checkbox"
                                .into(),
                        ),
                    );
                    None
                }
            },
        };
        let required = match f.get("required") {
            None => Some(name == "email"),
            Some(n) => self.boolean(n, "`required`"),
        };
        let label = f.get("label").map(|n| self.string(n, "`label`"));
        let max_length = match f.get("max_length") {
            None => Some(if kind == Some(FieldKind::Textarea) {
                5000
            } else {
                200
            }),
            Some(n) => match n.to_json().as_u64() {
                Some(v) if (1..=10_000).contains(&v) => usize::try_from(v).ok(),
                _ => {
                    self.error(
                        n.span,
                        "`max_length` must be a whole number from 1 to 10000",
                        None,
                    );
                    None
                }
            },
        };
        let default_label = {
            let mut s = name.replace('_', " ");
            if let Some(first) = s.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            s
        };
        let required = required?;
        if name == "email" && !required {
            self.error(
                node.span,
                "the `email` field is always required",
                Some("remove `required: false`".into()),
            );
            return None;
        }
        Some(Field {
            label: label.flatten().unwrap_or(default_label),
            name,
            kind: kind?,
            required,
            max_length: max_length?,
        })
    }

    fn opt_in(&mut self, node: &Node) -> Option<Option<DoubleOptIn>> {
        if let Kind::Scalar { .. } = node.kind {
            return match self.boolean(node, "`double_opt_in`")? {
                false => Some(None),
                true => {
                    self.error(
                        node.span,
                        "`double_opt_in: true` needs the confirmation email",
                        Some("write `double_opt_in: { send: forms/confirm, subject: \"Please confirm your email\" }`".into()),
                    );
                    None
                }
            };
        }
        let f = self.fields(node, "`double_opt_in`", OPT_IN_KEYS)?;
        let template = match f.get("send") {
            Some(n) => {
                self.record("double_opt_in.send", n.span);
                self.template_name(n, "`send`")
            }
            None => {
                self.error(
                    node.span,
                    "`double_opt_in` has no `send` template",
                    Some("add `send: forms/confirm`".into()),
                );
                None
            }
        };
        let subject = match f.get("subject") {
            Some(n) => {
                self.record("double_opt_in.subject", n.span);
                self.string(n, "`subject`")
            }
            None => {
                self.error(node.span, "`double_opt_in` has no `subject`", None);
                None
            }
        };
        let expires = match f.get("expires") {
            None => Some(Delay::from_secs(7 * 86_400)),
            Some(n) => self.delay(n, "`expires`").and_then(|d| {
                if d.as_secs() < 600 {
                    self.error(n.span, "`expires` must be at least 10 minutes", None);
                    None
                } else {
                    Some(d)
                }
            }),
        };
        Some(Some(DoubleOptIn {
            template: template?,
            subject: subject?,
            expires: expires?,
        }))
    }

    fn after(&mut self, node: &Node, what: &str) -> Option<After> {
        let f = self.fields(node, what, AFTER_KEYS)?;
        match (f.get("message"), f.get("redirect")) {
            (Some(m), None) => self.string(m, "`message`").map(After::Message),
            (None, Some(r)) => {
                let url = self.string(r, "`redirect`")?;
                if valid_url(&url) {
                    Some(After::Redirect(url))
                } else {
                    self.error(r.span, format!("`{url}` is not an http(s) URL"), None);
                    None
                }
            }
            _ => {
                self.error(
                    node.span,
                    format!("{what} needs exactly one of `message` or `redirect`"),
                    None,
                );
                None
            }
        }
    }
}

/// Parses and validates one form from text; `default_id` is used when it has no `id`.
pub fn parse_form(source: SourceFile, default_id: &str) -> Result<FormFile, Vec<Diagnostic>> {
    let root = match yaml::parse(&source) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(vec![Diagnostic::at(
                &source,
                source.span(0, 0),
                "the form file is empty",
            )]);
        }
        Err(d) => return Err(vec![d]),
    };
    let mut decoder = Decoder::new(&source);
    match decoder.form(&root, default_id) {
        Some(form) if decoder.diags.is_empty() => Ok(FormFile {
            form,
            spans: std::mem::take(&mut decoder.spans),
            source,
        }),
        _ => Err(decoder.diags),
    }
}

fn load_form(path: &Path) -> Result<FormFile, Vec<Diagnostic>> {
    let text = std::fs::read(path)
        .map_err(|e| vec![Diagnostic::file(path, format!("cannot read the file: {e}"))])
        .and_then(|b| {
            if b.len() > yaml::MAX_FILE_BYTES {
                return Err(vec![Diagnostic::file(
                    path,
                    "the file is larger than 1 MiB",
                )]);
            }
            String::from_utf8(b)
                .map_err(|_| vec![Diagnostic::file(path, "the file is not UTF-8 text")])
        })?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    parse_form(SourceFile::new(path, text), stem)
}

/// Loads every form under `paths` (files or folders of `*.yaml`/`*.yml`), refusing an id
/// used by two files. A missing folder is no forms, not an error.
pub fn load_forms(paths: &[PathBuf]) -> LoadedForms {
    let mut out = LoadedForms::default();
    let mut ids: HashMap<String, PathBuf> = HashMap::new();
    for p in paths {
        if !p.exists() {
            continue;
        }
        let files = match campaign_files(p) {
            Ok(f) => f,
            Err(d) => {
                out.diagnostics.push(d);
                continue;
            }
        };
        for path in files {
            out.files += 1;
            match load_form(&path) {
                Ok(file) => {
                    let id = file.form.id.clone();
                    if let Some(first) = ids.get(&id) {
                        out.diagnostics.push(file.diagnostic(
                            "id",
                            format!("form id `{id}` is already used by {}", first.display()),
                        ));
                        continue;
                    }
                    ids.insert(id, path.clone());
                    out.forms.push(file);
                }
                Err(mut d) => out.diagnostics.append(&mut d),
            }
        }
    }
    out
}

/// The shape of a form file, for `nurture schema --forms`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "nurture form")]
pub struct RawForm {
    /// Stable id, in the URL `/f/ID`; defaults to the file name.
    pub id: Option<String>,
    /// The page's title and heading.
    pub title: Option<String>,
    /// A paragraph under the heading.
    pub description: Option<String>,
    /// The inputs, in page order; one must be `email`.
    pub fields: Vec<RawField>,
    /// The submit button's text (default "Sign up").
    pub button: Option<String>,
    /// The event recorded when the lead is confirmed (or at once without double opt-in).
    pub event: String,
    /// The event's properties.
    pub properties: Option<BTreeMap<String, serde_json::Value>>,
    /// Tags set on the contact.
    pub tags: Option<Vec<String>>,
    /// `{send, subject, expires}` or `false`.
    pub double_opt_in: RawOptIn,
    /// Sender of the confirmation email.
    pub from: Option<String>,
    /// The consent text shown next to the button.
    pub consent: String,
    /// Origins allowed to post from other sites.
    pub allowed_origins: Option<Vec<String>>,
    /// `{message}` or `{redirect}` after submitting.
    pub after_submit: Option<RawAfter>,
    /// `{message}` or `{redirect}` after confirming.
    pub after_confirm: Option<RawAfter>,
    /// Keep the IP address and user agent in the consent record (default false).
    pub record_ip: Option<bool>,
}

/// One input.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawField {
    /// The attribute it sets.
    pub name: String,
    /// Its kind (default text; email for `email`).
    #[serde(rename = "type")]
    pub kind: Option<FieldKind>,
    /// Must be filled.
    pub required: Option<bool>,
    /// The label shown.
    pub label: Option<String>,
    /// The longest value accepted.
    pub max_length: Option<u32>,
}

/// Double opt-in.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawOptIn {
    /// `false`.
    Off(bool),
    /// The confirmation email.
    On {
        /// `templates/NAME.html.hbs`.
        send: String,
        /// The subject.
        subject: String,
        /// How long the link works (default 7d).
        expires: Option<String>,
    },
}

/// What to show after.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAfter {
    /// A short message page.
    pub message: Option<String>,
    /// A redirect.
    pub redirect: Option<String>,
}

/// The JSON Schema of a form file, pretty-printed.
pub fn form_json_schema() -> String {
    let schema = schemars::schema_for!(RawForm);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Form, Vec<Diagnostic>> {
        parse_form(
            SourceFile::new("forms/ebook.yaml", text.to_string()),
            "ebook",
        )
        .map(|f| f.form)
    }

    const GOOD: &str = "title: Get the playbook
fields:
  - { name: email, type: email, required: true, label: Work email }
  - { name: first_name, label: First name }
event: lead.captured
properties: { source: ebook }
tags: [ebook]
double_opt_in: { send: forms/confirm, subject: Please confirm, expires: 2d }
consent: Send me the ebook.
allowed_origins: [\"https://www.acme.example\"]
after_confirm: { redirect: \"https://www.acme.example/thanks\" }
";

    #[test]
    fn a_full_form_parses() {
        let f = parse(GOOD).unwrap();
        assert_eq!(f.id, "ebook");
        assert_eq!(f.fields.len(), 2);
        assert!(f.fields[0].required && !f.fields[1].required);
        assert_eq!(
            f.double_opt_in.as_ref().unwrap().expires.as_secs(),
            2 * 86_400
        );
        assert_eq!(
            f.after_confirm,
            After::Redirect("https://www.acme.example/thanks".into())
        );
        assert_eq!(f.consent_version, fingerprint("Send me the ebook."));
        assert!(!f.record_ip);
    }

    #[test]
    fn problems_are_reported_with_their_place() {
        let text = GOOD
            .replace("consent:", "consnet:")
            .replace("https://www.acme.example\"]", "www.acme.example/x\"]");
        let diags = parse(&text).unwrap_err();
        let all: Vec<String> = diags
            .iter()
            .map(|d| format!("{}: {}", d.location(), d.message))
            .collect();
        assert!(
            all.iter().any(|d| d.contains("unknown key `consnet`")),
            "{all:?}"
        );
        assert!(
            all.iter().any(|d| d.contains("is not an origin")),
            "{all:?}"
        );
        assert!(
            diags
                .iter()
                .any(|d| d.hint.as_deref() == Some("did you mean `consent`?"))
        );
        let d = diags
            .iter()
            .find(|d| d.message.contains("consnet"))
            .unwrap();
        assert_eq!(d.span.unwrap().line, 9);
    }

    #[test]
    fn an_email_field_is_required() {
        let text = GOOD.replace("name: email, type: email, required: true,", "name: mail,");
        let diags = parse(&text).unwrap_err();
        assert!(
            diags
                .iter()
                .any(|d| d.message == "the form has no `email` field")
        );
    }

    #[test]
    fn schema_and_decoder_accept_the_same_keys() {
        let schema: serde_json::Value = serde_json::from_str(&form_json_schema()).unwrap();
        let mut keys: Vec<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort();
        let mut want: Vec<String> = FORM_KEYS.iter().map(ToString::to_string).collect();
        want.sort();
        assert_eq!(keys, want);
    }
}
