//! From a positioned YAML tree to a validated [`Campaign`], collecting every problem.
//!
//! Each `decode_*` function reports what is wrong with its node and returns what it could
//! make of it, so one run finds every mistake in a file. Whole-campaign rules (unique step
//! ids, `goto` targets and loops, `opened`/`clicked` references) run after the steps decode.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono_tz::Tz;

use crate::condition::OPERATORS;
use crate::diagnostic::{Diagnostic, SourceFile, Span};
use crate::model::{
    Action, Campaign, CampaignId, Reentry, SendAction, Status, Step, StepId, TemplateName,
    Tracking, Trigger, WebhookAction,
};
use crate::window::{Hours, SendWindow, WindowZone, parse_weekday};
use crate::yaml::{Kind, Node};
use crate::{Condition, Cron, Delay, Mailbox, Op};

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

    fn timezone(&mut self, node: &Node) -> Option<Tz> {
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

    fn trigger(&mut self, node: &Node) -> Option<Trigger> {
        let f = self.fields(node, "the trigger", TRIGGER_KEYS)?;
        if let Some(score) = f.get("score") {
            if f.has("event") || f.has("schedule") {
                self.error(
                    f.node.span,
                    "a trigger has one of `event`, `schedule` or `score`",
                    None,
                );
                return None;
            }
            for key in ["when", "timezone"] {
                if let Some(span) = f.key_span(key) {
                    self.error(
                        span,
                        format!("`{key}` does not apply to a score trigger"),
                        Some("use `audience` to filter who enters".into()),
                    );
                }
            }
            return self.score_op(score).map(Trigger::Score);
        }
        match (f.get("event"), f.get("schedule")) {
            (Some(e), None) => {
                if let Some(span) = f.key_span("timezone") {
                    self.error(
                        span,
                        "`timezone` applies to a schedule trigger, not an event trigger",
                        Some("remove it".into()),
                    );
                }
                let name = self.string(e, "the trigger's `event`");
                let when = f.get("when").map(|n| self.condition(n, Scope::Trigger));
                Some(Trigger::Event {
                    name: name?,
                    when: when.flatten(),
                })
            }
            (None, Some(s)) => {
                if let Some(span) = f.key_span("when") {
                    self.error(
                        span,
                        "`when` filters an event trigger; a schedule trigger uses `audience`",
                        Some("move the condition to `audience`".into()),
                    );
                }
                let text = self.string(s, "the trigger's `schedule`")?;
                let cron = match text.parse::<Cron>() {
                    Ok(c) => Some(c),
                    Err(e) => {
                        self.error(s.span, format!("invalid cron schedule `{text}`: {e}"), Some("use five fields: minute hour day-of-month month day-of-week, e.g. \"0 9 * * mon\"".into()));
                        None
                    }
                };
                let timezone = match f.get("timezone") {
                    Some(n) => self.timezone(n),
                    None => Some(Tz::UTC),
                };
                Some(Trigger::Schedule {
                    cron: cron?,
                    timezone: timezone?,
                })
            }
            (Some(_), Some(_)) => {
                self.error(
                    f.node.span,
                    "a trigger has either `event` or `schedule`, not both",
                    None,
                );
                None
            }
            (None, None) => {
                self.error(
                    f.node.span,
                    "the trigger needs `event`, `schedule` or `score`",
                    Some("e.g. `trigger: { event: lead.captured }`".into()),
                );
                None
            }
        }
    }

    fn reentry(&mut self, node: &Node) -> Option<Reentry> {
        match (&node.kind, node.as_str()) {
            (_, Some("never")) => Some(Reentry::Never),
            (_, Some("after_exit")) => Some(Reentry::AfterExit),
            (Kind::Map(_), _) => {
                let f = self.fields(node, "`reentry`", REENTRY_KEYS)?;
                let Some(after) = f.get("after") else {
                    self.error(
                        node.span,
                        "`reentry` as a mapping needs `after`",
                        Some("e.g. `reentry: { after: 30d }`".into()),
                    );
                    return None;
                };
                self.delay(after, "`reentry.after`").map(Reentry::After)
            }
            _ => {
                self.error(
                    node.span,
                    format!(
                        "`reentry` must be `never`, `after_exit` or `{{ after: 30d }}`, found {}",
                        node.describe()
                    ),
                    None,
                );
                None
            }
        }
    }

    fn window(&mut self, node: &Node) -> Option<SendWindow> {
        let f = self.fields(node, "the send window", WINDOW_KEYS)?;
        let days = match f.get("days") {
            None => Some(vec![
                chrono::Weekday::Mon,
                chrono::Weekday::Tue,
                chrono::Weekday::Wed,
                chrono::Weekday::Thu,
                chrono::Weekday::Fri,
                chrono::Weekday::Sat,
                chrono::Weekday::Sun,
            ]),
            Some(n) => self.days(n),
        };
        let hours = match f.get("hours") {
            None => Some(None),
            Some(n) => self.string(n, "`hours`").and_then(|text| match Hours::parse(&text) {
                Ok(h) => Some(Some(h)),
                Err(e) => {
                    self.error(n.span, e, Some("write the hours as \"HH:MM-HH:MM\" in 24-hour time, e.g. \"09:00-17:00\"".into()));
                    None
                }
            }),
        };
        let timezone = match f.get("timezone") {
            None => Some(WindowZone::Contact),
            Some(n) if n.as_str() == Some("contact") => Some(WindowZone::Contact),
            Some(n) => self.timezone(n).map(WindowZone::Named),
        };
        Some(SendWindow {
            days: days?,
            hours: hours?,
            timezone: timezone?,
        })
    }

    fn days(&mut self, node: &Node) -> Option<Vec<chrono::Weekday>> {
        let names = self.string_list(node, "`days`")?;
        let mut out = Vec::new();
        let mut ok = true;
        let items: Vec<&Node> = match &node.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        for (name, item) in names.iter().zip(items) {
            match parse_weekday(name) {
                Some(d) if !out.contains(&d) => out.push(d),
                Some(_) => {}
                None => {
                    ok = false;
                    self.error(
                        item.span,
                        format!("`{name}` is not a day"),
                        Some("days are mon, tue, wed, thu, fri, sat, sun".into()),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    fn steps(&mut self, node: &Node) -> Option<Vec<Step>> {
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
        let host = match crate::scoring::url_host(&url) {
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

    fn condition(&mut self, node: &Node, scope: Scope) -> Option<Condition> {
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

    fn check_sends_have_from(&mut self, steps: &[Step], campaign_from: bool, f: &Fields<'_>) {
        if campaign_from {
            return;
        }
        for (i, step) in steps.iter().enumerate() {
            if let Action::Send(send) = &step.action
                && send.from.is_none()
                && f.key_span("from").is_none()
            {
                let span = self
                    .spans
                    .get(&format!("steps.{i}.send"))
                    .copied()
                    .unwrap_or(f.node.span);
                self.error(
                    span,
                    format!(
                        "email step `{}` has no sender: the campaign has no `from`",
                        step.id
                    ),
                    Some(
                        "add `from: \"Name <you@example.com>\"` at the top of the campaign".into(),
                    ),
                );
                return;
            }
        }
    }

    fn check_gotos(&mut self, steps: &[Step]) {
        let index: HashMap<&StepId, usize> =
            steps.iter().enumerate().map(|(i, s)| (&s.id, i)).collect();
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
        let mut broken = false;
        for (i, step) in steps.iter().enumerate() {
            let falls_through = !matches!(
                step.action,
                Action::Goto(_) | Action::Exit | Action::Split(_)
            ) || step.when.is_some();
            let targets: Vec<(&StepId, String)> = match &step.action {
                Action::Goto(target) => vec![(target, format!("steps.{i}.goto"))],
                Action::Split(arms) => arms
                    .iter()
                    .enumerate()
                    .map(|(n, a)| (&a.goto, format!("steps.{i}.split.{n}.goto")))
                    .collect(),
                _ => Vec::new(),
            };
            if falls_through && i + 1 < steps.len() {
                edges[i].push(i + 1);
            }
            for (target, at) in targets {
                match index.get(target) {
                    Some(&t) => edges[i].push(t),
                    None => {
                        broken = true;
                        let span = self.spans.get(&at).copied().unwrap_or_default();
                        let names: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
                        let hint = did_you_mean(target.as_str(), &names)
                            .map(|m| format!("did you mean `{m}`?"))
                            .unwrap_or_else(|| format!("the steps are: {}", names.join(", ")));
                        self.error(
                            span,
                            format!("`goto` names an unknown step `{target}`"),
                            Some(hint),
                        );
                    }
                }
            }
        }
        if broken {
            return;
        }
        // A cycle through steps that all run at once (no positive `after`) would spin forever.
        let instant = |i: usize| steps[i].after.is_none_or(Delay::is_zero);
        let mut state = vec![0u8; steps.len()]; // 0 new, 1 on stack, 2 done
        for start in 0..steps.len() {
            if !instant(start) || state[start] != 0 {
                continue;
            }
            let mut path = Vec::new();
            if let Some(cycle) = dfs(start, &edges, &instant, &mut state, &mut path) {
                let at = cycle
                    .iter()
                    .copied()
                    .find(|&i| matches!(steps[i].action, Action::Goto(_)))
                    .unwrap_or(cycle[0]);
                let span = self
                    .spans
                    .get(&format!("steps.{at}.goto"))
                    .copied()
                    .unwrap_or_default();
                let names: Vec<&str> = cycle.iter().map(|&i| steps[i].id.as_str()).collect();
                self.error(
                    span,
                    format!("this `goto` forms a loop in which no step waits ({}): it would run forever", names.join(" → ")),
                    Some("give a step in the loop an `after:` delay".into()),
                );
                return;
            }
        }
    }

    fn check_refs(&mut self, steps: &[Step]) {
        let refs = std::mem::take(&mut self.refs);
        for r in refs {
            let target = steps.iter().position(|s| s.id == r.step);
            let is_send = target.is_some_and(|t| matches!(steps[t].action, Action::Send(_)));
            let problem = match (r.scope, target) {
                (Scope::Trigger | Scope::Audience, _) => Some(format!(
                    "`{}` refers to an email of this campaign, which a contact has not received before entering it",
                    r.kind
                )),
                (_, None) => Some(format!(
                    "`{}: {}` names a step that does not exist",
                    r.kind, r.step
                )),
                (_, Some(_)) if !is_send => Some(format!(
                    "`{}: {}` names a step that sends no email",
                    r.kind, r.step
                )),
                (Scope::Step(at), Some(t)) if t >= at => Some(format!(
                    "`{}: {}` names a step that does not come before this one",
                    r.kind, r.step
                )),
                _ => None,
            };
            if let Some(message) = problem {
                let sends: Vec<&str> = steps
                    .iter()
                    .filter(|s| matches!(s.action, Action::Send(_)))
                    .map(|s| s.id.as_str())
                    .collect();
                let hint = did_you_mean(r.step.as_str(), &sends)
                    .filter(|m| *m != r.step.as_str())
                    .map(|m| format!("did you mean `{m}`?"))
                    .unwrap_or_else(|| {
                        "`opened` and `clicked` name an earlier step that sends an email".into()
                    });
                self.error(r.span, message, Some(hint));
            }
        }
    }
}

/// Depth-first search for a cycle among instant steps; returns the steps on it, in order.
fn dfs(
    node: usize,
    edges: &[Vec<usize>],
    instant: &dyn Fn(usize) -> bool,
    state: &mut [u8],
    path: &mut Vec<usize>,
) -> Option<Vec<usize>> {
    state[node] = 1;
    path.push(node);
    for &next in &edges[node] {
        if !instant(next) {
            continue;
        }
        if state[next] == 1 {
            let from = path.iter().position(|&p| p == next).unwrap_or(0);
            return Some(path[from..].to_vec());
        }
        if state[next] == 0
            && let Some(found) = dfs(next, edges, instant, state, path)
        {
            return Some(found);
        }
    }
    path.pop();
    state[node] = 2;
    None
}
