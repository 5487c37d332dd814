//! What a compiled template reaches: the partials it includes, the helpers it calls (and which
//! of those do not exist), and whether any expression mentions `unsubscribe_url`. A walk over
//! Handlebars' syntax tree, kept apart from the checks that report on it.

use handlebars::template::{Parameter, TemplateElement};

use super::HELPERS;

/// What a walk over template elements found.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// An expression mentions `unsubscribe_url`.
    pub(super) unsubscribe: bool,
    /// Partials included by name.
    pub(super) partials: Vec<String>,
    /// Names called as helpers that no registry knows.
    pub(super) unknown_helpers: Vec<String>,
}

/// Walks `elements` and every block inside them.
pub(super) fn walk(elements: &[TemplateElement], found: &mut Found) {
    for el in elements {
        match el {
            TemplateElement::Expression(h)
            | TemplateElement::HtmlExpression(h)
            | TemplateElement::HelperBlock(h) => {
                helper_call(h, found);
                if let Some(t) = &h.template {
                    walk(&t.elements, found);
                }
                if let Some(t) = &h.inverse {
                    walk(&t.elements, found);
                }
            }
            TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                // `{{> footer url=unsubscribe_url}}` hands the link to the partial: count it.
                for p in d.params.iter().chain(d.hash.values()) {
                    param(p, found);
                }
                match &d.name {
                    Parameter::Name(n) => found.partials.push(n.clone()),
                    Parameter::Path(p) => found.partials.push(path_text(p)),
                    _ => {}
                }
                if let Some(t) = &d.template {
                    walk(&t.elements, found);
                }
            }
            TemplateElement::DecoratorBlock(d) => {
                if let Some(t) = &d.template {
                    walk(&t.elements, found);
                }
            }
            _ => {}
        }
    }
}

/// An expression or block: `{{name params.. hash..}}`.
fn helper_call(h: &handlebars::template::HelperTemplate, found: &mut Found) {
    let called = h.block || !h.params.is_empty() || !h.hash.is_empty();
    if called
        && let Parameter::Name(name) = &h.name
        && !HELPERS.contains(&name.as_str())
        && !found.unknown_helpers.contains(name)
    {
        found.unknown_helpers.push(name.clone());
    }
    param(&h.name, found);
    for p in h.params.iter().chain(h.hash.values()) {
        param(p, found);
    }
}

/// A parameter: a path (maybe `unsubscribe_url`) or a subexpression (a helper call).
fn param(p: &Parameter, found: &mut Found) {
    match p {
        Parameter::Subexpression(s) => match s.element.as_ref() {
            TemplateElement::Expression(h) | TemplateElement::HelperBlock(h) => {
                helper_call(h, found);
            }
            _ => {}
        },
        other => found.unsubscribe |= param_mentions(other),
    }
}

fn path_text(p: &handlebars::Path) -> String {
    match p {
        handlebars::Path::Relative((_, raw)) => raw.clone(),
        handlebars::Path::Local((_, name, _)) => name.clone(),
    }
}

fn param_mentions(p: &Parameter) -> bool {
    match p {
        Parameter::Name(n) => n == "unsubscribe_url",
        Parameter::Path(path) => {
            let text = path_text(path);
            let mut rest = text.as_str();
            while let Some(r) = ["../", "./", "@root.", "this."]
                .iter()
                .find_map(|prefix| rest.strip_prefix(prefix))
            {
                rest = r;
            }
            rest == "unsubscribe_url"
        }
        _ => false,
    }
}
