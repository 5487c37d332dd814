//! From a positioned YAML tree to a validated [`Campaign`], collecting every problem.
//!
//! Each `decode_*` function reports what is wrong with its node and returns what it could
//! make of it, so one run finds every mistake in a file. Whole-campaign rules (unique step
//! ids, `goto` targets and loops, `opened`/`clicked` references) run after the steps decode.
//!
//! This module holds the decoder's state, the key lists of the format (one place, so the
//! schema's test can compare them) and the campaign's top level; each part of a campaign is
//! decoded by the submodule named after it.

mod condition;
mod rules;
mod split;
mod step;
mod trigger;
mod value;
mod window;

use std::collections::{BTreeMap, HashSet};

use crate::diagnostic::{Diagnostic, SourceFile, Span};
use crate::model::{Campaign, CampaignId, Status, StepId, Tracking};
use crate::yaml::{Kind, Node};

/// Keys of a campaign file.
pub const CAMPAIGN_KEYS: &[&str] = &[
    "id",
    "name",
    "status",
    "from",
    "reply_to",
    "layout",
    "tracking",
    "trigger",
    "audience",
    "exit_when",
    "reentry",
    "send_window",
    "steps",
    "frequency",
];
/// Keys of a step.
pub const STEP_KEYS: &[&str] = &[
    "id",
    "after",
    "when",
    "send_window",
    "send",
    "subject",
    "preheader",
    "from",
    "reply_to",
    "layout",
    "tag",
    "untag",
    "set",
    "goto",
    "exit",
    "split",
    "variants",
    "frequency",
    "metric",
    "confidence",
    "min_sample",
    "auto_winner",
    "webhook",
];
/// Keys of a trigger.
pub const TRIGGER_KEYS: &[&str] = &["event", "when", "schedule", "timezone", "score"];
/// Keys of a webhook action.
pub const WEBHOOK_KEYS: &[&str] = &["url", "body"];
/// Keys of a send window.
pub const WINDOW_KEYS: &[&str] = &["days", "hours", "timezone"];
/// Keys of the tracking mapping.
pub const TRACKING_KEYS: &[&str] = &["opens", "clicks"];
/// Keys of the reentry mapping.
pub const REENTRY_KEYS: &[&str] = &["after"];
/// Keys that start a condition.
pub const CONDITION_HEADS: &[&str] = &[
    "all",
    "any",
    "not",
    "tag",
    "attribute",
    "property",
    "event",
    "opened",
    "clicked",
    "score",
];

/// Where a condition sits, which decides what it may refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Trigger,
    Audience,
    ExitWhen,
    Step(usize),
}

struct StepRef {
    kind: &'static str,
    step: StepId,
    span: Span,
    scope: Scope,
}

/// The decoder's state for one file.
pub(crate) struct Decoder<'f> {
    file: &'f SourceFile,
    pub(crate) diags: Vec<Diagnostic>,
    pub(crate) spans: BTreeMap<String, Span>,
    refs: Vec<StepRef>,
}

/// A mapping's known entries, after unknown and duplicate keys were reported.
pub(crate) struct Fields<'n> {
    node: &'n Node,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
    /// Keys suggested for typos; a missing key that was probably mistyped is not reported
    /// a second time.
    typos: Vec<&'static str>,
}

impl<'n> Fields<'n> {
    pub(crate) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, _, v)| *v)
    }

    pub(crate) fn key_span(&self, key: &str) -> Option<Span> {
        self.entries
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, k, _)| k.span)
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn mistyped(&self, key: &str) -> bool {
        self.typos.contains(&key)
    }
}

/// The closest allowed key to a typo, if it is close enough to be what was meant.
pub fn did_you_mean<'a>(word: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(word, k),
                strsim::jaro_winkler(word, k),
                *k,
            )
        })
        .filter(|(d, jw, k)| *d <= 2.min(k.len() / 2).max(1) || (word.len() > 3 && *jw >= 0.88))
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, k)| k)
}

