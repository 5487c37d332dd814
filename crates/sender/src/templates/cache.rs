//! Work done once per template (or per template and layout) and kept for every later message:
//! the CSS inlined into the HTML, the text part derived from it, the subject and preheader
//! compiled. Each falls back to per-message work where doing it once is not possible.

use std::sync::Arc;

use handlebars::Template;

use super::{Templates, html_key, layout_key};
use crate::inline::{TextPiece, TextSource};

/// A text part derived once for a pattern of empty values, or `None` (derived per message).
pub(super) type DerivedText = Option<Arc<Vec<TextPiece>>>;

impl Templates {
    /// One Handlebars source for `template` in `layout`, partials written in
    /// (`inline::combine`).
    fn combined_source(&self, template: &str, layout: Option<&str>) -> Option<String> {
        let source = |k: &str| self.sources.get(k).map(|(_, s)| s.clone());
        let body = source(&html_key(template))?;
        let layout = match layout {
            Some(l) => Some(source(&layout_key(l))?),
            None => None,
        };
        crate::inline::combine(&body, layout.as_deref(), &|name| source(name))
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
            .and_then(|combined| crate::inline::inline_source(&combined))
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
                let lines = crate::plain_text::html_to_lines(html).ok()?;
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
}
