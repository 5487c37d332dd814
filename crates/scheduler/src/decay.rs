//! Reading a stored lead score at a time (SPEC §11): what it is worth and which rules made it.
//! A stored score is `points` as of `computed_at` with the half-life then in force, so its
//! value at any time is a multiplication, not a scan of old events. Kept apart from `score`,
//! which earns the points, so the facts that conditions read need not depend on it.

use nurture_campaign::scoring::decayed;
use nurture_store::{ScorePoint, ScoreRow};

/// A stored score's value at `now_ms`: its signal points decayed, plus its attribute/tag
/// points.
pub fn score_at(row: &ScoreRow, now_ms: i64) -> f64 {
    decayed(row.points, now_ms - row.computed_at, row.half_life_ms) + row.profile
}

/// What made a score, as of `now_ms`: each rule with the points it is still worth (signals
/// decayed by the score's half-life), largest first.
pub fn score_reasons(row: &ScoreRow, points: &[ScorePoint], now_ms: i64) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for p in points {
        let worth = decayed(p.points, now_ms - p.at, row.half_life_ms);
        match out.iter_mut().find(|(r, _)| *r == p.reason) {
            Some((_, total)) => *total += worth,
            None => out.push((p.reason.clone(), worth)),
        }
    }
    out.extend(row.profile_reasons.iter().cloned());
    out.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(points: f64, profile: f64, at: i64) -> ScoreRow {
        ScoreRow {
            contact_id: 1,
            points,
            profile,
            profile_reasons: vec![("{tag: vip}".into(), profile)],
            half_life_ms: Some(10_000),
            computed_at: at,
        }
    }

    #[test]
    fn a_score_halves_its_signal_points_per_half_life() {
        assert_eq!(score_at(&row(40.0, 15.0, 0), 0), 55.0);
        assert_eq!(score_at(&row(40.0, 15.0, 0), 10_000), 35.0);
        assert_eq!(score_at(&row(40.0, 15.0, 5_000), 25_000), 25.0);
    }

    #[test]
    fn reasons_add_up_per_rule_and_decay() {
        let p = |at, points, reason: &str| ScorePoint {
            contact_id: 1,
            event_id: None,
            at,
            points,
            reason: reason.into(),
        };
        let reasons = score_reasons(
            &row(0.0, 15.0, 0),
            &[
                p(0, 20.0, "clicked any"),
                p(10_000, 20.0, "clicked any"),
                p(10_000, 4.0, "opened any"),
            ],
            10_000,
        );
        assert_eq!(
            reasons,
            vec![
                ("clicked any".to_string(), 30.0),
                ("{tag: vip}".to_string(), 15.0),
                ("opened any".to_string(), 4.0)
            ]
        );
    }
}
