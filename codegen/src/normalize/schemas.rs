//! Schema rewrites: `links-clash`, `any-object`, `open-enums`, `nullable-containers`,
//! `keep-unknown`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{
    OPEN_ENUM, UPSTREAM_ID, for_each_schema, operations_mut, pascal, schemas_mut, snake,
    walk_schema,
};
use crate::{Error, Result};

/// Drops the `_`-prefixed twin of a property whose Rust name would clash (`Links`/`_Links`).
pub(super) fn links_clash(doc: &mut Value) -> Result<String> {
    let mut dropped = Vec::new();
    let mut error = None;
    for_each_schema(doc, &mut |schema| {
        let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            return;
        };
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in props.keys() {
            groups.entry(snake(name)).or_default().push(name.clone());
        }
        for names in groups.values().filter(|n| n.len() > 1) {
            let plain: Vec<&String> = names.iter().filter(|n| !n.starts_with('_')).collect();
            if plain.len() != 1 {
                error.get_or_insert_with(|| {
                    format!("properties {names:?} clash and none is a `_` twin")
                });
                continue;
            }
            for twin in names.iter().filter(|n| n.starts_with('_')) {
                props.remove(twin);
                dropped.push(twin.clone());
            }
        }
    })?;
    if let Some(e) = error {
        return Err(Error::Normalize(e));
    }
    Ok(format!("{} clashing `_` properties dropped", dropped.len()))
}

/// Bare `{type: object}` (no properties, no additionalProperties) becomes `{}`: any JSON value.
pub(super) fn any_object(doc: &mut Value) -> Result<String> {
    let mut count = 0;
    for_each_schema(doc, &mut |schema| {
        for key in ["additionalProperties", "items"] {
            if schema.get(key).is_some_and(is_bare_object) {
                let description = schema[key].get("description").cloned();
                schema[key] = description
                    .map(|d| json!({ "description": d }))
                    .unwrap_or_else(|| json!({}));
                count += 1;
            }
        }
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            for prop in props.values_mut() {
                if is_bare_object(prop) {
                    prop.as_object_mut().map(|p| p.remove("type"));
                    count += 1;
                }
            }
        }
    })?;
    Ok(format!("{count} bare objects are now any JSON value"))
}

fn is_bare_object(schema: &Value) -> bool {
    schema.as_object().is_some_and(|s| {
        s.get("type").and_then(Value::as_str) == Some("object")
            && ![
                "properties",
                "additionalProperties",
                "allOf",
                "oneOf",
                "anyOf",
                "$ref",
            ]
            .iter()
            .any(|k| s.contains_key(*k))
    })
}

