//! Rendering one email: subject, HTML (layout, preheader, tracking, inlined CSS) and text.

use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason,
};
use serde_json::{Map, Value, json};

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

fn text_param(h: &Helper, name: &str) -> Result<String, handlebars::RenderError> {
    let p = h
        .param(0)
        .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex("upper/lower", 0))?;
    if p.is_value_missing() {
        return Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into());
    }
    let _ = name;
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

/// `{{format_date value "%d %B %Y"}}`: an RFC 3339 time in the contact's time zone.
fn format_date_helper(
    h: &Helper,
    _: &Handlebars,
    ctx: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let p = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("format_date", 0))?;
    if p.is_value_missing() {
        return Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into());
    }
    let raw = p.value().as_str().unwrap_or_default();
    let format = h
        .param(1)
        .and_then(|f| f.value().as_str().map(String::from))
        .unwrap_or_else(|| "%e %B %Y".into());
    let tz: chrono_tz::Tz = ctx
        .data()
        .pointer("/contact/timezone")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    let parsed = chrono::DateTime::parse_from_rfc3339(raw).map_err(|_| {
        RenderErrorReason::Other(format!("format_date: `{raw}` is not an RFC 3339 date"))
    })?;
    let formatted = parsed.with_timezone(&tz).format(&format).to_string();
    out.write(formatted.trim())?;
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
        let body = self
            .html
            .render(&html_key(req.template), req.context)
            .map_err(|e| convert(e, req.template))?;
        let mut html = match req.layout {
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
        // The text part comes from the HTML before the hidden preheader and the tracking are
        // added: it starts with the content and keeps the original links.
        let text = if self.has_text_part(req.template) {
            self.plain
                .render(&txt_key(req.template), req.context)
                .map_err(|e| convert(e, &format!("{}.txt", req.template)))?
        } else {
            html_to_text(&html)
        };
        if let Some(pre) = req.preheader {
            let pre = self
                .plain
                .render_template(pre, req.context)
                .map_err(|e| convert(e, "preheader"))?;
            html = insert_preheader(&html, &handlebars::html_escape(&one_line(&pre)));
        }
        let html = rewrite_links(&html, &req.tracking);
        let html = css_inline::inline(&html).unwrap_or(html);
        let subject = self
            .plain
            .render_template(req.subject, req.context)
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

fn html_to_text(html: &str) -> String {
    html2text::from_read(html.as_bytes(), 78).unwrap_or_default()
}
