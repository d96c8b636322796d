//! `json-only`, `multipart` and `error-schema`: bodies and responses progenitor can generate.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{ERROR_SCHEMA, UPSTREAM_ID, operations_mut, schemas_mut};
use crate::{Error, Result};

const MULTIPART: &str = "multipart/form-data";
const OCTET: &str = "application/octet-stream";
const JSON: &str = "application/json";
/// Operation extension: the `Accept` value for an operation whose success response is binary
/// (the non-JSON, non-XML, non-text types its `produces` declares, in upstream order).
pub const ACCEPT_EXTENSION: &str = "x-superoffice-accept";

/// The media types of a binary response worth asking for: what the operation declares, minus
/// JSON/XML/text/form/multipart carriers (the generated code reads the body as bytes).
fn binary_types(content: &Map<String, Value>) -> Vec<String> {
    content
        .keys()
        .filter(|k| {
            !is_json(k)
                && !is_form(k)
                && !k.contains("xml")
                && !k.starts_with("text/")
                && !k.starts_with("multipart/")
        })
        .cloned()
        .collect()
}

/// A `formData` upload: a multipart body whose schema is an object of fields (bodies that merely
/// list `multipart/form-data` among many media types are not).
fn is_multipart(op: &Map<String, Value>) -> bool {
    op.get("requestBody")
        .and_then(|b| b.get("content"))
        .and_then(|c| c.get(MULTIPART))
        .is_some_and(|m| m["schema"]["type"] == "object")
}

/// Removes `multipart/form-data` uploads from the document; the SDK hand-writes them.
pub(super) fn multipart_exclude(
    doc: &mut Value,
    excluded: &mut BTreeMap<String, String>,
) -> Result<String> {
    let paths = doc
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error::Normalize("document has no paths".into()))?;
    let mut removed = 0;
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        let methods: Vec<String> = item
            .iter()
            .filter(|(_, op)| op.as_object().is_some_and(is_multipart))
            .map(|(m, _)| m.clone())
            .collect();
        for method in methods {
            let op = item.remove(&method).unwrap_or_default();
            let id = op
                .get(UPSTREAM_ID)
                .and_then(Value::as_str)
                .unwrap_or_default();
            excluded.insert(
                id.to_string(),
                "multipart/form-data upload (progenitor has no multipart support); hand-written as \
                 `superoffice::upload::save_image`"
                    .into(),
            );
            removed += 1;
        }
    }
    paths.retain(|_, item| item.as_object().is_some_and(|i| !i.is_empty()));
    Ok(format!(
        "{removed} multipart operations excluded (hand-written)"
    ))
}

/// Sends `multipart/form-data` uploads as a raw `application/octet-stream` body instead.
pub(super) fn multipart_raw(doc: &mut Value) -> Result<String> {
    let mut changed = 0;
    for (ptr, op) in operations_mut(doc)? {
        if !is_multipart(op) {
            continue;
        }
        let content = op
            .get("requestBody")
            .and_then(|b| b.get("content"))
            .cloned()
            .unwrap_or_default();
        let schema = &content[MULTIPART]["schema"];
        let files = schema["properties"]
            .as_object()
            .map(|p| p.values().filter(|s| s["format"] == "binary").count())
            .unwrap_or(0);
        if files != 1 || schema["properties"].as_object().map_or(0, Map::len) != 1 {
            return Err(Error::Normalize(format!(
                "{ptr}: multipart body is not a single file"
            )));
        }
        op["requestBody"]["content"] =
            json!({ OCTET: { "schema": { "type": "string", "format": "binary" } } });
        changed += 1;
    }
    Ok(format!("{changed} multipart uploads sent as raw bytes"))
}

/// Adds the `SoError` schema and replaces every non-2xx response by `4XX`/`5XX` returning it.
pub(super) fn error_schema(doc: &mut Value) -> Result<String> {
    let schemas = schemas_mut(doc)?;
    if schemas.contains_key(ERROR_SCHEMA) {
        return Err(Error::Normalize(format!(
            "the spec already has a `{ERROR_SCHEMA}` schema"
        )));
    }
    schemas.insert(
        ERROR_SCHEMA.into(),
        json!({
            "type": "object",
            "description": "The error body SuperOffice sends with a non-2xx status. The SDK \
                runtime fills it in when the server sent no JSON, so the status is never lost.",
            "properties": {
                "Error": { "type": "boolean", "description": "Always `true`." },
                "ErrorType": { "type": "string", "description": "The server-side exception type, e.g. `SoNotFoundException`." },
                "ErrorMessage": { "type": "string", "description": "Human-readable message." },
                "ErrorSource": { "type": "string", "description": "Where the error was raised." }
            }
        }),
    );
    let mut removed = 0;
    let mut ops = 0;
    for (ptr, op) in operations_mut(doc)? {
        let responses = op
            .get_mut("responses")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| Error::Normalize(format!("{ptr}: no responses")))?;
        let before = responses.len();
        responses.retain(|code, _| code.starts_with("x-") || code.starts_with('2'));
        removed += before - responses.len();
        let error = json!({
            "description": "SuperOffice error",
            "content": { JSON: { "schema": { "$ref": format!("#/components/schemas/{ERROR_SCHEMA}") } } }
        });
        responses.insert("4XX".into(), error.clone());
        responses.insert("5XX".into(), error);
        ops += 1;
    }
    Ok(format!(
        "{removed} explicit non-2xx responses replaced by 4XX/5XX {ERROR_SCHEMA} on {ops} operations"
    ))
}

