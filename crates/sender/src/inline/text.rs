//! The text part derived once per template: [`TextSource`] cuts a masked HTML source into
//! values, [`TextSource::pieces`] turns the converter's text back into literal text and value
//! slots, and [`plain_value`] says which rendered values may be put in as they are.

use super::mask::{CLOSE, Masked, OPEN, mask};

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
