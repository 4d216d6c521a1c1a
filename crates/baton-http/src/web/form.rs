//! JSON documents to HTML and back: the readable view of an item's
//! payload, the edit form generated from a record (nested objects as
//! fieldsets), and reading the posted fields back into a document.
//!
//! Form fields are named by JSON Pointer: `f:/address/city` holds the
//! value and `t:/address/city` its type (`string`, `number`, `bool`,
//! `null`, `json` for arrays and anything else, `choice` for a value
//! picked on the conflict page: JSON, or `absent` to remove the member).
//! Members the form does not name keep their value, so a form can only
//! change what it shows.

use std::collections::BTreeSet;
use std::fmt::Write;

use baton::merge;
use serde_json::{Map, Value};

/// Escapes text for HTML content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A member name for people: `postal_code` → `Postal code`.
fn label(key: &str) -> String {
    let spaced = key.replace(['_', '-'], " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "(empty name)".to_owned(),
    }
}

/// A value on one line: strings as they are, everything else as JSON.
pub(crate) fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A payload as nested definition lists.
pub(crate) fn payload_html(v: &Value) -> String {
    let mut out = String::new();
    payload_into(v, &mut out);
    out
}

fn payload_into(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push_str("<dl class=\"payload\">");
            for (k, v) in m {
                let _ = write!(out, "<dt>{}</dt><dd>", escape(&label(k)));
                payload_into(v, out);
                out.push_str("</dd>");
            }
            out.push_str("</dl>");
        }
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            out.push_str("<ol>");
            for i in items {
                out.push_str("<li>");
                payload_into(i, out);
                out.push_str("</li>");
            }
            out.push_str("</ol>");
        }
        Value::Array(items) => {
            let joined: Vec<String> = items.iter().map(plain).collect();
            out.push_str(&escape(&joined.join(", ")));
        }
        Value::Null => out.push_str("<span class=\"muted\">—</span>"),
        Value::String(s) if s.is_empty() => out.push_str("<span class=\"muted\">(empty)</span>"),
        other => out.push_str(&escape(&plain(other))),
    }
}

/// The edit form of a record's data: one input per member, nested
/// objects as fieldsets. Members at or under a path in `skip` are left out
/// (the conflict page shows those itself).
pub(crate) fn fields_html(data: &Value, skip: &BTreeSet<String>) -> String {
    let mut out = String::new();
    if let Value::Object(m) = data {
        fields_into("", m, skip, &mut out);
    }
    out
}

fn fields_into(path: &str, m: &Map<String, Value>, skip: &BTreeSet<String>, out: &mut String) {
    for (k, v) in m {
        let p = format!("{path}/{}", merge::escape(k));
        if skip.iter().any(|s| merge::contains(s, &p)) {
            continue;
        }
        let id = format!("f{}", escape(&p).replace('/', "_"));
        let name = escape(&p);
        if let Value::Object(inner) = v {
            let _ = write!(out, "<fieldset><legend>{}</legend>", escape(&label(k)));
            fields_into(&p, inner, skip, out);
            out.push_str("</fieldset>");
            continue;
        }
        let _ = write!(
            out,
            "<div class=\"field\"><label for=\"{id}\">{}</label>",
            escape(&label(k))
        );
        let (kind, input) = match v {
            Value::String(s) if s.len() > 80 || s.contains('\n') => (
                "string",
                format!(
                    "<textarea id=\"{id}\" name=\"f:{name}\">{}</textarea>",
                    escape(s)
                ),
            ),
            Value::String(s) => (
                "string",
                format!(
                    "<input id=\"{id}\" name=\"f:{name}\" type=\"text\" value=\"{}\">",
                    escape(s)
                ),
            ),
            Value::Number(n) => (
                "number",
                format!(
                    "<input id=\"{id}\" name=\"f:{name}\" type=\"text\" inputmode=\"decimal\" value=\"{n}\">"
                ),
            ),
            Value::Bool(b) => (
                "bool",
                format!(
                    "<select id=\"{id}\" name=\"f:{name}\"><option value=\"true\"{}>yes</option><option value=\"false\"{}>no</option></select>",
                    if *b { " selected" } else { "" },
                    if *b { "" } else { " selected" },
                ),
            ),
            Value::Null => (
                "null",
                format!(
                    "<input id=\"{id}\" name=\"f:{name}\" type=\"text\" value=\"\" placeholder=\"(empty)\">"
                ),
            ),
            other => (
                "json",
                format!(
                    "<textarea id=\"{id}\" name=\"f:{name}\" spellcheck=\"false\">{}</textarea>",
                    escape(&serde_json::to_string_pretty(other).unwrap_or_default())
                ),
            ),
        };
        let _ = write!(
            out,
            "{input}<input type=\"hidden\" name=\"t:{name}\" value=\"{kind}\"></div>"
        );
    }
}

