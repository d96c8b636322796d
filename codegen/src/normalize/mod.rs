//! Named, switchable rewrites of the converted OpenAPI document that make progenitor's output
//! compile and decode real SuperOffice JSON.
//!
//! Each step is a function over the whole document, switched on or off in
//! `spec/superoffice.toml` `[normalize]`. They run in a fixed order ([`normalize`]); every step
//! fails loudly on input it does not expect. The steps run on the *whole* spec before any tag
//! selection, so every name they create is the same whatever is selected.

mod docs;
pub mod media;
mod names;
mod params;
mod schemas;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::{Multipart, Normalize};
use crate::{Error, Result};

/// Extension that keeps an operation's upstream `operationId` after renaming.
pub const UPSTREAM_ID: &str = "x-upstream-operation-id";
/// Extension marking a component that the generator emits as an open enum.
pub const OPEN_ENUM: &str = "x-open-enum";
/// Name of the injected error schema.
pub const ERROR_SCHEMA: &str = "SoError";

/// The result of [`normalize`].
#[derive(Debug, Clone)]
pub struct Normalized {
    /// The normalised OpenAPI 3.0.3 document (all operations).
    pub doc: Value,
    /// Operations a normalisation removed, by upstream operationId, with the reason.
    pub excluded: BTreeMap<String, String>,
    /// One line per normalisation that ran: its name and what it changed.
    pub report: Vec<(&'static str, String)>,
}

/// Runs every enabled normalisation, in order.
pub fn normalize(mut doc: Value, cfg: &Normalize) -> Result<Normalized> {
    let mut report = Vec::new();
    let mut excluded = BTreeMap::new();
    mark_upstream_ids(&mut doc)?;

    macro_rules! step {
        ($enabled:expr, $name:literal, $call:expr) => {
            if $enabled {
                let summary: String = $call.map_err(|e| match e {
                    Error::Normalize(msg) => Error::Normalize(format!("{}: {msg}", $name)),
                    other => other,
                })?;
                report.push(($name, summary));
            }
        };
    }

    step!(cfg.short_names, "short-names", names::short_names(&mut doc));
    step!(cfg.short_info, "short-info", docs::short_info(&mut doc));
    step!(cfg.doc_cleanup, "doc-cleanup", docs::doc_cleanup(&mut doc));
    match cfg.multipart {
        Multipart::HandWritten => {
            step!(
                true,
                "multipart",
                media::multipart_exclude(&mut doc, &mut excluded)
            )
        }
        Multipart::RawBytes => step!(true, "multipart", media::multipart_raw(&mut doc)),
    }
    step!(
        cfg.conditional_headers,
        "conditional-headers",
        params::conditional_headers(&mut doc)
    );
    step!(
        cfg.error_schema,
        "error-schema",
        media::error_schema(&mut doc)
    );
    step!(cfg.json_only, "json-only", media::json_only(&mut doc));
    step!(
        !cfg.common_headers.is_empty(),
        "common-headers",
        params::common_headers(&mut doc, &cfg.common_headers)
    );
    step!(
        cfg.links_clash,
        "links-clash",
        schemas::links_clash(&mut doc)
    );
    step!(cfg.any_object, "any-object", schemas::any_object(&mut doc));
    step!(cfg.open_enums, "open-enums", schemas::open_enums(&mut doc));
    step!(
        cfg.param_enums,
        "param-enums",
        params::param_enums(&mut doc)
    );
    step!(
        cfg.nullable_containers,
        "nullable-containers",
        schemas::nullable_containers(&mut doc)
    );
    step!(
        cfg.keep_unknown,
        "keep-unknown",
        schemas::keep_unknown(&mut doc)
    );
    step!(
        cfg.operation_names,
        "operation-names",
        names::operation_names(&mut doc)
    );

    Ok(Normalized {
        doc,
        excluded,
        report,
    })
}

fn mark_upstream_ids(doc: &mut Value) -> Result<()> {
    for (ptr, op) in operations_mut(doc)? {
        let id = op
            .get("operationId")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Normalize(format!("{ptr}: operation without operationId")))?
            .to_string();
        op.entry(UPSTREAM_ID).or_insert(Value::String(id));
    }
    Ok(())
}

