//! The validated campaign: what the scheduler and the sender work from.
//!
//! Every value here has been checked by the loader; the newtypes carry that guarantee, so no
//! later code re-checks an id, a template name, an address or a delay. The model is
//! serializable because the store keeps a snapshot of every version that ran.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use crate::name::{CampaignId, StepId, TemplateName};
use crate::{Condition, Cron, Delay, Mailbox, SendWindow};

/// Whether a campaign runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Enrolls and sends.
    #[default]
    Active,
    /// Holds every enrollment; enrolls and sends nothing.
    Paused,
    /// Not running yet; nothing happens.
    Draft,
}

/// Open and click tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    /// Add an open pixel.
    pub opens: bool,
    /// Rewrite links through the click endpoint.
    pub clicks: bool,
}

impl Default for Tracking {
    fn default() -> Self {
        Self {
            opens: true,
            clicks: true,
        }
    }
}

/// What enrolls contacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An event with this name, optionally filtered on its properties.
    Event {
        /// Event name, e.g. `lead.captured`.
        name: String,
        /// Filter on the event's properties.
        when: Option<Condition>,
    },
    /// A cron schedule: at each firing, every matching contact is enrolled.
    Schedule {
        /// When it fires.
        cron: Cron,
        /// Whose clock the cron is read on.
        timezone: Tz,
    },
    /// The contact's lead score starts to satisfy this comparison (once per upward
    /// crossing: it fires again only after the score fell back and rose again).
    Score(crate::Op),
}

/// Whether a contact may enter the campaign again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reentry {
    /// Once per contact, ever.
    #[default]
    Never,
    /// Again once the previous enrollment has ended.
    AfterExit,
    /// Again this long after the previous enrollment ended.
    After(Delay),
}

/// An email step's content and envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendAction {
    /// The template (`templates/NAME.html.hbs`).
    pub template: TemplateName,
    /// Subject (a Handlebars string).
    pub subject: String,
    /// Hidden preview text (a Handlebars string).
    pub preheader: Option<String>,
    /// Overrides the campaign's From.
    pub from: Option<Mailbox>,
    /// Overrides the campaign's Reply-To.
    pub reply_to: Option<Mailbox>,
    /// Overrides the campaign's layout.
    pub layout: Option<TemplateName>,
    /// A/B variants of this email (SPEC §13); empty when the step has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
}

/// What a step does when it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Send an email.
    Send(SendAction),
    /// Add tags.
    Tag(Vec<String>),
    /// Remove tags.
    Untag(Vec<String>),
    /// Set attributes.
    Set(BTreeMap<String, serde_json::Value>),
    /// Continue at another step.
    Goto(StepId),
    /// Leave the campaign.
    Exit,
    /// An A/B split: each contact continues at one arm's step (SPEC §13).
    Split(Vec<Arm>),
    /// POST a signed JSON document to a CRM or chat tool (SPEC §11).
    Webhook(WebhookAction),
    /// Nothing: a pure wait.
    Wait,
}

/// A webhook step: where to POST and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookAction {
    /// An `http` or `https` URL; its host must be in `webhook_hosts`.
    pub url: String,
    /// The host of `url`, lower case (checked against `webhook_hosts`).
    pub host: String,
    /// The JSON body; every text inside is a Handlebars template. `None`: contact, campaign,
    /// step and score.
    pub body: Option<serde_json::Value>,
}

impl Action {
    /// The YAML key of the action (`wait` for none).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Send(_) => "send",
            Action::Tag(_) => "tag",
            Action::Untag(_) => "untag",
            Action::Set(_) => "set",
            Action::Goto(_) => "goto",
            Action::Exit => "exit",
            Action::Split(_) => "split",
            Action::Webhook(_) => "webhook",
            Action::Wait => "wait",
        }
    }
}

/// One step of a sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Unique id.
    pub id: StepId,
    /// Wait before the step, measured from when the previous step ran.
    pub after: Option<Delay>,
    /// Skip the step when this is false.
    pub when: Option<Condition>,
    /// Overrides the campaign's send window.
    pub send_window: Option<SendWindow>,
    /// What the step does.
    pub action: Action,
    /// `frequency: exempt`: this email neither counts toward nor waits for the frequency caps.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub frequency_exempt: bool,
    /// How the winner of this step's split or variants is called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<AbTest>,
}

