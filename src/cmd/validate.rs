//! `nurture validate`: every problem in every campaign and template, compiler-style.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use miette::{GraphicalReportHandler, GraphicalTheme};
use nurture_campaign::{Diagnostic, load_paths};

use crate::config::Config;

pub fn validate(config: &Config, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    // Forms are checked with the campaigns: `forms_dir` by default, and any path given that
    // is (or lies in) a folder named like it.
    let is_form = |p: &PathBuf| {
        p.starts_with(&config.forms_dir)
            || p.components()
                .any(|c| c.as_os_str() == config.forms_dir.file_name().unwrap_or_default())
    };
    let (paths, form_paths): (Vec<PathBuf>, Vec<PathBuf>) = if paths.is_empty() {
        (
            vec![config.campaigns_dir.clone()],
            vec![config.forms_dir.clone()],
        )
    } else {
        paths.iter().cloned().partition(|p| !is_form(p))
    };
    let all_campaigns = load_paths(std::slice::from_ref(&config.campaigns_dir));
    let mut loaded = if paths.is_empty() {
        nurture_campaign::Loaded::default()
    } else {
        load_paths(&paths)
    };
    let forms = nurture_campaign::load_forms(&form_paths);
    let mut diagnostics = std::mem::take(&mut loaded.diagnostics);
    diagnostics.extend(super::templates::check(config, &loaded.campaigns));
    diagnostics.extend(webhook_hosts(config, &loaded.campaigns));
    if let Err(mut d) = nurture_campaign::Scoring::load(&config.scoring_file) {
        diagnostics.append(&mut d);
    }
    diagnostics.extend(forms.diagnostics);
    diagnostics.extend(super::forms::check(
        config,
        &forms.forms,
        &all_campaigns.campaigns,
    ));
    loaded.files += forms.files;
    let form_count = forms.forms.len();
    print_diagnostics(&diagnostics);
    let campaigns = loaded.campaigns.len();
    if diagnostics.is_empty() {
        eprintln!(
            "ok: {campaigns} campaign{} valid{}",
            if campaigns == 1 { "" } else { "s" },
            match form_count {
                0 => String::new(),
                1 => ", 1 form valid".to_string(),
                n => format!(", {n} forms valid"),
            }
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} problem{} in {} file{}",
            diagnostics.len(),
            if diagnostics.len() == 1 { "" } else { "s" },
            loaded.files,
            if loaded.files == 1 { "" } else { "s" },
        );
        Ok(ExitCode::from(2))
    }
}

/// Every webhook step whose host `webhook_hosts` does not allow (SPEC §11: a campaign file
/// cannot make the daemon call an address the operator did not list).
fn webhook_hosts(config: &Config, files: &[nurture_campaign::CampaignFile]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for f in files {
        for (i, step) in f.campaign.steps.iter().enumerate() {
            if let nurture_campaign::Action::Webhook(h) = &step.action
                && !nurture_campaign::scoring::host_allowed(&h.host, &config.webhook_hosts)
            {
                out.push(
                    f.diagnostic(
                        &format!("steps.{i}.webhook"),
                        format!("the webhook host `{}` is not in webhook_hosts", h.host),
                    )
                    .hint(format!(
                        "add `{}` to webhook_hosts in nurture.toml (or NURTURE_WEBHOOK_HOSTS) if this receiver is trusted",
                        h.host
                    )),
                );
            }
        }
    }
    out
}

/// Prints each diagnostic with its `[file:line:col]`, the snippet and the hint.
pub fn print_diagnostics(diagnostics: &[Diagnostic]) {
    let theme = if std::io::stderr().is_terminal() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1);
    for d in diagnostics {
        if d.span.is_none() {
            // Nothing to show a snippet of: name the file in the sentence itself.
            eprintln!("  × {}: {}", d.path.display(), d.message);
            if let Some(h) = &d.hint {
                eprintln!("  help: {h}");
            }
            eprintln!();
            continue;
        }
        let mut out = String::new();
        if handler.render_report(&mut out, d).is_err() {
            out = format!("{d}\n");
        }
        eprintln!("{out}");
    }
}