fn is_json(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or("").trim();
    essence == JSON || essence == "text/json" || essence.ends_with("+json")
}

fn is_form(media_type: &str) -> bool {
    media_type == "application/x-www-form-urlencoded"
}

fn is_binary_schema(schema: &Value) -> bool {
    schema["type"] == "string" && (schema["format"] == "byte" || schema["format"] == "binary")
}

/// Keeps exactly one media type per body and response.
///
/// * a JSON type if one is offered, except for binary schemas offered with a non-JSON type
///   too (downloads and uploads), which become `application/octet-stream` with `format: binary`;
/// * form bodies that offer no JSON stay `application/x-www-form-urlencoded`;
/// * anything else is an error.
pub(super) fn json_only(doc: &mut Value) -> Result<String> {
    let mut json_count = 0;
    let mut binary_count = 0;
    let mut form_count = 0;
    for (ptr, op) in operations_mut(doc)? {
        if let Some(content) = op
            .get_mut("requestBody")
            .and_then(|b| b.get_mut("content"))
            .and_then(Value::as_object_mut)
        {
            match pick(content, &format!("{ptr} request body"))? {
                Picked::Json => json_count += 1,
                Picked::Binary => binary_count += 1,
                Picked::Form => form_count += 1,
                Picked::Empty => {}
            }
        }
        let mut accept: Vec<String> = Vec::new();
        if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
            for (code, response) in responses.iter_mut() {
                if let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) {
                    let offered = binary_types(content);
                    match pick(content, &format!("{ptr} response {code}"))? {
                        Picked::Json => json_count += 1,
                        Picked::Binary => {
                            binary_count += 1;
                            if code.starts_with('2') {
                                let offered = if offered.is_empty() {
                                    vec![OCTET.to_string()]
                                } else {
                                    offered
                                };
                                for media in offered {
                                    if !accept.contains(&media) {
                                        accept.push(media);
                                    }
                                }
                            }
                        }
                        Picked::Form => {
                            return Err(Error::Normalize(format!(
                                "{ptr} response {code}: form-encoded response"
                            )));
                        }
                        Picked::Empty => {}
                    }
                }
            }
        }
        if !accept.is_empty() {
            op.insert(ACCEPT_EXTENSION.into(), Value::String(accept.join(", ")));
        }
    }
    Ok(format!(
        "{json_count} JSON, {binary_count} binary and {form_count} form bodies/responses kept with one media type"
    ))
}

enum Picked {
    Json,
    Binary,
    Form,
    Empty,
}

fn pick(content: &mut Map<String, Value>, what: &str) -> Result<Picked> {
    if content.is_empty() {
        return Ok(Picked::Empty);
    }
    let json_entry = content
        .iter()
        .find(|(k, _)| k.as_str() == JSON)
        .or_else(|| content.iter().find(|(k, _)| is_json(k)));
    let any_schema = content
        .values()
        .find_map(|m| m.get("schema"))
        .cloned()
        .unwrap_or(Value::Null);
    let has_non_json = content
        .keys()
        .any(|k| !is_json(k) && !is_form(k) && !k.contains("xml"));
    let (picked, kind) = if is_binary_schema(&any_schema) && has_non_json {
        (
            json!({ OCTET: { "schema": { "type": "string", "format": "binary" } } }),
            Picked::Binary,
        )
    } else if let Some((_, media)) = json_entry {
        (json!({ JSON: media }), Picked::Json)
    } else if let Some((k, media)) = content.iter().find(|(k, _)| is_form(k)) {
        (json!({ k.clone(): media }), Picked::Form)
    } else if is_binary_schema(&any_schema)
        || content
            .keys()
            .all(|k| k.starts_with("image/") || k == OCTET)
    {
        (
            json!({ OCTET: { "schema": { "type": "string", "format": "binary" } } }),
            Picked::Binary,
        )
    } else {
        let types: Vec<&String> = content.keys().collect();
        return Err(Error::Normalize(format!(
            "{what}: no rule picks a media type from {types:?}"
        )));
    };
    *content = picked.as_object().cloned().unwrap_or_default();
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_wins_and_binary_downloads_become_octet_streams() {
        let mut content = json!({
            "application/json": { "schema": { "$ref": "#/components/schemas/A" } },
            "text/json": { "schema": { "$ref": "#/components/schemas/A" } },
            "application/xml": { "schema": { "$ref": "#/components/schemas/A" } }
        });
        pick(content.as_object_mut().unwrap(), "t").unwrap();
        assert_eq!(
            content.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["application/json"]
        );

        let mut content = json!({
            "application/json": { "schema": { "type": "string", "format": "byte" } },
            "image/png": { "schema": { "type": "string", "format": "byte" } }
        });
        pick(content.as_object_mut().unwrap(), "t").unwrap();
        assert_eq!(
            content,
            json!({ OCTET: { "schema": { "type": "string", "format": "binary" } } })
        );

        let mut content = json!({ "application/vnd.unknown": { "schema": { "type": "object" } } });
        assert!(pick(content.as_object_mut().unwrap(), "t").is_err());
    }
}
