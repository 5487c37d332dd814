//! The condition grammar shared by `trigger.when`, `audience`, `exit_when` and step `when`,
//! and its evaluation against the facts the engine knows about a contact.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Delay;
use crate::name::StepId;

/// A condition, as parsed from YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Every one holds (true when empty).
    All(Vec<Condition>),
    /// At least one holds.
    Any(Vec<Condition>),
    /// The inner one does not hold.
    Not(Box<Condition>),
    /// The contact has this tag.
    Tag(String),
    /// A contact attribute compared with a value.
    Attribute {
        /// Attribute name.
        name: String,
        /// Comparison.
        op: Op,
    },
    /// A property of the trigger event compared with a value.
    Property {
        /// Property name.
        name: String,
        /// Comparison.
        op: Op,
    },
    /// The contact has had this event (within the last `within`, when given).
    Event {
        /// Event name.
        name: String,
        /// How far back to look.
        within: Option<Delay>,
    },
    /// The email of this step was opened, in this enrollment.
    Opened(StepId),
    /// A link in the email of this step was clicked, in this enrollment.
    Clicked(StepId),
    /// The contact's lead score (decayed to now) compared with a number (SPEC §11).
    Score(Op),
}

/// A comparison on an attribute or property.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Equal (numbers compare as numbers, everything else as text).
    Equals(Value),
    /// Not equal, or missing.
    NotEquals(Value),
    /// Equal to one of these.
    In(Vec<Value>),
    /// A list containing the value, or a text containing it.
    Contains(Value),
    /// Present and not empty (`true`), or the opposite (`false`).
    Exists(bool),
    /// Greater than (numbers, or RFC 3339 dates, else text).
    Gt(Value),
    /// Greater than or equal.
    Gte(Value),
    /// Less than.
    Lt(Value),
    /// Less than or equal.
    Lte(Value),
}

/// The operator keys, as written in YAML.
pub const OPERATORS: [&str; 9] = [
    "equals",
    "not_equals",
    "in",
    "contains",
    "exists",
    "gt",
    "gte",
    "lt",
    "lte",
];

/// What the engine knows about a contact when it evaluates a condition.
pub trait Facts {
    /// The contact has this tag.
    fn has_tag(&self, tag: &str) -> bool;
    /// A contact attribute (`email` included).
    fn attribute(&self, name: &str) -> Option<Value>;
    /// A property of the trigger event.
    fn property(&self, name: &str) -> Option<Value>;
    /// The contact has had this event at or after `since` (ever, when `None`).
    fn had_event(&self, name: &str, since: Option<DateTime<Utc>>) -> bool;
    /// The email of this step was opened in the current enrollment.
    fn opened(&self, step: &StepId) -> bool;
    /// The email of this step was clicked in the current enrollment.
    fn clicked(&self, step: &StepId) -> bool;
    /// The contact's lead score as of now (0 when nothing has scored yet).
    fn score(&self) -> f64 {
        0.0
    }
}

impl Condition {
    /// Evaluates the condition at `now`.
    pub fn eval(&self, facts: &dyn Facts, now: DateTime<Utc>) -> bool {
        self.first_false(facts, now).is_none()
    }

