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

/// A source with its expressions masked.
struct Masked {
    /// The source, each expression replaced by its token.
    text: String,
    /// The expressions, in order.
    expressions: Vec<String>,
    /// Per expression: the attribute (lower case) whose quoted value it sits in, if any.
    attributes: Vec<Option<String>>,
}

/// Replaces every `{{...}}` with a numbered token; `None` if one sits where the HTML parser
/// would not keep it as text or as an attribute value.
fn mask(source: &str) -> Option<Masked> {
    let mut out = String::with_capacity(source.len());
    let mut expressions = Vec::new();
    let mut attributes = Vec::new();
    let lower = source.to_ascii_lowercase();
    let bytes = source.as_bytes();
    let mut i = 0;
    let mut in_tag = false;
    let mut quote: Option<u8> = None;
    // The attribute whose quoted value is being read.
    let mut attribute: Option<String> = None;
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
            attributes.push(attribute.clone());
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
                (Some(q), _) if c == q => {
                    quote = None;
                    attribute = None;
                }
                (None, b'"' | b'\'') => {
                    quote = Some(c);
                    // `name="`: the name before the `=`.
                    let before = lower[..i].trim_end().strip_suffix('=')?.trim_end();
                    let start = before
                        .rfind(|c: char| {
                            c.is_ascii_whitespace() || c == '"' || c == '\'' || c == '<' || c == '/'
                        })
                        .map_or(0, |at| at + 1);
                    attribute = Some(before[start..].to_string());
                }
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
    (!in_tag && raw_until.is_none()).then_some(Masked {
        text: out,
        expressions,
        attributes,
    })
}

/// How an expression opens, continues or closes a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// `{{#name ..}}` or `{{^name}}`.
    Open,
    /// `{{else}}`, `{{else if ..}}`, `{{^}}`.
    Else,
    /// `{{/name}}`.
    Close,
    /// Anything else: a value, a comment.
    None,
    /// What this module does not follow: a raw block (`{{{{raw}}}}`), a partial block
    /// (`{{#> name}}`, its content is not in the source), a decorator (`{{#*inline}}`).
    Unknown,
}

fn block_of(expression: &str) -> Block {
    if expression.starts_with("{{{{") {
        return Block::Unknown;
    }
    let inner = expression
        .trim_start_matches('{')
        .trim_start_matches('~')
        .trim_start();
    let rest = |sigil: usize| inner[sigil..].trim_start();
    match inner.as_bytes().first() {
        Some(b'#') if rest(1).starts_with(['>', '*']) => Block::Unknown,
        Some(b'#') => Block::Open,
        Some(b'^') => {
            let name = rest(1)
                .trim_end_matches('}')
                .trim_end_matches('~')
                .trim_end();
            if name.is_empty() {
                Block::Else
            } else {
                Block::Open
            }
        }
        Some(b'/') => Block::Close,
        _ if inner.strip_prefix("else").is_some_and(|r| {
            r.starts_with(|c: char| c.is_whitespace() || c == '}' || c == '~')
        }) =>
        {
            Block::Else
        }
        _ => Block::None,
    }
}

/// True when every block is balanced and holds no tag (no `<` or `>` between a block's
/// opening and its close). Tags then stand outside every block, so each message has the
/// masked source's elements with the same nesting, whatever its blocks render: only text
/// and attribute values differ.
fn blocks_hold_no_tags(masked: &str, expressions: &[String]) -> bool {
    let mut depth = 0usize;
    let mut rest = masked;
    while !rest.is_empty() {
        let Some(start) = rest.find(OPEN) else {
            break;
        };
        if depth > 0 && rest[..start].contains(['<', '>']) {
            return false;
        }
        let after = &rest[start + OPEN.len_utf8()..];
        let Some(end) = after.find(CLOSE) else {
            return false;
        };
        let Some(expression) = after[..end]
            .parse::<usize>()
            .ok()
            .and_then(|n| expressions.get(n))
        else {
            return false;
        };
        match block_of(expression) {
            Block::Open => depth += 1,
            Block::Close if depth > 0 => depth -= 1,
            Block::Else if depth > 0 => {}
            Block::None => {}
            Block::Close | Block::Else | Block::Unknown => return false,
        }
        rest = &after[end + CLOSE.len_utf8()..];
    }
    depth == 0
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

/// A piece of a text part derived once per template: literal text, or value number `n` of
/// its [`TextSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TextPiece {
    Text(String),
    Value(usize),
}

/// A Handlebars HTML source prepared for deriving its text part once instead of once per
/// message: its expressions masked, cut into values, each a plain `{{value}}` or a block
/// with no tag and no character reference inside (`{{#if a}}{{a}}{{/if}}`, rendered whole,
/// its text put in as written). `None` from [`Self::new`] for anything else (raw HTML, a
/// partial, a comment, white-space control, a block with tags or `&amp;`, an expression in
/// a tag or in `<style>`).
#[derive(Debug)]
pub(crate) struct TextSource {
    masked: String,
    /// Per value: its source and the byte range of its tokens in `masked`.
    values: Vec<(String, std::ops::Range<usize>)>,
    /// Per token: the value it belongs to.
    token_value: Vec<usize>,
}

