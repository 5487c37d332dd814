//! Open and click tracking: links in the HTML go through the click endpoint and a pixel is
//! added, unless the campaign turns them off.
//!
//! Only the `href` of `<a>` and `<area>` elements is rewritten: a `<link href>` (web fonts,
//! stylesheets) or a `data-href` must keep working. Attribute values are HTML-decoded before
//! the rewriter sees them — Handlebars escapes `=` as `&#x3D;` and `&` as `&amp;` in
//! `href="{{event.url}}"`, and the click endpoint must redirect to the real URL, not to its
//! escaped spelling.

use std::borrow::Cow;
use std::sync::Arc;

/// Turns an original link into its tracked URL.
pub type LinkRewriter = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// How to track one message. The functions build the signed URLs (the server verifies them).
/// The default tracks nothing.
#[derive(Clone, Default)]
pub struct Tracking {
    /// The open pixel's URL.
    pub open_pixel: Option<String>,
    /// Turns an original link into its tracked URL.
    pub click: Option<LinkRewriter>,
    /// A link never rewritten (the unsubscribe URL).
    pub keep: Option<String>,
}

impl std::fmt::Debug for Tracking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracking")
            .field("open_pixel", &self.open_pixel.is_some())
            .field("click", &self.click.is_some())
            .finish()
    }
}

/// Rewrites the `href` of `<a>`/`<area>` elements whose URL is `http(s)://…` through
/// `tracking.click` (not `mailto:`, `tel:`, anchors, nor the kept link), and adds the pixel
/// before `</body>` (at the end when there is no `</body>`).
pub fn rewrite_links(html: &str, tracking: &Tracking) -> String {
    let mut out = match &tracking.click {
        Some(click) => rewrite_hrefs(html, |url| {
            let trackable = is_http(url) && tracking.keep.as_deref() != Some(url);
            trackable.then(|| click(url))
        }),
        None => html.to_string(),
    };
    if let Some(pixel) = &tracking.open_pixel {
        let img = format!(
            "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0;width:1px;height:1px\">",
            escape_attr(pixel)
        );
        match out.to_ascii_lowercase().rfind("</body>") {
            Some(at) => out.insert_str(at, &img),
            None => out.push_str(&img),
        }
    }
    out
}

