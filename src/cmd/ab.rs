//! The A/B part of `nurture stats` (SPEC §13): per variant counts of each step with a split
//! or variants, the comparison of the best with the runner-up on the test's metric (the
//! difference, its confidence interval, the two-proportion z-test), and the winner once it
//! can be called honestly.

use std::collections::BTreeMap;

use nurture_campaign::{Action, Campaign};
use nurture_scheduler::winner::{self, Comparison, Winner};
use nurture_store::{Tx, VariantCounts};
use serde_json::{Value, json};

/// The A/B test of one step.
pub struct StepTest {
    /// Per variant, in the campaign's order.
    pub variants: Vec<VariantCounts>,
    /// The called winner.
    pub winner: Option<Winner>,
    /// Best and runner-up ids with their comparison, once both have contacts sent.
    pub comparison: Option<(String, String, Comparison)>,
    /// The test's settings.
    pub test: nurture_campaign::AbTest,
}

/// The tests of every step of `campaign` that has a split or variants, by step id.
pub async fn step_tests(
    tx: &mut Tx,
    campaign: &Campaign,
) -> anyhow::Result<BTreeMap<String, StepTest>> {
    let mut out = BTreeMap::new();
    for step in &campaign.steps {
        let choices = step.choices();
        if choices.is_empty() {
            continue;
        }
        let counts = match &step.action {
            Action::Split(_) => {
                tx.split_arm_counts(campaign.id.as_str(), step.id.as_str())
                    .await?
            }
            _ => {
                tx.email_variant_counts(campaign.id.as_str(), step.id.as_str())
                    .await?
            }
        };
        let variants: Vec<VariantCounts> = choices
            .iter()
            .map(|(id, _)| {
                counts
                    .iter()
                    .find(|c| c.id == *id)
                    .cloned()
                    .unwrap_or_else(|| VariantCounts {
                        id: (*id).to_string(),
                        ..Default::default()
                    })
            })
            .collect();
        let test = step.test.unwrap_or_default();
        let ids: Vec<&str> = choices.iter().map(|(id, _)| *id).collect();
        let winner = winner::call(&ids, &variants, &test);
        let comparison = winner::best_vs_runner_up(&variants, &test)
            .and_then(|(a, b, c)| Some((a.id.clone(), b.id.clone(), c?)));
        out.insert(
            step.id.to_string(),
            StepTest {
                variants,
                winner,
                comparison,
                test,
            },
        );
    }
    Ok(out)
}

/// `variants`, `winner` and `comparison` for a step of `stats --json`.
pub fn json_fields(test: Option<&StepTest>) -> [(&'static str, Value); 3] {
    let Some(t) = test else {
        return [
            ("variants", json!([])),
            ("winner", Value::Null),
            ("comparison", Value::Null),
        ];
    };
    [
        ("variants", json!(t.variants)),
        ("winner", json!(t.winner)),
        (
            "comparison",
            match &t.comparison {
                Some((best, runner_up, c)) => json!({
                    "metric": t.test.metric.as_str(),
                    "best": best,
                    "runner_up": runner_up,
                    "difference": c.difference,
                    "interval": [c.low, c.high],
                    "confidence": t.test.confidence,
                    "z": c.z,
                    "p_value": c.p_value,
                    "min_sample": t.test.min_sample,
                }),
                None => Value::Null,
            },
        ),
    ]
}

/// The test of one step as lines for the terminal.
pub fn lines(step: &str, t: &StepTest) -> Vec<String> {
    let metric = t.test.metric.as_str();
    let mut out = vec![format!(
        "  A/B test at `{step}` on {metric} (winner at {}% confidence, {} sent per variant at least):",
        t.test.confidence * 100.0,
        t.test.min_sample
    )];
    out.push(format!(
        "    {:<16} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "variant", "sent", "opened", "clicked", "goal", "rate"
    ));
    for v in &t.variants {
        let rate = if v.sent > 0 {
            format!(
                "{:.1}%",
                100.0 * winner::successes(v, t.test.metric) as f64 / v.sent as f64
            )
        } else {
            "-".into()
        };
        out.push(format!(
            "    {:<16} {:>7} {:>7} {:>7} {:>7} {:>8}",
            v.id, v.sent, v.opened, v.clicked, v.goal, rate
        ));
    }
    if let Some((best, runner_up, c)) = &t.comparison {
        out.push(format!(
            "    {best} vs {runner_up}: {:+.1} points ({}% interval {:+.1} to {:+.1}), z = {:.2}, p = {:.4}",
            100.0 * c.difference,
            t.test.confidence * 100.0,
            100.0 * c.low,
            100.0 * c.high,
            c.z,
            c.p_value
        ));
    }
    out.push(match &t.winner {
        Some(w) => format!(
            "    winner: {} ({:.1}% confidence){}",
            w.id,
            w.confidence * 100.0,
            if t.test.auto_winner {
                "; later contacts get only the winner"
            } else {
                ""
            }
        ),
        None => {
            "    no winner yet (not enough contacts, or the difference is not significant)".into()
        }
    });
    out
}
