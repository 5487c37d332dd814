//! `nurture validate`: every problem in every campaign and template, compiler-style.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use miette::{GraphicalReportHandler, GraphicalTheme};
use nurture_campaign::{Diagnostic, load_paths};

use crate::config::Config;

pub fn validate(config: &Config, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let paths = if paths.is_empty() {
        vec![config.campaigns_dir.clone()]
    } else {
        paths.to_vec()
    };
    let loaded = load_paths(&paths);
    let mut diagnostics = loaded.diagnostics;
    diagnostics.extend(super::templates::check(config, &loaded.campaigns));
    print_diagnostics(&diagnostics);
    let campaigns = loaded.campaigns.len();
    if diagnostics.is_empty() {
        eprintln!(
            "ok: {campaigns} campaign{} valid",
            if campaigns == 1 { "" } else { "s" }
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
