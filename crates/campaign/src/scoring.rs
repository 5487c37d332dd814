//! Lead scoring rules as code (`scoring.yaml`, SPEC §11): points per event, open, click and
//! attribute/tag condition, and a half-life so old interest fades.
//!
//! This module is pure: it parses and validates the file (diagnostics at `file:line:col` like
//! campaigns) and answers "how many points does this signal earn" and "what is this score
//! worth after this long". Applying points and remembering them is the scheduler's job.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::condition::score_value;
use crate::decode::Decoder;
use crate::diagnostic::{Diagnostic, SourceFile};
pub use crate::host::{host_allowed, url_host};
use crate::yaml::{self, Kind, Node};
use crate::{Condition, Delay, Facts};

/// Keys of the scoring file.
pub const SCORING_KEYS: &[&str] = &["decay", "rules"];
/// Keys of a scoring rule.
pub const RULE_KEYS: &[&str] = &["event", "opened", "clicked", "campaign", "when", "points"];
/// Keys of the decay mapping.
pub const DECAY_KEYS: &[&str] = &["half_life"];

/// How scores fade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decay {
    /// After this long a signal is worth half its points.
    pub half_life: Delay,
}

/// What a rule awards points for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSource {
    /// An event with this name.
    Event(String),
    /// An open of an email of this step (any step when `None`).
    Opened(Option<String>),
    /// A click in an email of this step (any step when `None`).
    Clicked(Option<String>),
    /// The contact matching `when` (attributes, tags): points held while it matches.
    Profile,
}

/// One scoring rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// What earns the points.
    pub source: RuleSource,
    /// Opens and clicks of this campaign only.
    pub campaign: Option<String>,
    /// A filter on the contact and the event's properties (`property:`).
    pub when: Option<Condition>,
    /// Points awarded (may be negative).
    pub points: f64,
    /// How `explain` and `contacts show` name the rule: `event pricing.viewed`.
    pub label: String,
}

/// A validated scoring file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Scoring {
    /// How scores fade; `None`: they never do.
    pub decay: Option<Decay>,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
}

