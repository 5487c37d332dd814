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

#[test]
fn preheader_that_does_not_compile_is_reported() {
    let d = folder(&[("a.html.hbs", "{{unsubscribe_url}}")]);
    let t = Templates::load(d.path()).unwrap();
    let p = t.check_send("a", None, "s", Some("Read {{#if x}}"));
    assert!(
        matches!(&p[..], [TemplateProblem::Preheader { .. }]),
        "{p:?}"
    );
    assert!(
        p[0].to_string()
            .starts_with("the preheader does not compile")
    );
}

#[test]
fn unknown_helpers_are_reported_where_they_are_called() {
    let d = folder(&[
        (
            "a.html.hbs",
            "<p>Hi</p>\n<p>{{defualt contact.first_name \"there\"}}</p>{{unsubscribe_url}}",
        ),
        (
            "b.html.hbs",
            "{{#if (equals a b)}}x{{/if}}{{unsubscribe_url}}",
        ),
    ]);
    let t = Templates::load(d.path()).unwrap();
    let p = t.check_send("a", None, "Hi {{uper contact.first_name}}", None);
    assert!(
        p.contains(&TemplateProblem::Compile {
            path: d.path().join("a.html.hbs"),
            line: Some(2),
            col: Some(6),
            message: p
                .iter()
                .find_map(|x| match x {
                    TemplateProblem::Compile { message, .. } => Some(message.clone()),
                    _ => None,
                })
                .unwrap(),
        }),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|x| x.to_string().contains("no helper `defualt`")),
        "{p:?}"
    );
    assert!(
        p.iter().any(
            |x| matches!(x, TemplateProblem::Subject { message } if message.contains("`uper`"))
        ),
        "{p:?}"
    );
    // A file that compiles but calls an unknown helper still gets its link checked.
    assert!(
        !p.iter()
            .any(|x| matches!(x, TemplateProblem::NoUnsubscribeLink { .. }))
    );
    let p = t.check_send("b", None, "s", None);
    assert!(
        p.iter()
            .any(|x| x.to_string().contains("no helper `equals`")),
        "{p:?}"
    );
    // Known helpers, blocks and plain variables are fine.
    let d = folder(&[(
        "ok.html.hbs",
        "{{#each contact.tags}}{{upper this}}{{/each}}{{#if (eq a \"b\")}}{{lower x}}{{else}}{{format_date y}}{{/if}}{{some_variable}}{{unsubscribe_url}}",
    )]);
    let t = Templates::load(d.path()).unwrap();
    assert_eq!(
        t.check_send("ok", None, "{{default contact.x \"y\"}}", None),
        []
    );
}

#[test]
fn unsubscribe_link_through_nested_partials_blocks_and_partial_parameters() {
    let d = folder(&[
        (
            "layouts/base.html.hbs",
            "<body>{{{body}}}{{> outer}}</body>",
        ),
        ("partials/outer.hbs", "<footer>{{> inner}}</footer>"),
        (
            "partials/inner.hbs",
            "{{#if unsubscribe_url}}<a href=\"{{../unsubscribe_url}}\">U</a>{{/if}}",
        ),
        ("partials/link.hbs", "<a href=\"{{url}}\">U</a>"),
        ("partials/loop_a.hbs", "{{> loop_b}}"),
        ("partials/loop_b.hbs", "{{> loop_a}}"),
        ("a.html.hbs", "<p>Hi</p>"),
        ("b.html.hbs", "<p>Hi</p>{{> link url=unsubscribe_url}}"),
        ("c.html.hbs", "{{> loop_a}}"),
        (
            "d.html.hbs",
            "{{#each items}}{{@root.unsubscribe_url}}{{/each}}",
        ),
    ]);
    let t = Templates::load(d.path()).unwrap();
    assert_eq!(t.check_send("a", Some("base"), "s", None), []);
    assert_eq!(t.check_send("b", None, "s", None), []);
    assert_eq!(t.check_send("d", None, "s", None), []);
    // Partials that include each other end; the link is still missing.
    assert_eq!(
        t.check_send("c", None, "s", None),
        [TemplateProblem::NoUnsubscribeLink {
            path: d.path().join("c.html.hbs")
        }]
    );
}

#[test]
fn a_layout_never_counts_for_the_text_part() {
    let d = folder(&[
        ("layouts/base.html.hbs", "{{{body}}}{{unsubscribe_url}}"),
        (
            "partials/plain_footer.hbs",
            "Unsubscribe: {{unsubscribe_url}}",
        ),
        ("a.html.hbs", "<p>Hi</p>"),
        ("a.txt.hbs", "Hi"),
        ("b.html.hbs", "<p>Hi</p>"),
        ("b.txt.hbs", "Hi\n{{> plain_footer}}"),
    ]);
    let t = Templates::load(d.path()).unwrap();
    assert_eq!(
        t.check_send("a", Some("base"), "s", None),
        [TemplateProblem::NoUnsubscribeLink {
            path: d.path().join("a.txt.hbs")
        }]
    );
    assert_eq!(t.check_send("b", Some("base"), "s", None), []);
}

