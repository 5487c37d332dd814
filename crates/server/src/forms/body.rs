//! What a form post carries: urlencoded or multipart from an HTML form, JSON from a script;
//! read into one list of values, then checked against the form's fields.
//!
//! Every problem is named by the field's label so the page can show it beside the input, and
//! a script gets the same sentences in `{"error", "fields"}`.

use std::collections::BTreeMap;

use nurture_campaign::{FieldKind, Form};
use serde_json::{Map, Value};

/// How the body was sent; decides the answer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// An HTML form (urlencoded or multipart): answered with a page.
    Html,
    /// JSON from a script: answered with JSON.
    Json,
}

/// The posted values by name (the first of repeated names).
pub(crate) type Values = BTreeMap<String, String>;

/// The shape a request's `Content-Type` asks for, before the body is read.
pub(crate) fn shape(content_type: &str) -> Shape {
    if content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    {
        Shape::Json
    } else {
        Shape::Html
    }
}

/// Reads a body by its `Content-Type`.
pub(crate) fn parse(content_type: &str, body: &[u8]) -> Result<Values, String> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-www-form-urlencoded" | "" => Ok(urlencoded(body)),
        "multipart/form-data" => {
            let boundary = content_type
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("boundary="))
                .next()
                .map(|b| b.trim_matches('"'))
                .filter(|b| !b.is_empty())
                .ok_or("the multipart body has no boundary in its Content-Type")?;
            multipart(body, boundary)
        }
        "application/json" => json(body),
        other => Err(format!(
            "the body is `{other}`; send application/x-www-form-urlencoded, multipart/form-data or application/json"
        )),
    }
}

/// Urlencoded pairs; the first of a repeated name wins.
pub(crate) fn urlencoded(body: &[u8]) -> Values {
    let mut out = Values::new();
    for (k, v) in form_urlencoded::parse(body) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

/// The text parts of a `multipart/form-data` body (file parts are refused: forms take none).
fn multipart(body: &[u8], boundary: &str) -> Result<Values, String> {
    let text = std::str::from_utf8(body)
        .map_err(|_| "the multipart body is not UTF-8 text".to_string())?;
    let delimiter = format!("--{boundary}");
    let mut out = Values::new();
    let mut parts = text.split(delimiter.as_str());
    parts.next(); // the preamble
    let mut closed = false;
    for part in parts {
        if part.starts_with("--") {
            closed = true;
            break;
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let (head, value) = part
            .split_once("\r\n\r\n")
            .ok_or("a multipart part has no blank line after its headers")?;
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .ok_or("a multipart part has no Content-Disposition")?;
        if disposition.contains("filename=") {
            return Err("this form takes no files".into());
        }
        let name = disposition
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("name="))
            .next()
            .map(|n| n.trim_matches('"').to_string())
            .ok_or("a multipart part has no name")?;
        out.entry(name).or_insert_with(|| value.to_string());
    }
    if !closed {
        return Err("the multipart body ends before its closing boundary".into());
    }
    Ok(out)
}

/// A JSON object of strings, numbers and booleans.
fn json(body: &[u8]) -> Result<Values, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        if body.iter().all(u8::is_ascii_whitespace) {
            "the body is empty: send a JSON object".to_string()
        } else {
            format!("the body is not valid JSON: {e}")
        }
    })?;
    let Value::Object(map) = value else {
        return Err("the body must be a JSON object".into());
    };
    let mut out = Values::new();
    for (k, v) in map {
        let text = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            _ => return Err(format!("`{k}` must be a string, a number or a boolean")),
        };
        out.insert(k, text);
    }
    Ok(out)
}

/// A checked submission.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Checked {
    /// The address.
    pub email: String,
    /// The other fields as attributes.
    pub attributes: Map<String, Value>,
}

