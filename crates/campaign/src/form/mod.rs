//! Forms (SPEC §9): `forms/*.yaml`, the public sign-up forms that capture leads.
//!
//! A form is decoded with the campaign decoder's machinery, so a typo gets the same
//! `file:line:col` diagnostic with a "did you mean" hint, and every problem of a file is
//! reported at once. [`RawForm`] mirrors the format for `nurture schema --forms`; a test keeps
//! its keys and the decoder's in step.
//!
//! The form lives in [`Form`] and its parts; the top level of a form file, its double opt-in
//! and its after pages are decoded in `decode`, its inputs in `field`; this module reads the
//! files and refuses an id used twice.

mod decode;
mod field;
mod model;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::campaign_files;
use crate::decode::Decoder;
use crate::diagnostic::{Diagnostic, SourceFile};
use crate::yaml;

pub use decode::{AFTER_KEYS, FORM_KEYS, OPT_IN_KEYS};
pub use field::{FIELD_KEYS, RESERVED_FIELDS};
pub use model::{After, DoubleOptIn, Field, FieldKind, Form, FormFile, LoadedForms, fingerprint};
pub use schema::{RawAfter, RawField, RawForm, RawOptIn, form_json_schema};

/// Parses and validates one form from text; `default_id` is used when it has no `id`.
pub fn parse_form(source: SourceFile, default_id: &str) -> Result<FormFile, Vec<Diagnostic>> {
    let root = match yaml::parse(&source) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(vec![Diagnostic::at(
                &source,
                source.span(0, 0),
                "the form file is empty",
            )]);
        }
        Err(d) => return Err(vec![d]),
    };
    let mut decoder = Decoder::new(&source);
    match decoder.form(&root, default_id) {
        Some(form) if decoder.diags.is_empty() => Ok(FormFile {
            form,
            spans: std::mem::take(&mut decoder.spans),
            source,
        }),
        _ => Err(decoder.diags),
    }
}

fn load_form(path: &Path) -> Result<FormFile, Vec<Diagnostic>> {
    let text = std::fs::read(path)
        .map_err(|e| vec![Diagnostic::file(path, format!("cannot read the file: {e}"))])
        .and_then(|b| {
            if b.len() > yaml::MAX_FILE_BYTES {
                return Err(vec![Diagnostic::file(
                    path,
                    "the file is larger than 1 MiB",
                )]);
            }
            String::from_utf8(b)
                .map_err(|_| vec![Diagnostic::file(path, "the file is not UTF-8 text")])
        })?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    parse_form(SourceFile::new(path, text), stem)
}

/// Loads every form under `paths` (files or folders of `*.yaml`/`*.yml`), refusing an id
/// used by two files. A missing folder is no forms, not an error.
pub fn load_forms(paths: &[PathBuf]) -> LoadedForms {
    let mut out = LoadedForms::default();
    let mut ids: HashMap<String, PathBuf> = HashMap::new();
    for p in paths {
        if !p.exists() {
            continue;
        }
        let files = match campaign_files(p) {
            Ok(f) => f,
            Err(d) => {
                out.diagnostics.push(d);
                continue;
            }
        };
        for path in files {
            out.files += 1;
            match load_form(&path) {
                Ok(file) => {
                    let id = file.form.id.clone();
                    if let Some(first) = ids.get(&id) {
                        out.diagnostics.push(file.diagnostic(
                            "id",
                            format!("form id `{id}` is already used by {}", first.display()),
                        ));
                        continue;
                    }
                    ids.insert(id, path.clone());
                    out.forms.push(file);
                }
                Err(mut d) => out.diagnostics.append(&mut d),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Form, Vec<Diagnostic>> {
        parse_form(
            SourceFile::new("forms/ebook.yaml", text.to_string()),
            "ebook",
        )
        .map(|f| f.form)
    }

    const GOOD: &str = "title: Get the playbook
fields:
  - { name: email, type: email, required: true, label: Work email }
  - { name: first_name, label: First name }
event: lead.captured
properties: { source: ebook }
tags: [ebook]
double_opt_in: { send: forms/confirm, subject: Please confirm, expires: 2d }
consent: Send me the ebook.
allowed_origins: [\"https://www.acme.example\"]
after_confirm: { redirect: \"https://www.acme.example/thanks\" }
";

    #[test]
    fn a_full_form_parses() {
        let f = parse(GOOD).unwrap();
        assert_eq!(f.id, "ebook");
        assert_eq!(f.fields.len(), 2);
        assert!(f.fields[0].required && !f.fields[1].required);
        assert_eq!(
            f.double_opt_in.as_ref().unwrap().expires.as_secs(),
            2 * 86_400
        );
        assert_eq!(
            f.after_confirm,
            After::Redirect("https://www.acme.example/thanks".into())
        );
        assert_eq!(f.consent_version, fingerprint("Send me the ebook."));
        assert!(!f.record_ip);
    }

    #[test]
    fn problems_are_reported_with_their_place() {
        let text = GOOD
            .replace("consent:", "consnet:")
            .replace("https://www.acme.example\"]", "www.acme.example/x\"]");
        let diags = parse(&text).unwrap_err();
        let all: Vec<String> = diags
            .iter()
            .map(|d| format!("{}: {}", d.location(), d.message))
            .collect();
        assert!(
            all.iter().any(|d| d.contains("unknown key `consnet`")),
            "{all:?}"
        );
        assert!(
            all.iter().any(|d| d.contains("is not an origin")),
            "{all:?}"
        );
        assert!(
            diags
                .iter()
                .any(|d| d.hint.as_deref() == Some("did you mean `consent`?"))
        );
        let d = diags
            .iter()
            .find(|d| d.message.contains("consnet"))
            .unwrap();
        assert_eq!(d.span.unwrap().line, 9);
    }

    #[test]
    fn an_email_field_is_required() {
        let text = GOOD.replace("name: email, type: email, required: true,", "name: mail,");
        let diags = parse(&text).unwrap_err();
        assert!(
            diags
                .iter()
                .any(|d| d.message == "the form has no `email` field")
        );
    }
}
