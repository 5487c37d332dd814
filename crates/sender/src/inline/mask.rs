//! Masking: every `{{...}}` expression replaced by a numbered private-use token that the HTML
//! parser keeps as text, and the tokens put back afterwards. Both the CSS inliner and the text
//! derivation work on the masked source, and both give up when a token does not come back
//! out once, in order.

/// Marks the start and end of a masked expression (Unicode private use: never escaped by the
/// HTML serializer, never in a template by accident).
pub(super) const OPEN: char = '\u{E000}';
pub(super) const CLOSE: char = '\u{E001}';

/// A source with its expressions masked.
pub(super) struct Masked {
    /// The source, each expression replaced by its token.
    pub(super) text: String,
    /// The expressions, in order.
    pub(super) expressions: Vec<String>,
    /// Per expression: the attribute (lower case) whose quoted value it sits in, if any.
    pub(super) attributes: Vec<Option<String>>,
}

/// Replaces every `{{...}}` with a numbered token; `None` if one sits where the HTML parser
/// would not keep it as text or as an attribute value.
pub(super) fn mask(source: &str) -> Option<Masked> {
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

/// Puts the expressions back; `None` unless every token survived once, in order.
pub(super) fn unmask(html: &str, expressions: &[String]) -> Option<String> {
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
