//! Decoding A/B tests (SPEC §13): the `split:` step action, the `variants:` of a send step,
//! how their winner is called (`metric`, `confidence`, `min_sample`, `auto_winner`), and
//! `frequency: exempt`. The types they decode into are in `model`.
//!
//! Validation here covers what one step can check (at least two choices, ids unique,
//! weights positive); whether a split's `goto` targets exist is checked with every other
//! `goto`, once all steps are decoded.

use std::collections::HashSet;

use super::{Decoder, Fields};
use crate::model::{AbTest, Arm, Metric, SendAction, StepId, Variant};
use crate::yaml::{Kind, Node};

/// Keys of one arm of a `split:`.
pub const ARM_KEYS: &[&str] = &["id", "weight", "goto"];
/// Keys of one entry of `variants:`.
pub const VARIANT_KEYS: &[&str] = &["id", "weight", "subject", "send", "preheader"];
/// Step keys that tune how a split's or variants' winner is called.
pub const TEST_KEYS: &[&str] = &["metric", "confidence", "min_sample", "auto_winner"];

impl Decoder<'_> {
    /// `frequency: exempt` (the only value: capped is the default).
    pub(crate) fn frequency(&mut self, node: &Node) -> Option<bool> {
        match node.as_str() {
            Some("exempt") => Some(true),
            _ => {
                self.error(
                    node.span,
                    format!("`frequency` must be `exempt`, found {}", node.describe()),
                    Some(
                        "write `frequency: exempt` for emails that the frequency caps must not hold back (receipts, confirmations); leave it out otherwise".into(),
                    ),
                );
                None
            }
        }
    }

    /// The arms of `split:`.
    pub(crate) fn split_arms(&mut self, node: &Node, i: usize) -> Option<Vec<Arm>> {
        let items = self.choice_list(node, "`split`")?;
        let mut arms = Vec::new();
        let mut ok = true;
        for (n, item) in items.iter().enumerate() {
            let Some(f) = self.fields(item, "an arm of `split`", ARM_KEYS) else {
                ok = false;
                continue;
            };
            let id = self.choice_id(&f, item, "arm of `split`");
            let weight = self.weight(&f);
            let goto = match f.get("goto") {
                Some(g) => {
                    self.record(format!("steps.{i}.split.{n}.goto"), g.span);
                    self.step_id(g)
                }
                None => {
                    self.error(
                        item.span,
                        "this arm of `split` has no `goto`",
                        Some("add `goto: STEP_ID`: the step its contacts continue at".into()),
                    );
                    None
                }
            };
            match (id, weight, goto) {
                (Some(id), Some(weight), Some(goto)) => arms.push(Arm { id, weight, goto }),
                _ => ok = false,
            }
        }
        let ids: Vec<&str> = arms.iter().map(|a| a.id.as_str()).collect();
        ok &= self.unique_ids(&ids, items, "`split`");
        ok.then_some(arms)
    }

    /// The `variants:` of a send step, each resolved against the step's own email.
    pub(crate) fn variants(
        &mut self,
        node: &Node,
        base: &SendAction,
        i: usize,
    ) -> Option<Vec<Variant>> {
        let items = self.choice_list(node, "`variants`")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (n, item) in items.iter().enumerate() {
            let Some(f) = self.fields(item, "a variant", VARIANT_KEYS) else {
                ok = false;
                continue;
            };
            let id = self.choice_id(&f, item, "variant");
            let weight = self.weight(&f);
            let mut send = base.clone();
            send.variants = Vec::new();
            if let Some(n_) = f.get("send") {
                self.record(format!("steps.{i}.variants.{n}.send"), n_.span);
                match self.template_name(n_, "`send`") {
                    Some(t) => send.template = t,
                    None => ok = false,
                }
            }
            if let Some(s) = f.get("subject") {
                match self.string(s, "`subject`") {
                    Some(s) => send.subject = s,
                    None => ok = false,
                }
            }
            if let Some(p) = f.get("preheader") {
                match self.string(p, "`preheader`") {
                    Some(p) => send.preheader = Some(p),
                    None => ok = false,
                }
            }
            match (id, weight) {
                (Some(id), Some(weight)) => out.push(Variant { id, weight, send }),
                _ => ok = false,
            }
        }
        let ids: Vec<&str> = out.iter().map(|v| v.id.as_str()).collect();
        ok &= self.unique_ids(&ids, items, "`variants`");
        ok.then_some(out)
    }

    /// The test settings of a step; `has_choices` says whether the step has a split or
    /// variants (the keys mean nothing elsewhere).
    pub(crate) fn ab_test(&mut self, f: &Fields<'_>, has_choices: bool) -> Option<Option<AbTest>> {
        if !has_choices {
            let mut ok = true;
            for key in TEST_KEYS {
                if let Some(span) = f.key_span(key) {
                    self.error(
                        span,
                        format!("`{key}` only applies to a step with `split` or `variants`"),
                        Some("remove the key, or add the A/B test it tunes".into()),
                    );
                    ok = false;
                }
            }
            return ok.then_some(None);
        }
        let mut test = AbTest::default();
        let mut ok = true;
        if let Some(n) = f.get("metric") {
            match n.as_str() {
                Some("opened") => test.metric = Metric::Opened,
                Some("clicked") => test.metric = Metric::Clicked,
                Some("goal") => test.metric = Metric::Goal,
                _ => {
                    self.error(
                        n.span,
                        format!(
                            "`metric` must be `opened`, `clicked` or `goal`, found {}",
                            n.describe()
                        ),
                        None,
                    );
                    ok = false;
                }
            }
        }
        if let Some(n) = f.get("confidence") {
            match n.to_json().as_f64() {
                Some(c) if (0.5..=0.9999).contains(&c) => test.confidence = c,
                _ => {
                    self.error(
                        n.span,
                        format!(
                            "`confidence` must be a number from 0.5 to 0.9999, found {}",
                            n.describe()
                        ),
                        Some("e.g. `confidence: 0.95` for 95%".into()),
                    );
                    ok = false;
                }
            }
        }
        if let Some(n) = f.get("min_sample") {
            match n.to_json().as_u64() {
                Some(m) if m >= 1 => test.min_sample = m,
                _ => {
                    self.error(
                        n.span,
                        format!(
                            "`min_sample` must be a positive whole number, found {}",
                            n.describe()
                        ),
                        Some("the contacts sent per variant before a winner may be called".into()),
                    );
                    ok = false;
                }
            }
        }
        if let Some(n) = f.get("auto_winner") {
            match self.boolean(n, "`auto_winner`") {
                Some(b) => test.auto_winner = b,
                None => ok = false,
            }
        }
        ok.then_some(Some(test))
    }

    fn choice_list<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.kind {
            Kind::Seq(items) if items.len() >= 2 => Some(items),
            Kind::Seq(_) => {
                self.error(
                    node.span,
                    format!("{what} needs at least two entries to compare"),
                    None,
                );
                None
            }
            _ => {
                self.error(
                    node.span,
                    format!("{what} must be a list, found {}", node.describe()),
                    Some("e.g. `- {id: a, weight: 50, ...}`".into()),
                );
                None
            }
        }
    }

    fn choice_id(&mut self, f: &Fields<'_>, item: &Node, what: &str) -> Option<String> {
        let Some(n) = f.get("id") else {
            self.error(
                item.span,
                format!("this {what} has no `id`"),
                Some("give it a short id such as `a`".into()),
            );
            return None;
        };
        let text = self.string(n, "an id")?;
        // Same rules as a step id: it is printed in stats and recorded on every message.
        match StepId::new(text.clone()) {
            Ok(_) => Some(text),
            Err(e) => {
                self.error(n.span, e.replace("step id", "variant id"), None);
                None
            }
        }
    }

    fn weight(&mut self, f: &Fields<'_>) -> Option<u32> {
        let Some(n) = f.get("weight") else {
            return Some(1);
        };
        match n.to_json().as_u64() {
            Some(w) if (1..=1_000_000).contains(&w) => u32::try_from(w).ok(),
            _ => {
                self.error(
                    n.span,
                    format!(
                        "`weight` must be a positive whole number, found {}",
                        n.describe()
                    ),
                    Some(
                        "weights are relative shares: `weight: 50` and `weight: 50` split evenly"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    fn unique_ids(&mut self, ids: &[&str], items: &[Node], what: &str) -> bool {
        let mut seen = HashSet::new();
        let mut ok = true;
        for (n, id) in ids.iter().enumerate() {
            if !seen.insert(*id) {
                let span = items.get(n).map(|i| i.span).unwrap_or_default();
                self.error(
                    span,
                    format!("duplicate id `{id}` in {what}"),
                    Some("every entry needs its own id; stats and messages record it".into()),
                );
                ok = false;
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::{Action, Metric, SourceFile, parse_campaign};

    const HEAD: &str = "from: \"Ana <ana@leadcraft.example>\"\ntrigger: { event: lead.captured }\n";

    fn load(steps: &str) -> Result<crate::Campaign, Vec<String>> {
        parse_campaign(SourceFile::new("c.yaml", format!("{HEAD}{steps}")), "c")
            .map(|f| f.campaign)
            .map_err(|d| d.into_iter().map(|d| d.message).collect())
    }

    #[test]
    fn split_arms_and_test_settings_are_read() {
        let c = load(
            "frequency: exempt\nsteps:\n  - id: fork\n    split: [{id: a, weight: 30, goto: short}, {id: b, weight: 70, goto: long}]\n    metric: goal\n    confidence: 0.99\n    min_sample: 50\n    auto_winner: true\n  - id: short\n    send: t/short\n    subject: S\n  - id: long\n    send: t/long\n    subject: L\n",
        )
        .unwrap();
        assert!(c.frequency_exempt);
        let Action::Split(arms) = &c.steps[0].action else {
            panic!("not a split: {:?}", c.steps[0].action)
        };
        assert_eq!(arms.len(), 2);
        assert_eq!((arms[0].id.as_str(), arms[0].weight), ("a", 30));
        assert_eq!(arms[1].goto.as_str(), "long");
        let t = c.steps[0].test.unwrap();
        assert_eq!(t.metric, Metric::Goal);
        assert!((t.confidence - 0.99).abs() < 1e-12);
        assert_eq!(t.min_sample, 50);
        assert!(t.auto_winner);
        assert_eq!(c.steps[0].choices(), vec![("a", 30), ("b", 70)]);
    }

    #[test]
    fn variants_inherit_the_step_email() {
        let c = load(
            "steps:\n  - id: hi\n    send: t/hi\n    subject: Hello\n    frequency: exempt\n    variants:\n      - {id: a}\n      - {id: b, subject: Hey there, send: t/hi-b}\n",
        )
        .unwrap();
        let step = &c.steps[0];
        assert!(step.frequency_exempt);
        assert!(c.frequency_exempt(step));
        let Action::Send(send) = &step.action else {
            panic!()
        };
        assert_eq!(send.variant(Some("a")).subject, "Hello");
        assert_eq!(send.variant(Some("b")).subject, "Hey there");
        assert_eq!(send.variant(Some("b")).template.as_str(), "t/hi-b");
        assert_eq!(send.variant(None).template.as_str(), "t/hi");
        assert_eq!(send.variant(Some("gone")).subject, "Hello");
        assert_eq!(step.test.unwrap().confidence, 0.95);
        assert_eq!(step.choices(), vec![("a", 1), ("b", 1)]);
    }

    #[test]
    fn mistakes_are_reported() {
        let cases = [
            (
                "steps:\n  - id: fork\n    split: [{id: a, goto: x}, {id: a, goto: x}]\n  - id: x\n    after: 1d\n",
                "duplicate id `a` in `split`",
            ),
            (
                "steps:\n  - id: fork\n    split: [{id: a, goto: x}, {id: b, goto: nowhere}]\n  - id: x\n    after: 1d\n",
                "`goto` names an unknown step `nowhere`",
            ),
            (
                "steps:\n  - id: fork\n    split: [{id: a, weight: 0, goto: x}, {id: b, goto: x}]\n  - id: x\n    after: 1d\n",
                "`weight` must be a positive whole number, found `0`",
            ),
            (
                "steps:\n  - id: fork\n    split: [{id: a, goto: x}]\n  - id: x\n    after: 1d\n",
                "`split` needs at least two entries to compare",
            ),
            (
                "steps:\n  - id: hi\n    send: t/hi\n    subject: S\n    variants: [{id: a}, {id: b, subjet: T}]\n",
                "unknown key `subjet` in a variant",
            ),
            (
                "steps:\n  - id: hi\n    send: t/hi\n    subject: S\n    auto_winner: true\n",
                "`auto_winner` only applies to a step with `split` or `variants`",
            ),
            (
                "steps:\n  - id: hi\n    send: t/hi\n    subject: S\n    frequency: sometimes\n",
                "`frequency` must be `exempt`, found `sometimes`",
            ),
            (
                "steps:\n  - id: hi\n    tag: [x]\n    variants: [{id: a}, {id: b}]\n",
                "`variants` only applies to a step that sends an email",
            ),
            (
                "steps:\n  - id: fork\n    split: [{id: a, goto: x}, {id: b, goto: x}]\n    confidence: 2\n  - id: x\n    after: 1d\n",
                "`confidence` must be a number from 0.5 to 0.9999, found `2`",
            ),
        ];
        for (steps, want) in cases {
            let errors = load(steps).err().unwrap_or_default();
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{want:?} not in {errors:?} for\n{steps}"
            );
        }
    }
}
