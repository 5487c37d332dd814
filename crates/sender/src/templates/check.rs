//! [`Templates::check_send`]: every problem with one email step's templates, found by walking
//! the template, its layout and the partials they include. Apart from loading, which keeps a
//! file that does not compile instead of failing, so that these checks report every problem
//! at once.

use std::collections::HashSet;
use std::path::PathBuf;

use handlebars::Template;

use super::problem::reason;
use super::scan::{Found, walk};
use super::{HELPERS, TemplateProblem, Templates, html_key, layout_key, txt_key};

impl Templates {
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
