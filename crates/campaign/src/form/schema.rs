//! The serde shape of a form file, only for `nurture schema --forms`: decoding goes through
//! the decoder, and the test below keeps the two accepting the same keys.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::model::FieldKind;

/// The shape of a form file, for `nurture schema --forms`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "nurture form")]
pub struct RawForm {
    /// Stable id, in the URL `/f/ID`; defaults to the file name.
    pub id: Option<String>,
    /// The page's title and heading.
    pub title: Option<String>,
    /// A paragraph under the heading.
    pub description: Option<String>,
    /// The inputs, in page order; one must be `email`.
    pub fields: Vec<RawField>,
    /// The submit button's text (default "Sign up").
    pub button: Option<String>,
    /// The event recorded when the lead is confirmed (or at once without double opt-in).
    pub event: String,
    /// The event's properties.
    pub properties: Option<BTreeMap<String, serde_json::Value>>,
    /// Tags set on the contact.
    pub tags: Option<Vec<String>>,
    /// `{send, subject, expires}` or `false`.
    pub double_opt_in: RawOptIn,
    /// Sender of the confirmation email.
    pub from: Option<String>,
    /// The consent text shown next to the button.
    pub consent: String,
    /// Origins allowed to post from other sites.
    pub allowed_origins: Option<Vec<String>>,
    /// `{message}` or `{redirect}` after submitting.
    pub after_submit: Option<RawAfter>,
    /// `{message}` or `{redirect}` after confirming.
    pub after_confirm: Option<RawAfter>,
    /// Keep the IP address and user agent in the consent record (default false).
    pub record_ip: Option<bool>,
}

/// One input.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawField {
    /// The attribute it sets.
    pub name: String,
    /// Its kind (default text; email for `email`).
    #[serde(rename = "type")]
    pub kind: Option<FieldKind>,
    /// Must be filled.
    pub required: Option<bool>,
    /// The label shown.
    pub label: Option<String>,
    /// The longest value accepted.
    pub max_length: Option<u32>,
}

/// Double opt-in.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawOptIn {
    /// `false`.
    Off(bool),
    /// The confirmation email.
    On {
        /// `templates/NAME.html.hbs`.
        send: String,
        /// The subject.
        subject: String,
        /// How long the link works (default 7d).
        expires: Option<String>,
    },
}

/// What to show after.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAfter {
    /// A short message page.
    pub message: Option<String>,
    /// A redirect.
    pub redirect: Option<String>,
}

/// The JSON Schema of a form file, pretty-printed.
pub fn form_json_schema() -> String {
    let schema = schemars::schema_for!(RawForm);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::FORM_KEYS;

    #[test]
    fn schema_and_decoder_accept_the_same_keys() {
        let schema: serde_json::Value = serde_json::from_str(&form_json_schema()).unwrap();
        let mut keys: Vec<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort();
        let mut want: Vec<String> = FORM_KEYS.iter().map(ToString::to_string).collect();
        want.sort();
        assert_eq!(keys, want);
    }
}