    /// `None` when the condition holds; otherwise the smallest part of it that made it false,
    /// for `explain` and `simulate` ("`clicked: case-study` was false").
    pub fn first_false<'a>(
        &'a self,
        facts: &dyn Facts,
        now: DateTime<Utc>,
    ) -> Option<&'a Condition> {
        match self {
            Condition::All(items) => items.iter().find_map(|c| c.first_false(facts, now)),
            Condition::Any(items) => {
                if items.iter().any(|c| c.eval(facts, now)) || items.is_empty() {
                    None
                } else {
                    Some(self)
                }
            }
            Condition::Not(inner) => inner.eval(facts, now).then_some(self),
            leaf => (!leaf.eval_leaf(facts, now)).then_some(self),
        }
    }

    fn eval_leaf(&self, facts: &dyn Facts, now: DateTime<Utc>) -> bool {
        match self {
            Condition::Tag(t) => facts.has_tag(t),
            Condition::Attribute { name, op } => op.holds(facts.attribute(name).as_ref()),
            Condition::Property { name, op } => op.holds(facts.property(name).as_ref()),
            Condition::Event { name, within } => {
                facts.had_event(name, within.map(|w| now - w.to_chrono()))
            }
            Condition::Opened(step) => facts.opened(step),
            Condition::Clicked(step) => facts.clicked(step),
            Condition::Score(op) => op.holds(Some(&score_value(facts.score()))),
            Condition::All(_) | Condition::Any(_) | Condition::Not(_) => self.eval(facts, now),
        }
    }

    /// Every step named by `opened:`/`clicked:` anywhere inside, with which one it is.
    pub fn step_refs(&self) -> Vec<(&'static str, &StepId)> {
        let mut out = Vec::new();
        self.walk(&mut |c| match c {
            Condition::Opened(s) => out.push(("opened", s)),
            Condition::Clicked(s) => out.push(("clicked", s)),
            _ => {}
        });
        out
    }

    /// Whether `score:` is tested anywhere inside.
    pub fn uses_score(&self) -> bool {
        let mut found = false;
        self.walk(&mut |c| found |= matches!(c, Condition::Score(_)));
        found
    }

    /// Every event name tested by `event:` anywhere inside.
    pub fn event_names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.walk(&mut |c| {
            if let Condition::Event { name, .. } = c {
                out.push(name.as_str());
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Condition)) {
        f(self);
        match self {
            Condition::All(items) | Condition::Any(items) => items.iter().for_each(|c| c.walk(f)),
            Condition::Not(inner) => inner.walk(f),
            _ => {}
        }
    }
}

impl Op {
    /// Whether `value` (absent when `None`) satisfies the comparison.
    pub fn holds(&self, value: Option<&Value>) -> bool {
        let present = value.filter(|v| !is_empty(v));
        match self {
            Op::Exists(want) => present.is_some() == *want,
            Op::Equals(x) => present.is_some_and(|v| loosely_equal(v, x)),
            Op::NotEquals(x) => !present.is_some_and(|v| loosely_equal(v, x)),
            Op::In(xs) => present.is_some_and(|v| xs.iter().any(|x| loosely_equal(v, x))),
            Op::Contains(x) => match present {
                Some(Value::Array(items)) => items.iter().any(|i| loosely_equal(i, x)),
                Some(v) => text(v).contains(text(x).as_str()),
                None => false,
            },
            Op::Gt(x) => compare(present, x).is_some_and(|o| o.is_gt()),
            Op::Gte(x) => compare(present, x).is_some_and(|o| o.is_ge()),
            Op::Lt(x) => compare(present, x).is_some_and(|o| o.is_lt()),
            Op::Lte(x) => compare(present, x).is_some_and(|o| o.is_le()),
        }
    }

    /// The YAML key of this operator.
    pub fn key(&self) -> &'static str {
        match self {
            Op::Equals(_) => "equals",
            Op::NotEquals(_) => "not_equals",
            Op::In(_) => "in",
            Op::Contains(_) => "contains",
            Op::Exists(_) => "exists",
            Op::Gt(_) => "gt",
            Op::Gte(_) => "gte",
            Op::Lt(_) => "lt",
            Op::Lte(_) => "lte",
        }
    }

    fn operand(&self) -> Value {
        match self {
            Op::Equals(v)
            | Op::NotEquals(v)
            | Op::Contains(v)
            | Op::Gt(v)
            | Op::Gte(v)
            | Op::Lt(v)
            | Op::Lte(v) => v.clone(),
            Op::In(vs) => Value::Array(vs.clone()),
            Op::Exists(b) => Value::Bool(*b),
        }
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => text(a) == text(b),
    }
}

fn compare(a: Option<&Value>, b: &Value) -> Option<std::cmp::Ordering> {
    let a = a?;
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return x.partial_cmp(&y);
    }
    let date = |v: &Value| DateTime::parse_from_rfc3339(&text(v)).ok();
    if let (Some(x), Some(y)) = (date(a), date(b)) {
        return Some(x.cmp(&y));
    }
    Some(text(a).cmp(&text(b)))
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, key: &str, items: &[Condition]| {
            write!(f, "{{{key}: [")?;
            for (i, c) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("]}")
        };
        match self {
            Condition::All(items) => list(f, "all", items),
            Condition::Any(items) => list(f, "any", items),
            Condition::Not(inner) => write!(f, "{{not: {inner}}}"),
            Condition::Tag(t) => write!(f, "{{tag: {t}}}"),
            Condition::Attribute { name, op } => {
                write!(f, "{{attribute: {name}, {}: {}}}", op.key(), op.operand())
            }
            Condition::Property { name, op } => {
                write!(f, "{{property: {name}, {}: {}}}", op.key(), op.operand())
            }
            Condition::Event {
                name,
                within: Some(w),
            } => write!(f, "{{event: {name}, within: {w}}}"),
            Condition::Event { name, within: None } => write!(f, "{{event: {name}}}"),
            Condition::Opened(s) => write!(f, "{{opened: {s}}}"),
            Condition::Clicked(s) => write!(f, "{{clicked: {s}}}"),
            Condition::Score(op) => write!(f, "{{score: {{{}: {}}}}}", op.key(), op.operand()),
        }
    }
}

