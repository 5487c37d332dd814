//! Forms on the command side: loading `forms_dir`, handing the forms and campaigns to
//! `nurture-sender`'s confirmation delivery (the queue and its policy live there),
//! `nurture forms snippet FORM_ID`, `validate`'s checks of forms, and printing consents and
//! per-form counters.

use std::process::ExitCode;

use nurture_campaign::Form;
use nurture_scheduler::Engine;
use nurture_sender::sender_of;

use crate::config::Config;
use crate::delivery::Mailer;
use crate::exit::invalid;

/// The forms in `forms_dir`; any invalid form is an error listing every diagnostic.
pub fn load(config: &Config) -> anyhow::Result<Vec<Form>> {
    let loaded = nurture_campaign::load_forms(std::slice::from_ref(&config.forms_dir));
    if let Some(first) = loaded.diagnostics.first() {
        let all: Vec<String> = loaded
            .diagnostics
            .iter()
            .map(|d| format!("{}: {}", d.location(), d.message))
            .collect();
        return Err(invalid(format!(
            "{} form problem(s), first: {}: {}\n{}",
            loaded.diagnostics.len(),
            first.location(),
            first.message,
            all.join("\n")
        )));
    }
    Ok(loaded.forms.into_iter().map(|f| f.form).collect())
}

/// Sends the confirmation emails due at `now_ms` (see `nurture_sender::deliver_confirmations`);
/// returns how many were sent. The forms and campaigns are read only when some are due.
pub async fn deliver_confirmations(
    mailer: &Mailer,
    engine: &Engine,
    config: &Config,
    now_ms: i64,
) -> anyhow::Result<u64> {
    let sources = || {
        let forms = load(config).unwrap_or_else(|e| {
            tracing::error!("forms not readable: {e:#}");
            Vec::new()
        });
        let campaigns: Vec<nurture_campaign::Campaign> =
            nurture_campaign::load_paths(std::slice::from_ref(&config.campaigns_dir))
                .campaigns
                .into_iter()
                .map(|c| c.campaign)
                .collect();
        (forms, campaigns)
    };
    Ok(nurture_sender::deliver_confirmations(mailer, engine, now_ms, sources).await?)
}

