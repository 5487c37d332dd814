//! A YAML document as a tree of nodes that remember where they came from.
//!
//! serde stops at the first error; a marketer wants every problem at once, with its line and
//! column. So the file is parsed into this small tree (with `saphyr-parser`, a maintained
//! YAML 1.2 parser) and the decoder walks it. Budgets keep hostile input harmless: a file over
//! [`MAX_FILE_BYTES`], nesting deeper than [`MAX_DEPTH`] or more than [`MAX_NODES`] nodes
//! (an alias bomb expands to billions) is refused with a clear message, never a panic.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::diagnostic::{Diagnostic, SourceFile, Span};

/// Largest campaign file we read.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Deepest nesting of mappings and sequences.
pub const MAX_DEPTH: usize = 64;
/// Most nodes in one document, counting every alias expansion.
pub const MAX_NODES: usize = 100_000;

/// One YAML node and its place in the file.
#[derive(Debug, Clone)]
pub struct Node {
    /// What the node is.
    pub kind: Kind,
    /// Where it starts (and, for scalars, ends).
    pub span: Span,
}

/// The three shapes of YAML data.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A scalar; `plain` when it was written without quotes (so `true`, `12`, `~` are typed).
    Scalar {
        /// The text.
        value: String,
        /// Written without quotes or block style.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// True for `~`, `null`, or an empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, plain: true } if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What the node is, for messages: "a mapping", "a list", "the text `x`".
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Scalar { .. } if self.is_null() => "nothing".to_string(),
            Kind::Scalar { value, .. } => {
                let short: String = value.chars().take(40).collect();
                format!("`{short}`")
            }
            Kind::Seq(_) => "a list".to_string(),
            Kind::Map(_) => "a mapping".to_string(),
        }
    }

    /// The value as JSON, typing plain scalars by the YAML 1.2 core schema.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Scalar { value, plain } => {
                if !plain {
                    return Value::String(value.clone());
                }
                if self.is_null() {
                    return Value::Null;
                }
                match value.as_str() {
                    "true" | "True" | "TRUE" => return Value::Bool(true),
                    "false" | "False" | "FALSE" => return Value::Bool(false),
                    _ => {}
                }
                if let Ok(i) = value.parse::<i64>() {
                    return Value::from(i);
                }
                if looks_numeric(value)
                    && let Ok(f) = value.parse::<f64>()
                    && let Some(n) = serde_json::Number::from_f64(f)
                {
                    return Value::Number(n);
                }
                Value::String(value.clone())
            }
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

fn looks_numeric(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
}

enum Open {
    Seq(Vec<Node>, Span, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Span, usize),
}

/// Parses one YAML document. An empty file yields `Ok(None)`.
pub fn parse(file: &SourceFile) -> Result<Option<Node>, Diagnostic> {
    if file.text.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::file(
            &file.path,
            format!(
                "the file is {} bytes; campaign files are limited to {} bytes",
                file.text.len(),
                MAX_FILE_BYTES
            ),
        )
        .hint("split the campaign or remove what does not belong in it"));
    }
    let text = file.text.clone();
    let lines = LineIndex::new(&text);
    let mut parser = Parser::new_from_str(&text);
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;
    let mut documents = 0usize;

    let budget = |file: &SourceFile, span: Span, what: &str| {
        Diagnostic::at(file, span, format!("the document is too large: {what}"))
            .hint("campaign files are small; remove repeated aliases or deep nesting")
    };

    while let Some(next) = parser.next_event() {
        let (event, pspan) = match next {
            Ok(ok) => ok,
            Err(e) => {
                let m = e.marker();
                let span = lines.span_at(file, m.line(), m.col());
                return Err(
                    Diagnostic::at(file, span, format!("invalid YAML: {}", e.info()))
                        .hint("check the indentation and quoting around this place"),
                );
            }
        };
        let span = lines.span_at(file, pspan.start.line(), pspan.start.col());
        let mut finished: Option<(Node, usize)> = None;
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::at(
                        file,
                        span,
                        "a campaign file holds one YAML document; this is a second one",
                    )
                    .hint("put each campaign in its own file"));
                }
            }
            Event::Scalar(value, style, anchor, _tag) => {
                let end = lines.span_at(file, pspan.end.line(), pspan.end.col());
                let span = file.span(span.offset, end.offset.max(span.offset));
                finished = Some((
                    Node {
                        kind: Kind::Scalar {
                            value: value.into_owned(),
                            plain: matches!(style, ScalarStyle::Plain),
                        },
                        span,
                    },
                    anchor,
                ));
            }
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(budget(file, span, "nested too deeply"));
                }
                stack.push(Open::Seq(Vec::new(), span, anchor));
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(budget(file, span, "nested too deeply"));
                }
                stack.push(Open::Map(Vec::new(), None, span, anchor));
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Open::Seq(items, span, anchor)) => {
                    finished = Some((
                        Node {
                            kind: Kind::Seq(items),
                            span,
                        },
                        anchor,
                    ))
                }
                Some(Open::Map(entries, _, span, anchor)) => {
                    finished = Some((
                        Node {
                            kind: Kind::Map(entries),
                            span,
                        },
                        anchor,
                    ))
                }
                None => {}
            },
            Event::Alias(id) => {
                let Some(target) = anchors.get(&id) else {
                    return Err(Diagnostic::at(file, span, "this alias names no anchor"));
                };
                let size = count(target);
                nodes = nodes.saturating_add(size);
                if nodes > MAX_NODES {
                    return Err(budget(file, span, "aliases expand to too many nodes"));
                }
                let mut copy = target.clone();
                copy.span = span;
                finished = Some((copy, 0));
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        if let Some((node, anchor)) = finished {
            nodes += 1;
            if nodes > MAX_NODES {
                return Err(budget(file, node.span, "too many nodes"));
            }
            if anchor != 0 {
                anchors.insert(anchor, node.clone());
            }
            match stack.last_mut() {
                Some(Open::Seq(items, ..)) => items.push(node),
                Some(Open::Map(entries, pending, ..)) => match pending.take() {
                    None => *pending = Some(node),
                    Some(key) => entries.push((key, node)),
                },
                None => root = Some(node),
            }
        }
    }
    Ok(root.filter(|r| !r.is_null()))
}