/// A score as the value conditions compare (rounded to 1/1000 so that decay noise such as
/// 49.99999999 does not decide a `gte: 50`).
pub fn score_value(score: f64) -> Value {
    let rounded = (score * 1000.0).round() / 1000.0;
    serde_json::Number::from_f64(rounded).map_or(Value::from(0), Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Lead;

    impl Facts for Lead {
        fn has_tag(&self, tag: &str) -> bool {
            tag == "webinar"
        }
        fn attribute(&self, name: &str) -> Option<Value> {
            match name {
                "plan" => Some(json!("pro")),
                "seats" => Some(json!("25")),
                "signed_up" => Some(json!("2026-01-05T00:00:00Z")),
                "interests" => Some(json!(["seo", "email"])),
                "blank" => Some(json!("")),
                _ => None,
            }
        }
        fn property(&self, name: &str) -> Option<Value> {
            (name == "source").then(|| json!("ebook"))
        }
        fn had_event(&self, name: &str, since: Option<DateTime<Utc>>) -> bool {
            let when = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc);
            name == "email.clicked" && since.is_none_or(|s| when >= s)
        }
        fn opened(&self, step: &StepId) -> bool {
            step.as_str() == "welcome"
        }
        fn clicked(&self, _: &StepId) -> bool {
            false
        }
    }

    fn attr(name: &str, op: Op) -> Condition {
        Condition::Attribute {
            name: name.into(),
            op,
        }
    }

    #[test]
    fn operators() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let table = [
            (attr("plan", Op::Equals(json!("pro"))), true),
            (attr("plan", Op::NotEquals(json!("pro"))), false),
            (attr("missing", Op::NotEquals(json!("pro"))), true),
            (attr("seats", Op::Equals(json!(25))), true),
            (attr("seats", Op::Gt(json!(10))), true),
            (attr("seats", Op::Lte(json!(24))), false),
            (
                attr("signed_up", Op::Lt(json!("2026-02-01T00:00:00Z"))),
                true,
            ),
            (
                attr("plan", Op::In(vec![json!("basic"), json!("pro")])),
                true,
            ),
            (attr("interests", Op::Contains(json!("seo"))), true),
            (attr("plan", Op::Contains(json!("r"))), true),
            (attr("blank", Op::Exists(true)), false),
            (attr("missing", Op::Exists(false)), true),
            (attr("missing", Op::Gt(json!(1))), false),
            (
                Condition::Property {
                    name: "source".into(),
                    op: Op::Equals(json!("ebook")),
                },
                true,
            ),
            (Condition::Tag("webinar".into()), true),
            (
                Condition::Event {
                    name: "email.clicked".into(),
                    within: Some("60d".parse().unwrap()),
                },
                true,
            ),
            (
                Condition::Event {
                    name: "email.clicked".into(),
                    within: Some("7d".parse().unwrap()),
                },
                false,
            ),
            (Condition::Opened(StepId::new("welcome").unwrap()), true),
            (
                Condition::Not(Box::new(Condition::Tag("webinar".into()))),
                false,
            ),
            (
                Condition::Any(vec![
                    Condition::Tag("x".into()),
                    Condition::Tag("webinar".into()),
                ]),
                true,
            ),
            (
                Condition::All(vec![
                    Condition::Tag("x".into()),
                    Condition::Tag("webinar".into()),
                ]),
                false,
            ),
        ];
        for (cond, want) in table {
            assert_eq!(cond.eval(&Lead, now), want, "{cond}");
        }
    }

    #[test]
    fn first_false_names_the_failing_leaf() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = Condition::All(vec![
            Condition::Tag("webinar".into()),
            Condition::Clicked(StepId::new("case-study").unwrap()),
        ]);
        assert_eq!(
            c.first_false(&Lead, now).map(ToString::to_string),
            Some("{clicked: case-study}".into())
        );
    }
}