fn is_http(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Copies `html`, replacing the `href` value of every `<a>`/`<area>` tag for which `new`
/// returns a URL. `new` gets the decoded value; the replacement is escaped and double-quoted.
fn rewrite_hrefs(html: &str, new: impl Fn(&str) -> Option<String>) -> String {
    let bytes = html.as_bytes();
    let mut out = String::with_capacity(html.len() + 512);
    let mut copied = 0;
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        let start = i + off;
        let name_start = start + 1;
        let name_end = html[name_start..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(html.len(), |n| name_start + n);
        let name = &html[name_start..name_end];
        if !(name.eq_ignore_ascii_case("a") || name.eq_ignore_ascii_case("area")) {
            i = name_start;
            continue;
        }
        // Walk the attributes up to the tag's `>`.
        let mut p = name_end;
        loop {
            while p < bytes.len() && (bytes[p].is_ascii_whitespace() || bytes[p] == b'/') {
                p += 1;
            }
            if p >= bytes.len() || bytes[p] == b'>' {
                break;
            }
            let attr_start = p;
            while p < bytes.len()
                && !bytes[p].is_ascii_whitespace()
                && !matches!(bytes[p], b'=' | b'>' | b'/')
            {
                p += 1;
            }
            let attr = &html[attr_start..p];
            let mut q = p;
            while q < bytes.len() && bytes[q].is_ascii_whitespace() {
                q += 1;
            }
            if q >= bytes.len() || bytes[q] != b'=' {
                if p == attr_start {
                    p += 1; // a stray character: step over it
                }
                continue; // an attribute without a value
            }
            q += 1;
            while q < bytes.len() && bytes[q].is_ascii_whitespace() {
                q += 1;
            }
            let (value_start, value_end, after) = match bytes.get(q) {
                Some(&quote @ (b'"' | b'\'')) => match html[q + 1..].find(quote as char) {
                    Some(len) => (q + 1, q + 1 + len, q + 2 + len),
                    None => (q + 1, html.len(), html.len()),
                },
                _ => {
                    let end = html[q..]
                        .find(|c: char| c.is_ascii_whitespace() || c == '>')
                        .map_or(html.len(), |n| q + n);
                    (q, end, end)
                }
            };
            if attr.eq_ignore_ascii_case("href") {
                let value = decode_entities(html[value_start..value_end].trim());
                if let Some(url) = new(&value) {
                    out.push_str(&html[copied..q]);
                    out.push('"');
                    out.push_str(&escape_attr(&url));
                    out.push('"');
                    copied = after;
                }
            }
            p = after;
        }
        i = p.min(html.len());
    }
    out.push_str(&html[copied..]);
    out
}

/// Escapes a value for a double-quoted HTML attribute.
fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Decodes the character references an attribute value may hold: numeric ones and the
/// named ones that escaping produces (`&amp; &lt; &gt; &quot; &apos;`). Anything else stays.
fn decode_entities(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let decoded = tail.find(';').filter(|&semi| semi <= 10).and_then(|semi| {
            let entity = &tail[1..semi];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .map(|hex| u32::from_str_radix(hex, 16))
                    .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracking() -> Tracking {
        Tracking {
            open_pixel: Some("https://n.example/o/T?a=1&b=2".into()),
            click: Some(Arc::new(|u: &str| format!("https://n.example/c/[{u}]"))),
            keep: Some("https://n.example/u/X".into()),
        }
    }

    #[test]
    fn rewrites_http_links_only() {
        let html = r##"<body><a href="https://a.example/x?a=1&amp;b=2">A</a><a href='mailto:x@y.z'>M</a><a href="https://n.example/u/X">U</a><a href="#top">T</a></body>"##;
        let out = rewrite_links(html, &tracking());
        assert!(
            out.contains(r#"href="https://n.example/c/[https://a.example/x?a=1&amp;b=2]""#),
            "{out}"
        );
        assert!(out.contains("href='mailto:x@y.z'"));
        assert!(out.contains(r#"href="https://n.example/u/X""#), "{out}");
        assert!(out.contains(r##"href="#top""##));
        assert!(out.contains(r#"<img src="https://n.example/o/T?a=1&amp;b=2" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px"></body>"#), "{out}");
    }

    #[test]
    fn the_rewriter_sees_the_decoded_url_handlebars_escaped() {
        // `href="{{event.url}}"` with `?id=1&k=2` renders as `?id&#x3D;1&amp;k&#x3D;2`.
        let html = r#"<a class="b" href="https://x.example/d?id&#x3D;1&amp;k&#x3D;2">D</a>"#;
        let out = rewrite_links(html, &tracking());
        assert_eq!(
            out,
            r#"<a class="b" href="https://n.example/c/[https://x.example/d?id=1&amp;k=2]">D</a><img src="https://n.example/o/T?a=1&amp;b=2" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">"#
        );
        // The kept link is recognised even when escaped.
        let keep = Tracking {
            keep: Some("https://n.example/u/X?a=1".into()),
            open_pixel: None,
            ..tracking()
        };
        let html = r#"<a href="https://n.example/u/X?a&#x3D;1">U</a>"#;
        assert_eq!(rewrite_links(html, &keep), html);
    }

    #[test]
    fn only_anchor_and_area_hrefs_are_rewritten() {
        let t = Tracking {
            open_pixel: None,
            ..tracking()
        };
        let html = concat!(
            r#"<link rel="stylesheet" href="https://fonts.example/css">"#,
            r#"<div data-href="https://d.example/">x</div>"#,
            r#"<abbr title="href=&quot;https://no.example&quot;">y</abbr>"#,
            r#"<A TITLE="a > b" HREF = https://up.example/p>Up</A>"#,
            r#"<area shape="rect" href='HTTPS://map.example/'>"#,
            r#"<a name="x">no href</a><a href>empty</a>"#,
        );
        let out = rewrite_links(html, &t);
        assert!(out.contains(r#"<link rel="stylesheet" href="https://fonts.example/css">"#));
        assert!(out.contains(r#"data-href="https://d.example/""#));
        assert!(out.contains(r#"title="href=&quot;https://no.example&quot;""#));
        assert!(
            out.contains(
                r#"<A TITLE="a > b" HREF = "https://n.example/c/[https://up.example/p]">Up</A>"#
            ),
            "{out}"
        );
        assert!(
            out.contains(r#"href="https://n.example/c/[HTTPS://map.example/]">"#),
            "{out}"
        );
        assert!(
            out.ends_with(r#"<a name="x">no href</a><a href>empty</a>"#),
            "{out}"
        );
    }

    #[test]
    fn without_tracking_the_html_is_untouched() {
        let html = r#"<html><body><a href="https://a.example/">A</a></body></html>"#;
        assert_eq!(rewrite_links(html, &Tracking::default()), html);
    }

    #[test]
    fn entities() {
        assert_eq!(decode_entities("a&amp;b&#61;c&#x3D;d&#X3d;"), "a&b=c=d=");
        assert_eq!(
            decode_entities("&unknown; & &#xZZ; &"),
            "&unknown; & &#xZZ; &"
        );
        assert_eq!(escape_attr(r#"a&"<>"#), "a&amp;&quot;&lt;&gt;");
    }
}
