//! Reading the template folder: which file is a template, a layout or a partial, and into
//! which registry it goes. A file that does not compile is kept as a problem for the checks;
//! only IO errors fail the load.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use handlebars::{Handlebars, Template};

use super::problem::{Broken, reason};
use super::{Templates, html_key, layout_key, txt_key};

/// The template folder could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the templates in {path}: {source}")]
pub struct LoadError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl Templates {
    /// Reads and compiles every template under `dir`. A file that does not compile is kept
    /// as a problem for [`Templates::check_send`]; only IO errors fail the load. A missing
    /// folder is an empty set (every email then reports its template missing).
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let mut t = Self {
            dir: dir.to_path_buf(),
            html: super::registry::registry(true),
            plain: super::registry::registry(false),
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