/// Checks the values against the form's fields: every problem, by field name. JSON posts
/// may carry only the form's fields and its defence fields.
pub(crate) fn check(
    form: &Form,
    values: &Values,
    shape: Shape,
) -> Result<Checked, BTreeMap<String, String>> {
    let mut errors = BTreeMap::new();
    if shape == Shape::Json {
        for k in values.keys() {
            let known = form.fields.iter().any(|f| &f.name == k)
                || nurture_campaign::form::RESERVED_FIELDS.contains(&k.as_str());
            if !known {
                let names: Vec<&str> = form.fields.iter().map(|f| f.name.as_str()).collect();
                let hint = match nurture_campaign::did_you_mean(k, &names) {
                    Some(m) => format!("did you mean `{m}`?"),
                    None => format!("the fields are {}", names.join(", ")),
                };
                errors.insert(k.clone(), format!("unknown field `{k}`: {hint}"));
            }
        }
    }
    let mut email = String::new();
    let mut attributes = Map::new();
    for field in &form.fields {
        let raw = values.get(&field.name).map(|v| v.trim()).unwrap_or("");
        if field.kind == FieldKind::Checkbox {
            let on = matches!(raw, "on" | "true" | "1" | "yes");
            if field.required && !on {
                errors.insert(
                    field.name.clone(),
                    format!("{} must be ticked", field.label),
                );
            } else if values.contains_key(&field.name) {
                attributes.insert(field.name.clone(), Value::Bool(on));
            }
            continue;
        }
        if raw.is_empty() {
            if field.required {
                errors.insert(field.name.clone(), format!("{} is required", field.label));
            }
            continue;
        }
        if raw.chars().count() > field.max_length {
            errors.insert(
                field.name.clone(),
                format!(
                    "{} is longer than {} characters",
                    field.label, field.max_length
                ),
            );
            continue;
        }
        if raw.chars().any(|c| {
            c.is_control()
                && !(field.kind == FieldKind::Textarea && matches!(c, '\n' | '\r' | '\t'))
        }) {
            errors.insert(
                field.name.clone(),
                format!("{} contains control characters", field.label),
            );
            continue;
        }
        match field.kind {
            FieldKind::Email => match nurture_campaign::check_address(raw) {
                Ok(_) if field.name == "email" => email = raw.to_string(),
                Ok(_) => {
                    attributes.insert(field.name.clone(), Value::String(raw.to_string()));
                }
                Err(e) => {
                    errors.insert(field.name.clone(), format!("{}: {e}", field.label));
                }
            },
            FieldKind::Number => match raw
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                Some(n) => {
                    attributes.insert(field.name.clone(), Value::Number(n));
                }
                None => {
                    errors.insert(
                        field.name.clone(),
                        format!("{} must be a number", field.label),
                    );
                }
            },
            FieldKind::Url if !(raw.starts_with("http://") || raw.starts_with("https://")) => {
                errors.insert(
                    field.name.clone(),
                    format!("{} must start with http:// or https://", field.label),
                );
            }
            _ => {
                attributes.insert(field.name.clone(), Value::String(raw.to_string()));
            }
        }
    }
    if errors.is_empty() {
        Ok(Checked { email, attributes })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_of_each_kind_are_read() {
        let v = parse(
            "application/x-www-form-urlencoded",
            b"email=a%40b.example&first_name=Ana+M",
        )
        .unwrap();
        assert_eq!(v["email"], "a@b.example");
        assert_eq!(v["first_name"], "Ana M");
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@b.example\r\n--XyZ\r\nContent-Disposition: form-data; name=\"first_name\"\r\n\r\nAna\r\n--XyZ--\r\n";
        let v = parse("multipart/form-data; boundary=XyZ", body.as_bytes()).unwrap();
        assert_eq!(v["email"], "a@b.example");
        assert_eq!(v["first_name"], "Ana");
        let v = parse(
            "application/json",
            br#"{"email": "a@b.example", "n": 3, "ok": true}"#,
        )
        .unwrap();
        assert_eq!(v["n"], "3");
        assert_eq!(v["ok"], "true");
        assert!(
            parse("application/json", b"[1]")
                .unwrap_err()
                .contains("JSON object")
        );
        assert!(
            parse("text/plain", b"x")
                .unwrap_err()
                .contains("text/plain")
        );
        assert!(
            parse("multipart/form-data", b"x")
                .unwrap_err()
                .contains("boundary")
        );
        assert!(
            parse(
                "multipart/form-data; boundary=B",
                b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx"
            )
            .unwrap_err()
            .contains("closing boundary")
        );
    }
}
