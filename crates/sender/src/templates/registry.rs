//! The Handlebars dialect our templates are written in: strict registries (a missing
//! variable is an error, never an empty string) with our helpers `default`, `upper`, `lower`
//! and `format_date`. Loading compiles into these registries and rendering renders with
//! them, so both see the same helpers.

use std::fmt::Write as _;

use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason,
};
use serde_json::Value;

/// A strict registry with our helpers; `html` false for subjects and text parts (no escaping).
pub(super) fn registry(html: bool) -> Handlebars<'static> {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

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
}
