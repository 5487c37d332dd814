//! The flow picture of a campaign: its steps as boxes in order, arrows between them labelled
//! with the wait (`after`) and the condition (`when`), a dashed bypass for a step a false
//! condition skips, `goto` arrows back (or forward) to their target, and `exit` steps leading
//! out. Each box shows the contacts waiting there now and the step's sent, opened, clicked
//! and converted counts. Drawn as inline SVG from the campaign definition alone, so it needs
//! no script and no other file.

use std::collections::HashMap;
use std::fmt::Write as _;

use nurture_campaign::{Action, Campaign, Trigger};

use super::esc;

/// The counts drawn in a step's box.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StepCounts {
    /// Active enrollments waiting for this step now.
    pub waiting: i64,
    /// Emails accepted by SMTP.
    pub sent: i64,
    /// Unique opens.
    pub opened: i64,
    /// Unique clicks.
    pub clicked: i64,
    /// Enrollments that reached the goal while waiting for this step.
    pub converted: i64,
}

const WIDTH: i64 = 780;
const BOX_X: i64 = 210;
const BOX_W: i64 = 360;
const BOX_H: i64 = 74;
const GAP: i64 = 64;
const TOP_H: i64 = 52;

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// What a step does, in a few words.
fn action_label(action: &Action) -> String {
    match action {
        Action::Send(s) => format!("send {} · “{}”", s.template, s.subject),
        Action::Tag(t) => format!("tag {}", t.join(", ")),
        Action::Untag(t) => format!("untag {}", t.join(", ")),
        Action::Set(v) => format!(
            "set {}",
            v.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
        ),
        Action::Goto(target) => format!("goto {target}"),
        Action::Split(arms) => format!(
            "split {}",
            arms.iter()
                .map(|a| format!("{} {}→{}", a.id, a.weight, a.goto))
                .collect::<Vec<_>>()
                .join(" · ")
        ),
        Action::Webhook(h) => format!("webhook {}", h.url),
        Action::Exit => "exit the campaign".into(),
        Action::Wait => "wait".into(),
    }
}

fn box_top(i: usize) -> i64 {
    20 + TOP_H + GAP + i as i64 * (BOX_H + GAP)
}

