//! How a contact enters a campaign: the `trigger` (an event, a cron schedule or a score
//! threshold) and the `reentry` policy for contacts who were enrolled before.

use chrono_tz::Tz;

use super::{Decoder, REENTRY_KEYS, Scope, TRIGGER_KEYS};
use crate::Cron;
use crate::model::{Reentry, Trigger};
use crate::yaml::{Kind, Node};

impl Decoder<'_> {
    pub(super) fn trigger(&mut self, node: &Node) -> Option<Trigger> {
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

    pub(super) fn reentry(&mut self, node: &Node) -> Option<Reentry> {
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
}