/// Reads posted fields into `base`: each `f:<pointer>` with its
/// `t:<pointer>` sets (or, for `absent`, removes) that member. A value
/// that does not read as its type is an error naming the field.
pub(crate) fn apply_fields(base: &Value, pairs: &[(String, String)]) -> Result<Value, String> {
    let mut doc = base.clone();
    for (name, raw) in pairs {
        let Some(path) = name.strip_prefix("f:") else {
            continue;
        };
        let kind = pairs
            .iter()
            .find(|(k, _)| k.strip_prefix("t:") == Some(path))
            .map(|(_, v)| v.as_str())
            .unwrap_or("string");
        let shown = path.trim_start_matches('/').replace('/', ".");
        let value = match kind {
            "string" => Some(Value::String(raw.clone())),
            "number" => Some(
                raw.trim()
                    .parse::<serde_json::Number>()
                    .map(Value::Number)
                    .map_err(|_| format!("{shown}: {raw:?} is not a number"))?,
            ),
            "bool" => Some(Value::Bool(raw == "true")),
            "null" if raw.is_empty() => Some(Value::Null),
            "null" => Some(Value::String(raw.clone())),
            "json" => Some(
                serde_json::from_str(raw).map_err(|e| format!("{shown}: not valid JSON ({e})"))?,
            ),
            "choice" if raw == "absent" => None,
            "choice" => Some(
                serde_json::from_str(raw).map_err(|e| format!("{shown}: not valid JSON ({e})"))?,
            ),
            other => return Err(format!("{shown}: unknown field type {other:?}")),
        };
        set(&mut doc, path, value).map_err(|e| format!("{shown}: {e}"))?;
    }
    Ok(doc)
}

/// Sets (or removes, for `None`) the member at a JSON Pointer, creating
/// the objects on the way.
fn set(doc: &mut Value, pointer: &str, value: Option<Value>) -> Result<(), String> {
    let segments: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = segments.split_last() else {
        return Err("the whole document cannot be a field".into());
    };
    let mut at = doc;
    for s in parents {
        let Value::Object(m) = at else {
            return Err("a parent is not an object".into());
        };
        at = m
            .entry(s.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let Value::Object(m) = at else {
        return Err("a parent is not an object".into());
    };
    match value {
        Some(v) => {
            m.insert(last.clone(), v);
        }
        None => {
            m.remove(last);
        }
    }
    Ok(())
}

/// The JSON Merge Patch (RFC 7396) that turns `from` into `to`, given
/// that `to` sets no member to `null` that `from` lacked (a merge patch
/// cannot say "set to null"; [`set_nulls`] lists those).
pub(crate) fn merge_patch_between(from: &Value, to: &Value) -> Value {
    let mut patch = Value::Object(Map::new());
    for change in merge::diff(Some(from), Some(to)) {
        let value = change.new.unwrap_or(Value::Null);
        // Paths from diff are pointers into objects, so `set` cannot fail.
        let _ = set(&mut patch, &change.path, Some(value));
    }
    patch
}

/// Paths where `to` holds `null` but `from` held something else: a merge
/// patch would remove those members rather than set them to `null`.
pub(crate) fn set_nulls(from: &Value, to: &Value) -> Vec<String> {
    merge::diff(Some(from), Some(to))
        .into_iter()
        .filter(|c| c.new == Some(Value::Null))
        .map(|c| c.path)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn fields_read_back_into_the_document_they_came_from() {
        let doc = json!({"name": "Ann", "age": 41, "vip": true, "note": null,
            "address": {"city": "Lyon", "zip": "69001"}, "tags": ["a", "b"]});
        let html = fields_html(&doc, &BTreeSet::new());
        assert!(html.contains("<fieldset><legend>Address</legend>"));
        // Simulate the browser: post every f:/t: pair as rendered.
        let posted = pairs(&[
            ("f:/name", "Ann B"),
            ("t:/name", "string"),
            ("f:/age", "42"),
            ("t:/age", "number"),
            ("f:/vip", "false"),
            ("t:/vip", "bool"),
            ("f:/note", ""),
            ("t:/note", "null"),
            ("f:/address/city", "Paris"),
            ("t:/address/city", "string"),
            ("f:/tags", "[\"a\"]"),
            ("t:/tags", "json"),
        ]);
        let out = apply_fields(&doc, &posted).unwrap();
        assert_eq!(
            out,
            json!({"name": "Ann B", "age": 42, "vip": false, "note": null,
                "address": {"city": "Paris", "zip": "69001"}, "tags": ["a"]})
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let doc = json!({"age": 1, "address": {"tags": []}});
        let e = apply_fields(&doc, &pairs(&[("f:/age", "x"), ("t:/age", "number")])).unwrap_err();
        assert!(e.starts_with("age:"), "{e}");
        let e = apply_fields(
            &doc,
            &pairs(&[("f:/address/tags", "[1"), ("t:/address/tags", "json")]),
        )
        .unwrap_err();
        assert!(e.starts_with("address.tags:"), "{e}");
    }

    #[test]
    fn choices_set_or_remove_members_with_escaped_names() {
        let doc = json!({"a/b": 1, "keep": 2});
        let out = apply_fields(
            &doc,
            &pairs(&[
                ("f:/a~1b", "absent"),
                ("t:/a~1b", "choice"),
                ("f:/new", "{\"x\":1}"),
                ("t:/new", "choice"),
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"keep": 2, "new": {"x": 1}}));
    }

    #[test]
    fn the_merge_patch_between_two_documents_turns_one_into_the_other() {
        let from = json!({"a": 1, "b": {"c": 2, "d": 3}, "gone": true});
        let to = json!({"a": 1, "b": {"c": 5, "d": 3}, "new": [1]});
        let patch = merge_patch_between(&from, &to);
        assert_eq!(patch, json!({"b": {"c": 5}, "gone": null, "new": [1]}));
        let mut applied = from.clone();
        merge::merge_patch(&mut applied, &patch);
        assert_eq!(applied, to);
        assert!(set_nulls(&from, &to).is_empty());
        assert_eq!(set_nulls(&json!({"a": 1}), &json!({"a": null})), vec!["/a"]);
    }

    #[test]
    fn markup_in_data_is_escaped() {
        let html = payload_html(&json!({"<b>": "<script>x</script>"}));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        let html = fields_html(&json!({"q\"": "\"><img>"}), &BTreeSet::new());
        assert!(!html.contains("\"><img>"));
    }
}
