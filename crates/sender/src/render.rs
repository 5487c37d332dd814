//! Rendering one email: subject, HTML (layout, preheader, tracking, inlined CSS) and text.

use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason,
};
use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::inline::{TextPiece, plain_value};
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

/// A strict registry with our helpers; `html` false for subjects and text parts (no escaping).
pub(crate) fn registry(html: bool) -> Handlebars<'static> {
    let mut h = Handlebars::new();
    h.set_strict_mode(true);
    if !html {
        h.register_escape_fn(handlebars::no_escape);
    }
    h.register_helper("default", Box::new(default_helper));
    h.register_helper(
        "upper",
        Box::new(
            |h: &Helper,
             r: &Handlebars,
             _: &Context,
             rc: &mut RenderContext,
             out: &mut dyn Output|
             -> HelperResult {
                out.write(&escape(r, rc, text_param(h, "upper")?.to_uppercase()))?;
                Ok(())
            },
        ),
    );
    h.register_helper(
        "lower",
        Box::new(
            |h: &Helper,
             r: &Handlebars,
             _: &Context,
             rc: &mut RenderContext,
             out: &mut dyn Output|
             -> HelperResult {
                out.write(&escape(r, rc, text_param(h, "lower")?.to_lowercase()))?;
                Ok(())
            },
        ),
    );
    h.register_helper("format_date", Box::new(format_date_helper));
    h
}

/// Escapes helper output the way the registry escapes values: HTML-escaped in HTML, as is in
/// subjects and text parts, and never inside `{{{triple-stash}}}`.
fn escape(r: &Handlebars, rc: &RenderContext, text: String) -> String {
    if rc.is_disable_escape() {
        text
    } else {
        r.get_escape_fn()(&text)
    }
}

/// The first parameter as text; a missing variable is an error naming it (strict mode
/// hands helpers missing values instead of failing, so each helper must check).
fn text_param(h: &Helper, name: &'static str) -> Result<String, handlebars::RenderError> {
    let p = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex(name, 0))?;
    if p.is_value_missing() {
        return Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into());
    }
    Ok(match p.value() {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// `{{default value "fallback"}}`: the value when present and not empty, else the fallback.
/// A missing value is fine here even in strict mode; that is the helper's purpose.
fn default_helper(
    h: &Helper,
    r: &Handlebars,
    _: &Context,
    rc: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let value = h
        .param(0)
        .filter(|p| !p.is_value_missing())
        .map(|p| p.value().clone());
    let chosen = match value {
        Some(Value::Null) | None => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(v) => Some(v),
    };
    let chosen = match chosen {
        Some(v) => v,
        None => h.param(1).map(|p| p.value().clone()).unwrap_or(Value::Null),
    };
    let text = match chosen {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    };
    out.write(&escape(r, rc, text))?;
    Ok(())
}

/// `{{format_date value "%d %B %Y"}}`: an RFC 3339 time shown in the contact's time zone
/// (`contact.timezone`, else UTC), or a plain `YYYY-MM-DD` date as is. The format (chrono's
/// strftime syntax) is optional: `%e %B %Y` ("2 November 2026").
fn format_date_helper(
    h: &Helper,
    r: &Handlebars,
    ctx: &Context,
    rc: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let p = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("format_date", 0))?;
    if p.is_value_missing() {
        return Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into());
    }
    let raw = p.value().as_str().unwrap_or_default().trim();
    let format = h
        .param(1)
        .and_then(|f| f.value().as_str())
        .unwrap_or("%e %B %Y");
    let tz: chrono_tz::Tz = ctx
        .data()
        .pointer("/contact/timezone")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    // `to_string()` on a chrono format panics on a bad specifier (`%Q`); `write!` reports it.
    let mut formatted = String::new();
    let written = if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        write!(formatted, "{}", t.with_timezone(&tz).format(format))
    } else if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        write!(formatted, "{}", d.format(format))
    } else {
        return Err(RenderErrorReason::Other(format!(
            "format_date: `{raw}` is not an RFC 3339 date (2026-11-02T15:00:00Z) or a YYYY-MM-DD date"
        ))
        .into());
    };
    written.map_err(|_| {
        RenderErrorReason::Other(format!(
            "format_date: `{format}` is not a valid date format (see chrono's strftime)"
        ))
    })?;
    out.write(&escape(r, rc, formatted.trim().to_string()))?;
    Ok(())
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

