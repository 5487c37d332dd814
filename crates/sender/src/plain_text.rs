//! The plain-text part of an email made from its HTML: html2text without wrapping, then our
//! own wrap at 78 columns, so a whole message and a template whose values are put in
//! afterwards wrap the same way.

/// The plain-text alternative of an HTML part: 78 columns, links kept as numbered references
/// listed at the end.
pub(crate) fn html_to_text(html: &str) -> Result<String, String> {
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