/// `(pointer, operation)` for every operation, in document order.
pub(crate) fn operations_mut(doc: &mut Value) -> Result<Vec<(String, &mut Map<String, Value>)>> {
    let paths = doc
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error::Normalize("document has no paths".into()))?;
    let mut out = Vec::new();
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if method.starts_with("x-") || method == "parameters" {
                continue;
            }
            if let Some(op) = op.as_object_mut() {
                out.push((format!("{method} {path}"), op));
            }
        }
    }
    Ok(out)
}

/// `(path, method, operation)` for every operation, read-only.
pub fn operations(doc: &Value) -> Vec<(&str, &str, &Map<String, Value>)> {
    let mut out = Vec::new();
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return out;
    };
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, op) in item {
            if method.starts_with("x-") || method == "parameters" {
                continue;
            }
            if let Some(op) = op.as_object() {
                out.push((path.as_str(), method.as_str(), op));
            }
        }
    }
    out
}

/// The component schemas, mutable.
pub(crate) fn schemas_mut(doc: &mut Value) -> Result<&mut Map<String, Value>> {
    doc.pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error::Normalize("document has no components.schemas".into()))
}

/// Calls `f` on every schema object in the document (components, parameters, bodies,
/// responses), parents before children.
pub(crate) fn for_each_schema(
    doc: &mut Value,
    f: &mut dyn FnMut(&mut Map<String, Value>),
) -> Result<()> {
    for schema in schemas_mut(doc)?.values_mut() {
        walk_schema(schema, f);
    }
    for (_, op) in operations_mut(doc)? {
        for_each_operation_schema(op, &mut |s| walk_schema(s, f));
    }
    Ok(())
}

/// Calls `f` on the top-level schema of each parameter, body and response of an operation.
pub(crate) fn for_each_operation_schema(
    op: &mut Map<String, Value>,
    f: &mut dyn FnMut(&mut Value),
) {
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in params {
            if let Some(s) = p.get_mut("schema") {
                f(s);
            }
        }
    }
    if let Some(content) = op
        .get_mut("requestBody")
        .and_then(|b| b.get_mut("content"))
        .and_then(Value::as_object_mut)
    {
        for media in content.values_mut() {
            if let Some(s) = media.get_mut("schema") {
                f(s);
            }
        }
    }
    if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
        for response in responses.values_mut() {
            if let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) {
                for media in content.values_mut() {
                    if let Some(s) = media.get_mut("schema") {
                        f(s);
                    }
                }
            }
        }
    }
}

/// Visits a schema and every schema nested in it (properties, items, additionalProperties,
/// allOf/oneOf/anyOf), parents first.
pub(crate) fn walk_schema(schema: &mut Value, f: &mut dyn FnMut(&mut Map<String, Value>)) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    f(obj);
    if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
        for p in props.values_mut() {
            walk_schema(p, f);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = obj.get_mut(key) {
            walk_schema(child, f);
        }
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(list) = obj.get_mut(key).and_then(Value::as_array_mut) {
            for s in list {
                walk_schema(s, f);
            }
        }
    }
}

/// Rewrites every `$ref` in the document through `rename` (old component name → new).
pub(crate) fn rename_refs(doc: &mut Value, rename: &dyn Fn(&str) -> Option<String>) {
    match doc {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if key == "$ref" {
                    let target = value
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"));
                    if let Some(new) = target.and_then(rename) {
                        *value = Value::String(format!("#/components/schemas/{new}"));
                    }
                } else {
                    rename_refs(value, rename);
                }
            }
        }
        Value::Array(list) => list.iter_mut().for_each(|v| rename_refs(v, rename)),
        _ => {}
    }
}

/// `PascalCase` of an identifier-ish string (`$orderBy` → `OrderBy`, `a.b_c` → `ABC`).
pub(crate) fn pascal(name: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if upper {
                out.extend(c.to_uppercase());
            } else {
                out.push(c);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    out
}

/// `snake_case` the way progenitor and typify do it for identifiers.
pub(crate) fn snake(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1);
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_helpers() {
        assert_eq!(pascal("$orderBy"), "OrderBy");
        assert_eq!(
            pascal("mergedTicketEntity.category.flags"),
            "MergedTicketEntityCategoryFlags"
        );
        assert_eq!(snake("GetContactEntity"), "get_contact_entity");
        assert_eq!(snake("CRMScript"), "crm_script");
        assert_eq!(
            snake("GetAllForeignKeysOnEntity"),
            "get_all_foreign_keys_on_entity"
        );
        assert_eq!(snake("_Links"), "links");
    }
}
