//! The top level of a form file, its `double_opt_in` and its `after_*` pages, read with the
//! campaign decoder's machinery so a form's mistakes are reported like a campaign's. The
//! checks on ids, origins and URLs are here because only these keys use them.

use serde_json::{Map, Value};

use super::model::{After, DoubleOptIn, Form, fingerprint};
use crate::decode::Decoder;
use crate::duration::Delay;
use crate::yaml::{Kind, Node};

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
/// Keys of `double_opt_in`.
pub const OPT_IN_KEYS: &[&str] = &["send", "subject", "expires"];
/// Keys of `after_submit` / `after_confirm`.
pub const AFTER_KEYS: &[&str] = &["message", "redirect"];

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
    pub(super) fn form(&mut self, root: &Node, default_id: &str) -> Option<Form> {
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
