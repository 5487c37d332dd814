//! Templates on disk: loading, the checks `validate` relies on, and strict rendering.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use nurture_sender::{RenderError, RenderRequest, TemplateProblem, Templates, Tracking, context};
use serde_json::{Map, Value, json};

fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    dir
}

const LAYOUT: &str = "<html><head><style>p { color: #333; }</style></head><body>{{{body}}}{{> footer}}</body></html>";
const FOOTER: &str =
    "<p class=\"foot\"><a href=\"{{unsubscribe_url}}\">Unsubscribe</a> {{postal_address}}</p>";

fn ctx(attrs: Value, event: Value) -> Value {
    let attrs: Map<String, Value> = attrs.as_object().cloned().unwrap_or_default();
    let event: Map<String, Value> = event.as_object().cloned().unwrap_or_default();
    context(
        "lee@x.example",
        &attrs,
        &["vip".into()],
        &event,
        "ebook",
        "Ebook",
        "welcome",
        "https://n.example/u/T",
        Some("1 Main St"),
    )
}

fn request<'a>(
    template: &'a str,
    layout: Option<&'a str>,
    subject: &'a str,
    c: &'a Value,
) -> RenderRequest<'a> {
    RenderRequest {
        template,
        layout,
        subject,
        preheader: None,
        context: c,
        tracking: Tracking::default(),
    }
}

#[test]
fn unsubscribe_link_reached_through_layout_partial_passes() {
    let d = folder(&[
        ("layouts/base.html.hbs", LAYOUT),
        ("partials/footer.hbs", FOOTER),
        ("ebook/welcome.html.hbs", "<p>Hi</p>"),
    ]);
    let t = Templates::load(d.path()).unwrap();
    assert_eq!(t.check_send("ebook/welcome", Some("base"), "Hi", None), []);
    // Without the layout, nothing reaches it.
    assert_eq!(
        t.check_send("ebook/welcome", None, "Hi", None),
        [TemplateProblem::NoUnsubscribeLink {
            path: d.path().join("ebook/welcome.html.hbs")
        }]
    );
}

#[test]
fn missing_template_layout_and_partial_name_the_path() {
    let d = folder(&[("a.html.hbs", "{{> nothere}} {{unsubscribe_url}}")]);
    let t = Templates::load(d.path()).unwrap();
    assert_eq!(
        t.check_send("b", None, "s", None),
        [TemplateProblem::MissingTemplate {
            looked_for: d.path().join("b.html.hbs")
        }]
    );
    let p = t.check_send("a", Some("base"), "s", None);
    assert!(
        p.contains(&TemplateProblem::MissingLayout {
            looked_for: d.path().join("layouts/base.html.hbs")
        }),
        "{p:?}"
    );
    assert!(
        p.contains(&TemplateProblem::MissingPartial {
            name: "nothere".into(),
            used_in: d.path().join("a.html.hbs")
        }),
        "{p:?}"
    );
}

#[test]
fn compile_errors_carry_line_and_column() {
    let d = folder(&[("a.html.hbs", "<p>ok</p>\n<p>{{#if x}}never closed</p>\n")]);
    let t = Templates::load(d.path()).unwrap();
    let p = t.check_send("a", None, "s", None);
    match &p[..] {
        [
            TemplateProblem::Compile {
                path,
                line: Some(line),
                ..
            },
        ] => {
            assert_eq!(path, &d.path().join("a.html.hbs"));
            assert!(*line >= 2, "{p:?}");
        }
        other => panic!("{other:?}"),
    }
    let p = t.check_send("a", None, "Hi {{name", None);
    assert!(
        p.iter()
            .any(|x| matches!(x, TemplateProblem::Subject { .. })),
        "{p:?}"
    );
}