impl Scoring {
    /// Reads `path`; `Ok(None)` when it does not exist (scoring is optional).
    pub fn load(path: &Path) -> Result<Option<Scoring>, Vec<Diagnostic>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(vec![Diagnostic::file(
                    path,
                    format!("cannot read the file: {e}"),
                )]);
            }
        };
        if bytes.len() > yaml::MAX_FILE_BYTES {
            return Err(vec![Diagnostic::file(
                path,
                format!(
                    "the file is {} bytes; scoring files are limited to {} bytes",
                    bytes.len(),
                    yaml::MAX_FILE_BYTES
                ),
            )]);
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            vec![Diagnostic::file(path, "the file is not UTF-8 text").hint("save it as UTF-8")]
        })?;
        Self::parse(SourceFile::new(path, text)).map(Some)
    }

    /// Parses and validates a scoring file's text, reporting every problem.
    pub fn parse(source: SourceFile) -> Result<Scoring, Vec<Diagnostic>> {
        let root = match yaml::parse(&source) {
            Ok(Some(root)) => root,
            Ok(None) => return Ok(Scoring::default()),
            Err(d) => return Err(vec![d]),
        };
        let mut d = Decoder::new(&source);
        let scoring = decode(&mut d, &root);
        match scoring {
            Some(s) if d.diags.is_empty() => Ok(s),
            _ => Err(d.diags),
        }
    }

    /// The half-life in milliseconds (`None`: no decay).
    pub fn half_life_ms(&self) -> Option<i64> {
        self.decay
            .map(|d| d.half_life.as_secs().saturating_mul(1000))
            .filter(|ms| *ms > 0)
    }

    /// The points an event earns: each matching event, open or click rule with its label.
    /// `facts` answers `when` (its `property` is the event's).
    pub fn event_points(
        &self,
        name: &str,
        properties: &Map<String, Value>,
        facts: &dyn Facts,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(&Rule, f64)> {
        let step = properties.get("step").and_then(Value::as_str);
        let campaign = properties.get("campaign").and_then(Value::as_str);
        self.rules
            .iter()
            .filter(|r| match &r.source {
                RuleSource::Event(n) => n == name,
                RuleSource::Opened(s) => {
                    name == "email.opened" && s.as_deref().is_none_or(|s| Some(s) == step)
                }
                RuleSource::Clicked(s) => {
                    name == "email.clicked" && s.as_deref().is_none_or(|s| Some(s) == step)
                }
                RuleSource::Profile => false,
            })
            .filter(|r| r.campaign.as_deref().is_none_or(|c| Some(c) == campaign))
            .filter(|r| r.when.as_ref().is_none_or(|w| w.eval(facts, now)))
            .map(|r| (r, r.points))
            .collect()
    }

    /// The attribute/tag rules that hold for the contact now, with their points.
    pub fn profile_points(
        &self,
        facts: &dyn Facts,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(&Rule, f64)> {
        self.rules
            .iter()
            .filter(|r| r.source == RuleSource::Profile)
            .filter(|r| r.when.as_ref().is_some_and(|w| w.eval(facts, now)))
            .map(|r| (r, r.points))
            .collect()
    }
}

/// `points` earned `age_ms` ago, worth half as much after every `half_life_ms` (no decay when
/// `None`; a signal from the future counts in full).
pub fn decayed(points: f64, age_ms: i64, half_life_ms: Option<i64>) -> f64 {
    match half_life_ms {
        Some(h) if h > 0 && age_ms > 0 => points * 0.5f64.powf(age_ms as f64 / h as f64),
        _ => points,
    }
}

fn decode(d: &mut Decoder<'_>, root: &Node) -> Option<Scoring> {
    let f = d.fields(root, "the scoring file", SCORING_KEYS)?;
    let decay = f.get("decay").and_then(|n| {
        let f = d.fields(n, "`decay`", DECAY_KEYS)?;
        let Some(h) = f.get("half_life") else {
            d.error(
                n.span,
                "`decay` needs a `half_life`",
                Some("e.g. `decay: { half_life: 30d }`".into()),
            );
            return None;
        };
        let half_life = d.delay(h, "`half_life`")?;
        if half_life.is_zero() {
            d.error(
                h.span,
                "a half-life of zero would erase every score at once",
                Some("remove `decay` for scores that never fade".into()),
            );
            return None;
        }
        Some(Decay { half_life })
    });
    let mut rules = Vec::new();
    match f.get("rules") {
        Some(Node {
            kind: Kind::Seq(items),
            ..
        }) => {
            for item in items {
                if let Some(rule) = decode_rule(d, item) {
                    rules.push(rule);
                }
            }
        }
        Some(other) => d.error(
            other.span,
            format!("`rules` must be a list, found {}", other.describe()),
            Some("e.g. `rules: [ { event: pricing.viewed, points: 20 } ]`".into()),
        ),
        None => {}
    }
    Some(Scoring { decay, rules })
}

fn decode_rule(d: &mut Decoder<'_>, node: &Node) -> Option<Rule> {
    let f = d.fields(node, "a scoring rule", RULE_KEYS)?;
    let heads: Vec<&str> = ["event", "opened", "clicked"]
        .into_iter()
        .filter(|h| f.get(h).is_some())
        .collect();
    let when = f.get("when").map(|n| d.rule_condition(n));
    for span in d.take_step_ref_spans() {
        d.error(
            span,
            "`opened`/`clicked` conditions need an enrollment; a scoring rule uses `opened:`/`clicked:` as its own key",
            Some("e.g. `{ clicked: any, points: 5 }`".into()),
        );
    }
    let points = match f.get("points") {
        Some(n) => match n.to_json() {
            Value::Number(x) => x.as_f64(),
            _ => {
                d.error(
                    n.span,
                    format!("`points` must be a number, found {}", n.describe()),
                    None,
                );
                None
            }
        },
        None => {
            d.error(
                node.span,
                "this rule has no `points`",
                Some("e.g. `points: 10`".into()),
            );
            None
        }
    };
    let campaign = match f.get("campaign") {
        Some(n) => d.string(n, "`campaign`").map(Some)?,
        None => None,
    };
    let (source, label) = match heads.as_slice() {
        [] => {
            if when.is_none() {
                d.error(
                    node.span,
                    "this rule awards points for nothing",
                    Some(
                        "give it `event: NAME`, `opened: any|STEP`, `clicked: any|STEP`, or a `when` on attributes and tags".into(),
                    ),
                );
                return None;
            }
            (RuleSource::Profile, String::new())
        }
        ["event"] => {
            let name = d.string(f.get("event")?, "`event`")?;
            let label = format!("event {name}");
            (RuleSource::Event(name), label)
        }
        [kind] => {
            let step = d.string(f.get(kind)?, &format!("`{kind}`"))?;
            let label = format!("{kind} {step}");
            let step = (step != "any").then_some(step);
            let source = if *kind == "opened" {
                RuleSource::Opened(step)
            } else {
                RuleSource::Clicked(step)
            };
            (source, label)
        }
        [first, second, ..] => {
            d.error(
                node.span,
                format!("a rule scores one kind of signal, this one has `{first}` and `{second}`"),
                Some("write two rules".into()),
            );
            return None;
        }
    };
    if campaign.is_some() && matches!(source, RuleSource::Event(_) | RuleSource::Profile) {
        d.error(
            f.key_span("campaign").unwrap_or(node.span),
            "`campaign` narrows an `opened` or `clicked` rule",
            None,
        );
    }
    let when = when.flatten();
    let label = match (&source, &when) {
        (RuleSource::Profile, Some(w)) => format!("{w}"),
        (_, Some(w)) => format!("{label} when {w}"),
        _ => label,
    };
    let label = match &campaign {
        Some(c) => format!("{label} in {c}"),
        None => label,
    };
    Some(Rule {
        source,
        campaign,
        when,
        points: points?,
        label,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<Scoring, Vec<Diagnostic>> {
        Scoring::parse(SourceFile::new("scoring.yaml", text.to_string()))
    }

    #[test]
    fn the_spec_example_parses() {
        let s = parse(
            "decay: { half_life: 30d }
rules:
  - { event: pricing.viewed, points: 20 }
  - { event: webinar.attended, when: { property: live, equals: true }, points: 30 }
  - { clicked: any, points: 5 }
  - { opened: any, points: 1 }
  - { when: { attribute: role, in: [cto, vp] }, points: 15 }
",
        )
        .unwrap();
        assert_eq!(s.rules.len(), 5);
        assert_eq!(s.half_life_ms(), Some(30 * 86_400_000));
        assert_eq!(s.rules[2].source, RuleSource::Clicked(None));
        assert_eq!(s.rules[4].source, RuleSource::Profile);
        assert_eq!(s.rules[0].label, "event pricing.viewed");
    }

    #[test]
    fn mistakes_are_reported_with_their_line() {
        let e = parse("rules:\n  - { event: a, point: 3 }\n  - { clicked: any, points: many }\n")
            .unwrap_err();
        let text: Vec<String> = e
            .iter()
            .map(|d| format!("{}: {}", d.location(), d.message))
            .collect();
        assert!(
            text.iter()
                .any(|t| t.contains(":2:") && t.contains("unknown key `point`")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains(":3:") && t.contains("`points` must be a number")),
            "{text:?}"
        );
    }

    #[test]
    fn decay_halves_per_half_life() {
        let day = 86_400_000;
        assert_eq!(decayed(40.0, 30 * day, Some(30 * day)), 20.0);
        assert_eq!(decayed(40.0, 60 * day, Some(30 * day)), 10.0);
        assert_eq!(decayed(40.0, 60 * day, None), 40.0);
        assert_eq!(decayed(40.0, -day, Some(30 * day)), 40.0);
    }

    #[test]
    fn hosts_and_the_allow_list() {
        assert_eq!(
            url_host("https://Hooks.Example.com:8443/x?y").unwrap(),
            "hooks.example.com"
        );
        assert_eq!(url_host("http://[::1]:80/").unwrap(), "::1");
        assert!(url_host("ftp://x").is_err());
        assert!(url_host("https://user:pw@x.example/").is_err());
        let allowed = vec!["hooks.example.com".to_string(), "*.slack.com".to_string()];
        assert!(host_allowed("hooks.example.com", &allowed));
        assert!(host_allowed("hooks.slack.com", &allowed));
        assert!(!host_allowed("slack.com.evil.example", &allowed));
        assert!(!host_allowed("169.254.169.254", &allowed));
    }
}
