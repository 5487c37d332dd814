//! What `validate` says about templates: [`TemplateProblem`], one value per problem, each
//! naming its file (and line and column when Handlebars knows them), so every problem of a
//! campaign can be reported at once.

use std::fmt;
use std::path::PathBuf;

/// A template that did not compile: where and why.
#[derive(Debug, Clone)]
pub(super) struct Broken {
    pub(super) line: Option<usize>,
    pub(super) col: Option<usize>,
    pub(super) message: String,
}

/// What is wrong with the templates of one email step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateProblem {
    /// No `NAME.html.hbs`.
    MissingTemplate {
        /// The file looked for.
        looked_for: PathBuf,
    },
    /// No `layouts/NAME.html.hbs`.
    MissingLayout {
        /// The file looked for.
        looked_for: PathBuf,
    },
    /// `{{> name}}` names no file in `partials/`.
    MissingPartial {
        /// Partial name.
        name: String,
        /// The file that uses it.
        used_in: PathBuf,
    },
    /// A file does not compile.
    Compile {
        /// The file.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        col: Option<usize>,
        /// Handlebars' reason.
        message: String,
    },
    /// The subject does not compile.
    Subject {
        /// Handlebars' reason.
        message: String,
    },
    /// The preheader does not compile.
    Preheader {
        /// Handlebars' reason.
        message: String,
    },
    /// Neither the template, its layout nor their partials reach `{{unsubscribe_url}}`.
    NoUnsubscribeLink {
        /// The part missing it (`NAME.html.hbs` or `NAME.txt.hbs`).
        path: PathBuf,
    },
}

impl fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingTemplate { looked_for } => {
                write!(f, "the template {} does not exist", looked_for.display())
            }
            Self::MissingLayout { looked_for } => {
                write!(f, "the layout {} does not exist", looked_for.display())
            }
            Self::MissingPartial { name, used_in } => {
                write!(
                    f,
                    "{} uses the partial `{name}`, which is not in partials/",
                    used_in.display()
                )
            }
            Self::Compile {
                path,
                line,
                col,
                message,
            } => match (line, col) {
                (Some(l), Some(c)) => write!(
                    f,
                    "{}:{l}:{c}: the template does not compile: {message}",
                    path.display()
                ),
                _ => write!(
                    f,
                    "{}: the template does not compile: {message}",
                    path.display()
                ),
            },
            Self::Subject { message } => write!(f, "the subject does not compile: {message}"),
            Self::Preheader { message } => write!(f, "the preheader does not compile: {message}"),
            Self::NoUnsubscribeLink { path } => write!(
                f,
                "{} never reaches {{{{unsubscribe_url}}}} (not in the template, its layout or their partials)",
                path.display()
            ),
        }
    }
}

pub(super) fn reason(e: &handlebars::TemplateError) -> String {
    e.reason().to_string()
}
