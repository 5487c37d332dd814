//! Calling the winner of an A/B test honestly (SPEC §13): a two-proportion z-test, not
//! "whichever rate is higher after a day".
//!
//! For each pair the difference of the two rates comes with its confidence interval (Wald,
//! unpooled standard error) and the two-sided p-value of the z-test (pooled standard error).
//! A winner is called only when every variant has at least `min_sample` contacts sent and
//! the best rate beats every other one at the configured confidence.

use nurture_campaign::{AbTest, Metric};
use nurture_store::VariantCounts;

/// One variant compared with another on a proportion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// `p_a - p_b`.
    pub difference: f64,
    /// Lower end of the confidence interval of the difference.
    pub low: f64,
    /// Upper end.
    pub high: f64,
    /// The z statistic (pooled).
    pub z: f64,
    /// Two-sided p-value of the z-test.
    pub p_value: f64,
}

/// A called winner.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Winner {
    /// The variant's id.
    pub id: String,
    /// The metric it won on.
    pub metric: &'static str,
    /// How sure: one minus the largest p-value against the others.
    pub confidence: f64,
}

/// Compares `x_a` successes of `n_a` with `x_b` of `n_b` at `confidence` (e.g. 0.95). `None`
/// when a side has no trials, or when both rates are 0 or both 1 (nothing to test).
pub fn compare(x_a: u64, n_a: u64, x_b: u64, n_b: u64, confidence: f64) -> Option<Comparison> {
    if n_a == 0 || n_b == 0 || x_a > n_a || x_b > n_b {
        return None;
    }
    let (na, nb) = (n_a as f64, n_b as f64);
    let (pa, pb) = (x_a as f64 / na, x_b as f64 / nb);
    let pooled = (x_a + x_b) as f64 / (na + nb);
    let se_pooled = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    if se_pooled == 0.0 {
        return None;
    }
    let difference = pa - pb;
    let z = difference / se_pooled;
    let p_value = (2.0 * (1.0 - normal_cdf(z.abs()))).clamp(0.0, 1.0);
    let se = (pa * (1.0 - pa) / na + pb * (1.0 - pb) / nb).sqrt();
    let half = normal_quantile(1.0 - (1.0 - confidence) / 2.0) * se;
    Some(Comparison {
        difference,
        low: difference - half,
        high: difference + half,
        z,
        p_value,
    })
}

/// The count of `metric` in `c`.
pub fn successes(c: &VariantCounts, metric: Metric) -> i64 {
    match metric {
        Metric::Opened => c.opened,
        Metric::Clicked => c.clicked,
        Metric::Goal => c.goal,
    }
}

/// The best variant and its comparison with the runner-up (by rate of `test.metric`), when
/// there are at least two variants with contacts sent.
pub fn best_vs_runner_up<'a>(
    counts: &'a [VariantCounts],
    test: &AbTest,
) -> Option<(&'a VariantCounts, &'a VariantCounts, Option<Comparison>)> {
    let rate = |c: &VariantCounts| {
        if c.sent > 0 {
            successes(c, test.metric) as f64 / c.sent as f64
        } else {
            -1.0
        }
    };
    let mut sorted: Vec<&VariantCounts> = counts.iter().collect();
    sorted.sort_by(|a, b| rate(b).total_cmp(&rate(a)).then(a.id.cmp(&b.id)));
    let (best, second) = (sorted.first()?, sorted.get(1)?);
    Some((best, second, pair(best, second, test)))
}

fn pair(a: &VariantCounts, b: &VariantCounts, test: &AbTest) -> Option<Comparison> {
    let count = |v: i64| u64::try_from(v).unwrap_or(0);
    compare(
        count(successes(a, test.metric)),
        count(a.sent),
        count(successes(b, test.metric)),
        count(b.sent),
        test.confidence,
    )
}