/// A validated campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    /// Stable id.
    pub id: CampaignId,
    /// Human name.
    pub name: String,
    /// Running, paused or draft.
    pub status: Status,
    /// Default From.
    pub from: Option<Mailbox>,
    /// Default Reply-To.
    pub reply_to: Option<Mailbox>,
    /// Default layout.
    pub layout: Option<TemplateName>,
    /// Open and click tracking.
    pub tracking: Tracking,
    /// What enrolls contacts.
    pub trigger: Trigger,
    /// Who may enter.
    pub audience: Option<Condition>,
    /// When a contact leaves early (checked before every step).
    pub exit_when: Option<Condition>,
    /// Whether a contact may enter again.
    pub reentry: Reentry,
    /// When email steps may be delivered.
    pub send_window: Option<SendWindow>,
    /// The sequence, in order.
    pub steps: Vec<Step>,
    /// `frequency: exempt`: none of this campaign's emails count toward or wait for the caps.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub frequency_exempt: bool,
}

impl Campaign {
    /// The index of a step by id.
    pub fn step_index(&self, id: &StepId) -> Option<usize> {
        self.steps.iter().position(|s| &s.id == id)
    }

    /// The send window that applies to a step.
    pub fn window_for<'a>(&'a self, step: &'a Step) -> Option<&'a SendWindow> {
        step.send_window.as_ref().or(self.send_window.as_ref())
    }

    /// The From of a send step (the step's own, else the campaign's).
    pub fn from_for<'a>(&'a self, send: &'a SendAction) -> Option<&'a Mailbox> {
        send.from.as_ref().or(self.from.as_ref())
    }

    /// The Reply-To of a send step.
    pub fn reply_to_for<'a>(&'a self, send: &'a SendAction) -> Option<&'a Mailbox> {
        send.reply_to.as_ref().or(self.reply_to.as_ref())
    }

    /// Whether a step's email is outside the frequency caps (`frequency: exempt` on the
    /// step or on the campaign).
    pub fn frequency_exempt(&self, step: &Step) -> bool {
        self.frequency_exempt || step.frequency_exempt
    }

    /// The layout of a send step.
    pub fn layout_for<'a>(&'a self, send: &'a SendAction) -> Option<&'a TemplateName> {
        send.layout.as_ref().or(self.layout.as_ref())
    }
}

// -- A/B tests (SPEC §13): a split's arms, an email's variants, how a winner is called --

/// One arm of a split: contacts assigned to it continue at `goto`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arm {
    /// The arm's id, unique within the split (recorded for every contact assigned to it).
    pub id: String,
    /// Relative share of contacts (positive).
    pub weight: u32,
    /// Where its contacts continue.
    pub goto: StepId,
}

/// One variant of an email step: its own subject and/or template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// The variant's id, unique within the step (recorded on every message).
    pub id: String,
    /// Relative share of contacts (positive).
    pub weight: u32,
    /// The step's email as this variant sends it (the step's own values where the variant
    /// says nothing; never has variants itself).
    pub send: SendAction,
}

/// The measure an A/B test compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Contacts who opened, over contacts sent.
    Opened,
    /// Contacts who clicked, over contacts sent.
    #[default]
    Clicked,
    /// Contacts who reached the campaign's goal, over contacts sent.
    Goal,
}

impl Metric {
    /// The name used in YAML and in `stats --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Opened => "opened",
            Metric::Clicked => "clicked",
            Metric::Goal => "goal",
        }
    }
}

/// How a test's winner is called.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AbTest {
    /// What is compared.
    pub metric: Metric,
    /// Confidence needed to call a winner (0.5 to 0.9999; default 0.95).
    pub confidence: f64,
    /// Contacts sent per variant before any winner is called (default 100).
    pub min_sample: u64,
    /// Once a winner is called, later contacts get only the winner.
    pub auto_winner: bool,
}

impl Default for AbTest {
    fn default() -> Self {
        Self {
            metric: Metric::Clicked,
            confidence: 0.95,
            min_sample: 100,
            auto_winner: false,
        }
    }
}

impl SendAction {
    /// The email as variant `id` sends it; the step's own for no variant (or an unknown
    /// one, as after an edit removed it).
    pub fn variant(&self, id: Option<&str>) -> &SendAction {
        id.and_then(|id| self.variants.iter().find(|v| v.id == id))
            .map_or(self, |v| &v.send)
    }
}

impl Step {
    /// The ids and weights contacts are assigned among: a split's arms or an email's
    /// variants; empty for any other step.
    pub fn choices(&self) -> Vec<(&str, u32)> {
        match &self.action {
            Action::Split(arms) => arms.iter().map(|a| (a.id.as_str(), a.weight)).collect(),
            Action::Send(send) => send
                .variants
                .iter()
                .map(|v| (v.id.as_str(), v.weight))
                .collect(),
            _ => Vec::new(),
        }
    }
}
