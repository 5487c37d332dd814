//! The template folder: `NAME.html.hbs` (+ optional `NAME.txt.hbs`), `partials/*.hbs`,
//! `layouts/*.html.hbs`; loaded into strict Handlebars registries and checked for `validate`.
//!
//! | module | what |
//! |---|---|
//! | (this) | [`Templates`] and its registry keys |
//! | load | [`Templates::load`]: the folder read and compiled, [`LoadError`] |
//! | problem | [`TemplateProblem`]: what `validate` reports, with file, line and column |
//! | check | [`Templates::check_send`]: every problem of one email step |
//! | registry | the strict Handlebars registries and our helpers |
//! | scan | what a compiled template reaches: partials, helpers, `unsubscribe_url` |
//! | cache | what is done once and reused per message: inlined CSS, text parts, subjects |

mod cache;
mod check;
mod load;
mod problem;
mod registry;
mod scan;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::inline::TextSource;

use handlebars::{Handlebars, Template};

use cache::DerivedText;
pub use load::LoadError;
use problem::Broken;
pub use problem::TemplateProblem;

/// Every helper a template may call: ours, then Handlebars' built-ins (handlebars 6). The
/// checks here need the names; `registry` registers the helpers and tests the list against
/// its registry.
pub(crate) const HELPERS: &[&str] = &[
    "default",
    "format_date",
    "upper",
    "lower",
    "if",
    "unless",
    "each",
    "with",
    "lookup",
    "raw",
    "log",
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "and",
    "or",
    "not",
    "len",
];

/// Every template of a folder, compiled.
pub struct Templates {
    dir: PathBuf,
    /// Registry for HTML: values are HTML-escaped.
    pub(crate) html: Handlebars<'static>,
    /// Registry for subjects and text parts: no escaping.
    pub(crate) plain: Handlebars<'static>,
    /// `plain` plus the one-line templates (subjects, preheaders) compiled on first use, so a
    /// subject is parsed once, not once per message.
    lines: RwLock<Handlebars<'static>>,
    /// `html` plus each (template, layout) with its CSS inlined once (see `inline/`), and
    /// the pairs that must be inlined per message instead.
    inlined: RwLock<(Handlebars<'static>, HashSet<String>)>,
    /// Each (template, layout) prepared for deriving its text part once (`inline/text.rs`), or
    /// `None` where it must be derived per message; and the text so derived per pattern of
    /// empty values.
    texts: RwLock<HashMap<String, Option<Arc<TextSource>>>>,
    text_pieces: RwLock<HashMap<(String, Vec<bool>), DerivedText>>,
    asts: HashMap<String, Template>,
    broken: HashMap<String, Broken>,
    /// Source text and file of every template, by registry key (for positions in checks).
    sources: HashMap<String, (PathBuf, String)>,
    text_parts: HashSet<String>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("dir", &self.dir)
            .field("templates", &self.asts.len())
            .finish()
    }
}

/// Registry keys: `html:NAME`, `txt:NAME`, `layout:NAME`; partials by their stem.
pub(crate) fn html_key(name: &str) -> String {
    format!("html:{name}")
}
pub(crate) fn txt_key(name: &str) -> String {
    format!("txt:{name}")
}
pub(crate) fn layout_key(name: &str) -> String {
    format!("layout:{name}")
}

impl Templates {
    /// The folder the templates came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `NAME.txt.hbs` exists (else the text part is derived from the HTML).
    pub fn has_text_part(&self, name: &str) -> bool {
        self.text_parts.contains(name)
    }
}
