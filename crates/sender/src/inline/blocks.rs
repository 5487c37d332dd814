//! Which expressions open, continue or close a Handlebars block, and whether any block holds a
//! tag. A masked source whose blocks hold no tag has the same elements and nesting as every
//! message rendered from it; that is what makes inlining it once safe.

use super::mask::{CLOSE, OPEN};

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
pub(super) fn blocks_hold_no_tags(masked: &str, expressions: &[String]) -> bool {
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