impl<'f> Decoder<'f> {
    pub(crate) fn new(file: &'f SourceFile) -> Self {
        Self {
            file,
            diags: Vec::new(),
            spans: BTreeMap::new(),
            refs: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, span: Span, message: impl Into<String>, hint: Option<String>) {
        let mut d = Diagnostic::at(self.file, span, message);
        d.hint = hint;
        self.diags.push(d);
    }

    pub(crate) fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&'static str],
    ) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            self.error(
                node.span,
                format!(
                    "{what} must be a mapping of keys to values, found {}",
                    node.describe()
                ),
                Some(format!("the keys allowed here are: {}", allowed.join(", "))),
            );
            return None;
        };
        let mut seen: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        let mut typos = Vec::new();
        for (k, v) in entries {
            let Some(key) = k.as_str() else {
                self.error(
                    k.span,
                    format!("a key in {what} must be text, found {}", k.describe()),
                    None,
                );
                continue;
            };
            if !allowed.contains(&key) {
                let hint = match did_you_mean(key, allowed) {
                    Some(m) => {
                        typos.push(m);
                        format!("did you mean `{m}`?")
                    }
                    None if what == "a step" && CAMPAIGN_KEYS.contains(&key) => {
                        format!("`{key}` belongs at the top level of the campaign, not in a step")
                    }
                    None => format!("the keys allowed here are: {}", allowed.join(", ")),
                };
                self.error(k.span, format!("unknown key `{key}` in {what}"), Some(hint));
                continue;
            }
            if !seen.insert(key) {
                self.error(
                    k.span,
                    format!("the key `{key}` appears twice in {what}"),
                    Some("remove one of them".into()),
                );
                continue;
            }
            out.push((key, k, v));
        }
        Some(Fields {
            node,
            entries: out,
            typos,
        })
    }

    pub(crate) fn record(&mut self, key: impl Into<String>, span: Span) {
        self.spans.insert(key.into(), span);
    }

    /// Decodes a whole campaign file.
    pub(crate) fn campaign(&mut self, root: &Node, default_id: &str) -> Option<Campaign> {
        let f = self.fields(root, "a campaign", CAMPAIGN_KEYS)?;
        let top = root.span;
        let id = match f.get("id") {
            Some(n) => {
                self.record("id", n.span);
                let text = self.string(n, "`id`");
                text.and_then(|t| match CampaignId::new(t) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        self.error(n.span, e, None);
                        None
                    }
                })
            }
            None => match CampaignId::new(default_id) {
                Ok(id) => Some(id),
                Err(e) => {
                    self.error(
                        top,
                        format!("the file name cannot serve as the campaign id: {e}"),
                        Some("add an `id:` key".into()),
                    );
                    None
                }
            },
        };
        let name = f.get("name").and_then(|n| self.string(n, "`name`"));
        let status = match f.get("status") {
            None => Some(Status::Active),
            Some(n) => match n.as_str() {
                Some("active") => Some(Status::Active),
                Some("paused") => Some(Status::Paused),
                Some("draft") => Some(Status::Draft),
                _ => {
                    self.error(
                        n.span,
                        format!(
                            "`status` must be `active`, `paused` or `draft`, found {}",
                            n.describe()
                        ),
                        None,
                    );
                    None
                }
            },
        };
        let from = f.get("from").map(|n| {
            self.record("from", n.span);
            self.mailbox(n, "`from`")
        });
        let reply_to = f.get("reply_to").map(|n| self.mailbox(n, "`reply_to`"));
        let layout = f.get("layout").map(|n| {
            self.record("layout", n.span);
            self.template_name(n, "`layout`")
        });
        let tracking = f.get("tracking").map(|n| self.tracking(n));
        let trigger = match f.get("trigger") {
            Some(n) => self.trigger(n),
            None if f.mistyped("trigger") => None,
            None => {
                self.error(top, "the campaign has no `trigger`", Some("add `trigger: { event: lead.captured }` or `trigger: { schedule: \"0 9 * * mon\" }`".into()));
                None
            }
        };
        let audience = f
            .get("audience")
            .map(|n| self.condition(n, Scope::Audience));
        let reentry = f.get("reentry").map(|n| self.reentry(n));
        let send_window = f.get("send_window").map(|n| self.window(n));
        let frequency_exempt = f.get("frequency").map(|n| self.frequency(n));

        // Steps are decoded before exit_when so its `opened:`/`clicked:` can be checked.
        let steps = match f.get("steps") {
            Some(n) => self.steps(n),
            None if f.mistyped("steps") => None,
            None => {
                self.error(
                    top,
                    "the campaign has no `steps`",
                    Some("add a `steps:` list with at least one step".into()),
                );
                None
            }
        };
        let exit_when = f
            .get("exit_when")
            .map(|n| self.condition(n, Scope::ExitWhen));

        if let Some(steps) = &steps {
            self.check_sends_have_from(steps, from.as_ref().is_some_and(Option::is_some), &f);
            self.check_refs(steps);
        }

        Some(Campaign {
            name: name.unwrap_or_else(|| id.as_ref().map(ToString::to_string).unwrap_or_default()),
            id: id?,
            status: status?,
            from: from.flatten(),
            reply_to: reply_to.flatten(),
            layout: layout.flatten(),
            tracking: tracking.flatten().unwrap_or_default(),
            trigger: trigger?,
            audience: audience.flatten(),
            exit_when: exit_when.flatten(),
            reentry: reentry.flatten().unwrap_or_default(),
            send_window: send_window.flatten(),
            steps: steps?,
            frequency_exempt: match frequency_exempt {
                Some(e) => e?,
                None => false,
            },
        })
    }

    fn tracking(&mut self, node: &Node) -> Option<Tracking> {
        if let Kind::Scalar { .. } = node.kind {
            let on = self.boolean(node, "`tracking`")?;
            return Some(Tracking {
                opens: on,
                clicks: on,
            });
        }
        let f = self.fields(node, "`tracking`", TRACKING_KEYS)?;
        let opens = f.get("opens").map(|n| self.boolean(n, "`opens`"));
        let clicks = f.get("clicks").map(|n| self.boolean(n, "`clicks`"));
        Some(Tracking {
            opens: opens.unwrap_or(Some(true))?,
            clicks: clicks.unwrap_or(Some(true))?,
        })
    }
}
