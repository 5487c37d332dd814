//! The template folder: `NAME.html.hbs` (+ optional `NAME.txt.hbs`), `partials/*.hbs`,
//! `layouts/*.html.hbs`; loaded into strict Handlebars registries and checked for `validate`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::inline::{TextPiece, TextSource};

use handlebars::template::{Parameter, TemplateElement};
use handlebars::{Handlebars, Template};

/// Every helper a template may call: ours, then Handlebars' built-ins (handlebars 6). The
/// checks here need the names; `render` registers the helpers and tests the list against its
/// registry, so this module depends on nothing in `render`.
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

/// A template that did not compile: where and why.
#[derive(Debug, Clone)]
struct Broken {
    line: Option<usize>,
    col: Option<usize>,
    message: String,
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

/// The template folder could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the templates in {path}: {source}")]
pub struct LoadError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// A text part derived once for a pattern of empty values, or `None` (derived per message).
type DerivedText = Option<Arc<Vec<TextPiece>>>;

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
    /// `html` plus each (template, layout) with its CSS inlined once (see `inline.rs`), and
    /// the pairs that must be inlined per message instead.
    inlined: RwLock<(Handlebars<'static>, HashSet<String>)>,
    /// Each (template, layout) prepared for deriving its text part once (`inline.rs`), or
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
    /// Reads and compiles every template under `dir`. A file that does not compile is kept
    /// as a problem for [`Templates::check_send`]; only IO errors fail the load. A missing
    /// folder is an empty set (every email then reports its template missing).
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let mut t = Self {
            dir: dir.to_path_buf(),
            html: super::render::registry(true),
            plain: super::render::registry(false),
            lines: RwLock::new(Handlebars::new()),
            inlined: RwLock::new((Handlebars::new(), HashSet::new())),
            texts: RwLock::new(HashMap::new()),
            text_pieces: RwLock::new(HashMap::new()),
            asts: HashMap::new(),
            broken: HashMap::new(),
            sources: HashMap::new(),
            text_parts: HashSet::new(),
        };
        if !dir.exists() {
            t.lines = RwLock::new(t.plain.clone());
            t.inlined = RwLock::new((t.html.clone(), HashSet::new()));
            return Ok(t);
        }
        let mut stack = vec![dir.to_path_buf()];
        let mut files = Vec::new();
        while let Some(d) = stack.pop() {
            let entries = std::fs::read_dir(&d).map_err(|source| LoadError {
                path: d.clone(),
                source,
            })?;
            for e in entries {
                let e = e.map_err(|source| LoadError {
                    path: d.clone(),
                    source,
                })?;
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "hbs") {
                    files.push(p);
                }
            }
        }
        files.sort();
        for path in files {
            let source = std::fs::read_to_string(&path).map_err(|source| LoadError {
                path: path.clone(),
                source,
            })?;
            let rel = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            let Some((key, in_html, in_plain)) = classify(&rel) else {
                continue;
            };
            let compiled = Template::compile(&source);
            t.sources.insert(key.clone(), (path.clone(), source));
            match compiled {
                Ok(tpl) => {
                    if in_html {
                        t.html.register_template(&key, tpl.clone());
                    }
                    if in_plain {
                        t.plain.register_template(&key, tpl.clone());
                    }
                    if let Some(name) = key.strip_prefix("txt:") {
                        t.text_parts.insert(name.to_string());
                    }
                    t.asts.insert(key, tpl);
                }
                Err(e) => {
                    let (line, col) = e.pos().map_or((None, None), |(l, c)| (Some(l), Some(c)));
                    t.broken.insert(
                        key,
                        Broken {
                            line,
                            col,
                            message: reason(&e),
                        },
                    );
                }
            }
        }
        t.lines = RwLock::new(t.plain.clone());
        t.inlined = RwLock::new((t.html.clone(), HashSet::new()));
        Ok(t)
    }

    /// One Handlebars source for `template` in `layout`, partials written in
    /// (`inline::combine`).
    fn combined_source(&self, template: &str, layout: Option<&str>) -> Option<String> {
        let source = |k: &str| self.sources.get(k).map(|(_, s)| s.clone());
        let body = source(&html_key(template))?;
        let layout = match layout {
            Some(l) => Some(source(&layout_key(l))?),
            None => None,
        };
        super::inline::combine(&body, layout.as_deref(), &|name| source(name))
    }

    /// The HTML of `template` in `layout` rendered from a source whose CSS was inlined once;
    /// `None` when that is not possible for this pair (the caller inlines per message).
    pub(crate) fn render_inlined(
        &self,
        template: &str,
        layout: Option<&str>,
        data: &handlebars::Context,
    ) -> Option<Result<String, handlebars::RenderError>> {
        let key = format!("inlined:{template}|{}", layout.unwrap_or(""));
        {
            let inlined = self.inlined.read().unwrap_or_else(|e| e.into_inner());
            if inlined.0.has_template(&key) {
                return Some(inlined.0.render_with_context(&key, data));
            }
            if inlined.1.contains(&key) {
                return None;
            }
        }
        let compiled = self
            .combined_source(template, layout)
            .and_then(|combined| super::inline::inline_source(&combined))
            .and_then(|src| Template::compile(&src).ok());
        let mut inlined = self.inlined.write().unwrap_or_else(|e| e.into_inner());
        match compiled {
            Some(tpl) => {
                tracing::debug!(template, layout, "CSS inlined once for this template");
                inlined.0.register_template(&key, tpl);
                Some(inlined.0.render_with_context(&key, data))
            }
            None => {
                tracing::debug!(
                    template,
                    layout,
                    "CSS inlined per message for this template"
                );
                inlined.1.insert(key);
                None
            }
        }
    }

    /// `template` in `layout` prepared for deriving its text part once, or `None` where each
    /// message's must be derived from its own HTML.
    pub(crate) fn text_source(
        &self,
        template: &str,
        layout: Option<&str>,
    ) -> Option<Arc<TextSource>> {
        let key = format!("{template}|{}", layout.unwrap_or(""));
        if let Some(known) = self
            .texts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return known.clone();
        }
        let prepared = self
            .combined_source(template, layout)
            .and_then(|combined| TextSource::new(&combined))
            .map(Arc::new);
        tracing::debug!(
            template,
            layout,
            once = prepared.is_some(),
            "text part derived from the HTML"
        );
        self.texts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, prepared.clone());
        prepared
    }

    /// The text part of `template` in `layout` with the values marked `empty` left out,
    /// derived once per pattern (see [`TextSource::pieces`]).
    pub(crate) fn text_pieces(
        &self,
        template: &str,
        layout: Option<&str>,
        source: &TextSource,
        empty: &[bool],
    ) -> Option<Arc<Vec<TextPiece>>> {
        let key = (
            format!("{template}|{}", layout.unwrap_or("")),
            empty.to_vec(),
        );
        if let Some(known) = self
            .text_pieces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return known.clone();
        }
        let pieces = source
            .pieces(empty, |html| {
                let lines = super::render::html_to_lines(html).ok()?;
                // A paragraph as long as html2text's "unwrapped" width would be wrapped.
                lines.lines().all(|l| l.len() < 5_000).then_some(lines)
            })
            .map(Arc::new);
        self.text_pieces
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, pieces.clone());
        pieces
    }

    /// Renders a one-line template given as text (a subject or preheader) without escaping,
    /// compiling it on first use.
    pub(crate) fn render_line(
        &self,
        source: &str,
        data: &handlebars::Context,
    ) -> Result<String, handlebars::RenderError> {
        let key = format!("line:{source}");
        {
            let lines = self.lines.read().unwrap_or_else(|e| e.into_inner());
            if lines.has_template(&key) {
                return lines.render_with_context(&key, data);
            }
        }
        let mut lines = self.lines.write().unwrap_or_else(|e| e.into_inner());
        if !lines.has_template(&key) {
            let tpl = Template::compile(source).map_err(handlebars::RenderError::from)?;
            lines.register_template(&key, tpl);
        }
        lines.render_with_context(&key, data)
    }

    /// The folder the templates came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `NAME.txt.hbs` exists (else the text part is derived from the HTML).
    pub fn has_text_part(&self, name: &str) -> bool {
        self.text_parts.contains(name)
    }

    fn path_of(&self, key: &str) -> PathBuf {
        if let Some((path, _)) = self.sources.get(key) {
            return path.clone();
        }
        let rel = if let Some(n) = key.strip_prefix("html:") {
            format!("{n}.html.hbs")
        } else if let Some(n) = key.strip_prefix("txt:") {
            format!("{n}.txt.hbs")
        } else if let Some(n) = key.strip_prefix("layout:") {
            format!("layouts/{n}.html.hbs")
        } else {
            format!("partials/{key}.hbs")
        };
        self.dir.join(rel)
    }

    /// Everything wrong with the templates of one email step: missing files, files that do
    /// not compile, helpers that do not exist (reported as [`TemplateProblem::Compile`] at
    /// the helper's position), and an HTML or text part that never reaches
    /// `{{unsubscribe_url}}`. A layout wraps the HTML part only.
    pub fn check_send(
        &self,
        template: &str,
        layout: Option<&str>,
        subject: &str,
        preheader: Option<&str>,
    ) -> Vec<TemplateProblem> {
        let mut problems = Vec::new();
        if let Some(message) = inline_problem(subject) {
            problems.push(TemplateProblem::Subject { message });
        }
        if let Some(message) = preheader.and_then(inline_problem) {
            problems.push(TemplateProblem::Preheader { message });
        }
        let html = html_key(template);
        let mut roots = vec![html.clone()];
        if let Some(l) = layout {
            let lk = layout_key(l);
            if !self.sources.contains_key(&lk) {
                problems.push(TemplateProblem::MissingLayout {
                    looked_for: self.path_of(&lk),
                });
            }
            roots.push(lk);
        }
        if !self.sources.contains_key(&html) {
            problems.push(TemplateProblem::MissingTemplate {
                looked_for: self.path_of(&html),
            });
            return problems;
        }
        let mut seen = HashSet::new();
        let html_walk = self.walk_files(&roots, &mut problems, &mut seen);
        if !html_walk.reaches_unsubscribe && !html_walk.broken {
            problems.push(TemplateProblem::NoUnsubscribeLink {
                path: self.path_of(&html),
            });
        }
        let txt = txt_key(template);
        if self.sources.contains_key(&txt) {
            let txt_walk = self.walk_files(std::slice::from_ref(&txt), &mut problems, &mut seen);
            if !txt_walk.reaches_unsubscribe && !txt_walk.broken {
                problems.push(TemplateProblem::NoUnsubscribeLink {
                    path: self.path_of(&txt),
                });
            }
        }
        problems
    }

    /// Walks the templates named by `keys` and every partial they include (each once, so a
    /// partial including itself is fine). Compile errors, unknown helpers and missing
    /// partials go to `problems`, each once per `seen`.
    fn walk_files(
        &self,
        keys: &[String],
        problems: &mut Vec<TemplateProblem>,
        seen: &mut HashSet<String>,
    ) -> Walk {
        let mut result = Walk::default();
        let mut queue: Vec<(String, PathBuf)> =
            keys.iter().map(|k| (k.clone(), self.path_of(k))).collect();
        let mut visited = HashSet::new();
        while let Some((key, used_in)) = queue.pop() {
            if !visited.insert(key.clone()) {
                continue;
            }
            if let Some(b) = self.broken.get(&key) {
                // What the file would have reached is unknown: no verdict on the link.
                result.broken = true;
                if seen.insert(key.clone()) {
                    problems.push(TemplateProblem::Compile {
                        path: self.path_of(&key),
                        line: b.line,
                        col: b.col,
                        message: b.message.clone(),
                    });
                }
                continue;
            }
            let Some(ast) = self.asts.get(&key) else {
                if !key.contains(':') && seen.insert(format!("missing:{key}")) {
                    problems.push(TemplateProblem::MissingPartial {
                        name: key.clone(),
                        used_in,
                    });
                }
                continue;
            };
            let mut found = Found::default();
            walk(&ast.elements, &mut found);
            result.reaches_unsubscribe |= found.unsubscribe;
            for helper in found.unknown_helpers {
                if seen.insert(format!("helper:{key}:{helper}")) {
                    let (line, col) = self
                        .sources
                        .get(&key)
                        .and_then(|(_, src)| position_of_helper(src, &helper))
                        .map_or((None, None), |(l, c)| (Some(l), Some(c)));
                    problems.push(TemplateProblem::Compile {
                        path: self.path_of(&key),
                        line,
                        col,
                        message: unknown_helper_message(&helper),
                    });
                }
            }
            let here = self.path_of(&key);
            queue.extend(found.partials.into_iter().map(|p| (p, here.clone())));
        }
        result
    }
}

