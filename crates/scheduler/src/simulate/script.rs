//! The script of a simulation: what the lead does, and when. A YAML list read with the
//! campaign crate's position-keeping parser, so every problem points at `file:line:col`:
//!
//! ```yaml
//! - {at: 2d, clicked: case-study}          # email.clicked for that step's email
//! - {at: 1d, opened: welcome}              # email.opened
//! - {at: 5d, event: purchase.completed}    # any event, optionally with `properties: {..}`
//! - {at: 3d, attribute: {plan: pro}}       # contact attributes
//! - {at: 4d, tag: customer}                # tags (`untag:` removes)
//! ```

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use nurture_campaign::{Action, Campaign, Delay, Diagnostic, SourceFile, yaml};
use serde_json::{Map, Value};

use super::whole_seconds;

/// One scripted lead action.
#[derive(Debug, Clone)]
pub struct Scripted {
    /// When the lead does it.
    pub at: DateTime<Utc>,
    /// What the lead does.
    pub act: Act,
}

/// What the lead does.
#[derive(Debug, Clone)]
pub enum Act {
    /// Any event, with its properties.
    Event {
        /// The event's name.
        name: String,
        /// Its properties.
        properties: Map<String, Value>,
    },
    /// Opens the email of this step (`email.opened`).
    Opened(String),
    /// Clicks a link in the email of this step (`email.clicked`).
    Clicked(String),
    /// Contact attributes change.
    Attribute(Map<String, Value>),
    /// Tags are added.
    Tag(Vec<String>),
    /// Tags are removed.
    Untag(Vec<String>),
}

impl Act {
    /// The step it concerns, and the action in words.
    pub fn describe(&self) -> (Option<&str>, String) {
        match self {
            Act::Event { name, properties } if properties.is_empty() => {
                (None, format!("the lead has a `{name}` event"))
            }
            Act::Event { name, properties } => (
                None,
                format!("the lead has a `{name}` event ({})", pairs(properties)),
            ),
            Act::Opened(step) => (Some(step), format!("the lead opens `{step}`")),
            Act::Clicked(step) => (Some(step), format!("the lead clicks a link in `{step}`")),
            Act::Attribute(values) => (None, format!("the lead's {}", pairs(values))),
            Act::Tag(tags) => (None, format!("the lead is tagged {}", tags.join(", "))),
            Act::Untag(tags) => (None, format!("the lead loses the tag {}", tags.join(", "))),
        }
    }
}

/// Why an events file was refused. Both are the user's input being invalid.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The file is not YAML; the diagnostic shows where.
    #[error("{} is not a valid events file", path.display())]
    Yaml {
        /// The events file.
        path: PathBuf,
        /// The parser's problem, with its snippet.
        diagnostic: Box<Diagnostic>,
    },
    /// An item is wrong.
    #[error("{}:{line}:{col}: {message}", path.display())]
    At {
        /// The events file.
        path: PathBuf,
        /// Line of the offending node (1-based).
        line: usize,
        /// Column of the offending node (1-based).
        col: usize,
        /// What is wrong, in one sentence.
        message: String,
    },
}

/// `k: v, k2: v2` for a map of values.
pub(super) fn pairs(map: &Map<String, Value>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}: {}", text(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value as text: strings without their quotes.
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

const SCRIPT_KEYS: [&str; 6] = ["event", "clicked", "opened", "attribute", "tag", "untag"];

