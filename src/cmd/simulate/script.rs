//! The events file of `simulate`: what the lead does, and when. A YAML list read with the
//! campaign crate's position-keeping parser, so every problem points at `file:line:col`:
//!
//! ```yaml
//! - {at: 2d, clicked: case-study}          # email.clicked for that step's email
//! - {at: 1d, opened: welcome}              # email.opened
//! - {at: 5d, event: purchase.completed}    # any event, optionally with `properties: {..}`
//! - {at: 3d, attribute: {plan: pro}}       # contact attributes
//! - {at: 4d, tag: customer}                # tags (`untag:` removes)
//! ```

use std::path::Path;

use chrono::{DateTime, Utc};
use nurture_campaign::{Action, CampaignFile, Delay, SourceFile, yaml};
use serde_json::{Map, Value};

use crate::exit::invalid;

/// One scripted lead action.
#[derive(Debug, Clone)]
pub(super) struct Scripted {
    pub(super) at: DateTime<Utc>,
    pub(super) act: Act,
}

/// What the lead does.
#[derive(Debug, Clone)]
pub(super) enum Act {
    Event {
        name: String,
        properties: Map<String, Value>,
    },
    Opened(String),
    Clicked(String),
    Attribute(Map<String, Value>),
    Tag(Vec<String>),
    Untag(Vec<String>),
}

impl Act {
    /// The step it concerns, and the action in words.
    pub(super) fn describe(&self) -> (Option<&str>, String) {
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

/// Reads the events file: a YAML list of `{at: 2d, clicked: case-study}`-style items, each
/// with `at` (a wait from the start, or an RFC 3339 time) and one action. Problems point at
/// `file:line:col` and exit 2.
pub(super) fn parse_script(
    path: &Path,
    file: &CampaignFile,
    start: DateTime<Utc>,
) -> anyhow::Result<Vec<Scripted>> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let source = SourceFile::new(path, source);
    let root = match yaml::parse(&source) {
        Ok(Some(root)) => root,
        Ok(None) => return Ok(Vec::new()),
        Err(d) => {
            crate::cmd::validate::print_diagnostics(&[d]);
            return Err(invalid(format!(
                "{} is not a valid events file",
                path.display()
            )));
        }
    };
    let at = |node: &yaml::Node, msg: String| {
        invalid(format!(
            "{}:{}:{}: {msg}",
            path.display(),
            node.span.line,
            node.span.col
        ))
    };
    let yaml::Kind::Seq(items) = &root.kind else {
        return Err(at(
            &root,
            "the events file must be a list, such as `- {at: 2d, clicked: case-study}`".into(),
        ));
    };
    let campaign = &file.campaign;
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
    campaign: &nurture_campaign::Campaign,
    at: &dyn Fn(&yaml::Node, String) -> anyhow::Error,
) -> anyhow::Result<Act> {
    let names = |value: &yaml::Node| -> anyhow::Result<Vec<String>> {
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