/// The plain-text alternative of an HTML part: 78 columns, links kept as numbered references
/// listed at the end.
fn html_to_text(html: &str) -> Result<String, String> {
    Ok(wrap_text(&html_to_lines(html)?))
}

/// What html2text makes of the HTML without wrapping it (a paragraph is one line), which
/// [`wrap_text`] then wraps: the same for a whole message and for a template whose values are
/// put in afterwards (`inline::text_source`).
pub(crate) fn html_to_lines(html: &str) -> Result<String, String> {
    html2text::config::plain()
        .raw_mode(true)
        .allow_width_overflow()
        .no_link_wrapping()
        .string_from_read(html.as_bytes(), UNWRAPPED)
        .map_err(|e| e.to_string())
}

/// html2text's width for "do not wrap".
const UNWRAPPED: usize = 10_000;
/// Columns of the text part.
const TEXT_WIDTH: usize = 78;

/// Wraps each line at [`TEXT_WIDTH`] columns between words (a longer word, a URL say, stays
/// whole); continuation lines keep the line's indent and the width of a `* ` or `1. ` list
/// marker. Trailing white space goes.
pub(crate) fn wrap_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    for line in text.lines() {
        let line = line.trim_end();
        if line.chars().count() <= TEXT_WIDTH {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let marker = body
            .split_once(' ')
            .map(|(m, _)| m)
            .filter(|m| {
                *m == "*"
                    || *m == "-"
                    || (m.ends_with('.')
                        && m[..m.len() - 1].bytes().all(|b| b.is_ascii_digit())
                        && m.len() > 1)
            })
            .map_or(0, |m| m.chars().count() + 1);
        let hang: String = format!("{indent}{}", " ".repeat(marker));
        let mut col = 0;
        let mut first = true;
        for word in body.split(' ').filter(|w| !w.is_empty()) {
            let w = word.chars().count();
            if first {
                out.push_str(indent);
                out.push_str(word);
                col = indent.chars().count() + w;
                first = false;
            } else if col + 1 + w <= TEXT_WIDTH {
                out.push(' ');
                out.push_str(word);
                col += 1 + w;
            } else {
                out.push('\n');
                out.push_str(&hang);
                out.push_str(word);
                col = hang.chars().count() + w;
            }
        }
        out.push('\n');
    }
    out
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
    use crate::templates::HELPERS;

    #[test]
    fn the_list_of_helpers_matches_the_registry() {
        let r = registry(true);
        for name in HELPERS {
            let e = r.render_template(&format!("{{{{{name} \"2026-01-01\" \"x\"}}}}"), &json!({}));
            if let Err(e) = e {
                assert!(
                    !matches!(e.reason(), RenderErrorReason::HelperNotFound(_)),
                    "{name}: {e}"
                );
            }
        }
        let e = r
            .render_template("{{defualt x \"y\"}}", &json!({}))
            .unwrap_err();
        assert!(matches!(e.reason(), RenderErrorReason::HelperNotFound(_)));
    }

    #[test]
    fn format_date_never_panics_on_a_bad_format() {
        let r = registry(true);
        let data = json!({"at": "2026-11-02T15:00:00Z", "day": "2026-11-02"});
        let e = r
            .render_template("{{format_date at \"%Q\"}}", &data)
            .unwrap_err();
        assert!(e.to_string().contains("not a valid date format"), "{e}");
        assert_eq!(
            r.render_template("{{format_date day \"%d/%m/%Y\"}}", &data)
                .unwrap(),
            "02/11/2026"
        );
        assert_eq!(
            r.render_template("{{format_date at}}", &data).unwrap(),
            "2 November 2026"
        );
        let e = r
            .render_template("{{format_date \"next week\"}}", &data)
            .unwrap_err();
        assert!(e.to_string().contains("not an RFC 3339 date"), "{e}");
    }

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
