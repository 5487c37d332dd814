//! The shape of a campaign file as serde types, for `nurture schema`.
//!
//! These types exist to generate the JSON Schema editors use for completion and inline
//! checks (`# yaml-language-server: $schema=...`). The decoder in `decode.rs` accepts exactly
//! this shape and adds what a schema cannot say (durations, cron, time zones, step
//! references); a test keeps the two key lists in step.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// A nurture campaign: one file in `campaigns/`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "nurture campaign")]
pub struct RawCampaign {
    /// Stable id; defaults to the file name without `.yaml`. Never change it once live.
    pub id: Option<String>,
    /// Human-readable name, shown in `stats` and available to templates as `campaign.name`.
    pub name: Option<String>,
    /// `active` (default) sends; `paused` holds every enrollment; `draft` does nothing.
    pub status: Option<RawStatus>,
    /// Sender, `Name <address>` or `address`.
    pub from: Option<String>,
    /// Reply-To address.
    pub reply_to: Option<String>,
    /// Layout wrapping every email: `templates/layouts/NAME.html.hbs`.
    pub layout: Option<String>,
    /// Open and click tracking; `false` turns both off.
    pub tracking: Option<RawTracking>,
    /// What enrolls contacts: exactly one of `event`, `schedule` or `score`.
    pub trigger: RawTrigger,
    /// The contact must match this when entering.
    pub audience: Option<RawCondition>,
    /// Checked before every step; when true the contact leaves the campaign.
    pub exit_when: Option<RawCondition>,
    /// `never` (default), `after_exit`, or `{after: 30d}`.
    pub reentry: Option<RawReentry>,
    /// When email steps may be delivered.
    pub send_window: Option<RawWindow>,
    /// The sequence of steps.
    pub steps: Vec<RawStep>,
    /// `exempt`: no email of this campaign counts toward or waits for the frequency caps.
    pub frequency: Option<RawFrequency>,
}

/// The only value of `frequency`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawFrequency {
    /// Outside the frequency caps (receipts, confirmations).
    Exempt,
}

/// One arm of a `split`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawArm {
    /// Unique within the split.
    pub id: String,
    /// Relative share of contacts (default 1).
    pub weight: Option<u32>,
    /// The step its contacts continue at.
    pub goto: String,
}

/// One variant of an email step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawVariant {
    /// Unique within the step.
    pub id: String,
    /// Relative share of contacts (default 1).
    pub weight: Option<u32>,
    /// This variant's subject (default: the step's).
    pub subject: Option<String>,
    /// This variant's template (default: the step's).
    pub send: Option<String>,
    /// This variant's preview text (default: the step's).
    pub preheader: Option<String>,
}

/// Campaign status.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawStatus {
    /// Enrolls and sends.
    Active,
    /// Holds every enrollment.
    Paused,
    /// Not running.
    Draft,
}

/// `true`/`false`, or each kind separately.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawTracking {
    /// Both on or both off.
    Both(bool),
    /// Each kind on its own.
    Each {
        /// Open pixel (needs consent in the EU).
        opens: Option<bool>,
        /// Click tracking through rewritten links.
        clicks: Option<bool>,
    },
}

/// What enrolls contacts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    /// Event name, e.g. `lead.captured`.
    pub event: Option<String>,
    /// Filter on the event's properties.
    pub when: Option<RawCondition>,
    /// Cron schedule, 5 fields (or 6 with seconds first), e.g. `0 9 * * mon`.
    pub schedule: Option<String>,
    /// IANA time zone the schedule is read in (default UTC).
    pub timezone: Option<String>,
    /// Enroll when the lead score starts to satisfy this, e.g. `{gte: 50}` (once per crossing).
    pub score: Option<RawScoreOp>,
}

/// A comparison of the lead score with a number: exactly one operator.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScoreOp {
    /// Greater than.
    pub gt: Option<f64>,
    /// Greater than or equal.
    pub gte: Option<f64>,
    /// Less than.
    pub lt: Option<f64>,
    /// Less than or equal.
    pub lte: Option<f64>,
    /// Equal to.
    pub equals: Option<f64>,
    /// Not equal to.
    pub not_equals: Option<f64>,
}

/// A webhook step: POST signed JSON to a host allowed by `webhook_hosts`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// An `https://` (or `http://`) URL.
    pub url: String,
    /// The JSON body; every text inside is a Handlebars template (default: contact,
    /// campaign, step and score).
    pub body: Option<serde_json::Value>,
}

/// Re-entry rule.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawReentry {
    /// `never` or `after_exit`.
    Keyword(RawReentryKeyword),
    /// Again this long after the last enrollment ended.
    After {
        /// A duration such as `30d`.
        #[schemars(regex(pattern = r"^(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"))]
        after: String,
    },
}

/// Re-entry keywords.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawReentryKeyword {
    /// Once per contact.
    Never,
    /// Again after the previous enrollment ended.
    AfterExit,
}

/// A send window.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// Allowed days (default: every day).
    pub days: Option<Vec<RawDay>>,
    /// Allowed hours, `HH:MM-HH:MM` (default: all day).
    #[schemars(regex(pattern = r"^\d{1,2}:\d{2}-\d{1,2}:\d{2}$"))]
    pub hours: Option<String>,
    /// `contact` (the contact's `timezone` attribute) or an IANA name.
    pub timezone: Option<String>,
}

