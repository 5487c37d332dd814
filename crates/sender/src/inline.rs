//! CSS inlining once per template instead of once per message.
//!
//! Inlining parses the whole HTML document with html5ever, matches every CSS rule and writes
//! the document back out: most of a message's rendering time. The result depends only on the
//! document's structure, which Handlebars does not change when its expressions sit in text
//! and in quoted attribute values. So each (template, layout) is combined into one Handlebars
//! source (layout with the template in place of `{{{body}}}`, plain partials written in), its
//! expressions are masked with private-use tokens, the CSS is inlined once, and the tokens are
//! put back. Every message then renders the inlined source directly.
//!
//! This is only done where it is certainly the same as inlining each message: when any
//! expression sits inside a tag outside quotes, inside `<style>` or `<script>`, when a partial
//! takes arguments, when the CSS uses selectors that depend on siblings, position or
//! attribute values (which a conditional block or a rendered value could change), or when
//! html5ever moved or dropped a token (text inside `<table>`, say), the caller falls back to
//! inlining per message.

/// Marks the start and end of a masked expression (Unicode private use: never escaped by the
/// HTML serializer, never in a template by accident).
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// Selector parts whose matches a rendered message could change.
const UNSAFE_SELECTORS: &[&str] = &[
    ":first", ":last", ":nth", ":only", ":empty", ":not", ":has", ":root", ":is", ":where", "+",
    "~", "[",
];

/// The combined Handlebars source of `template` inside `layout` with `partials` written in;
/// `None` when the layout has no single `{{{body}}}` or a partial takes arguments.
pub(crate) fn combine(
    template: &str,
    layout: Option<&str>,
    partial: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let mut source = match layout {
        Some(l) => {
            if l.matches("{{{body}}}").count() != 1 {
                return None;
            }
            l.replace("{{{body}}}", template)
        }
        None => template.to_string(),
    };
    for _ in 0..8 {
        let Some(at) = source.find("{{>") else {
            return Some(source);
        };
        let end = at + source[at..].find("}}")?;
        let name = source[at + 3..end].trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        {
            return None;
        }
        let body = partial(name)?;
        source.replace_range(at..end + 2, &body);
    }
    None
}

/// Inlines the `<style>` rules of a Handlebars HTML source, or `None` where that could differ
/// from inlining each rendered message.
pub(crate) fn inline_source(source: &str) -> Option<String> {
    if source.contains('\\') && source.contains("\\{{") {
        return None;
    }
    let (masked, expressions) = mask(source)?;
    // Raw HTML from the data would not get the styles it gets when inlined per message.
    if expressions
        .iter()
        .any(|e| e.starts_with("{{{") || e.starts_with("{{&") || e.starts_with("{{~{"))
    {
        return None;
    }
    if !styles_are_structure_free(&masked) {
        return None;
    }
    let inliner = css_inline::CSSInliner::options()
        .load_remote_stylesheets(false)
        .keep_link_tags(true)
        .keep_at_rules(true)
        .build();
    let inlined = inliner.inline(&masked).ok()?;
    unmask(&inlined, &expressions)
}

/// Replaces every `{{...}}` with a numbered token; `None` if one sits where the HTML parser
/// would not keep it as text or as an attribute value.
fn mask(source: &str) -> Option<(String, Vec<String>)> {
    let mut out = String::with_capacity(source.len());
    let mut expressions = Vec::new();
    let lower = source.to_ascii_lowercase();
    let bytes = source.as_bytes();
    let mut i = 0;
    let mut in_tag = false;
    let mut quote: Option<u8> = None;
    let mut raw_until: Option<&str> = None;
    while i < bytes.len() {
        if source[i..].starts_with("{{") {
            if in_tag && quote.is_none() || raw_until.is_some() {
                return None;
            }
            let end = if source[i..].starts_with("{{{") {
                i + source[i..].find("}}}")? + 3
            } else if source[i..].starts_with("{{!--") {
                i + source[i..].find("--}}")? + 4
            } else {
                i + source[i..].find("}}")? + 2
            };
            out.push(OPEN);
            out.push_str(&expressions.len().to_string());
            out.push(CLOSE);
            expressions.push(source[i..end].to_string());
            i = end;
            continue;
        }
        let c = bytes[i];
        if let Some(close) = raw_until {
            if lower[i..].starts_with(close) {
                raw_until = None;
            }
        } else if in_tag {
            match (quote, c) {
                (Some(q), _) if c == q => quote = None,
                (None, b'"' | b'\'') => quote = Some(c),
                (None, b'>') => in_tag = false,
                _ => {}
            }
        } else if c == b'<' {
            in_tag = true;
            if lower[i..].starts_with("<style") {
                raw_until = Some("</style");
            } else if lower[i..].starts_with("<script") {
                raw_until = Some("</script");
            }
            if raw_until.is_some() {
                // The opening tag itself is skipped by the raw-text scan up to its close tag.
                in_tag = false;
            }
        }
        let len = source[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&source[i..i + len]);
        i += len;
    }
    (!in_tag && raw_until.is_none()).then_some((out, expressions))
}

