//! Rendering one email: subject, HTML (layout, preheader, tracking, inlined CSS) and text.

use handlebars::{Context, RenderErrorReason};

use serde_json::{Map, Value, json};

use crate::inline::{TextPiece, plain_value};
use crate::plain_text::{html_to_text, wrap_text};
use crate::templates::{Templates, html_key, layout_key, txt_key};
use crate::tracking::{Tracking, rewrite_links};

/// What to render.
#[derive(Debug, Clone)]
pub struct RenderRequest<'a> {
    /// Template name (`ebook/welcome`).
    pub template: &'a str,
    /// Layout name, if any.
    pub layout: Option<&'a str>,
    /// Subject (Handlebars).
    pub subject: &'a str,
    /// Preheader (Handlebars), if any.
    pub preheader: Option<&'a str>,
    /// The data: see [`context`].
    pub context: &'a Value,
    /// Open and click tracking to apply to the HTML.
    pub tracking: Tracking,
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line.
    pub subject: String,
    /// Final HTML, CSS inlined.
    pub html: String,
    /// Text part.
    pub text: String,
}

/// Why a message could not be rendered. Nothing half-rendered is ever returned.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    /// Strict mode: a variable the template uses is not in the data.
    #[error(
        "the variable `{variable}` is missing (in {template}); use {{{{default {variable} \"...\"}}}} for optional data"
    )]
    MissingVariable {
        /// The variable's path.
        variable: String,
        /// Which part: the template name, `subject`, `preheader` or a layout.
        template: String,
    },
    /// Any other rendering failure.
    #[error("cannot render {template}: {message}")]
    Failed {
        /// Which part.
        template: String,
        /// Handlebars' reason.
        message: String,
    },
}

/// The rendering context of SPEC §4: `contact` (email, every attribute, tags), `event`,
/// `campaign` (id, name), `step` (id), `unsubscribe_url`, `postal_address` (empty when unset).
#[allow(clippy::too_many_arguments)]
pub fn context(
    email: &str,
    attributes: &Map<String, Value>,
    tags: &[String],
    event: &Map<String, Value>,
    campaign_id: &str,
    campaign_name: &str,
    step_id: &str,
    unsubscribe_url: &str,
    postal_address: Option<&str>,
) -> Value {
    let mut contact = attributes.clone();
    contact.insert("email".into(), Value::String(email.to_string()));
    contact.insert("tags".into(), json!(tags));
    json!({
        "contact": contact,
        "event": event,
        "campaign": { "id": campaign_id, "name": campaign_name },
        "step": { "id": step_id },
        "unsubscribe_url": unsubscribe_url,
        "postal_address": postal_address.unwrap_or(""),
    })
}

fn convert(e: handlebars::RenderError, part: &str) -> RenderError {
    match e.reason() {
        RenderErrorReason::MissingVariable(path) => RenderError::MissingVariable {
            variable: path.clone().unwrap_or_else(|| "?".into()),
            template: part.to_string(),
        },
        _ => RenderError::Failed {
            template: part.to_string(),
            message: e.reason().to_string(),
        },
    }
}

impl Templates {
    /// Renders one email. Fails as a whole on the first problem.
    pub fn render(&self, req: &RenderRequest<'_>) -> Result<Rendered, RenderError> {
        // One Handlebars context for every part: rendering from a `Value` copies it into a
        // new context each time (subject, preheader, text values, HTML).
        let ctx = Context::from(req.context.clone());
        // The CSS inlined once per template where that is certainly the same (inline/);
        // any error there is reported by the per-message path, which names the part.
        if let Some(Ok(html)) = self.render_inlined(req.template, req.layout, &ctx) {
            return self.finish(req, &ctx, html, true);
        }
        self.render_per_message(req, &ctx)
    }

    /// Renders and then inlines the CSS of this one message.
    fn render_per_message(
        &self,
        req: &RenderRequest<'_>,
        ctx: &Context,
    ) -> Result<Rendered, RenderError> {
        let html = self.plain_html(req)?;
        self.finish(req, ctx, html, false)
    }

