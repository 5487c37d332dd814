//! The `fields` of a form: each input's name, type, label and limits, and the rules over
//! the list (names unique, one `email` field of type email, always required).

use std::collections::HashMap;

use super::model::{Field, FieldKind};
use crate::decode::Decoder;
use crate::diagnostic::Span;
use crate::yaml::{Kind, Node};

/// Keys of one field.
pub const FIELD_KEYS: &[&str] = &["name", "type", "required", "label", "max_length"];

/// Field names the form page itself uses (honeypot, signed time stamp, proof of work).
pub const RESERVED_FIELDS: &[&str] = &["nurture_hp", "nurture_ts", "nurture_pow", "website"];

impl Decoder<'_> {
    pub(super) fn form_fields(&mut self, node: &Node) -> Option<Vec<Field>> {
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
}