/// The SVG of `campaign` with `counts` per step id.
pub(crate) fn svg(campaign: &Campaign, counts: &HashMap<String, StepCounts>) -> String {
    let n = campaign.steps.len();
    let end_top = box_top(n);
    let height = end_top + TOP_H + 20;
    let cx = BOX_X + BOX_W / 2;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" \
         role=\"img\" aria-labelledby=\"flow-title\" font-family=\"system-ui,sans-serif\" font-size=\"13\">\
         <title id=\"flow-title\">Flow of {}: {n} steps</title>\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"#4a5568\"/></marker></defs>",
        esc(&campaign.name)
    );

    // Entry: the trigger, and the goal that ends the campaign early.
    let trigger = match &campaign.trigger {
        Trigger::Event { name, .. } => format!("enrolled by the event {name}"),
        Trigger::Schedule { cron, timezone } => {
            format!("enrolled by the schedule {cron} ({timezone})")
        }
        Trigger::Score(op) => format!("enrolled when the score crosses ({})", op.key()),
    };
    let _ = write!(
        s,
        "<g class=\"start\"><rect x=\"{BOX_X}\" y=\"20\" width=\"{BOX_W}\" height=\"{TOP_H}\" rx=\"26\" fill=\"#e8eefc\" stroke=\"#3b6fd8\"/>\
         <text x=\"{cx}\" y=\"42\" text-anchor=\"middle\" font-weight=\"600\">{}</text>",
        esc(&cut(&trigger, 52))
    );
    if let Some(goal) = &campaign.exit_when {
        let goal = goal.to_string();
        let _ = write!(
            s,
            "<text x=\"{cx}\" y=\"61\" text-anchor=\"middle\" fill=\"#4a5568\" font-size=\"11\">goal: {}<title>{}</title></text>",
            esc(&cut(&goal, 56)),
            esc(&goal)
        );
    }
    s.push_str("</g>");

    let mut goto_lane = 0;
    for (i, step) in campaign.steps.iter().enumerate() {
        let top = box_top(i);
        let from_y = if i == 0 { 20 + TOP_H } else { top - GAP };
        // The arrow into this step; after a goto or exit step nothing flows straight down
        // (only a skip, or a goto from elsewhere, reaches this step), so it is drawn faint.
        let flows = i == 0
            || campaign.steps.get(i - 1).is_some_and(|prev| {
                !matches!(prev.action, Action::Goto(_) | Action::Exit) || prev.when.is_some()
            });
        let _ = write!(
            s,
            "<line x1=\"{cx}\" y1=\"{from_y}\" x2=\"{cx}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"1.5\"{} marker-end=\"url(#arrow)\"/>",
            top - 2,
            if flows { "#4a5568" } else { "#c5cad3" },
            if flows {
                ""
            } else {
                " stroke-dasharray=\"4 4\""
            }
        );
        let mut label_y = from_y + 18;
        if let Some(after) = &step.after {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{label_y}\" class=\"wait\" fill=\"#4a5568\">wait {after}</text>",
                cx + 10
            );
            label_y += 17;
        }
        if let Some(when) = &step.when {
            let cond = when.to_string();
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{label_y}\" class=\"when\" fill=\"#7a4b00\">if {}<title>{}</title></text>",
                cx + 10,
                esc(&cut(&cond, 40)),
                esc(&cond)
            );
            // Skipped when false: a dashed bypass on the left to the arrow below the box.
            let y0 = top - GAP / 2;
            let y1 = top + BOX_H + GAP / 2;
            let lx = BOX_X - 30;
            let _ = write!(
                s,
                "<path d=\"M{cx},{y0} H{lx} V{y1} H{}\" fill=\"none\" stroke=\"#b7791f\" stroke-dasharray=\"5 4\" marker-end=\"url(#arrow)\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#7a4b00\" font-size=\"11\">else skip</text>",
                cx - 4,
                lx - 6,
                top + BOX_H / 2 + 4
            );
        }

        // The box.
        let c = counts.get(step.id.as_str()).copied().unwrap_or_default();
        let is_send = matches!(step.action, Action::Send(_));
        let fill = if is_send { "#ffffff" } else { "#f3f4f6" };
        let label = action_label(&step.action);
        let mut figures = format!("waiting {}", c.waiting);
        if is_send {
            let _ = write!(
                figures,
                " · sent {} · opened {} · clicked {}",
                c.sent, c.opened, c.clicked
            );
        }
        let _ = write!(figures, " · converted {}", c.converted);
        let _ = write!(
            s,
            "<g class=\"step\" data-step=\"{id}\" data-waiting=\"{w}\" data-sent=\"{se}\" data-opened=\"{o}\" data-clicked=\"{cl}\" data-converted=\"{cv}\">\
             <title>{id}: {full}</title>\
             <rect x=\"{BOX_X}\" y=\"{top}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"6\" fill=\"{fill}\" stroke=\"#4a5568\"/>\
             <text x=\"{tx}\" y=\"{y1}\" font-weight=\"600\">{id}</text>\
             <text x=\"{tx}\" y=\"{y2}\" fill=\"#4a5568\">{label}</text>\
             <text x=\"{tx}\" y=\"{y3}\" class=\"counts\" font-size=\"12\">{figures}</text></g>",
            id = esc(step.id.as_str()),
            w = c.waiting,
            se = c.sent,
            o = c.opened,
            cl = c.clicked,
            cv = c.converted,
            full = esc(&label),
            tx = BOX_X + 12,
            y1 = top + 21,
            y2 = top + 41,
            y3 = top + 61,
            label = esc(&cut(&label, 50)),
        );

        // Where a goto or an exit leads.
        match &step.action {
            Action::Goto(target) => {
                if let Some(j) = campaign.step_index(target) {
                    let lane = BOX_X + BOX_W + 24 + goto_lane * 18;
                    goto_lane += 1;
                    let y0 = top + BOX_H / 2;
                    let y1 = box_top(j) + BOX_H / 2;
                    let _ = write!(
                        s,
                        "<path class=\"goto\" d=\"M{},{y0} H{lane} V{y1} H{}\" fill=\"none\" stroke=\"#3b6fd8\" stroke-width=\"1.5\" marker-end=\"url(#arrow)\"/>\
                         <text x=\"{}\" y=\"{}\" fill=\"#3b6fd8\" font-size=\"11\">goto {}</text>",
                        BOX_X + BOX_W,
                        BOX_X + BOX_W + 2,
                        lane + 4,
                        (y0 + y1) / 2,
                        esc(target.as_str())
                    );
                }
            }
            Action::Exit => {
                let y = top + BOX_H / 2;
                let _ = write!(
                    s,
                    "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#a01818\" stroke-width=\"1.5\" marker-end=\"url(#arrow)\"/>\
                     <text x=\"{}\" y=\"{}\" fill=\"#a01818\" font-weight=\"600\">exit</text>",
                    BOX_X + BOX_W,
                    BOX_X + BOX_W + 50,
                    BOX_X + BOX_W + 56,
                    y + 4
                );
            }
            _ => {}
        }
    }

    // The end: after the last step the enrollment completes.
    let from_y = if n == 0 { 20 + TOP_H } else { end_top - GAP };
    let _ = write!(
        s,
        "<line x1=\"{cx}\" y1=\"{from_y}\" x2=\"{cx}\" y2=\"{}\" stroke=\"#4a5568\" stroke-width=\"1.5\" marker-end=\"url(#arrow)\"/>\
         <g class=\"end\"><rect x=\"{BOX_X}\" y=\"{end_top}\" width=\"{BOX_W}\" height=\"{TOP_H}\" rx=\"26\" fill=\"#e6f4ea\" stroke=\"#2f855a\"/>\
         <text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"600\">completed</text></g></svg>",
        end_top - 2,
        end_top + TOP_H / 2 + 5
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(yaml: &str) -> Campaign {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        Campaign::load(&path).unwrap()
    }

    #[test]
    fn the_picture_has_a_box_per_step_with_its_counts_and_labelled_arrows() {
        let c = campaign(
            "id: demo\nname: Demo <1>\nfrom: a@b.example\ntrigger: { event: lead.captured }\n\
             exit_when: { event: purchase.completed }\nsteps:\n\
             - { id: welcome, send: w, subject: Hi }\n\
             - { id: nudge, after: 2d, when: { not: { clicked: welcome } }, send: n, subject: Again }\n\
             - { id: loop, goto: welcome, when: { tag: again } }\n\
             - { id: bye, exit: true }\n",
        );
        let mut counts = HashMap::new();
        counts.insert(
            "welcome".to_string(),
            StepCounts {
                waiting: 3,
                sent: 10,
                opened: 4,
                clicked: 2,
                converted: 1,
            },
        );
        let svg = svg(&c, &counts);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("<g class=\"step\"").count(), 4);
        assert!(svg.contains("data-step=\"welcome\" data-waiting=\"3\" data-sent=\"10\" data-opened=\"4\" data-clicked=\"2\" data-converted=\"1\""), "{svg}");
        assert!(svg.contains("waiting 3 · sent 10 · opened 4 · clicked 2 · converted 1"));
        assert!(svg.contains(">wait 2d<"), "{svg}");
        assert!(svg.contains("if {not: {clicked: welcome}}"), "{svg}");
        assert!(svg.contains("else skip"));
        assert!(svg.contains("class=\"goto\""));
        assert!(svg.contains(">goto welcome<"));
        assert!(svg.contains(">exit<"));
        assert!(svg.contains("enrolled by the event lead.captured"));
        assert!(svg.contains("goal: "));
        // Names from the file are escaped.
        assert!(svg.contains("Demo &lt;1&gt;"));
    }
}
