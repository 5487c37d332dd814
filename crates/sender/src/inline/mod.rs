//! CSS inlining once per template instead of once per message.
//!
//! Inlining parses the whole HTML document with html5ever, matches every CSS rule and writes
//! the document back out: most of a message's rendering time. The result depends only on the
//! document's elements, their nesting and the attributes selectors read, which Handlebars
//! does not change when its expressions sit in text and in quoted attribute values and no
//! block (`{{#if}}`, `{{#each}}`, `{{else}}`, ...) holds a tag. So each (template, layout) is
//! combined into one Handlebars source (layout with the template in place of `{{{body}}}`,
//! plain partials written in), its expressions are masked with private-use tokens, the CSS is
//! inlined once, and the tokens are put back. Every message then renders the inlined source
//! directly.
//!
//! This is only done where it is certainly the same as inlining each message. The caller
//! falls back to inlining per message when any expression sits inside a tag outside quotes,
//! inside `<style>` or `<script>`, or in an attribute a selector or the inliner reads
//! (`class`, `id`, `style`, `lang`, `dir`); when a block holds a tag (a tag in `{{#if}}` comes
//! and goes, and with it the parent of what follows; `{{#each}}` repeats it or leaves it
//! out; HTML's parser closes a `<p>` at a `<div>` even when the `</div>` follows at once);
//! when a partial takes arguments or is a partial block; when the CSS uses selectors that
//! depend on siblings, position or attribute values (which a rendered value could change);
//! or when html5ever moved or dropped a token (text inside `<table>`, say).
//!
//! The same masking lets the text part be derived once per template too (`text`).
//!
//! | module | what |
//! |---|---|
//! | (this) | `combine` and `inline_source`: the CSS inlined once, the selectors that forbid it |
//! | mask | the private-use tokens that stand for expressions, and putting them back |
//! | blocks | whether every block holds no tag, so the elements are the same for every message |
//! | text | `TextSource`, `TextPiece`, `plain_value`: the text part derived once |

mod blocks;
mod mask;
mod text;

use blocks::blocks_hold_no_tags;
use mask::{Masked, mask, unmask};
pub(crate) use text::{TextPiece, TextSource, plain_value};

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
    let Masked {
        text: masked,
        expressions,
        attributes,
    } = mask(source)?;
    // Raw HTML from the data would not get the styles it gets when inlined per message.
    if expressions
        .iter()
        .any(|e| e.starts_with("{{{") || e.starts_with("{{&") || e.starts_with("{{~{"))
    {
        return None;
    }
    // A class or id from the data may match a selector the masked token does not; a style
    // attribute is merged with the rules.
    if attributes
        .iter()
        .flatten()
        .any(|a| ["class", "id", "style", "lang", "dir", "xml:lang"].contains(&a.as_str()))
    {
        return None;
    }
    if !blocks_hold_no_tags(&masked, &expressions) {
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
    fn blocks_of_text_between_tags_keep_the_fast_path() {
        for source in [
            "<p>{{#if a}}A{{else if b}}B{{else}}C{{/if}}</p>",
            "<p>{{#each xs}}{{this}}, {{/each}}</p><p>{{^xs}}none{{/xs}}</p>",
            "<a class=\"x\" href=\"{{#if a}}https://a.example{{else}}{{b}}{{/if}}\">go</a>",
        ] {
            let source = format!("<style>.x, p {{color:red}}</style>{source}");
            let out = inline_source(&source);
            assert!(
                out.as_deref().is_some_and(|o| o.contains("color: red")),
                "{source}: {out:?}"
            );
        }
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
        // A tag inside a block, in every kind of block and on either side of `{{else}}`.
        for source in [
            "{{#if a}}<div class=\"x\">{{/if}}<p>x</p>",
            "<div>{{#each xs}}<p>{{this}}</p>{{/each}}</div>",
            "<div>{{#if a}}A{{else}}<b>B</b>{{/if}}</div>",
            "<div>{{#if a}}A{{else if b}}<b>B</b>{{/if}}</div>",
            "<div>{{^a}}<b>none</b>{{/a}}</div>",
            "<div>{{~#unless a~}}<b>B</b>{{~/unless~}}</div>",
            "<div>{{#with a}}<b>{{b}}</b>{{/with}}</div>",
            "<div>{{#> card}}<b>fallback</b>{{/card}}</div>",
            "<div>{{#> card}}text{{/card}}</div>",
            "{{#*inline \"x\"}}x{{/inline}}<p>x</p>",
            "<p>{{{{raw}}}}{{x}}{{{{/raw}}}}</p>",
        ] {
            let source = format!("<style>p{{color:red}}</style>{source}");
            assert!(inline_source(&source).is_none(), "{source}");
        }
        // A class, id or style from the data.
        for source in [
            "<p class=\"{{c}}\">x</p>",
            "<p class='a {{#if b}}b{{/if}}'>x</p>",
            "<p data-x=\"1\" ID = \"{{c}}\">x</p>",
            "<p style=\"color: {{c}}\">x</p>",
        ] {
            let source = format!("<style>.a, #b {{color:red}}</style>{source}");
            assert!(inline_source(&source).is_none(), "{source}");
        }
        // A partial with arguments.
        assert!(combine("{{> footer x=1}}", None, &|_| Some(String::new())).is_none());
        // A layout without exactly one body.
        assert!(combine("x", Some("<p>no body</p>"), &|_| None).is_none());
    }
}