/// Hoists every string enum of a definition property (or of its array items) into a component
/// marked [`OPEN_ENUM`], named `{Definition}{Property}` with `WithLinks`/`Entity` dropped from the
/// definition (`AppointmentEntityWithLinks.Type` → `AppointmentType`). Inline enums in bodies
/// and responses are named after the operation. Enums anywhere else are an error.
pub(super) fn open_enums(doc: &mut Value) -> Result<String> {
    let mut hoisted: BTreeMap<String, Value> = BTreeMap::new();
    let mut uses = 0;
    let mut hoist = |name: String, target: &mut Value, at: &str| -> Result<()> {
        let values = target["enum"].clone();
        if !values
            .as_array()
            .is_some_and(|v| v.iter().all(Value::is_string))
        {
            return Err(Error::Normalize(format!(
                "{at}: enum with non-string values"
            )));
        }
        let schema = json!({ "type": "string", "enum": values, OPEN_ENUM: true });
        match hoisted.get(&name) {
            Some(existing) if *existing != schema => {
                return Err(Error::Normalize(format!(
                    "{at}: `{name}` already names an enum with other values"
                )));
            }
            Some(_) => {}
            None => {
                hoisted.insert(name.clone(), schema);
            }
        }
        *target = json!({ "$ref": format!("#/components/schemas/{name}") });
        uses += 1;
        Ok(())
    };

    let schemas = schemas_mut(doc)?;
    let existing: Vec<String> = schemas.keys().cloned().collect();
    for (def, schema) in schemas.iter_mut() {
        let base = def.strip_suffix("WithLinks").unwrap_or(def);
        let base = base
            .strip_suffix("Entity")
            .filter(|b| !b.is_empty())
            .unwrap_or(base);
        let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (prop, prop_schema) in props.iter_mut() {
            let at = format!("{def}.{prop}");
            let name = format!("{base}{}", pascal(prop));
            if prop_schema.get("enum").is_some() {
                hoist(name, prop_schema, &at)?;
            } else if prop_schema.pointer("/items/enum").is_some() {
                hoist(name, &mut prop_schema["items"], &at)?;
            }
        }
    }
    // Bodies and responses: handled separately so parameter schemas are left alone.
    for (ptr, op) in operations_mut(doc)? {
        let id = op
            .get(UPSTREAM_ID)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = format!("{}Item", pascal(id.strip_prefix("v1").unwrap_or(&id)));
        for target in body_and_response_schemas(op) {
            let inner = if target.get("enum").is_some() {
                Some(&mut *target)
            } else if target.pointer("/items/enum").is_some() {
                Some(&mut target["items"])
            } else {
                None
            };
            if let Some(inner) = inner {
                hoist(name.clone(), inner, &ptr)?;
            }
        }
    }

    // Anything left outside parameters is an enum in a place no rule covers.
    let mut stray: Option<String> = None;
    let mut check = |at: &str, schema: &mut Value| {
        walk_schema(schema, &mut |s| {
            if s.contains_key("enum") && stray.is_none() {
                stray = Some(at.to_string());
            }
        })
    };
    for (name, schema) in schemas_mut(doc)?.iter_mut() {
        check(name, schema);
    }
    for (ptr, op) in operations_mut(doc)? {
        for schema in body_and_response_schemas(op) {
            check(&ptr, schema);
        }
    }
    if let Some(at) = stray {
        return Err(Error::Normalize(format!(
            "{at}: an enum in a place `open-enums` does not handle"
        )));
    }
    let schemas = schemas_mut(doc)?;
    let count = hoisted.len();
    for (name, schema) in hoisted {
        if existing.contains(&name) {
            return Err(Error::Normalize(format!(
                "open enum `{name}` collides with a definition"
            )));
        }
        schemas.insert(name, schema);
    }
    Ok(format!(
        "{uses} property enums share {count} open enum types"
    ))
}

fn body_and_response_schemas(op: &mut Map<String, Value>) -> Vec<&mut Value> {
    fn push_content<'a>(content: Option<&'a mut Value>, out: &mut Vec<&'a mut Value>) {
        if let Some(content) = content.and_then(Value::as_object_mut) {
            out.extend(content.values_mut().filter_map(|m| m.get_mut("schema")));
        }
    }
    let mut out = Vec::new();
    for (key, value) in op.iter_mut() {
        match key.as_str() {
            "requestBody" => push_content(value.get_mut("content"), &mut out),
            "responses" => {
                if let Some(responses) = value.as_object_mut() {
                    for response in responses.values_mut() {
                        push_content(response.get_mut("content"), &mut out);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Arrays and maps inside objects may be `null`: they become `Option<…>`.
pub(super) fn nullable_containers(doc: &mut Value) -> Result<String> {
    let mut count = 0;
    for_each_schema(doc, &mut |schema| {
        let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            return;
        };
        for prop in props.values_mut() {
            let Some(p) = prop.as_object_mut() else {
                continue;
            };
            let is_array = p.get("type").and_then(Value::as_str) == Some("array");
            let is_map = p.get("type").and_then(Value::as_str) == Some("object")
                && p.contains_key("additionalProperties")
                && !p.contains_key("properties");
            if is_array || is_map {
                p.insert("nullable".into(), json!(true));
                count += 1;
            }
        }
    })?;
    Ok(format!("{count} array/map properties are nullable"))
}

/// Objects with properties keep unknown fields (`additionalProperties: {}`).
pub(super) fn keep_unknown(doc: &mut Value) -> Result<String> {
    let mut count = 0;
    for_each_schema(doc, &mut |schema| {
        let has_props = schema
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| !p.is_empty());
        if has_props && !schema.contains_key("additionalProperties") {
            schema.insert("additionalProperties".into(), json!({}));
            count += 1;
        }
    })?;
    Ok(format!("{count} object types keep unknown fields"))
}