    /// The HTML as Handlebars renders it: the template in its layout, CSS not inlined.
    fn plain_html(&self, req: &RenderRequest<'_>) -> Result<String, RenderError> {
        let body = self
            .html
            .render(&html_key(req.template), req.context)
            .map_err(|e| convert(e, req.template))?;
        let html = match req.layout {
            Some(layout) => {
                let mut ctx = req.context.clone();
                if let Value::Object(m) = &mut ctx {
                    m.insert("body".into(), Value::String(body));
                }
                self.html
                    .render(&layout_key(layout), &ctx)
                    .map_err(|e| convert(e, &format!("layouts/{layout}")))?
            }
            None => body,
        };
        Ok(html)
    }

    /// The text part derived from the HTML once for this template, with this message's
    /// values put in; `None` when that is not certainly what deriving it from this message's
    /// HTML would give (the caller then does that).
    fn derived_text(&self, req: &RenderRequest<'_>, ctx: &Context) -> Option<String> {
        let source = self.text_source(req.template, req.layout)?;
        let values: Vec<String> = source
            .value_sources()
            .map(|v| self.render_line(v, ctx).ok())
            .collect::<Option<_>>()?;
        if values.iter().any(|v| !v.is_empty() && !plain_value(v)) {
            return None;
        }
        let empty: Vec<bool> = values.iter().map(String::is_empty).collect();
        let pieces = self.text_pieces(req.template, req.layout, &source, &empty)?;
        let mut text = String::new();
        for piece in pieces.iter() {
            match piece {
                TextPiece::Text(t) => text.push_str(t),
                TextPiece::Value(n) => text.push_str(values.get(*n)?),
            }
        }
        Some(wrap_text(&text))
    }