#[test]
fn a_broken_layout_is_a_compile_problem_of_the_layout_file() {
    let d = folder(&[
        ("layouts/base.html.hbs", "<body>{{{body}}\n{{#if}}</body>"),
        ("a.html.hbs", "<p>Hi</p>"),
    ]);
    let t = Templates::load(d.path()).unwrap();
    let p = t.check_send("a", Some("base"), "s", None);
    match &p[..] {
        [TemplateProblem::Compile { path, line, .. }] => {
            assert_eq!(path, &d.path().join("layouts/base.html.hbs"));
            assert!(line.is_some());
        }
        other => panic!("only the compile error, no verdict on the link: {other:?}"),
    }
    assert!(
        p[0].to_string().contains("layouts/base.html.hbs:"),
        "{}",
        p[0]
    );
}

#[test]
fn a_templates_path_that_is_not_a_folder_fails_to_load() {
    let d = folder(&[("file", "x")]);
    let e = Templates::load(&d.path().join("file")).unwrap_err();
    assert!(
        e.to_string().starts_with("cannot read the templates in "),
        "{e}"
    );
}

#[test]
fn values_are_escaped_in_html_but_not_in_subject_or_text_part() {
    let d = folder(&[
        (
            "w.html.hbs",
            "<p>{{contact.first_name}} {{upper contact.first_name}} {{default contact.nick contact.first_name}} {{{contact.first_name}}}</p>",
        ),
        (
            "w.txt.hbs",
            "Hi {{contact.first_name}} {{upper contact.first_name}}",
        ),
    ]);
    let t = Templates::load(d.path()).unwrap();
    let c = ctx(json!({"first_name": "<script>x</script>"}), json!({}));
    let r = t
        .render(&request("w", None, "Hi {{contact.first_name}}", &c))
        .unwrap();
    assert_eq!(r.subject, "Hi <script>x</script>");
    assert_eq!(r.text, "Hi <script>x</script> <SCRIPT>X</SCRIPT>");
    assert!(
        r.html.contains("&lt;script&gt;x&lt;/script&gt; &lt;SCRIPT&gt;X&lt;/SCRIPT&gt; &lt;script&gt;x&lt;/script&gt;"),
        "{}",
        r.html
    );
    // Triple-stash is the template author's explicit choice.
    assert_eq!(r.html.matches("<script>").count(), 1, "{}", r.html);
}

