//! Problems found in a campaign file, with the place they were found.
//!
//! A [`Diagnostic`] carries the file, the byte span in it, a one-sentence message and an
//! optional hint. It implements [`miette::Diagnostic`] so the CLI can render the offending
//! snippet; `file:line:col` is computed here too, for plain one-line output and for tests.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A region of a source file: byte offset and length, plus the 1-based line and column of
/// its start (columns count characters, as editors do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Byte offset of the first byte.
    pub offset: usize,
    /// Length in bytes (0 for a point).
    pub len: usize,
    /// 1-based line of the start.
    pub line: usize,
    /// 1-based column (in characters) of the start.
    pub col: usize,
}

/// A file's text, shared by every diagnostic that points into it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as the user gave it (relative paths stay relative).
    pub path: PathBuf,
    /// The whole text.
    pub text: Arc<str>,
}

impl SourceFile {
    /// Wraps a file's path and text.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<Arc<str>>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
        }
    }

    /// A span for the byte range `start..end`, with its line and column computed.
    pub fn span(&self, start: usize, end: usize) -> Span {
        let start = start.min(self.text.len());
        let end = end.clamp(start, self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..start].chars().count() + 1;
        Span {
            offset: start,
            len: end - start,
            line,
            col,
        }
    }
}

/// One problem in one file: what is wrong, where, and how to fix it.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub path: PathBuf,
    /// The file's text, named by its path, when the problem points into it.
    pub source: Option<miette::NamedSource<Arc<str>>>,
    /// Where in the file; `None` for problems about the file as a whole.
    pub span: Option<Span>,
    /// One clear sentence.
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
    /// A short label shown under the snippet.
    pub label: Option<String>,
}

impl Diagnostic {
    /// A problem at `span` of `file`.
    pub fn at(file: &SourceFile, span: Span, message: impl Into<String>) -> Self {
        Self {
            path: file.path.clone(),
            source: Some(miette::NamedSource::new(
                file.path.display().to_string(),
                file.text.clone(),
            )),
            span: Some(span),
            message: message.into(),
            hint: None,
            label: None,
        }
    }

    /// A problem about a whole file (unreadable, too large, ...).
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            source: None,
            span: None,
            message: message.into(),
            hint: None,
            label: None,
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a label for the snippet.
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// `path:line:col` (or just `path` when there is no span).
    pub fn location(&self) -> String {
        match self.span {
            Some(s) => format!("{}:{}:{}", self.path.display(), s.line, s.col),
            None => self.path.display().to_string(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.hint
            .as_ref()
            .map(|h| Box::new(h.as_str()) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        if self.span.is_some() {
            self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
        } else {
            None
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let span = self.span?;
        self.source.as_ref()?;
        let label = miette::LabeledSpan::new(self.label.clone(), span.offset, span.len);
        Some(Box::new(std::iter::once(label)))
    }
}
