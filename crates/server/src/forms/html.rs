//! The pages of the public forms: the hosted form, the answers after a post, and the
//! confirmation pages. Accessible and mobile-friendly (language, title, viewport, a label for
//! every input, errors tied to their inputs, a summary announced to screen readers) and usable
//! without JavaScript; the one script only solves the proof of work.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use nurture_campaign::{After, FieldKind, Form};
use sha2::{Digest, Sha256};

use super::body::Values;

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;\
max-width:32rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.5}\
h1{font-size:1.5rem}label{display:block;font-weight:600;margin-top:1rem}\
input,textarea{box-sizing:border-box;width:100%;font:inherit;padding:.6rem;border:1px solid #767676;border-radius:.3rem}\
input[type=checkbox]{width:auto}.error{color:#b00020;display:block}\
.alert{border:2px solid #b00020;padding:.6rem;border-radius:.3rem}\
.hp{position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden}\
.consent{font-size:.95rem;color:#444}button{font:inherit;padding:.7rem 1.6rem;border:0;\
border-radius:.3rem;background:#222;color:#fff;cursor:pointer;margin-top:1rem}";

/// The proof-of-work solver: finds `n` with SHA-256(`challenge:n`) starting with
/// `difficulty` zero bits and puts it in the form. Needs WebCrypto (HTTPS or localhost).
pub(crate) const POW_SCRIPT: &str = "(function(){var f=document.getElementById('nurture-form');\
if(!f||!window.crypto||!crypto.subtle||!window.TextEncoder)return;\
var c=f.getAttribute('data-challenge'),d=+f.getAttribute('data-difficulty'),\
p=f.querySelector('input[name=nurture_pow]'),e=new TextEncoder(),n=0;\
function ok(b){var r=d;for(var i=0;i<b.length&&r>0;i++){if(r>=8){if(b[i]!==0)return false;r-=8}\
else{return(b[i]>>(8-r))===0}}return true}\
function step(){var a=[];for(var k=0;k<64;k++)a.push(n++);\
Promise.all(a.map(function(i){return crypto.subtle.digest('SHA-256',e.encode(c+':'+i))\
.then(function(h){return[i,new Uint8Array(h)]})})).then(function(rs){\
for(var j=0;j<rs.length;j++){if(ok(rs[j][1])){p.value=String(rs[j][0]);\
f.setAttribute('data-solved','1');return}}step()})}step()})();";

/// `'sha256-…'` of [`POW_SCRIPT`], for the Content-Security-Policy.
fn script_hash() -> String {
    let digest = Sha256::digest(POW_SCRIPT.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Text made safe for HTML content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The origin of an absolute URL (`https://host:port`), for the CSP.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{host}"))
}

/// Where a page's forms may post or be redirected to: here, and the redirect's origin.
fn form_action(after: &After) -> String {
    match after {
        After::Redirect(url) => match origin_of(url) {
            Some(o) => format!("'self' {o}"),
            None => "'self'".into(),
        },
        After::Message(_) => "'self'".into(),
    }
}

/// A complete page with the headers every form page gets.
pub(crate) fn page(status: StatusCode, title: &str, body: &str, csp: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>{}</title><style>{STYLE}</style></head>\n<body><main>\n{body}\n</main></body></html>\n",
        escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    // `same-origin`, not `no-referrer`: with no referrer Chromium sends `Origin: null` with
    // the form's own post, which the origin check must refuse (a sandboxed frame elsewhere
    // sends it too).
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A page with a heading and a message, no scripts.
pub(crate) fn message(status: StatusCode, title: &str, text: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<h1>{}</h1>\n<p role=\"status\">{}</p>",
            escape(title),
            escape(text)
        ),
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    )
}

/// The hosted form: `stamp` is the signed time stamp and proof-of-work challenge; `values`
/// and `errors` refill it after a refused post.
pub(crate) fn form_page(
    form: &Form,
    stamp: &str,
    difficulty: u32,
    values: &Values,
    errors: &BTreeMap<String, String>,
    status: StatusCode,
) -> Response {
    let mut b = String::with_capacity(4096);
    b.push_str(&format!("<h1>{}</h1>\n", escape(&form.title)));
    if let Some(d) = &form.description {
        b.push_str(&format!("<p>{}</p>\n", escape(d)));
    }
    b.push_str(&format!(
        "<form id=\"nurture-form\" method=\"post\" action=\"/f/{}\" data-challenge=\"{}\" data-difficulty=\"{difficulty}\">\n",
        escape(&form.id),
        escape(stamp)
    ));
    if !errors.is_empty() {
        b.push_str("<div class=\"alert\" role=\"alert\"><p>Please correct the following:</p><ul>");
        for e in errors.values() {
            b.push_str(&format!("<li>{}</li>", escape(e)));
        }
        b.push_str("</ul></div>\n");
    }
    for field in &form.fields {
        let id = format!("f-{}", field.name);
        let error = errors.get(&field.name);
        let described = error.map_or(String::new(), |_| {
            format!(" aria-invalid=\"true\" aria-describedby=\"{id}-error\"")
        });
        let required = if field.required {
            " required aria-required=\"true\""
        } else {
            ""
        };
        let star = if field.required {
            " <span aria-hidden=\"true\">*</span>"
        } else {
            ""
        };
        let value = values.get(&field.name).map(String::as_str).unwrap_or("");
        let autocomplete = match field.name.as_str() {
            "email" => " autocomplete=\"email\"",
            "first_name" => " autocomplete=\"given-name\"",
            "last_name" => " autocomplete=\"family-name\"",
            "name" => " autocomplete=\"name\"",
            "company" => " autocomplete=\"organization\"",
            "phone" => " autocomplete=\"tel\"",
            _ => "",
        };
        match field.kind {
            FieldKind::Checkbox => b.push_str(&format!(
                "<label for=\"{id}\"><input type=\"checkbox\" id=\"{id}\" name=\"{}\"{}{required}{described}> {}{star}</label>\n",
                escape(&field.name),
                if value.is_empty() { "" } else { " checked" },
                escape(&field.label)
            )),
            FieldKind::Textarea => b.push_str(&format!(
                "<label for=\"{id}\">{}{star}</label>\n<textarea id=\"{id}\" name=\"{}\" rows=\"4\" maxlength=\"{}\"{required}{described}>{}</textarea>\n",
                escape(&field.label),
                escape(&field.name),
                field.max_length,
                escape(value)
            )),
            kind => b.push_str(&format!(
                "<label for=\"{id}\">{}{star}</label>\n<input type=\"{}\" id=\"{id}\" name=\"{}\" maxlength=\"{}\" value=\"{}\"{autocomplete}{required}{described}>\n",
                escape(&field.label),
                kind.input_type(),
                escape(&field.name),
                field.max_length,
                escape(value)
            )),
        }
        if let Some(e) = error {
            b.push_str(&format!(
                "<span class=\"error\" id=\"{id}-error\">{}</span>\n",
                escape(e)
            ));
        }
    }
    // The honeypot: off-screen, out of the tab order and hidden from screen readers.
    b.push_str(
        "<div class=\"hp\" aria-hidden=\"true\"><label for=\"f-website\">Leave this field empty</label>\
         <input type=\"text\" id=\"f-website\" name=\"website\" tabindex=\"-1\" autocomplete=\"off\" value=\"\"></div>\n",
    );
    b.push_str(&format!(
        "<input type=\"hidden\" name=\"nurture_ts\" value=\"{}\"><input type=\"hidden\" name=\"nurture_pow\" value=\"\">\n",
        escape(stamp)
    ));
    b.push_str(&format!(
        "<p class=\"consent\" id=\"consent\">{}</p>\n",
        escape(&form.consent)
    ));
    b.push_str(&format!(
        "<button type=\"submit\" aria-describedby=\"consent\">{}</button>\n</form>\n<script>{POW_SCRIPT}</script>",
        escape(&form.button)
    ));
    let ancestors = if form.allowed_origins.is_empty() {
        "'self'".to_string()
    } else {
        format!("'self' {}", form.allowed_origins.join(" "))
    };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src {}; form-action {}; frame-ancestors {ancestors}",
        script_hash(),
        form_action(&form.after_submit)
    );
    page(status, &form.title, &b, &csp)
}

/// The page behind a confirmation link: a button, because a GET alone confirms nothing
/// (mail scanners fetch every link). The form has no `action`: it posts to its own URL.
pub(crate) fn confirm_page(form: &Form) -> Response {
    let body = format!(
        "<h1>{}</h1>\n<p>Please confirm that you want to receive these emails.</p>\n\
         <p class=\"consent\">{}</p>\n\
         <form method=\"post\"><input type=\"hidden\" name=\"confirm\" value=\"yes\">\
         <button type=\"submit\" id=\"confirm\">Confirm my email address</button></form>",
        escape(&form.title),
        escape(&form.consent)
    );
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action {}; frame-ancestors 'none'",
        form_action(&form.after_confirm)
    );
    page(StatusCode::OK, "Confirm your email address", &body, &csp)
}

/// An expired confirmation link: a button that sends a new one.
pub(crate) fn expired_page() -> Response {
    page(
        StatusCode::OK,
        "This link has expired",
        "<h1>This link has expired</h1>\n<p>Confirmation links work for a limited time. \
         Press the button and we will email you a new one.</p>\n\
         <form method=\"post\"><input type=\"hidden\" name=\"resend\" value=\"yes\">\
         <button type=\"submit\" id=\"resend\">Send me a new link</button></form>",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    )
}

/// What follows a post or a confirmation: a message page, or a 303 to the form's URL.
pub(crate) fn after(after: &After, title: &str) -> Response {
    match after {
        After::Message(text) => message(StatusCode::OK, title, text),
        After::Redirect(url) => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(url) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
    }
}