#[test]
fn text_part_must_reach_the_link_too() {
    let d = folder(&[
        ("a.html.hbs", "{{unsubscribe_url}}"),
        ("a.txt.hbs", "plain"),
    ]);
    let t = Templates::load(d.path()).unwrap();
    assert_eq!(
        t.check_send("a", None, "s", None),
        [TemplateProblem::NoUnsubscribeLink {
            path: d.path().join("a.txt.hbs")
        }]
    );
}

#[test]
fn renders_layout_inlines_css_escapes_html_not_subject() {
    let d = folder(&[
        ("layouts/base.html.hbs", LAYOUT),
        ("partials/footer.hbs", FOOTER),
        (
            "w.html.hbs",
            "<p>Hi {{contact.first_name}}, here is <a href=\"https://x.example/book\">{{event.title}}</a></p>",
        ),
    ]);
    let t = Templates::load(d.path()).unwrap();
    let c = ctx(
        json!({"first_name": "<b>Lee</b>"}),
        json!({"title": "Growth & You"}),
    );
    let mut req = request(
        "w",
        Some("base"),
        "{{contact.first_name}}: {{event.title}}",
        &c,
    );
    req.preheader = Some("Read {{event.title}} today");
    let r = t.render(&req).unwrap();
    assert_eq!(r.subject, "<b>Lee</b>: Growth & You");
    assert!(r.html.contains("Hi &lt;b&gt;Lee&lt;/b&gt;"), "{}", r.html);
    assert!(
        r.html.contains("style=\"color: #333"),
        "CSS inlined: {}",
        r.html
    );
    assert!(!r.html.contains("<style>"), "{}", r.html);
    assert!(r.html.contains("Read Growth &amp; You today"), "{}", r.html);
    assert!(r.html.contains("https://n.example/u/T"));
    assert!(r.text.contains("Hi <b>Lee</b>"), "{}", r.text);
    assert!(
        !r.text.contains("Read Growth"),
        "the hidden preheader does not lead the text part: {}",
        r.text
    );
    assert!(
        r.text.contains("https://x.example/book"),
        "links kept in text: {}",
        r.text
    );
}

#[test]
fn missing_variable_fails_the_whole_message_and_default_rescues_it() {
    let d = folder(&[
        (
            "w.html.hbs",
            "<p>Hi {{contact.first_name}}</p>{{unsubscribe_url}}",
        ),
        (
            "d.html.hbs",
            "<p>Hi {{default contact.first_name \"there\"}} {{upper contact.email}}</p>",
        ),
    ]);
    let t = Templates::load(d.path()).unwrap();
    let c = ctx(json!({}), json!({}));
    match t.render(&request("w", None, "s", &c)) {
        Err(RenderError::MissingVariable { variable, template }) => {
            assert_eq!(variable, "contact.first_name");
            assert_eq!(template, "w");
        }
        other => panic!("{other:?}"),
    }
    let r = t
        .render(&request(
            "d",
            None,
            "{{default event.title \"our guide\"}}",
            &c,
        ))
        .unwrap();
    assert!(r.html.contains("Hi there LEE@X.EXAMPLE"), "{}", r.html);
    assert_eq!(r.subject, "our guide");
}

#[test]
fn format_date_uses_the_contacts_time_zone() {
    let d = folder(&[("w.html.hbs", "{{format_date event.at \"%Y-%m-%d %H:%M\"}}")]);
    let t = Templates::load(d.path()).unwrap();
    let c = ctx(
        json!({"timezone": "America/New_York"}),
        json!({"at": "2026-11-02T15:00:00Z"}),
    );
    let r = t.render(&request("w", None, "s", &c)).unwrap();
    assert!(r.html.contains("2026-11-02 10:00"), "{}", r.html);
}

#[test]
fn missing_folder_is_empty_not_an_error() {
    let t = Templates::load(Path::new("/nonexistent/nurture/templates")).unwrap();
    assert!(matches!(
        t.check_send("x", None, "s", None)[..],
        [TemplateProblem::MissingTemplate { .. }]
    ));
}