fn count(node: &Node) -> usize {
    match &node.kind {
        Kind::Scalar { .. } => 1,
        Kind::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        Kind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count(k) + count(v))
                .sum::<usize>()
        }
    }
}

/// Turns the parser's (line, column) into byte offsets of our own, whatever unit the parser
/// counts its indexes in.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    /// `line` is 1-based, `col` 0-based characters (saphyr's convention).
    fn span_at(&self, file: &SourceFile, line: usize, col: usize) -> Span {
        let text = &file.text;
        let Some(&start) = self.starts.get(line.saturating_sub(1)) else {
            return file.span(text.len(), text.len());
        };
        let end = self.starts.get(line).copied().unwrap_or(text.len());
        let offset = text[start..end]
            .char_indices()
            .nth(col)
            .map_or(end, |(i, _)| start + i);
        file.span(offset, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Option<Node>, Diagnostic> {
        parse(&SourceFile::new("t.yaml", s))
    }

    #[test]
    fn positions_are_one_based_line_and_column() {
        let root = parse_str("a: 1\nbb:\n  c: x\n").unwrap().unwrap();
        let Kind::Map(entries) = &root.kind else {
            panic!()
        };
        assert_eq!((entries[0].0.span.line, entries[0].0.span.col), (1, 1));
        let Kind::Map(inner) = &entries[1].1.kind else {
            panic!()
        };
        assert_eq!((inner[0].0.span.line, inner[0].0.span.col), (3, 3));
        assert_eq!((inner[0].1.span.line, inner[0].1.span.col), (3, 6));
        assert_eq!(inner[0].1.span.len, 1);
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            s.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse_str(&s).unwrap_err();
        assert!(err.message.contains("too large"), "{}", err.message);
    }

    #[test]
    fn huge_file_is_refused() {
        let s = "# x\n".repeat(MAX_FILE_BYTES / 4 + 10);
        let err = parse_str(&s).unwrap_err();
        assert!(err.message.contains("limited to"), "{}", err.message);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let s = "[".repeat(200) + &"]".repeat(200);
        assert!(parse_str(&s).unwrap_err().message.contains("too deeply"));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse_str("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
        assert!(err.span.is_some());
    }

    #[test]
    fn plain_scalars_are_typed_quoted_are_not() {
        let root = parse_str("a: 12\nb: '12'\nc: true\nd: ~\ne: 1.5\n")
            .unwrap()
            .unwrap();
        let v = root.to_json();
        assert_eq!(v["a"], serde_json::json!(12));
        assert_eq!(v["b"], serde_json::json!("12"));
        assert_eq!(v["c"], serde_json::json!(true));
        assert_eq!(v["d"], serde_json::Value::Null);
        assert_eq!(v["e"], serde_json::json!(1.5));
    }
}