impl TextSource {
    pub(crate) fn new(source: &str) -> Option<Self> {
        if source.contains('\\') && source.contains("\\{{") {
            return None;
        }
        let Masked {
            text: masked,
            expressions,
            ..
        } = mask(source)?;
        let n = expressions.len();
        let simple = |e: &str| {
            ![
                "{{{", "{{&", "{{#", "{{/", "{{^", "{{>", "{{!", "{{~", "{{else",
            ]
            .iter()
            .any(|p| e.starts_with(p))
                && !e.ends_with("~}}")
                && e.len() > 4
        };
        // Each token's byte range in `masked`.
        let mut ranges = Vec::with_capacity(n);
        let mut at = 0;
        for _ in 0..n {
            let start = at + masked[at..].find(OPEN)?;
            let end = start + masked[start..].find(CLOSE)? + CLOSE.len_utf8();
            ranges.push(start..end);
            at = end;
        }
        let mut values = Vec::new();
        let mut token_value = Vec::with_capacity(n);
        let mut k = 0;
        while k < n {
            if !expressions[k].starts_with("{{#") {
                if !simple(&expressions[k]) {
                    return None;
                }
                token_value.push(values.len());
                values.push((expressions[k].clone(), ranges[k].clone()));
                k += 1;
                continue;
            }
            let (mut depth, mut j) = (0, k);
            loop {
                if expressions[j].starts_with("{{#") {
                    depth += 1;
                } else if expressions[j].starts_with("{{/") {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                j += 1;
                if j == n {
                    return None;
                }
            }
            let span = ranges[k].start..ranges[j].end;
            let inner = &masked[span.clone()];
            // The block's own source: its tokens put back, no tag inside.
            let mut block = String::new();
            let mut rest = inner;
            for e in &expressions[k..=j] {
                let start = rest.find(OPEN)?;
                let text = &rest[..start];
                // A tag would render differently; an entity (`&amp;`) would be put in the
                // text as it is written, where the converter reads it as the character.
                if text.contains(['<', '>', '&']) {
                    return None;
                }
                block.push_str(text);
                block.push_str(e);
                rest = &rest[start + rest[start..].find(CLOSE)? + CLOSE.len_utf8()..];
            }
            token_value.extend(std::iter::repeat_n(values.len(), j + 1 - k));
            values.push((block, span));
            k = j + 1;
        }
        Some(Self {
            masked,
            values,
            token_value,
        })
    }

    /// The Handlebars source of each value.
    pub(crate) fn value_sources(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(|(s, _)| s.as_str())
    }

    /// The text part with the values that are `empty` left out of the HTML (an element left
    /// empty can vanish from the text, so the text is derived once per pattern of empty
    /// values), cut into literal text and the other values; `None` when the converter
    /// moved a token where a value could read differently (dropped it, doubled it, split a
    /// block).
    pub(crate) fn pieces(
        &self,
        empty: &[bool],
        derive: impl Fn(&str) -> Option<String>,
    ) -> Option<Vec<TextPiece>> {
        let mut html = String::with_capacity(self.masked.len());
        let mut at = 0;
        for ((_, range), gone) in self.values.iter().zip(empty) {
            if *gone {
                html.push_str(&self.masked[at..range.start]);
                at = range.end;
            }
        }
        html.push_str(&self.masked[at..]);
        let text = derive(&html)?;
        // Tokens in the text's order (a link's URL moves to the references at the end), each
        // once; a block's tokens one after the other.
        let n = self.token_value.len();
        let mut seen = vec![false; n];
        let mut pieces = Vec::new();
        let mut rest = text.as_str();
        let mut inside: Option<usize> = None; // the next token of the block being read
        while let Some(start) = rest.find(OPEN) {
            let after = &rest[start + OPEN.len_utf8()..];
            let end = after.find(CLOSE)?;
            let t: usize = after[..end].parse().ok()?;
            if t >= n || std::mem::replace(&mut seen[t], true) {
                return None;
            }
            let v = self.token_value[t];
            match inside {
                Some(expected) => {
                    if t != expected {
                        return None;
                    }
                    let last = t + 1 == n || self.token_value[t + 1] != v;
                    inside = (!last).then_some(t + 1);
                }
                None => {
                    // A value starts with its first token.
                    if t > 0 && self.token_value[t - 1] == v {
                        return None;
                    }
                    if start > 0 {
                        pieces.push(TextPiece::Text(rest[..start].to_string()));
                    }
                    pieces.push(TextPiece::Value(v));
                    let last = t + 1 == n || self.token_value[t + 1] != v;
                    inside = (!last).then_some(t + 1);
                }
            }
            rest = &after[end + CLOSE.len_utf8()..];
        }
        if !rest.is_empty() {
            pieces.push(TextPiece::Text(rest.to_string()));
        }
        let shown = |t: usize| !empty[self.token_value[t]];
        let complete = (0..n).all(|t| seen[t] == shown(t));
        let clean = pieces.iter().all(|p| match p {
            TextPiece::Text(t) => !t.contains(CLOSE),
            TextPiece::Value(_) => true,
        });
        (complete && inside.is_none() && clean).then_some(pieces)
    }
}

/// Whether a value, put in the derived text as it is, reads exactly as the converter would
/// have rendered it in the HTML: not empty (an empty element can vanish), no white space but
/// single inner spaces (HTML collapses runs and trims), no control or invisible characters.
pub(crate) fn plain_value(v: &str) -> bool {
    !v.is_empty()
        && !v.starts_with(' ')
        && !v.ends_with(' ')
        && !v.contains("  ")
        && v.chars().all(|c| {
            (c == ' ' || !c.is_whitespace())
                && !c.is_control()
                && !matches!(
                    c,
                    '\u{AD}' | '\u{A0}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202F}' | '\u{FEFF}'
                )
                && !(OPEN..=CLOSE).contains(&c)
        })
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