/// A day of the week.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum RawDay {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// One step: optional wait and condition, and at most one action.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Unique, stable id.
    pub id: String,
    /// Wait before this step, from when the previous one ran: `45m`, `6h`, `2d`, `1w`, `1d12h`.
    #[schemars(regex(pattern = r"^(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"))]
    pub after: Option<String>,
    /// The step is skipped when this is false.
    pub when: Option<RawCondition>,
    /// Overrides the campaign's send window.
    pub send_window: Option<RawWindow>,
    /// Send the template `templates/NAME.html.hbs`.
    pub send: Option<String>,
    /// Subject of the email (Handlebars).
    pub subject: Option<String>,
    /// Preview text shown by mail clients (Handlebars).
    pub preheader: Option<String>,
    /// Overrides the campaign's From.
    pub from: Option<String>,
    /// Overrides the campaign's Reply-To.
    pub reply_to: Option<String>,
    /// Overrides the campaign's layout.
    pub layout: Option<String>,
    /// Add tags.
    pub tag: Option<RawNames>,
    /// Remove tags.
    pub untag: Option<RawNames>,
    /// Set contact attributes.
    pub set: Option<BTreeMap<String, serde_json::Value>>,
    /// Continue at another step.
    pub goto: Option<String>,
    /// Leave the campaign.
    pub exit: Option<bool>,
    /// A/B split: each contact continues at one arm's step, assigned by a stable hash.
    pub split: Option<Vec<RawArm>>,
    /// A/B variants of this email step.
    pub variants: Option<Vec<RawVariant>>,
    /// `exempt`: this email neither counts toward nor waits for the frequency caps.
    pub frequency: Option<RawFrequency>,
    /// What the A/B test compares: `opened`, `clicked` (default) or `goal`.
    pub metric: Option<String>,
    /// Confidence needed to call a winner (default 0.95).
    pub confidence: Option<f64>,
    /// Contacts sent per variant before a winner may be called (default 100).
    pub min_sample: Option<u64>,
    /// Once a winner is called, later contacts get only the winner.
    pub auto_winner: Option<bool>,
    /// POST a signed JSON document (the sales hand-off).
    pub webhook: Option<RawWebhook>,
}

/// One name or a list of names.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawNames {
    /// One name.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// A condition: exactly one test (`all`, `any`, `not`, `tag`, `attribute`, `property`,
/// `event`, `opened`, `clicked`, `score`); `attribute` and `property` take one comparison.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    /// Every condition holds.
    pub all: Option<Vec<RawCondition>>,
    /// At least one holds.
    pub any: Option<Vec<RawCondition>>,
    /// The condition does not hold.
    pub not: Option<Box<RawCondition>>,
    /// The contact has this tag.
    pub tag: Option<String>,
    /// Compare a contact attribute.
    pub attribute: Option<String>,
    /// Compare a property of the trigger event.
    pub property: Option<String>,
    /// The contact has had this event.
    pub event: Option<String>,
    /// With `event`: only within this duration.
    pub within: Option<String>,
    /// The email of this (earlier) step was opened.
    pub opened: Option<String>,
    /// A link in the email of this (earlier) step was clicked.
    pub clicked: Option<String>,
    /// The lead score compared with a number, e.g. `{gte: 50}`.
    pub score: Option<RawScoreOp>,
    /// Equal to.
    pub equals: Option<serde_json::Value>,
    /// Not equal to (or missing).
    pub not_equals: Option<serde_json::Value>,
    /// One of.
    #[serde(rename = "in")]
    pub in_: Option<Vec<serde_json::Value>>,
    /// List or text contains.
    pub contains: Option<serde_json::Value>,
    /// Present and not empty.
    pub exists: Option<bool>,
    /// Greater than.
    pub gt: Option<serde_json::Value>,
    /// Greater than or equal.
    pub gte: Option<serde_json::Value>,
    /// Less than.
    pub lt: Option<serde_json::Value>,
    /// Less than or equal.
    pub lte: Option<serde_json::Value>,
}

/// The JSON Schema of a campaign file, pretty-printed.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(RawCampaign);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{CAMPAIGN_KEYS, CONDITION_HEADS, STEP_KEYS, TRIGGER_KEYS, WINDOW_KEYS};

    fn keys(v: &serde_json::Value) -> Vec<String> {
        let mut k: Vec<String> = v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    }

    fn sorted(list: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(ToString::to_string).collect();
        v.sort();
        v
    }

    #[test]
    fn schema_and_decoder_accept_the_same_keys() {
        let schema: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
        let defs = &schema["$defs"];
        assert_eq!(keys(&schema), sorted(CAMPAIGN_KEYS));
        assert_eq!(keys(&defs["RawStep"]), sorted(STEP_KEYS));
        assert_eq!(keys(&defs["RawTrigger"]), sorted(TRIGGER_KEYS));
        assert_eq!(keys(&defs["RawWindow"]), sorted(WINDOW_KEYS));
        let mut cond: Vec<&str> = CONDITION_HEADS.to_vec();
        cond.push("within");
        cond.extend(crate::condition::OPERATORS);
        assert_eq!(keys(&defs["RawCondition"]), sorted(&cond));
    }
}