/// True when the `<style>` blocks use no selector a rendered message could match differently.
fn styles_are_structure_free(html: &str) -> bool {
    let lower = html.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(start) = rest.find("<style") {
        let Some(end) = rest[start..].find("</style") else {
            return false;
        };
        let css = strip_comments(&rest[start..start + end]);
        // Only the selectors matter (a `+` in `calc()` is harmless but rare; stay simple).
        let selectors: String = css
            .split('}')
            .filter_map(|rule| rule.split('{').rev().nth(1))
            .collect::<Vec<_>>()
            .join(",");
        if UNSAFE_SELECTORS.iter().any(|s| selectors.contains(s)) {
            return false;
        }
        rest = &rest[start + end..];
    }
    true
}

fn strip_comments(css: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        match rest[start..].find("*/") {
            Some(end) => rest = &rest[start + end + 2..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// Puts the expressions back; `None` unless every token survived once, in order.
fn unmask(html: &str, expressions: &[String]) -> Option<String> {
    let mut out = String::with_capacity(html.len() + expressions.len() * 16);
    let mut rest = html;
    let mut next = 0;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len_utf8()..];
        let end = after.find(CLOSE)?;
        let n: usize = after[..end].parse().ok()?;
        if n != next {
            return None;
        }
        out.push_str(expressions.get(n)?);
        next += 1;
        rest = &after[end + CLOSE.len_utf8()..];
    }
    out.push_str(rest);
    (next == expressions.len() && !out.contains(CLOSE)).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: &str = "<html><head><style>.x { color: red; } p { margin: 0; }</style></head><body>{{{body}}}{{> footer}}</body></html>";

    #[test]
    fn inlines_around_expressions() {
        let combined = combine(
            "<p class=\"x\">Hi {{default contact.name \"there\"}}</p><a href=\"{{url}}\">go</a>",
            Some(LAYOUT),
            &|name| (name == "footer").then(|| "<p>{{#if a}}{{a}}{{/if}}</p>".to_string()),
        )
        .unwrap();
        let out = inline_source(&combined).unwrap();
        assert!(
            out.contains("<p class=\"x\" style=\"margin: 0;color: red;\">Hi {{default contact.name \"there\"}}</p>"),
            "{out}"
        );
        assert!(out.contains("<a href=\"{{url}}\">go</a>"), "{out}");
        assert!(
            out.contains("<p style=\"margin: 0;\">{{#if a}}{{a}}{{/if}}</p>"),
            "{out}"
        );
    }

    #[test]
    fn refuses_what_could_differ() {
        // An expression as an attribute name.
        assert!(inline_source("<style>p{color:red}</style><p {{attrs}}>x</p>").is_none());
        // Inside <style>.
        assert!(inline_source("<style>p{color:{{c}}}</style><p>x</p>").is_none());
        // A structural selector.
        assert!(inline_source("<style>p:first-child{color:red}</style><p>{{x}}</p>").is_none());
        // Rows from a loop between table tags: html5ever moves the text out of the table.
        assert!(
            inline_source(
                "<style>td{color:red}</style><table>{{#each rows}}<tr><td>{{this}}</td></tr>{{/each}}</table>"
            )
            .is_none()
        );
        // A partial with arguments.
        assert!(combine("{{> footer x=1}}", None, &|_| Some(String::new())).is_none());
        // A layout without exactly one body.
        assert!(combine("x", Some("<p>no body</p>"), &|_| None).is_none());
    }
}
