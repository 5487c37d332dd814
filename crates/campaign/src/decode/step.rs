//! The `steps` list and one step: its timing, its condition and its single action (send,
//! tag, untag, set, goto, exit, split or webhook). Step ids are checked for duplicates here;
//! what needs every step at once (goto targets, loops) is in `rules`.

use std::collections::{BTreeMap, HashMap};

use super::{Decoder, Fields, STEP_KEYS, Scope, WEBHOOK_KEYS};
use crate::model::{Action, SendAction, Step, WebhookAction};
use crate::yaml::{Kind, Node};

const SEND_ONLY: &[&str] = &[
    "subject",
    "preheader",
    "from",
    "reply_to",
    "layout",
    "variants",
    "frequency",
];
const ACTIONS: &[&str] = &[
    "send", "tag", "untag", "set", "goto", "exit", "split", "webhook",
];

impl Decoder<'_> {
    pub(super) fn steps(&mut self, node: &Node) -> Option<Vec<Step>> {
        let Kind::Seq(items) = &node.kind else {
            self.error(
                node.span,
                format!("`steps` must be a list of steps, found {}", node.describe()),
                Some("each step starts with `- id: ...`".into()),
            );
            return None;
        };
        if items.is_empty() {
            self.error(
                node.span,
                "the campaign has no steps",
                Some("add at least one step".into()),
            );
            return None;
        }
        // First pass: ids, so `opened:`/`clicked:` and `goto` can be checked in any order.
        let mut steps = Vec::new();
        let mut ok = true;
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            match self.step(item, i) {
                Some(step) => {
                    if let Some(first) = seen.insert(step.id.to_string(), i) {
                        let span = self
                            .spans
                            .get(&format!("steps.{i}.id"))
                            .copied()
                            .unwrap_or(item.span);
                        self.error(
                            span,
                            format!(
                                "duplicate step id `{}` (also step {} of this campaign)",
                                step.id,
                                first + 1
                            ),
                            Some("every step needs its own id; enrollments point at it".into()),
                        );
                        ok = false;
                    }
                    steps.push(step);
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        self.check_gotos(&steps);
        Some(steps)
    }

    fn step(&mut self, node: &Node, i: usize) -> Option<Step> {
        let f = self.fields(node, "a step", STEP_KEYS)?;
        self.record(format!("steps.{i}"), node.span);
        let id = match f.get("id") {
            Some(n) => {
                self.record(format!("steps.{i}.id"), n.span);
                self.step_id(n)
            }
            None if f.mistyped("id") => None,
            None => {
                self.error(
                    node.span,
                    format!("step {} has no `id`", i + 1),
                    Some("give every step a short, stable id such as `welcome`".into()),
                );
                None
            }
        };
        let after = f.get("after").map(|n| self.delay(n, "`after`"));
        let when = f.get("when").map(|n| self.condition(n, Scope::Step(i)));
        let send_window = f.get("send_window").map(|n| self.window(n));

        let actions: Vec<&str> = ACTIONS.iter().copied().filter(|a| f.has(a)).collect();
        if actions.len() > 1 {
            let span = f.key_span(actions[1]).unwrap_or(node.span);
            self.error(
                span,
                format!(
                    "a step has at most one action, this one has {}",
                    actions
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
                Some("split it into several steps".into()),
            );
            return None;
        }
        if actions.first() != Some(&"send") {
            for key in SEND_ONLY {
                if let Some(span) = f.key_span(key) {
                    self.error(
                        span,
                        format!("`{key}` only applies to a step that sends an email"),
                        Some("add `send: TEMPLATE` or remove the key".into()),
                    );
                }
            }
        }
        let action = match actions.first().copied() {
            None => Some(Action::Wait),
            Some("send") => self
                .send_action(&f, i)
                .and_then(|mut send| match f.get("variants") {
                    Some(n) => {
                        send.variants = self.variants(n, &send, i)?;
                        Some(Action::Send(send))
                    }
                    None => Some(Action::Send(send)),
                }),
            Some("split") => f
                .get("split")
                .and_then(|n| self.split_arms(n, i))
                .map(Action::Split),
            Some("tag") => f
                .get("tag")
                .and_then(|n| self.string_list(n, "`tag`"))
                .map(Action::Tag),
            Some("untag") => f
                .get("untag")
                .and_then(|n| self.string_list(n, "`untag`"))
                .map(Action::Untag),
            Some("set") => f.get("set").and_then(|n| self.set(n)).map(Action::Set),
            Some("goto") => f
                .get("goto")
                .and_then(|n| {
                    self.record(format!("steps.{i}.goto"), n.span);
                    self.step_id(n)
                })
                .map(Action::Goto),
            Some("exit") => f.get("exit").and_then(|n| match self.boolean(n, "`exit`") {
                Some(true) => Some(Action::Exit),
                Some(false) => {
                    self.error(
                        n.span,
                        "`exit: false` does nothing",
                        Some("write `exit: true`, or remove the key".into()),
                    );
                    None
                }
                None => None,
            }),
            Some("webhook") => f.get("webhook").and_then(|n| {
                self.record(format!("steps.{i}.webhook"), n.span);
                self.webhook(n)
            }),
            Some(_) => None,
        };
        let frequency_exempt = f.get("frequency").map(|n| self.frequency(n));
        let has_choices = f.has("split") || f.has("variants");
        let test = self.ab_test(&f, has_choices);
        Some(Step {
            id: id?,
            after: after.flatten(),
            when: when.flatten(),
            send_window: send_window.flatten(),
            action: action?,
            frequency_exempt: match frequency_exempt {
                Some(e) => e?,
                None => false,
            },
            test: test?,
        })
    }

    fn send_action(&mut self, f: &Fields<'_>, i: usize) -> Option<SendAction> {
        let send = f.get("send")?;
        self.record(format!("steps.{i}.send"), send.span);
        let template = self.template_name(send, "`send`");
        let subject = match f.get("subject") {
            Some(n) => {
                self.record(format!("steps.{i}.subject"), n.span);
                self.string(n, "`subject`")
            }
            None if f.mistyped("subject") => None,
            None => {
                let span = f.key_span("send").unwrap_or(f.node.span);
                self.error(
                    span,
                    "this email step has no `subject`",
                    Some("add `subject: ...` to the step".into()),
                );
                None
            }
        };
        let preheader = f.get("preheader").map(|n| {
            self.record(format!("steps.{i}.preheader"), n.span);
            self.string(n, "`preheader`")
        });
        let from = f.get("from").map(|n| self.mailbox(n, "`from`"));
        let reply_to = f.get("reply_to").map(|n| self.mailbox(n, "`reply_to`"));
        let layout = f.get("layout").map(|n| {
            self.record(format!("steps.{i}.layout"), n.span);
            self.template_name(n, "`layout`")
        });
        Some(SendAction {
            template: template?,
            subject: subject?,
            preheader: match preheader {
                Some(p) => Some(p?),
                None => None,
            },
            from: match from {
                Some(m) => Some(m?),
                None => None,
            },
            reply_to: match reply_to {
                Some(m) => Some(m?),
                None => None,
            },
            layout: match layout {
                Some(l) => Some(l?),
                None => None,
            },
            variants: Vec::new(),
        })
    }

    fn set(&mut self, node: &Node) -> Option<BTreeMap<String, serde_json::Value>> {
        let Kind::Map(entries) = &node.kind else {
            self.error(
                node.span,
                format!(
                    "`set` must be a mapping of attribute names to values, found {}",
                    node.describe()
                ),
                Some("e.g. `set: { lifecycle_stage: sales_qualified }`".into()),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            match k.as_str() {
                Some(name) if !name.is_empty() && name != "email" => {
                    out.insert(name.to_string(), v.to_json());
                }
                Some("email") => self.error(k.span, "`set` cannot change a contact's email", None),
                _ => self.error(k.span, "an attribute name must be text", None),
            }
        }
        if out.is_empty() {
            self.error(node.span, "`set` has no attributes", None);
            return None;
        }
        Some(out)
    }

    /// A webhook action: `{ url, body? }`.
    fn webhook(&mut self, node: &Node) -> Option<Action> {
        let f = self.fields(node, "`webhook`", WEBHOOK_KEYS)?;
        let Some(url_node) = f.get("url") else {
            self.error(
                node.span,
                "`webhook` needs a `url`",
                Some("e.g. `webhook: { url: \"https://hooks.example.com/lead\" }`".into()),
            );
            return None;
        };
        let url = self.string(url_node, "the webhook's `url`")?;
        let host = match crate::host::url_host(&url) {
            Ok(h) => h,
            Err(e) => {
                self.error(
                    url_node.span,
                    e,
                    Some("write an absolute `https://` URL".into()),
                );
                return None;
            }
        };
        let body = f.get("body").map(Node::to_json);
        Some(Action::Webhook(WebhookAction { url, host, body }))
    }
}
