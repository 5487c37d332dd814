//! The template folder: `NAME.html.hbs` (+ optional `NAME.txt.hbs`), `partials/*.hbs`,
//! `layouts/*.html.hbs`; loaded into strict Handlebars registries and checked for `validate`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use handlebars::template::{Parameter, TemplateElement};
use handlebars::{Handlebars, Template};

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

/// Every template of a folder, compiled.
pub struct Templates {
    dir: PathBuf,
    /// Registry for HTML: values are HTML-escaped.
    pub(crate) html: Handlebars<'static>,
    /// Registry for subjects and text parts: no escaping.
    pub(crate) plain: Handlebars<'static>,
    asts: HashMap<String, Template>,
    broken: HashMap<String, Broken>,
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
            asts: HashMap::new(),
            broken: HashMap::new(),
            text_parts: HashSet::new(),
        };
        if !dir.exists() {
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
            match Template::compile(&source) {
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
        Ok(t)
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

    /// Everything wrong with the templates of one email step.
    pub fn check_send(
        &self,
        template: &str,
        layout: Option<&str>,
        subject: &str,
        preheader: Option<&str>,
    ) -> Vec<TemplateProblem> {
        let mut problems = Vec::new();
        if let Err(e) = Template::compile(subject) {
            problems.push(TemplateProblem::Subject {
                message: reason(&e),
            });
        }
        if let Some(p) = preheader
            && let Err(e) = Template::compile(p)
        {
            problems.push(TemplateProblem::Preheader {
                message: reason(&e),
            });
        }
        let html = html_key(template);
        let mut roots = vec![html.clone()];
        if let Some(l) = layout {
            let lk = layout_key(l);
            if !self.asts.contains_key(&lk) && !self.broken.contains_key(&lk) {
                problems.push(TemplateProblem::MissingLayout {
                    looked_for: self.path_of(&lk),
                });
            }
            roots.push(lk);
        }
        if !self.asts.contains_key(&html) && !self.broken.contains_key(&html) {
            problems.push(TemplateProblem::MissingTemplate {
                looked_for: self.path_of(&html),
            });
            return problems;
        }
        let mut seen = HashSet::new();
        let html_reaches = self.reaches_unsubscribe(&roots, &mut problems, &mut seen);
        if !html_reaches
            && !problems
                .iter()
                .any(|p| matches!(p, TemplateProblem::Compile { .. }))
        {
            problems.push(TemplateProblem::NoUnsubscribeLink {
                path: self.path_of(&html),
            });
        }
        let txt = txt_key(template);
        if self.asts.contains_key(&txt) || self.broken.contains_key(&txt) {
            let before = problems.len();
            let reaches =
                self.reaches_unsubscribe(std::slice::from_ref(&txt), &mut problems, &mut seen);
            if !reaches && problems.len() == before {
                problems.push(TemplateProblem::NoUnsubscribeLink {
                    path: self.path_of(&txt),
                });
            }
        }
        problems.dedup();
        problems
    }

    /// Walks the templates named by `keys` and every partial they include; true when an
    /// expression mentions `unsubscribe_url`. Compile errors and missing partials are added
    /// to `problems` (each file once, tracked by `seen`).
    fn reaches_unsubscribe(
        &self,
        keys: &[String],
        problems: &mut Vec<TemplateProblem>,
        seen: &mut HashSet<String>,
    ) -> bool {
        let mut found = false;
        let mut queue: Vec<(String, PathBuf)> =
            keys.iter().map(|k| (k.clone(), self.path_of(k))).collect();
        let mut visited = HashSet::new();
        while let Some((key, used_in)) = queue.pop() {
            if !visited.insert(key.clone()) {
                continue;
            }
            if let Some(b) = self.broken.get(&key) {
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
            let mut partials = Vec::new();
            found |= walk(&ast.elements, &mut partials);
            let here = self.path_of(&key);
            queue.extend(partials.into_iter().map(|p| (p, here.clone())));
        }
        found
    }
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

/// True when any expression in `elements` mentions `unsubscribe_url`; collects partial names.
fn walk(elements: &[TemplateElement], partials: &mut Vec<String>) -> bool {
    let mut found = false;
    for el in elements {
        match el {
            TemplateElement::Expression(h)
            | TemplateElement::HtmlExpression(h)
            | TemplateElement::HelperBlock(h) => {
                found |= param_mentions(&h.name)
                    || h.params.iter().any(param_mentions)
                    || h.hash.values().any(param_mentions);
                if let Some(t) = &h.template {
                    found |= walk(&t.elements, partials);
                }
                if let Some(t) = &h.inverse {
                    found |= walk(&t.elements, partials);
                }
            }
            TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                if let Parameter::Name(n) = &d.name {
                    partials.push(n.clone());
                } else if let Parameter::Path(p) = &d.name {
                    partials.push(path_text(p));
                }
                if let Some(t) = &d.template {
                    found |= walk(&t.elements, partials);
                }
            }
            TemplateElement::DecoratorBlock(d) => {
                if let Some(t) = &d.template {
                    found |= walk(&t.elements, partials);
                }
            }
            _ => {}
        }
    }
    found
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
            path_text(path)
                .trim_start_matches("../")
                .trim_start_matches("@root.")
                == "unsubscribe_url"
        }
        Parameter::Subexpression(s) => {
            let el = &s.element;
            match el.as_ref() {
                TemplateElement::Expression(h) | TemplateElement::HelperBlock(h) => {
                    param_mentions(&h.name) || h.params.iter().any(param_mentions)
                }
                _ => false,
            }
        }
        _ => false,
    }
}