/// The winner, if it can be called: every one of the `variants` (ids, in the campaign's
/// order) has at least `test.min_sample` contacts sent, and the best rate is higher than
/// every other at `test.confidence` (two-sided p-value at most `1 - confidence`).
pub fn call(variants: &[&str], counts: &[VariantCounts], test: &AbTest) -> Option<Winner> {
    if variants.len() < 2 {
        return None;
    }
    let all: Vec<VariantCounts> = variants
        .iter()
        .map(|id| {
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
    if all
        .iter()
        .any(|c| u64::try_from(c.sent).unwrap_or(0) < test.min_sample)
    {
        return None;
    }
    let (best, ..) = best_vs_runner_up(&all, test)?;
    let mut worst_p: f64 = 0.0;
    for other in all.iter().filter(|c| c.id != best.id) {
        let cmp = pair(best, other, test)?;
        if cmp.difference <= 0.0 || cmp.p_value > 1.0 - test.confidence {
            return None;
        }
        worst_p = worst_p.max(cmp.p_value);
    }
    Some(Winner {
        id: best.id.clone(),
        metric: test.metric.as_str(),
        confidence: 1.0 - worst_p,
    })
}

/// The standard normal distribution function.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The complementary error function (W. J. Cody's rational Chebyshev approximation as given
/// in Numerical Recipes' `erfcc`; fractional error below 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The quantile of the standard normal distribution (Acklam's approximation, refined by one
/// Halley step), for `p` in (0, 1).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let low = 0.024_25;
    let x = if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // One Halley step against the distribution function.
    let e = normal_cdf(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-6
    }

    /// Worked by hand: p = x/n, pooled p̂ = (xa+xb)/(na+nb), z = (pa-pb)/√(p̂(1-p̂)(1/na+1/nb)),
    /// p-value = 2(1-Φ(|z|)), interval = (pa-pb) ± z₍₁₋α/₂₎·√(pa(1-pa)/na + pb(1-pb)/nb).
    #[test]
    fn two_proportion_test_matches_hand_computed_values() {
        // (xa, na, xb, nb, confidence, difference, low, high, z, p-value)
        let cases = [
            (
                200, 1000, 150, 1000, 0.95, 0.05, 0.016767, 0.083233, 2.942449, 0.003256,
            ),
            (
                30, 100, 20, 100, 0.95, 0.1, -0.01922, 0.21922, 1.632993, 0.10247,
            ),
            (
                120, 1000, 100, 1000, 0.90, 0.02, -0.003004, 0.043004, 1.429301, 0.152918,
            ),
            (
                50, 500, 80, 500, 0.95, -0.06, -0.101522, -0.018478, -2.820915, 0.004789,
            ),
            (
                10, 1000, 0, 1000, 0.99, 0.01, 0.001895, 0.018105, 3.170213, 0.001523,
            ),
            (
                520, 5000, 450, 5000, 0.95, 0.014, 0.002402, 0.025598, 2.365202, 0.01802,
            ),
        ];
        for (xa, na, xb, nb, conf, diff, low, high, z, p) in cases {
            let c = compare(xa, na, xb, nb, conf).unwrap();
            let got = (c.difference, c.low, c.high, c.z, c.p_value);
            assert!(
                close(c.difference, diff)
                    && close(c.low, low)
                    && close(c.high, high)
                    && (c.z - z).abs() < 1e-5
                    && (c.p_value - p).abs() < 1e-5,
                "{xa}/{na} vs {xb}/{nb}: got {got:?}, want {:?}",
                (diff, low, high, z, p)
            );
        }
        // Nothing to test.
        assert_eq!(compare(0, 100, 0, 100, 0.95), None);
        assert_eq!(compare(5, 0, 1, 10, 0.95), None);
        assert_eq!(compare(100, 100, 100, 100, 0.95), None);
    }

    #[test]
    fn normal_distribution() {
        assert!(close(normal_cdf(0.0), 0.5));
        assert!(close(normal_cdf(1.959964), 0.975));
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-5);
        assert!((normal_quantile(0.95) - 1.644854).abs() < 1e-5);
        assert!((normal_quantile(0.995) - 2.575829).abs() < 1e-5);
        assert!((normal_quantile(0.01) + 2.326348).abs() < 1e-5);
    }

    fn counts(id: &str, sent: i64, clicked: i64) -> VariantCounts {
        VariantCounts {
            id: id.into(),
            sent,
            clicked,
            ..Default::default()
        }
    }

    #[test]
    fn winner_only_at_confidence_and_minimum_sample() {
        let test = AbTest::default(); // clicked, 95%, 100 per variant
        // Significant (p = 0.0033) with enough contacts: b wins.
        let w = call(
            &["a", "b"],
            &[counts("a", 1000, 150), counts("b", 1000, 200)],
            &test,
        )
        .unwrap();
        assert_eq!((w.id.as_str(), w.metric), ("b", "clicked"));
        assert!((w.confidence - (1.0 - 0.003256)).abs() < 1e-5);
        // A higher rate on a small sample: no winner (p = 0.10).
        assert_eq!(
            call(
                &["a", "b"],
                &[counts("a", 100, 30), counts("b", 100, 20)],
                &test
            ),
            None
        );
        // A huge gap below the minimum sample: no winner.
        assert_eq!(
            call(
                &["a", "b"],
                &[counts("a", 40, 30), counts("b", 40, 2)],
                &test
            ),
            None
        );
        // A variant nobody has been sent yet: no winner.
        assert_eq!(
            call(
                &["a", "b", "c"],
                &[counts("a", 1000, 200), counts("b", 1000, 150)],
                &test
            ),
            None
        );
        // Significant at 95% (p = 0.018) but not at 99%.
        let strict = AbTest {
            confidence: 0.99,
            ..test
        };
        let big = [counts("a", 5000, 520), counts("b", 5000, 450)];
        assert_eq!(call(&["a", "b"], &big, &test).unwrap().id, "a");
        assert_eq!(call(&["a", "b"], &big, &strict), None);
        // Three variants: the best must beat each of the others.
        let three = [
            counts("a", 1000, 200),
            counts("b", 1000, 150),
            counts("c", 1000, 190),
        ];
        assert_eq!(call(&["a", "b", "c"], &three, &test), None);
        // Another metric.
        let goal = AbTest {
            metric: Metric::Goal,
            min_sample: 10,
            ..test
        };
        let g = [
            VariantCounts {
                id: "a".into(),
                sent: 500,
                goal: 80,
                ..Default::default()
            },
            VariantCounts {
                id: "b".into(),
                sent: 500,
                goal: 50,
                ..Default::default()
            },
        ];
        assert_eq!(call(&["a", "b"], &g, &goal).unwrap().metric, "goal");
    }
}
