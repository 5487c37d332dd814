//! Leaf values of the format: text, booleans, lists of names, durations, addresses, time
//! zones, template names and step ids. Each reader reports a wrong value at its place and
//! returns `None`, so every part of the decoder words these mistakes the same way.

use chrono_tz::Tz;

use super::{Decoder, did_you_mean};
use crate::model::{StepId, TemplateName};
use crate::yaml::{Kind, Node};
use crate::{Delay, Mailbox};

impl Decoder<'_> {
    pub(crate) fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            Kind::Scalar { value, .. } if !node.is_null() => Some(value.clone()),
            _ => {
                self.error(
                    node.span,
                    format!("{what} must be text, found {}", node.describe()),
                    None,
                );
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.to_json() {
            serde_json::Value::Bool(b) => Some(b),
            _ => {
                self.error(
                    node.span,
                    format!(
                        "{what} must be `true` or `false`, found {}",
                        node.describe()
                    ),
                    None,
                );
                None
            }
        }
    }

    pub(crate) fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        match &node.kind {
            Kind::Seq(items) => {
                let list: Vec<Option<String>> =
                    items.iter().map(|i| self.string(i, what)).collect();
                let list: Option<Vec<String>> = list.into_iter().collect();
                if list.as_ref().is_some_and(Vec::is_empty) {
                    self.error(node.span, format!("{what} cannot be an empty list"), None);
                    return None;
                }
                list
            }
            Kind::Scalar { .. } => self.string(node, what).map(|s| vec![s]),
            Kind::Map(_) => {
                self.error(
                    node.span,
                    format!("{what} must be a list of names, found a mapping"),
                    Some("write `[name1, name2]`".into()),
                );
                None
            }
        }
    }

    pub(crate) fn delay(&mut self, node: &Node, what: &str) -> Option<Delay> {
        let text = self.string(node, what)?;
        match text.parse::<Delay>() {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    node.span,
                    format!("`{text}` is not a valid duration: {e}"),
                    Some("durations look like `45m`, `6h`, `2d`, `1w` or `1d12h`".into()),
                );
                None
            }
        }
    }

    pub(crate) fn mailbox(&mut self, node: &Node, what: &str) -> Option<Mailbox> {
        let text = self.string(node, what)?;
        match text.parse::<Mailbox>() {
            Ok(m) => Some(m),
            Err(e) => {
                self.error(
                    node.span,
                    format!("invalid {what} address: {e}"),
                    Some("write `Name <user@example.com>` or `user@example.com`".into()),
                );
                None
            }
        }
    }

    pub(super) fn timezone(&mut self, node: &Node) -> Option<Tz> {
        let text = self.string(node, "a time zone")?;
        match text.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()).collect();
                let hint = did_you_mean(&text, &names)
                    .map(|m| format!("did you mean `{m}`?"))
                    .unwrap_or_else(|| {
                        "use an IANA name such as `Europe/Berlin` or `America/New_York`".into()
                    });
                self.error(node.span, format!("unknown time zone `{text}`"), Some(hint));
                None
            }
        }
    }

    pub(crate) fn template_name(&mut self, node: &Node, what: &str) -> Option<TemplateName> {
        let text = self.string(node, what)?;
        match TemplateName::new(text) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(node.span, e, None);
                None
            }
        }
    }

    pub(crate) fn step_id(&mut self, node: &Node) -> Option<StepId> {
        let text = self.string(node, "a step id")?;
        match StepId::new(text) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(node.span, e, None);
                None
            }
        }
    }
}
