//! Open and click tracking: links in the HTML go through the click endpoint and a pixel is
//! added, unless the campaign turns them off.

use std::sync::Arc;

/// Turns an original link into its tracked URL.
pub type LinkRewriter = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// How to track one message. The functions build the signed URLs (the server verifies them).
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

/// Rewrites `href="http(s)://…"` through `tracking.click` (not `mailto:`, not the kept
/// link) and adds the pixel before `</body>`.
pub fn rewrite_links(html: &str, tracking: &Tracking) -> String {
    let mut out = String::with_capacity(html.len() + 256);
    let mut rest = html;
    if let Some(click) = &tracking.click {
        while let Some(i) = find_href(rest) {
            let (before, after) = rest.split_at(i);
            out.push_str(before);
            let quote = after.as_bytes()[5] as char;
            let value_start = 6;
            let Some(len) = after[value_start..].find(quote) else {
                rest = after;
                break;
            };
            let url = &after[value_start..value_start + len];
            let decoded = url.replace("&amp;", "&");
            let trackable = (decoded.starts_with("http://") || decoded.starts_with("https://"))
                && tracking.keep.as_deref() != Some(decoded.as_str());
            out.push_str("href=");
            out.push(quote);
            if trackable {
                out.push_str(&click(&decoded).replace('&', "&amp;"));
            } else {
                out.push_str(url);
            }
            out.push(quote);
            rest = &after[value_start + len + 1..];
        }
    }
    out.push_str(rest);
    if let Some(pixel) = &tracking.open_pixel {
        let img = format!(
            "<img src=\"{pixel}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0\">"
        );
        match out.to_ascii_lowercase().rfind("</body>") {
            Some(at) => out.insert_str(at, &img),
            None => out.push_str(&img),
        }
    }
    out
}

/// Position of the next `href="` or `href='` (any case).
fn find_href(s: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("href=") {
        let at = from + i;
        if matches!(s.as_bytes().get(at + 5), Some(b'"' | b'\'')) {
            return Some(at);
        }
        from = at + 5;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_http_links_only() {
        let t = Tracking {
            open_pixel: Some("https://n.example/o/T".into()),
            click: Some(Arc::new(|u: &str| {
                format!("https://n.example/c/{}", u.len())
            })),
            keep: Some("https://n.example/u/X".into()),
        };
        let html = r#"<body><a href="https://a.example/x?a=1&amp;b=2">A</a><a href='mailto:x@y.z'>M</a><a href="https://n.example/u/X">U</a></body>"#;
        let out = rewrite_links(html, &t);
        assert!(out.contains(r#"href="https://n.example/c/27""#), "{out}");
        assert!(out.contains("href='mailto:x@y.z'"));
        assert!(out.contains(r#"href="https://n.example/u/X""#));
        assert!(out.contains(r#"<img src="https://n.example/o/T" width="1" height="1" alt="" style="display:block;border:0"></body>"#), "{out}");
    }
}