    /// Text part, preheader, tracking, CSS (unless `inlined` already), subject.
    fn finish(
        &self,
        req: &RenderRequest<'_>,
        ctx: &Context,
        mut html: String,
        inlined: bool,
    ) -> Result<Rendered, RenderError> {
        // The text part comes from the HTML before the hidden preheader and the tracking are
        // added: it starts with the content and keeps the original links.
        let text = if self.has_text_part(req.template) {
            self.plain
                .render_with_context(&txt_key(req.template), ctx)
                .map_err(|e| convert(e, &format!("{}.txt", req.template)))?
        } else {
            // From the HTML without inlined styles: the same text (styles are not text), and
            // the converter's parser has a third less to read.
            match self.derived_text(req, ctx) {
                Some(text) => text,
                None => {
                    let plain;
                    let source = if inlined {
                        plain = self.plain_html(req)?;
                        &plain
                    } else {
                        &html
                    };
                    html_to_text(source).map_err(|message| RenderError::Failed {
                        template: format!("{} (text part derived from the HTML)", req.template),
                        message,
                    })?
                }
            }
        };
        if let Some(pre) = req.preheader {
            let pre = self
                .render_line(pre, ctx)
                .map_err(|e| convert(e, "preheader"))?;
            html = insert_preheader(&html, &handlebars::html_escape(&one_line(&pre)));
        }
        let html = rewrite_links(&html, &req.tracking);
        let html = if inlined {
            html
        } else {
            inline_css(html, req.template)
        };
        let subject = self
            .render_line(req.subject, ctx)
            .map_err(|e| convert(e, "subject"))?;
        Ok(Rendered {
            subject: one_line(&subject),
            html,
            text,
        })
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The hidden preview text goes first in `<body>`.
fn insert_preheader(html: &str, pre: &str) -> String {
    let div = format!(
        "<div style=\"display:none;max-height:0;overflow:hidden;mso-hide:all\">{pre}</div>"
    );
    let lower = html.to_ascii_lowercase();
    match lower
        .find("<body")
        .and_then(|i| lower[i..].find('>').map(|j| i + j + 1))
    {
        Some(at) => format!("{}{div}{}", &html[..at], &html[at..]),
        None => format!("{div}{html}"),
    }
}

/// Copies the rules of `<style>` blocks into `style` attributes (many mail clients ignore
/// `<style>`). `@media` and other at-rules cannot be inlined, so they stay in a `<style>`
/// block; `<link>` stylesheets are neither fetched nor read from disk, and stay as they are.
/// If inlining fails the HTML goes out as rendered: still correct, only less robustly styled.
fn inline_css(html: String, template: &str) -> String {
    let inliner = css_inline::CSSInliner::options()
        .load_remote_stylesheets(false)
        .keep_link_tags(true)
        .keep_at_rules(true)
        .build();
    match inliner.inline(&html) {
        Ok(inlined) => inlined,
        Err(e) => {
            tracing::warn!(template, error = %e, "cannot inline the CSS; sending the HTML as rendered");
            html
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plain_text::html_to_lines;

    /// Inlining once per template gives the same email as inlining each message: same text
    /// part, same HTML up to whitespace and the serializer's choice of escapes.
    /// `group/name` of every example email template.
    fn example_templates(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let folder = entry.unwrap().path();
            let Some(group) = folder.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if ["layouts", "partials"].contains(&group) || !folder.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&folder).unwrap() {
                let name = file.unwrap().file_name().into_string().unwrap();
                if let Some(stem) = name.strip_suffix(".html.hbs") {
                    out.push(format!("{group}/{stem}"));
                }
            }
        }
        out
    }

    #[test]
    fn text_derived_once_matches_text_derived_per_message() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
        let t = Templates::load(&dir).unwrap();
        let long =
            "Zoë Łukasz-Wójcik the Third, of a name long enough to move every line break after it";
        let mut derived = 0;
        for (first, company, postal) in [
            ("Ana", "Acme", Some("1 Main St")),
            (
                "Ana & <Bo> O'Hara \"Q\"",
                "A=B; C",
                Some("1 Main St, Springfield"),
            ),
            (long, long, None),
            (
                "X",
                "https://acme.example/very/long/path/that/does/not/fit/on/one/line/at/all/ok",
                Some("1 Main St"),
            ),
            ("", "", None),
        ] {
            let ctx = context(
                "ana@example.com",
                &serde_json::from_value(json!({"first_name": first, "company": company})).unwrap(),
                &["vip".to_string()],
                &Map::new(),
                "c",
                "Campaign",
                "s",
                "https://n.example/u/TOKEN",
                postal,
            );
            for template in example_templates(&dir) {
                let req = RenderRequest {
                    template: &template,
                    layout: Some("base"),
                    subject: "Hi",
                    preheader: None,
                    context: &ctx,
                    tracking: Tracking::default(),
                };
                let once = t.derived_text(&req, &Context::from(req.context.clone()));
                assert!(
                    once.is_some(),
                    "{template}: the example templates all qualify"
                );
                let per_message = html_to_text(&t.plain_html(&req).unwrap()).unwrap();
                assert_eq!(once.unwrap(), per_message, "{template} with {first:?}");
                assert!(
                    per_message
                        .lines()
                        .all(|l| l.chars().count() <= 78 || !l.trim().contains(' ')),
                    "{template}: {per_message}"
                );
                derived += 1;
            }
        }
        assert!(derived >= 50, "compared {derived}");
        // Values the converter would not keep as they are: derived per message instead.
        for odd in ["  Ana", "Ana\nBo", "Ana  Bo", "", "Ana\u{a0}Bo"] {
            let ctx = context(
                "ana@example.com",
                &serde_json::from_value(json!({"first_name": odd, "company": "Acme"})).unwrap(),
                &[],
                &Map::new(),
                "c",
                "Campaign",
                "s",
                "https://n.example/u/TOKEN",
                Some("1 Main St"),
            );
            let req = RenderRequest {
                template: "ebook/case-study",
                layout: Some("base"),
                subject: "Hi",
                preheader: None,
                context: &ctx,
                tracking: Tracking::default(),
            };
            let hb = Context::from(req.context.clone());
            if t.derived_text(&req, &hb).is_some() {
                // Only when the template does not show the first name at all.
                let text = html_to_text(&t.plain_html(&req).unwrap()).unwrap();
                assert_eq!(t.derived_text(&req, &hb).unwrap(), text, "{odd:?}");
            }
        }
        // Blocks with tags inside, raw HTML and comments are never derived once; a block of
        // text is one value.
        let refuse = |src: &str| crate::inline::TextSource::new(src).is_none();
        assert!(refuse("<div>{{#if a}}<p>A</p>{{/if}}</div>"));
        assert!(refuse("<p>{{{raw}}}</p>"));
        assert!(refuse("<p>{{! note }}x</p>"));
        assert!(refuse("<p>{{else}}</p>"));
        assert!(!refuse("<p>Hi {{name}}, <a href=\"{{url}}\">go</a></p>"));
        let src = crate::inline::TextSource::new(
            "<p>{{#if a}}A {{a}}{{/if}} and <a href=\"{{u}}\">x</a></p><p>{{b}}</p>",
        )
        .unwrap();
        assert_eq!(
            src.value_sources().collect::<Vec<_>>(),
            ["{{#if a}}A {{a}}{{/if}}", "{{u}}", "{{b}}"]
        );
        let lines = |h: &str| html_to_lines(h).ok();
        assert_eq!(
            src.pieces(&[false, false, false], lines),
            Some(vec![
                TextPiece::Value(0),
                TextPiece::Text(" and [x][1]\n\n".into()),
                TextPiece::Value(2),
                TextPiece::Text("\n\n[1]: ".into()),
                TextPiece::Value(1),
                TextPiece::Text("\n".into()),
            ])
        );
        // `b` empty: its paragraph is gone, as it would be from the message's HTML.
        let without_b = src.pieces(&[false, false, true], lines).unwrap();
        assert!(!without_b.contains(&TextPiece::Value(2)), "{without_b:?}");
    }

    #[test]
    fn css_inlined_once_matches_css_inlined_per_message() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
        let t = Templates::load(&dir).unwrap();
        let ctx = context(
            "ana@example.com",
            &serde_json::from_value(json!({"first_name": "Ana & <Bo>", "company": "O'Hara"}))
                .unwrap(),
            &["vip".to_string()],
            &Map::new(),
            "c",
            "Campaign",
            "s",
            "https://n.example/u/TOKEN",
            Some("1 Main St"),
        );
        let normal = |html: &str| -> String {
            let doc = css_inline::CSSInliner::options()
                .build()
                .inline(html)
                .unwrap();
            let doc = doc.replace("&#x27;", "'").replace("&quot;", "\"");
            doc.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        let mut compared = 0;
        for template in example_templates(&dir) {
            let req = RenderRequest {
                template: &template,
                layout: Some("base"),
                subject: "Hi {{contact.first_name}}",
                preheader: Some("A preview"),
                context: &ctx,
                tracking: Tracking::default(),
            };
            let once = t.render_inlined(&template, Some("base"), &Context::from(ctx.clone()));
            assert!(
                matches!(once, Some(Ok(_))),
                "{template}: the example templates can all be inlined once"
            );
            let fast = t.render(&req).unwrap();
            let slow = t
                .render_per_message(&req, &Context::from(req.context.clone()))
                .unwrap();
            assert_eq!(fast.text, slow.text, "{template}");
            assert_eq!(fast.subject, slow.subject, "{template}");
            assert_eq!(normal(&fast.html), normal(&slow.html), "{template}");
            compared += 1;
        }
        assert!(compared >= 10, "compared {compared} templates");
    }

    #[test]
    fn derived_text_has_no_table_art_nor_trailing_spaces() {
        let html = "<table><tr><td><p>Hello there</p><a href=\"https://x.example/a\">Read</a></td></tr></table>";
        let text = html_to_text(html).unwrap();
        assert!(!text.contains('─') && !text.contains('│'), "{text}");
        assert!(text.lines().all(|l| l == l.trim_end()), "{text:?}");
        assert!(text.contains("Hello there"), "{text}");
        assert!(text.contains("https://x.example/a"), "{text}");
    }
}
