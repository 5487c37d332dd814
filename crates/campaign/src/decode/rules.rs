//! Whole-campaign rules, checked once every step has decoded: email steps have a sender,
//! `goto` targets exist and no loop of steps runs without waiting, and `opened`/`clicked`
//! name an earlier email step.

use std::collections::HashMap;

use super::{Decoder, Fields, Scope, did_you_mean};
use crate::Delay;
use crate::model::{Action, Step, StepId};

impl Decoder<'_> {
    pub(super) fn check_sends_have_from(
        &mut self,
        steps: &[Step],
        campaign_from: bool,
        f: &Fields<'_>,
    ) {
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

    pub(super) fn check_gotos(&mut self, steps: &[Step]) {
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

    pub(super) fn check_refs(&mut self, steps: &[Step]) {
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