/// What walking some files found.
#[derive(Debug, Default)]
struct Walk {
    reaches_unsubscribe: bool,
    /// One of the files does not compile.
    broken: bool,
}

/// Why an inline template (a subject, a preheader) cannot render, if it cannot.
fn inline_problem(source: &str) -> Option<String> {
    match Template::compile(source) {
        Err(e) => Some(reason(&e)),
        Ok(t) => {
            let mut found = Found::default();
            walk(&t.elements, &mut found);
            found
                .unknown_helpers
                .first()
                .map(|h| unknown_helper_message(h))
        }
    }
}

fn unknown_helper_message(name: &str) -> String {
    format!(
        "there is no helper `{name}` (helpers: {})",
        HELPERS.join(", ")
    )
}

/// 1-based line and column of the first `{{name …`, `{{#name …` or `(name …` in `source`.
fn position_of_helper(source: &str, name: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = source[from..].find(name) {
        let at = from + i;
        from = at + name.len();
        let head =
            source[..at].trim_end_matches(|c: char| c.is_whitespace() || c == '#' || c == '~');
        let opens = head.ends_with("{{") || head.ends_with('(');
        let ends = source[from..]
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || matches!(c, '}' | ')' | '~'));
        if opens && ends {
            let line = source[..at].matches('\n').count() + 1;
            let col = source[..at]
                .chars()
                .rev()
                .take_while(|&c| c != '\n')
                .count()
                + 1;
            return Some((line, col));
        }
    }
    None
}

