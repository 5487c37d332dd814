//! Conditions (`when`, `audience`, `exit_when`, scoring rules) and their comparisons. A
//! condition's [`Scope`] is remembered with each `opened`/`clicked` reference, because what it
//! may name is only known once every step is decoded.

use super::{CONDITION_HEADS, Decoder, Scope, StepRef};
use crate::condition::OPERATORS;
use crate::diagnostic::Span;
use crate::yaml::{Kind, Node};
use crate::{Condition, Op};

impl Decoder<'_> {
    /// `{OP: NUMBER}`, the comparison of a `score` condition or trigger.
    pub(crate) fn score_op(&mut self, node: &Node) -> Option<Op> {
        const NUMERIC: &[&str] = &["gt", "gte", "lt", "lte", "equals", "not_equals"];
        let f = self.fields(node, "a score comparison", NUMERIC)?;
        let [(op, _, value)] = f.entries.as_slice() else {
            self.error(
                node.span,
                "a score comparison has exactly one operator",
                Some("e.g. `{ score: { gte: 50 } }`".into()),
            );
            return None;
        };
        if !value.to_json().is_number() {
            self.error(
                value.span,
                format!(
                    "`{op}` compares the score with a number, found {}",
                    value.describe()
                ),
                None,
            );
            return None;
        }
        self.operator(op, value)
    }

    /// Spans of `opened`/`clicked` references collected so far (a scoring rule may not use them).
    pub(crate) fn take_step_ref_spans(&mut self) -> Vec<Span> {
        std::mem::take(&mut self.refs)
            .into_iter()
            .map(|r| r.span)
            .collect()
    }

    /// A condition in a scoring rule: about the contact and the scored event.
    pub(crate) fn rule_condition(&mut self, node: &Node) -> Option<Condition> {
        self.condition(node, Scope::Trigger)
    }

    pub(super) fn condition(&mut self, node: &Node, scope: Scope) -> Option<Condition> {
        let mut allowed: Vec<&str> = CONDITION_HEADS.to_vec();
        allowed.push("within");
        allowed.extend(OPERATORS);
        let f = self.fields(node, "a condition", &allowed)?;
        let heads: Vec<&str> = CONDITION_HEADS
            .iter()
            .copied()
            .filter(|h| f.has(h))
            .collect();
        let head = match heads.as_slice() {
            [one] => *one,
            [] => {
                self.error(
                    node.span,
                    "this condition has no test",
                    Some(format!(
                        "start it with one of: {}",
                        CONDITION_HEADS.join(", ")
                    )),
                );
                return None;
            }
            [_, second, ..] => {
                let span = f.key_span(second).unwrap_or(node.span);
                self.error(
                    span,
                    format!(
                        "a condition tests one thing, this one has `{}` and `{second}`",
                        heads[0]
                    ),
                    Some("combine them with `all: [..]` or `any: [..]`".into()),
                );
                return None;
            }
        };
        let value = f.get(head)?;
        let ops: Vec<&str> = OPERATORS.iter().copied().filter(|o| f.has(o)).collect();
        if !matches!(head, "attribute" | "property") {
            for op in &ops {
                if let Some(span) = f.key_span(op) {
                    self.error(
                        span,
                        format!("`{op}` compares an `attribute` or a `property`, not a `{head}`"),
                        None,
                    );
                }
            }
        }
        if head != "event"
            && let Some(span) = f.key_span("within")
        {
            self.error(
                span,
                "`within` goes with `event`",
                Some("e.g. `{ event: email.clicked, within: 60d }`".into()),
            );
        }
        match head {
            "all" | "any" => {
                let Kind::Seq(items) = &value.kind else {
                    self.error(
                        value.span,
                        format!(
                            "`{head}` takes a list of conditions, found {}",
                            value.describe()
                        ),
                        None,
                    );
                    return None;
                };
                let list: Vec<Option<Condition>> =
                    items.iter().map(|c| self.condition(c, scope)).collect();
                let list: Vec<Condition> = list.into_iter().collect::<Option<_>>()?;
                Some(if head == "all" {
                    Condition::All(list)
                } else {
                    Condition::Any(list)
                })
            }
            "not" => self
                .condition(value, scope)
                .map(|c| Condition::Not(Box::new(c))),
            "tag" => self.string(value, "`tag`").map(Condition::Tag),
            "score" => self.score_op(value).map(Condition::Score),
            "event" => {
                let name = self.string(value, "`event`");
                let within = f.get("within").map(|n| self.delay(n, "`within`"));
                Some(Condition::Event {
                    name: name?,
                    within: match within {
                        Some(w) => Some(w?),
                        None => None,
                    },
                })
            }
            "opened" | "clicked" => {
                let step = self.step_id(value)?;
                let kind = if head == "opened" {
                    "opened"
                } else {
                    "clicked"
                };
                self.refs.push(StepRef {
                    kind,
                    step: step.clone(),
                    span: value.span,
                    scope,
                });
                Some(if head == "opened" {
                    Condition::Opened(step)
                } else {
                    Condition::Clicked(step)
                })
            }
            _ => {
                let name = self.string(value, &format!("`{head}`"));
                let op = match ops.as_slice() {
                    [one] => f.get(one).and_then(|v| self.operator(one, v)),
                    [] if OPERATORS.iter().any(|o| f.mistyped(o)) => None,
                    [] => {
                        self.error(
                            node.span,
                            format!("this `{head}` condition has no comparison"),
                            Some(format!("add one of: {}", OPERATORS.join(", "))),
                        );
                        None
                    }
                    [_, second, ..] => {
                        let span = f.key_span(second).unwrap_or(node.span);
                        self.error(
                            span,
                            format!(
                                "a condition has one comparison, this one has `{}` and `{second}`",
                                ops[0]
                            ),
                            Some("combine two conditions with `all: [..]`".into()),
                        );
                        None
                    }
                };
                let (name, op) = (name?, op?);
                Some(if head == "attribute" {
                    Condition::Attribute { name, op }
                } else {
                    Condition::Property { name, op }
                })
            }
        }
    }

    fn operator(&mut self, op: &str, node: &Node) -> Option<Op> {
        let value = node.to_json();
        if matches!(node.kind, Kind::Map(_)) {
            self.error(
                node.span,
                format!("`{op}` compares with a value, found a mapping"),
                None,
            );
            return None;
        }
        Some(match op {
            "equals" => Op::Equals(value),
            "not_equals" => Op::NotEquals(value),
            "contains" => Op::Contains(value),
            "gt" => Op::Gt(value),
            "gte" => Op::Gte(value),
            "lt" => Op::Lt(value),
            "lte" => Op::Lte(value),
            "exists" => Op::Exists(self.boolean(node, "`exists`")?),
            "in" => match value {
                serde_json::Value::Array(items) => Op::In(items),
                _ => {
                    self.error(
                        node.span,
                        format!("`in` takes a list of values, found {}", node.describe()),
                        Some("e.g. `in: [pro, enterprise]`".into()),
                    );
                    return None;
                }
            },
            _ => return None,
        })
    }
}