/// Reads an events file: a YAML list of `{at: 2d, clicked: case-study}`-style items, each
/// with `at` (a wait from `start`, taken in whole seconds as [`super::simulate`] does, or an
/// RFC 3339 time) and one action about `campaign`. Returns the actions in time order.
pub fn parse_script(
    source: &SourceFile,
    campaign: &Campaign,
    start: DateTime<Utc>,
) -> Result<Vec<Scripted>, ScriptError> {
    let start = whole_seconds(start);
    let path = &source.path;
    let root = match yaml::parse(source) {
        Ok(Some(root)) => root,
        Ok(None) => return Ok(Vec::new()),
        Err(d) => {
            return Err(ScriptError::Yaml {
                path: path.clone(),
                diagnostic: Box::new(d),
            });
        }
    };
    let at = |node: &yaml::Node, message: String| ScriptError::At {
        path: path.clone(),
        line: node.span.line,
        col: node.span.col,
        message,
    };
    let yaml::Kind::Seq(items) = &root.kind else {
        return Err(at(
            &root,
            "the events file must be a list, such as `- {at: 2d, clicked: case-study}`".into(),
        ));
    };
    let mut out = Vec::new();
    for item in items {
        let yaml::Kind::Map(entries) = &item.kind else {
            return Err(at(
                item,
                format!(
                    "each event is a mapping such as `{{at: 2d, event: purchase.completed}}`, not {}",
                    item.describe()
                ),
            ));
        };
        let mut when = None;
        let mut act = None;
        let mut properties = None;
        for (key, value) in entries {
            let k = key.as_str().unwrap_or_default();
            match k {
                "at" => {
                    let s = value.as_str().unwrap_or_default();
                    when = Some(if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                        t.with_timezone(&Utc)
                    } else {
                        let d: Delay = s.parse().map_err(|e| {
                            at(value, format!("`at: {s}` is neither a wait from the start such as `2d` or `1d12h`, nor an RFC 3339 time: {e}"))
                        })?;
                        start + d.to_chrono()
                    });
                }
                "properties" => match value.to_json() {
                    Value::Object(m) => properties = Some(m),
                    _ => return Err(at(value, "`properties` must be a mapping".into())),
                },
                _ if SCRIPT_KEYS.contains(&k) => {
                    if act.is_some() {
                        return Err(at(
                            key,
                            format!("one action per item: `{k}` comes after another one"),
                        ));
                    }
                    act = Some(script_act(k, value, campaign, &at)?);
                }
                _ => {
                    return Err(at(
                        key,
                        format!(
                            "unknown key `{k}` (expected `at` and one of {})",
                            SCRIPT_KEYS.join(", ")
                        ),
                    ));
                }
            }
        }
        let Some(when) = when else {
            return Err(at(item, "the item has no `at` (write `at: 2d`)".into()));
        };
        let Some(mut act) = act else {
            return Err(at(
                item,
                format!(
                    "the item does nothing: add one of {}",
                    SCRIPT_KEYS.join(", ")
                ),
            ));
        };
        if let Some(p) = properties {
            let Act::Event { properties, .. } = &mut act else {
                return Err(at(item, "`properties` belong to an `event` item".into()));
            };
            *properties = p;
        }
        out.push(Scripted { at: when, act });
    }
    out.sort_by_key(|s| s.at);
    Ok(out)
}

fn script_act(
    key: &str,
    value: &yaml::Node,
    campaign: &Campaign,
    at: &dyn Fn(&yaml::Node, String) -> ScriptError,
) -> Result<Act, ScriptError> {
    let names = |value: &yaml::Node| -> Result<Vec<String>, ScriptError> {
        let list = match value.to_json() {
            Value::String(s) => vec![s],
            Value::Array(items) => items.iter().map(text).collect(),
            _ => Vec::new(),
        };
        if list.is_empty() || list.iter().any(|s| s.trim().is_empty()) {
            return Err(at(value, format!("`{key}` takes a tag or a list of tags")));
        }
        Ok(list)
    };
    Ok(match key {
        "event" => match value.as_str().filter(|s| !s.trim().is_empty()) {
            Some(name) => Act::Event {
                name: name.to_string(),
                properties: Map::new(),
            },
            None => return Err(at(value, "`event` takes an event name".into())),
        },
        "clicked" | "opened" => {
            let step = value.as_str().unwrap_or_default();
            let found = campaign.steps.iter().find(|s| s.id.as_str() == step);
            match found {
                Some(s) if matches!(s.action, Action::Send(_)) => {}
                Some(_) => {
                    return Err(at(
                        value,
                        format!("step `{step}` sends no email, so it cannot be {key}"),
                    ));
                }
                None => {
                    let ids: Vec<&str> = campaign.steps.iter().map(|s| s.id.as_str()).collect();
                    return Err(at(
                        value,
                        format!(
                            "campaign `{}` has no step `{step}` (steps: {})",
                            campaign.id,
                            ids.join(", ")
                        ),
                    ));
                }
            }
            if key == "clicked" {
                Act::Clicked(step.to_string())
            } else {
                Act::Opened(step.to_string())
            }
        }
        "attribute" => match value.to_json() {
            Value::Object(m) if !m.is_empty() => Act::Attribute(m),
            _ => {
                return Err(at(
                    value,
                    "`attribute` takes a mapping such as `{plan: pro}`".into(),
                ));
            }
        },
        "tag" => Act::Tag(names(value)?),
        _ => Act::Untag(names(value)?),
    })
}
