//! Template checks for `validate` (and for the daemon before it accepts a campaign): every
//! send step's template, layout and partials exist, compile, and reach `{{unsubscribe_url}}`.

use std::collections::HashSet;
use std::path::Path;

use nurture_campaign::{Action, CampaignFile, Diagnostic, SourceFile};
use nurture_sender::{TemplateProblem, Templates};

use crate::config::Config;

/// Problems with the templates the campaigns use. Each points at the campaign line that
/// names the template, or at the template file itself for a compile error.
pub fn check(config: &Config, campaigns: &[CampaignFile]) -> Vec<Diagnostic> {
    let templates = match Templates::load(&config.templates_dir) {
        Ok(t) => t,
        Err(e) => return vec![Diagnostic::file(&config.templates_dir, e.to_string())],
    };
    let mut out = Vec::new();
    let mut reported: HashSet<String> = HashSet::new();
    for file in campaigns {
        let c = &file.campaign;
        for (i, step) in c.steps.iter().enumerate() {
            let Action::Send(base) = &step.action else {
                continue;
            };
            // The step's email and each A/B variant that differs from it (SPEC §13).
            let sends = std::iter::once((None, base)).chain(
                base.variants
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| {
                        (&v.send.template, &v.send.subject, &v.send.preheader)
                            != (&base.template, &base.subject, &base.preheader)
                    })
                    .map(|(n, v)| (Some(n), &v.send)),
            );
            for (variant, send) in sends {
                let layout = c.layout_for(send).map(|l| l.as_str());
                for problem in templates.check_send(
                    send.template.as_str(),
                    layout,
                    &send.subject,
                    send.preheader.as_deref(),
                ) {
                    let key = if let Some(n) = variant {
                        format!("steps.{i}.variants.{n}.send")
                    } else {
                        match &problem {
                            TemplateProblem::Subject { .. } => format!("steps.{i}.subject"),
                            TemplateProblem::Preheader { .. } => format!("steps.{i}.preheader"),
                            TemplateProblem::MissingLayout { .. } if send.layout.is_some() => {
                                format!("steps.{i}.layout")
                            }
                            TemplateProblem::MissingLayout { .. } => "layout".to_string(),
                            _ => format!("steps.{i}.send"),
                        }
                    };
                    match &problem {
                        TemplateProblem::Compile {
                            path,
                            line,
                            col,
                            message,
                        } => {
                            if reported.insert(path.display().to_string()) {
                                out.push(in_template(path, *line, *col, message));
                            }
                        }
                        TemplateProblem::MissingPartial { .. }
                        | TemplateProblem::NoUnsubscribeLink { .. } => {
                            // Several steps may share one template: say it once.
                            if reported.insert(problem.to_string()) {
                                out.push(
                                    file.diagnostic(&key, problem.to_string())
                                        .hint(hint(&problem)),
                                );
                            }
                        }
                        _ => out.push(
                            file.diagnostic(&key, problem.to_string())
                                .hint(hint(&problem)),
                        ),
                    }
                }
            }
        }
    }
    out
}

fn hint(p: &TemplateProblem) -> String {
    match p {
        TemplateProblem::MissingTemplate { .. } => "create the file, or fix the name after `send:` (it is relative to templates_dir, without .html.hbs)".into(),
        TemplateProblem::MissingLayout { .. } => "layouts live in templates/layouts/NAME.html.hbs and contain {{{body}}}".into(),
        TemplateProblem::MissingPartial { .. } => "partials live in templates/partials/NAME.hbs".into(),
        TemplateProblem::NoUnsubscribeLink { .. } => {
            "every email needs an unsubscribe link: add <a href=\"{{unsubscribe_url}}\">Unsubscribe</a> to the template, its layout or a shared footer partial".into()
        }
        TemplateProblem::Subject { .. } | TemplateProblem::Preheader { .. } => "check the {{ }} pairs; quote the value if it starts with {{".into(),
        TemplateProblem::Compile { .. } => "check the {{ }} pairs and that every {{#block}} is closed".into(),
    }
}

/// A diagnostic inside a template file, with its snippet when the position is known.
fn in_template(path: &Path, line: Option<usize>, col: Option<usize>, message: &str) -> Diagnostic {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let source = SourceFile::new(path, text.clone());
    let offset = match line {
        Some(l) => {
            let start: usize = text
                .split_inclusive('\n')
                .take(l.saturating_sub(1))
                .map(str::len)
                .sum();
            let line_text = &text[start.min(text.len())..];
            let c = col.unwrap_or(1).saturating_sub(1);
            start + line_text.char_indices().nth(c).map_or(0, |(i, _)| i)
        }
        None => 0,
    };
    let span = source.span(offset, offset);
    Diagnostic::at(
        &source,
        span,
        format!("the template does not compile: {message}"),
    )
    .hint("check the {{ }} pairs and that every {{#block}} is closed")
}