/// Registry key and registries for a file path relative to the folder.
fn classify(rel: &str) -> Option<(String, bool, bool)> {
    if let Some(name) = rel
        .strip_prefix("partials/")
        .and_then(|r| r.strip_suffix(".hbs"))
    {
        let name = name.strip_suffix(".html").unwrap_or(name);
        return Some((name.to_string(), true, true));
    }
    if let Some(name) = rel
        .strip_prefix("layouts/")
        .and_then(|r| r.strip_suffix(".html.hbs"))
    {
        return Some((layout_key(name), true, false));
    }
    if let Some(name) = rel.strip_suffix(".html.hbs") {
        return Some((html_key(name), true, false));
    }
    if let Some(name) = rel.strip_suffix(".txt.hbs") {
        return Some((txt_key(name), false, true));
    }
    None
}

fn reason(e: &handlebars::TemplateError) -> String {
    e.reason().to_string()
}

/// What a walk over template elements found.
#[derive(Debug, Default)]
struct Found {
    /// An expression mentions `unsubscribe_url`.
    unsubscribe: bool,
    /// Partials included by name.
    partials: Vec<String>,
    /// Names called as helpers that no registry knows.
    unknown_helpers: Vec<String>,
}

/// Walks `elements` and every block inside them.
fn walk(elements: &[TemplateElement], found: &mut Found) {
    for el in elements {
        match el {
            TemplateElement::Expression(h)
            | TemplateElement::HtmlExpression(h)
            | TemplateElement::HelperBlock(h) => {
                helper_call(h, found);
                if let Some(t) = &h.template {
                    walk(&t.elements, found);
                }
                if let Some(t) = &h.inverse {
                    walk(&t.elements, found);
                }
            }
            TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                // `{{> footer url=unsubscribe_url}}` hands the link to the partial: count it.
                for p in d.params.iter().chain(d.hash.values()) {
                    param(p, found);
                }
                match &d.name {
                    Parameter::Name(n) => found.partials.push(n.clone()),
                    Parameter::Path(p) => found.partials.push(path_text(p)),
                    _ => {}
                }
                if let Some(t) = &d.template {
                    walk(&t.elements, found);
                }
            }
            TemplateElement::DecoratorBlock(d) => {
                if let Some(t) = &d.template {
                    walk(&t.elements, found);
                }
            }
            _ => {}
        }
    }
}