/// `nurture forms snippet FORM_ID`: HTML to paste into another site's page. The form posts
/// to the daemon; its script fetches a signed stamp and solves the proof of work (the site
/// must be in the form's `allowed_origins`). Without JavaScript, the iframe variant works.
pub fn snippet(config: &Config, id: &str) -> anyhow::Result<ExitCode> {
    let forms = load(config)?;
    let Some(form) = forms.iter().find(|f| f.id == id) else {
        let ids: Vec<&str> = forms.iter().map(|f| f.id.as_str()).collect();
        return Err(invalid(format!(
            "there is no form `{id}` in {} (forms: {})",
            config.forms_dir.display(),
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        )));
    };
    let base = &config.base_url;
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut out = String::new();
    out.push_str(&format!(
        "<!-- nurture form `{id}`. Without JavaScript, embed the hosted page instead:\n     <iframe src=\"{base}/f/{id}\" title=\"{}\" style=\"width:100%;min-height:36rem;border:0\"></iframe> -->\n",
        esc(&form.title)
    ));
    out.push_str(&format!(
        "<form class=\"nurture-form\" method=\"post\" action=\"{base}/f/{id}\" data-nurture=\"{base}/f/{id}\">\n"
    ));
    for f in &form.fields {
        let req = if f.required { " required" } else { "" };
        match f.kind {
            nurture_campaign::FieldKind::Textarea => out.push_str(&format!(
                "  <label>{} <textarea name=\"{}\" maxlength=\"{}\"{req}></textarea></label>\n",
                esc(&f.label),
                f.name,
                f.max_length
            )),
            kind => out.push_str(&format!(
                "  <label>{} <input type=\"{}\" name=\"{}\" maxlength=\"{}\"{req}></label>\n",
                esc(&f.label),
                kind.input_type(),
                f.name,
                f.max_length
            )),
        }
    }
    out.push_str("  <div style=\"position:absolute;left:-10000px\" aria-hidden=\"true\"><input type=\"text\" name=\"website\" tabindex=\"-1\" autocomplete=\"off\"></div>\n");
    out.push_str("  <input type=\"hidden\" name=\"nurture_ts\"><input type=\"hidden\" name=\"nurture_pow\">\n");
    out.push_str(&format!("  <p>{}</p>\n", esc(&form.consent)));
    out.push_str(&format!(
        "  <button type=\"submit\">{}</button>\n</form>\n",
        esc(&form.button)
    ));
    out.push_str(SNIPPET_SCRIPT);
    outln!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// Fetches a stamp for each embedded form and solves its proof of work, as the hosted page's
/// script does.
const SNIPPET_SCRIPT: &str = "<script>document.querySelectorAll('form[data-nurture]').forEach(function(f){\
fetch(f.getAttribute('data-nurture')+'/challenge').then(function(r){return r.json()}).then(function(c){\
f.nurture_ts.value=c.nurture_ts;var e=new TextEncoder(),n=0,d=c.difficulty;\
function ok(b){var r=d;for(var i=0;i<b.length&&r>0;i++){if(r>=8){if(b[i]!==0)return false;r-=8}else{return(b[i]>>(8-r))===0}}return true}\
(function step(){var a=[];for(var k=0;k<64;k++)a.push(n++);Promise.all(a.map(function(i){\
return crypto.subtle.digest('SHA-256',e.encode(c.nurture_ts+':'+i)).then(function(h){return[i,new Uint8Array(h)]})}))\
.then(function(rs){for(var j=0;j<rs.length;j++){if(ok(rs[j][1])){f.nurture_pow.value=String(rs[j][0]);return}}step()})})()})});</script>";

/// `validate`'s checks of forms beyond their own file: the confirmation template exists,
/// and someone sends it (the form's `from`, or a campaign its event triggers).
pub fn check(
    config: &Config,
    forms: &[nurture_campaign::FormFile],
    campaigns: &[nurture_campaign::CampaignFile],
) -> Vec<nurture_campaign::Diagnostic> {
    let campaigns: Vec<nurture_campaign::Campaign> =
        campaigns.iter().map(|c| c.campaign.clone()).collect();
    let mut out = Vec::new();
    for file in forms {
        let form = &file.form;
        let Some(opt_in) = &form.double_opt_in else {
            continue;
        };
        let html = config
            .templates_dir
            .join(format!("{}.html.hbs", opt_in.template.as_str()));
        if !html.is_file() {
            out.push(
                file.diagnostic(
                    "double_opt_in.send",
                    format!(
                        "the confirmation template {} does not exist",
                        html.display()
                    ),
                )
                .hint("create it; it gets `confirm_url` besides the usual context"),
            );
        }
        if sender_of(form, &campaigns).is_none() {
            out.push(
                file.diagnostic(
                    "event",
                    format!(
                        "nobody sends this form's confirmation: it has no `from`, and no campaign triggered by `{}` has one",
                        form.event
                    ),
                )
                .hint("add `from: \"Name <address>\"` to the form"),
            );
        }
    }
    out
}

fn time(ms: Option<i64>) -> serde_json::Value {
    ms.map_or(serde_json::Value::Null, |ms| {
        serde_json::Value::String(nurture_scheduler::from_ms(ms).to_rfc3339())
    })
}

/// Consent records as `contacts show --json` gives them.
pub fn consents_json(consents: &[nurture_store::Consent]) -> serde_json::Value {
    serde_json::Value::Array(
        consents
            .iter()
            .map(|c| {
                let mut v = serde_json::json!({
                    "form": c.form,
                    "text": c.text,
                    "version": c.version,
                    "submitted_at": time(Some(c.submitted_at)),
                    "confirmed_at": time(c.confirmed_at),
                    "confirmation_email": c.mail_state,
                    "confirmation_sent_at": time(c.mail_sent_at),
                });
                if let Some(ip) = &c.ip {
                    v["ip"] = serde_json::json!(ip);
                }
                if let Some(ua) = &c.user_agent {
                    v["user_agent"] = serde_json::json!(ua);
                }
                if let Some(e) = &c.mail_error {
                    v["confirmation_error"] = serde_json::json!(e);
                }
                v
            })
            .collect(),
    )
}

/// One line per consent record, for `contacts show` and `explain`.
pub fn print_consents(consents: &[nurture_store::Consent]) {
    outln!("consents:");
    if consents.is_empty() {
        outln!("  none");
    }
    for c in consents {
        let submitted = time(Some(c.submitted_at));
        let confirmed = match c.confirmed_at {
            Some(ms) => format!("confirmed {}", time(Some(ms)).as_str().unwrap_or("-")),
            None => format!("not confirmed (confirmation email: {})", c.mail_state),
        };
        outln!(
            "  form {:<16} submitted {}  {confirmed}{}",
            c.form,
            submitted.as_str().unwrap_or("-"),
            c.ip.as_deref()
                .map(|ip| format!("  from {ip}"))
                .unwrap_or_default()
        );
        outln!("    \"{}\" (version {})", c.text, c.version);
    }
}

/// Per-form counters for `stats --json`.
pub fn counts_json(counts: &[nurture_store::FormCounts]) -> serde_json::Value {
    serde_json::Value::Array(
        counts
            .iter()
            .map(|c| {
                let rejections: serde_json::Map<String, serde_json::Value> = c
                    .rejections
                    .iter()
                    .map(|(r, n)| (r.clone(), serde_json::json!(n)))
                    .collect();
                serde_json::json!({
                    "id": c.form,
                    "submissions": c.submissions,
                    "confirmations": c.confirmations,
                    "confirmation_emails_sent": c.mailed,
                    "rejections": rejections,
                })
            })
            .collect(),
    )
}

/// Per-form counters for `stats`.
pub fn print_counts(counts: &[nurture_store::FormCounts]) {
    if counts.is_empty() {
        return;
    }
    outln!("forms:");
    for c in counts {
        let rejected: i64 = c.rejections.iter().map(|(_, n)| n).sum();
        let reasons: Vec<String> = c
            .rejections
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        outln!(
            "  {:<24} {} submitted, {} confirmed, {} rejected{}",
            c.form,
            c.submissions,
            c.confirmations,
            rejected,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            }
        );
    }
    outln!();
}
