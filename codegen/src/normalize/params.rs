//! `common-headers`, `conditional-headers` and `param-enums`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{operations_mut, pascal, schemas_mut};
use crate::{Error, Result};

/// Removes the per-operation headers that the runtime sends as client defaults.
pub(super) fn common_headers(doc: &mut Value, names: &[String]) -> Result<String> {
    let mut removed = 0;
    for (_, op) in operations_mut(doc)? {
        let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
            continue;
        };
        let before = params.len();
        params.retain(|p| {
            !(p["in"] == "header"
                && p["name"]
                    .as_str()
                    .is_some_and(|n| names.iter().any(|h| h.eq_ignore_ascii_case(n))))
        });
        removed += before - params.len();
        if params.is_empty() {
            op.remove("parameters");
        }
    }
    Ok(format!(
        "{removed} header parameters removed ({})",
        names.join(", ")
    ))
}

/// Declares `If-Modified-Since` on GETs that document 304 and `If-Unmodified-Since` on
/// PUT/PATCH/DELETE that document 412. Must run before `error-schema` removes those codes.
pub(super) fn conditional_headers(doc: &mut Value) -> Result<String> {
    let mut added = BTreeMap::<&str, usize>::new();
    for (ptr, op) in operations_mut(doc)? {
        let method = ptr.split(' ').next().unwrap_or_default();
        let responses = op.get("responses").and_then(Value::as_object);
        let has = |code: &str| responses.is_some_and(|r| r.contains_key(code));
        let header = match method {
            "get" if has("304") => "If-Modified-Since",
            "put" | "patch" | "delete" if has("412") => "If-Unmodified-Since",
            _ => continue,
        };
        let description = if header == "If-Modified-Since" {
            "HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`): answer 304 Not Modified if the entity has not changed since."
        } else {
            "HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`): fail with 412 Precondition Failed if the entity changed since."
        };
        let params = op.entry("parameters").or_insert_with(|| json!([]));
        let list = params
            .as_array_mut()
            .ok_or_else(|| Error::Normalize(format!("{ptr}: parameters is not a list")))?;
        if list.iter().any(|p| {
            p["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(header))
        }) {
            continue;
        }
        list.push(json!({
            "name": header,
            "in": "header",
            "required": false,
            "description": description,
            "schema": { "type": "string" }
        }));
        *added.entry(header).or_default() += 1;
    }
    Ok(added
        .iter()
        .map(|(h, n)| format!("{h} on {n} operations"))
        .collect::<Vec<_>>()
        .join(", "))
}

/// Hoists inline parameter enums into shared components named `<Param>Param` (`$mode` →
/// `ModeParam`). Parameters with the same name must have the same values.
pub(super) fn param_enums(doc: &mut Value) -> Result<String> {
    let mut hoisted: BTreeMap<String, Value> = BTreeMap::new();
    let mut uses = 0;
    for (ptr, op) in operations_mut(doc)? {
        let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
            continue;
        };
        for param in params {
            let name = param["name"].as_str().unwrap_or_default().to_string();
            let schema = &mut param["schema"];
            let target = if schema.get("enum").is_some() {
                schema
            } else if schema.pointer("/items/enum").is_some() {
                &mut schema["items"]
            } else {
                continue;
            };
            let component = format!("{}Param", pascal(&name));
            let mut hoist = target.clone();
            if let Some(h) = hoist.as_object_mut() {
                h.remove("description");
                h.remove("default");
            }
            match hoisted.get(&component) {
                Some(existing) if *existing != hoist => {
                    return Err(Error::Normalize(format!(
                        "{ptr}: parameter `{name}` has other values than another `{component}`"
                    )));
                }
                Some(_) => {}
                None => {
                    hoisted.insert(component.clone(), hoist);
                }
            }
            // A `$ref` carries no siblings in OpenAPI 3.0; a server-side default is not ours to send.
            *target = json!({ "$ref": format!("#/components/schemas/{component}") });
            uses += 1;
        }
    }
    let schemas = schemas_mut(doc)?;
    let count = hoisted.len();
    for (name, schema) in hoisted {
        if schemas.contains_key(&name) {
            return Err(Error::Normalize(format!(
                "hoisted parameter enum `{name}` collides with a definition"
            )));
        }
        schemas.insert(name, schema);
    }
    Ok(format!("{uses} parameter enums share {count} types"))
}