#[test]
fn strict_mode_allows_if_on_missing_data_but_not_each() {
    let d = folder(&[
        (
            "if.html.hbs",
            "{{#if contact.company}}at {{contact.company}}{{else}}no company{{/if}}",
        ),
        ("each.html.hbs", "{{#each event.items}}{{this}}{{/each}}"),
    ]);
    let t = Templates::load(d.path()).unwrap();
    let c = ctx(json!({}), json!({}));
    let r = t.render(&request("if", None, "s", &c)).unwrap();
    assert!(r.html.contains("no company"), "{}", r.html);
    match t.render(&request("each", None, "s", &c)) {
        Err(RenderError::MissingVariable { variable, .. }) => {
            assert_eq!(variable, "event.items");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_variable_in_the_subject_or_layout_fails_the_message_and_says_where() {
    let d = folder(&[
        (
            "layouts/base.html.hbs",
            "<body>{{{body}}}{{campaign.owner}}</body>",
        ),
        ("w.html.hbs", "<p>Hi</p>"),
    ]);
    let t = Templates::load(d.path()).unwrap();
    let c = ctx(json!({}), json!({}));
    match t.render(&request("w", None, "About {{event.title}}", &c)) {
        Err(RenderError::MissingVariable { variable, template }) => {
            assert_eq!(
                (variable.as_str(), template.as_str()),
                ("event.title", "subject")
            );
        }
        other => panic!("{other:?}"),
    }
    let e = t.render(&request("w", Some("base"), "s", &c)).unwrap_err();
    assert!(
        matches!(&e, RenderError::MissingVariable { variable, template } if variable == "campaign.owner" && template == "layouts/base"),
        "{e:?}"
    );
    assert!(e.to_string().contains("`campaign.owner`"), "{e}");
}

#[test]
fn media_queries_and_stylesheet_links_survive_css_inlining() {
    let d = folder(&[(
        "w.html.hbs",
        "<html><head><link rel=\"stylesheet\" href=\"https://fonts.example/css\"><style>p { color: red; } @media (max-width: 600px) { p { color: blue; } }</style></head><body><p>Hi</p></body></html>",
    )]);
    let t = Templates::load(d.path()).unwrap();
    let c = ctx(json!({}), json!({}));
    let r = t.render(&request("w", None, "s", &c)).unwrap();
    assert!(
        r.html.contains("<p style=\"color: red;\">Hi</p>"),
        "{}",
        r.html
    );
    assert!(r.html.contains("@media (max-width: 600px)"), "{}", r.html);
    assert!(
        r.html.contains("href=\"https://fonts.example/css\""),
        "{}",
        r.html
    );
}

#[test]
fn tracking_rewrites_links_to_their_real_target_and_adds_the_pixel() {
    let d = folder(&[(
        "w.html.hbs",
        "<body><a href=\"{{event.url}}\">Get it</a> <a href=\"{{unsubscribe_url}}\">Unsubscribe</a></body>",
    )]);
    let t = Templates::load(d.path()).unwrap();
    let c = ctx(json!({}), json!({"url": "https://x.example/d?id=1&k=2"}));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut req = request("w", None, "s", &c);
    req.tracking = Tracking {
        open_pixel: Some("https://n.example/o/P".into()),
        click: Some(std::sync::Arc::new(move |u: &str| {
            log.lock().unwrap().push(u.to_string());
            "https://n.example/c/C".to_string()
        })),
        keep: Some("https://n.example/u/T".into()),
    };
    let r = t.render(&req).unwrap();
    assert_eq!(*seen.lock().unwrap(), ["https://x.example/d?id=1&k=2"]);
    assert!(
        r.html.contains("href=\"https://n.example/c/C\""),
        "{}",
        r.html
    );
    assert!(
        r.html.contains("href=\"https://n.example/u/T\""),
        "{}",
        r.html
    );
    assert!(
        r.html.contains("src=\"https://n.example/o/P\""),
        "{}",
        r.html
    );
    // The text part keeps the original link, not the tracked one.
    assert!(
        r.text.contains("https://x.example/d?id=1&k=2"),
        "{}",
        r.text
    );
    assert!(!r.text.contains("n.example/c/"), "{}", r.text);
}

/// What inlining this one message would give: the template rendered into the layout by plain
/// Handlebars, then css-inline over the whole document (with the sender's options).
fn inlined_directly(layout: &str, template: &str, c: &Value) -> String {
    let hb = handlebars::Handlebars::new();
    let body = hb.render_template(template, c).unwrap();
    let mut with_body = c.clone();
    with_body["body"] = Value::String(body);
    let html = hb.render_template(layout, &with_body).unwrap();
    css_inline::CSSInliner::options()
        .load_remote_stylesheets(false)
        .keep_link_tags(true)
        .keep_at_rules(true)
        .build()
        .inline(&html)
        .unwrap()
}

/// The `style` of the first `<tag` in `html`, if it has one.
fn style_of<'a>(html: &'a str, tag: &str) -> Option<&'a str> {
    let start = html.find(&format!("<{tag}"))?;
    let open = &html[start..start + html[start..].find('>')?];
    let at = open.find("style=\"")? + "style=\"".len();
    Some(&open[at..at + open[at..].find('"')?])
}

/// Renders `template` in a layout whose CSS is `css`, once per context, and checks each
/// against inlining that message directly; returns the style of each message's first `<p`.
fn styles_of_p(css: &str, template: &str, contexts: &[Value]) -> Vec<Option<String>> {
    styles_of("p", css, template, contexts)
}

/// [`styles_of_p`] for the first `<tag`.
fn styles_of(tag: &str, css: &str, template: &str, contexts: &[Value]) -> Vec<Option<String>> {
    let layout =
        format!("<html><head><style>{css}</style></head><body>{{{{{{body}}}}}}</body></html>");
    let d = folder(&[("layouts/base.html.hbs", &layout), ("w.html.hbs", template)]);
    let t = Templates::load(d.path()).unwrap();
    contexts
        .iter()
        .map(|c| {
            let r = t.render(&request("w", Some("base"), "s", c)).unwrap();
            let want = inlined_directly(&layout, template, c);
            assert_eq!(r.html, want, "{template} with {c}");
            style_of(&r.html, tag).map(str::to_string)
        })
        .collect()
}

#[test]
fn a_tag_opened_in_a_conditional_block_styles_its_descendants_only_when_rendered() {
    let vip = ctx(json!({"vip": true}), json!({}));
    let regular = ctx(json!({"vip": false}), json!({}));
    let styles = styles_of_p(
        ".x p { color: red; }",
        "{{#if contact.vip}}<div class=\"x\">{{/if}}<p>hello</p>",
        &[vip.clone(), regular.clone()],
    );
    assert!(
        styles[0]
            .as_deref()
            .is_some_and(|s| s.contains("color: red")),
        "{styles:?}"
    );
    assert!(
        !styles[1]
            .as_deref()
            .is_some_and(|s| s.contains("color: red")),
        "{styles:?}"
    );

    // `{{else}}`: one branch or the other decides the parent.
    let styles = styles_of_p(
        ".x p { color: red; } .y p { color: blue; }",
        "{{#if contact.vip}}<div class=\"x\">{{else}}<div class=\"y\">{{/if}}<p>hello</p></div>",
        &[vip.clone(), regular.clone()],
    );
    assert!(
        styles[0]
            .as_deref()
            .is_some_and(|s| s.contains("color: red")),
        "{styles:?}"
    );
    assert!(
        styles[1]
            .as_deref()
            .is_some_and(|s| s.contains("color: blue")),
        "{styles:?}"
    );
}

#[test]
fn a_balanced_block_that_closes_a_paragraph_early_changes_what_follows_only_when_rendered() {
    // HTML's parser ends a `<p>` at a `<div>`: with the note, the span is no longer inside
    // the paragraph, although the block opens and closes its own tags.
    let vip = ctx(json!({"vip": true}), json!({}));
    let regular = ctx(json!({"vip": false}), json!({}));
    let styles = styles_of(
        "span",
        "p span { color: red; }",
        "<p>{{#unless contact.vip}}<div>note</div>{{/unless}}<span>hello</span></p>",
        &[vip, regular],
    );
    assert_eq!(styles[0].as_deref(), Some("color: red;"), "{styles:?}");
    assert_eq!(styles[1], None, "{styles:?}");
}

#[test]
fn tags_repeated_or_left_out_by_each_are_styled_as_in_each_message() {
    let none = ctx(json!({"items": []}), json!({}));
    let two = ctx(json!({"items": ["a", "b"]}), json!({}));
    // An unclosed wrapper per item: the paragraph is inside one only when there are items.
    let styles = styles_of_p(
        ".x p { color: red; }",
        "{{#each contact.items}}<div class=\"x\">{{this}}{{/each}}<p>hello</p>",
        &[none.clone(), two.clone()],
    );
    assert!(
        !styles[0]
            .as_deref()
            .is_some_and(|s| s.contains("color: red")),
        "{styles:?}"
    );
    assert!(
        styles[1]
            .as_deref()
            .is_some_and(|s| s.contains("color: red")),
        "{styles:?}"
    );
    // Balanced items: each one styled, none when the list is empty.
    styles_of_p(
        ".x { color: red; } li { margin: 0; }",
        "<ul>{{#each contact.items}}<li class=\"x\">{{this}}</li>{{/each}}</ul><p>end</p>",
        &[none, two],
    );
}

#[test]
fn a_class_or_id_from_the_data_is_matched_as_in_each_message() {
    let red = ctx(json!({"cls": "x", "vip": true}), json!({}));
    let plain = ctx(json!({"cls": "y", "vip": false}), json!({}));
    for template in [
        "<p class=\"{{contact.cls}}\">hello</p>",
        "<p class=\"{{#if contact.vip}}x{{/if}}\">hello</p>",
        "<p id=\"{{contact.cls}}\">hello</p>",
    ] {
        let styles = styles_of_p(
            ".x, #x { color: red; }",
            template,
            &[red.clone(), plain.clone()],
        );
        assert!(
            styles[0]
                .as_deref()
                .is_some_and(|s| s.contains("color: red")),
            "{template}: {styles:?}"
        );
        assert!(
            !styles[1]
                .as_deref()
                .is_some_and(|s| s.contains("color: red")),
            "{template}: {styles:?}"
        );
    }
}

#[test]
fn the_text_part_of_a_conditional_block_reads_as_the_message_html_does() {
    let d = folder(&[(
        "w.html.hbs",
        "<p>Hello {{#if contact.vip}}Tom &amp; Jerry{{else}}you &lt;3{{/if}}</p><p>{{#each contact.items}}{{this}}{{/each}}</p>",
    )]);
    let t = Templates::load(d.path()).unwrap();
    let vip = ctx(json!({"vip": true, "items": ["a", "b"]}), json!({}));
    let r = t.render(&request("w", None, "s", &vip)).unwrap();
    assert_eq!(r.text, "Hello Tom & Jerry\n\nab\n");
    let regular = ctx(json!({"vip": false, "items": []}), json!({}));
    let r = t.render(&request("w", None, "s", &regular)).unwrap();
    assert_eq!(r.text, "Hello you <3\n");
}