/// An expression or block: `{{name params.. hash..}}`.
fn helper_call(h: &handlebars::template::HelperTemplate, found: &mut Found) {
    let called = h.block || !h.params.is_empty() || !h.hash.is_empty();
    if called
        && let Parameter::Name(name) = &h.name
        && !HELPERS.contains(&name.as_str())
        && !found.unknown_helpers.contains(name)
    {
        found.unknown_helpers.push(name.clone());
    }
    param(&h.name, found);
    for p in h.params.iter().chain(h.hash.values()) {
        param(p, found);
    }
}

/// A parameter: a path (maybe `unsubscribe_url`) or a subexpression (a helper call).
fn param(p: &Parameter, found: &mut Found) {
    match p {
        Parameter::Subexpression(s) => match s.element.as_ref() {
            TemplateElement::Expression(h) | TemplateElement::HelperBlock(h) => {
                helper_call(h, found);
            }
            _ => {}
        },
        other => found.unsubscribe |= param_mentions(other),
    }
}

fn path_text(p: &handlebars::Path) -> String {
    match p {
        handlebars::Path::Relative((_, raw)) => raw.clone(),
        handlebars::Path::Local((_, name, _)) => name.clone(),
    }
}

fn param_mentions(p: &Parameter) -> bool {
    match p {
        Parameter::Name(n) => n == "unsubscribe_url",
        Parameter::Path(path) => {
            let text = path_text(path);
            let mut rest = text.as_str();
            while let Some(r) = ["../", "./", "@root.", "this."]
                .iter()
                .find_map(|prefix| rest.strip_prefix(prefix))
            {
                rest = r;
            }
            rest == "unsubscribe_url"
        }
        _ => false,
    }
}
