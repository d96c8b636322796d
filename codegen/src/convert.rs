//! Swagger 2.0 → OpenAPI 3.0.3, over `serde_json` values.
//!
//! The conversion is faithful (every media type, every response, every description is kept);
//! simplifications for progenitor are separate, named steps in [`crate::normalize`]. Anything
//! this module does not know how to convert is an error that names its JSON pointer, so a new
//! spec version cannot silently degrade the generated client.

use serde_json::{Map, Value, json};

use crate::{Error, Result};

const HTTP_METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

/// Converts a Swagger 2.0 document to OpenAPI 3.0.3.
pub fn convert(swagger: &Value) -> Result<Value> {
    let root = as_object(swagger, "")?;
    match root.get("swagger").and_then(Value::as_str) {
        Some("2.0") => {}
        other => {
            return Err(unsupported(
                "/swagger",
                format!("expected \"2.0\", found {other:?}"),
            ));
        }
    }
    let allowed = [
        "swagger",
        "info",
        "host",
        "basePath",
        "schemes",
        "consumes",
        "produces",
        "paths",
        "definitions",
        "securityDefinitions",
        "security",
        "tags",
        "externalDocs",
    ];
    check_keys(root, "", &allowed)?;

    let globals = Globals {
        consumes: string_list(root.get("consumes"), "/consumes")?,
        produces: string_list(root.get("produces"), "/produces")?,
    };

    let mut out = Map::new();
    out.insert("openapi".into(), json!("3.0.3"));
    out.insert(
        "info".into(),
        root.get("info").cloned().unwrap_or_else(|| json!({})),
    );
    out.insert("servers".into(), servers(root)?);
    for key in ["tags", "externalDocs"] {
        if let Some(v) = root.get(key) {
            out.insert(key.into(), v.clone());
        }
    }

    let mut paths = Map::new();
    if let Some(p) = root.get("paths") {
        for (path, item) in as_object(p, "/paths")? {
            let ptr = format!("/paths/{}", escape(path));
            paths.insert(path.clone(), convert_path_item(item, &ptr, &globals)?);
        }
    }
    out.insert("paths".into(), Value::Object(paths));

    let mut components = Map::new();
    if let Some(defs) = root.get("definitions") {
        let mut schemas = Map::new();
        for (name, schema) in as_object(defs, "/definitions")? {
            let ptr = format!("/definitions/{}", escape(name));
            schemas.insert(name.clone(), convert_schema(schema, &ptr)?);
        }
        components.insert("schemas".into(), Value::Object(schemas));
    }
    if let Some(defs) = root.get("securityDefinitions") {
        let mut schemes = Map::new();
        for (name, def) in as_object(defs, "/securityDefinitions")? {
            let ptr = format!("/securityDefinitions/{}", escape(name));
            schemes.insert(name.clone(), convert_security_scheme(def, &ptr)?);
        }
        components.insert("securitySchemes".into(), Value::Object(schemes));
    }
    out.insert("components".into(), Value::Object(components));
    if let Some(security) = root.get("security") {
        out.insert("security".into(), security.clone());
    }
    for (key, value) in root {
        if key.starts_with("x-") {
            out.insert(key.clone(), value.clone());
        }
    }
    Ok(Value::Object(out))
}

struct Globals {
    consumes: Option<Vec<String>>,
    produces: Option<Vec<String>>,
}

fn servers(root: &Map<String, Value>) -> Result<Value> {
    let host = root
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or("localhost");
    let base = root.get("basePath").and_then(Value::as_str).unwrap_or("");
    let schemes =
        string_list(root.get("schemes"), "/schemes")?.unwrap_or_else(|| vec!["https".into()]);
    Ok(Value::Array(
        schemes
            .iter()
            .map(|scheme| json!({ "url": format!("{scheme}://{host}{base}") }))
            .collect(),
    ))
}

fn convert_path_item(item: &Value, ptr: &str, globals: &Globals) -> Result<Value> {
    let item = as_object(item, ptr)?;
    let mut allowed: Vec<&str> = HTTP_METHODS.to_vec();
    allowed.push("parameters");
    check_keys(item, ptr, &allowed)?;
    let shared = match item.get("parameters") {
        Some(v) => as_array(v, &format!("{ptr}/parameters"))?.clone(),
        None => Vec::new(),
    };
    let mut out = Map::new();
    for method in HTTP_METHODS {
        if let Some(op) = item.get(method) {
            let op_ptr = format!("{ptr}/{method}");
            out.insert(
                method.into(),
                convert_operation(op, &op_ptr, &shared, globals)?,
            );
        }
    }
    for (key, value) in item {
        if key.starts_with("x-") {
            out.insert(key.clone(), value.clone());
        }
    }
    Ok(Value::Object(out))
}

fn convert_operation(op: &Value, ptr: &str, shared: &[Value], globals: &Globals) -> Result<Value> {
    let op = as_object(op, ptr)?;
    check_keys(
        op,
        ptr,
        &[
            "tags",
            "summary",
            "description",
            "externalDocs",
            "operationId",
            "consumes",
            "produces",
            "parameters",
            "responses",
            "schemes",
            "deprecated",
            "security",
        ],
    )?;
    let consumes = string_list(op.get("consumes"), &format!("{ptr}/consumes"))?
        .or_else(|| globals.consumes.clone())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| vec!["application/json".into()]);
    let produces = string_list(op.get("produces"), &format!("{ptr}/produces"))?
        .or_else(|| globals.produces.clone())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| vec!["application/json".into()]);

    // Operation parameters override path-level ones with the same name and location.
    let own = match op.get("parameters") {
        Some(v) => as_array(v, &format!("{ptr}/parameters"))?.clone(),
        None => Vec::new(),
    };
    let key = |p: &Value| {
        (
            p.get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            p.get("in")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        )
    };
    let mut params: Vec<(String, Value)> = shared
        .iter()
        .filter(|s| !own.iter().any(|o| key(o) == key(s)))
        .enumerate()
        .map(|(i, p)| (format!("{ptr}/../parameters/{i}"), p.clone()))
        .collect();
    params.extend(
        own.iter()
            .enumerate()
            .map(|(i, p)| (format!("{ptr}/parameters/{i}"), p.clone())),
    );

    let mut out = Map::new();
    for key in [
        "tags",
        "summary",
        "description",
        "externalDocs",
        "operationId",
        "deprecated",
        "security",
    ] {
        if let Some(v) = op.get(key) {
            out.insert(key.into(), v.clone());
        }
    }

    let mut parameters = Vec::new();
    let mut body = None;
    let mut form = Vec::new();
    for (p_ptr, param) in &params {
        let obj = as_object(param, p_ptr)?;
        if obj.contains_key("$ref") {
            return Err(unsupported(p_ptr, "parameter $ref".into()));
        }
        match obj.get("in").and_then(Value::as_str) {
            Some("body") => {
                if body.is_some() {
                    return Err(unsupported(p_ptr, "more than one body parameter".into()));
                }
                body = Some(convert_body(obj, p_ptr, &consumes)?);
            }
            Some("formData") => form.push((p_ptr.clone(), obj)),
            Some("query" | "path" | "header") => parameters.push(convert_parameter(obj, p_ptr)?),
            other => return Err(unsupported(&format!("{p_ptr}/in"), format!("{other:?}"))),
        }
    }
    if !parameters.is_empty() {
        out.insert("parameters".into(), Value::Array(parameters));
    }
    if !form.is_empty() {
        if body.is_some() {
            return Err(unsupported(ptr, "both body and formData parameters".into()));
        }
        body = Some(convert_form(&form, ptr, &consumes)?);
    }
    if let Some(body) = body {
        out.insert("requestBody".into(), body);
    }

    let responses = op
        .get("responses")
        .ok_or_else(|| unsupported(ptr, "operation without responses".into()))?;
    let mut converted = Map::new();
    for (code, response) in as_object(responses, &format!("{ptr}/responses"))? {
        let r_ptr = format!("{ptr}/responses/{}", escape(code));
        if code.starts_with("x-") {
            converted.insert(code.clone(), response.clone());
            continue;
        }
        if code != "default" && !(code.len() == 3 && code.chars().all(|c| c.is_ascii_digit())) {
            return Err(unsupported(&r_ptr, format!("response key {code:?}")));
        }
        converted.insert(code.clone(), convert_response(response, &r_ptr, &produces)?);
    }
    out.insert("responses".into(), Value::Object(converted));
    for (key, value) in op {
        if key.starts_with("x-") {
            out.insert(key.clone(), value.clone());
        }
    }
    Ok(Value::Object(out))
}

/// Keywords a Swagger 2.0 non-body parameter (or `items`) may carry besides name/in/etc.
const SIMPLE_SCHEMA_KEYS: [&str; 16] = [
    "type",
    "format",
    "items",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "enum",
    "multipleOf",
];

fn convert_parameter(obj: &Map<String, Value>, ptr: &str) -> Result<Value> {
    let mut allowed = vec![
        "name",
        "in",
        "description",
        "required",
        "allowEmptyValue",
        "collectionFormat",
    ];
    allowed.extend(SIMPLE_SCHEMA_KEYS);
    check_keys(obj, ptr, &allowed)?;
    let location = obj["in"].as_str().unwrap_or_default();
    let mut out = Map::new();
    out.insert(
        "name".into(),
        obj.get("name")
            .cloned()
            .ok_or_else(|| unsupported(ptr, "parameter without name".into()))?,
    );
    out.insert("in".into(), json!(location));
    if let Some(d) = obj.get("description") {
        out.insert("description".into(), d.clone());
    }
    let required = location == "path"
        || obj
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    out.insert("required".into(), json!(required));
    if let Some(v) = obj.get("allowEmptyValue") {
        out.insert("allowEmptyValue".into(), v.clone());
    }
    if obj.get("type").and_then(Value::as_str) == Some("file") {
        return Err(unsupported(ptr, "type: file outside formData".into()));
    }
    out.insert("schema".into(), simple_schema(obj, ptr)?);
    if obj.get("type").and_then(Value::as_str) == Some("array") {
        let format = obj
            .get("collectionFormat")
            .and_then(Value::as_str)
            .unwrap_or("csv");
        let (style, explode) = match (location, format) {
            ("query", "multi") => ("form", true),
            ("query", "csv") => ("form", false),
            ("query", "ssv") => ("spaceDelimited", false),
            ("query", "pipes") => ("pipeDelimited", false),
            ("path" | "header", "csv") => ("simple", false),
            _ => {
                return Err(unsupported(
                    &format!("{ptr}/collectionFormat"),
                    format!("{format} in {location}"),
                ));
            }
        };
        out.insert("style".into(), json!(style));
        out.insert("explode".into(), json!(explode));
    } else if obj.contains_key("collectionFormat") {
        return Err(unsupported(
            &format!("{ptr}/collectionFormat"),
            "on a non-array parameter".into(),
        ));
    }
    Ok(Value::Object(out))
}

/// Folds the schema keywords of a non-body parameter (or an `items` object) into a schema.
fn simple_schema(obj: &Map<String, Value>, ptr: &str) -> Result<Value> {
    let mut schema = Map::new();
    for key in SIMPLE_SCHEMA_KEYS {
        let Some(value) = obj.get(key) else { continue };
        if key == "items" {
            let items_ptr = format!("{ptr}/items");
            let items = as_object(value, &items_ptr)?;
            let mut allowed = vec!["collectionFormat"];
            allowed.extend(SIMPLE_SCHEMA_KEYS);
            check_keys(items, &items_ptr, &allowed)?;
            if items.get("type").and_then(Value::as_str) == Some("array") {
                return Err(unsupported(&items_ptr, "nested array parameter".into()));
            }
            schema.insert("items".into(), simple_schema(items, &items_ptr)?);
        } else {
            schema.insert(key.into(), value.clone());
        }
    }
    Ok(Value::Object(schema))
}

fn convert_body(obj: &Map<String, Value>, ptr: &str, consumes: &[String]) -> Result<Value> {
    check_keys(
        obj,
        ptr,
        &["name", "in", "description", "required", "schema"],
    )?;
    let schema = obj
        .get("schema")
        .ok_or_else(|| unsupported(ptr, "body without schema".into()))?;
    let schema = convert_schema(schema, &format!("{ptr}/schema"))?;
    let mut content = Map::new();
    for media_type in consumes {
        content.insert(media_type.clone(), json!({ "schema": schema }));
    }
    let mut out = Map::new();
    if let Some(d) = obj.get("description") {
        out.insert("description".into(), d.clone());
    }
    out.insert("content".into(), Value::Object(content));
    out.insert(
        "required".into(),
        json!(
            obj.get("required")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        ),
    );
    Ok(Value::Object(out))
}

fn convert_form(
    fields: &[(String, &Map<String, Value>)],
    ptr: &str,
    consumes: &[String],
) -> Result<Value> {
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut has_file = false;
    for (f_ptr, field) in fields {
        let mut allowed = vec![
            "name",
            "in",
            "description",
            "required",
            "allowEmptyValue",
            "collectionFormat",
        ];
        allowed.extend(SIMPLE_SCHEMA_KEYS);
        check_keys(field, f_ptr, &allowed)?;
        let name = field
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut schema = if field.get("type").and_then(Value::as_str) == Some("file") {
            has_file = true;
            json!({ "type": "string", "format": "binary" })
        } else {
            simple_schema(field, f_ptr)?
        };
        if let (Some(d), Some(s)) = (field.get("description"), schema.as_object_mut()) {
            s.insert("description".into(), d.clone());
        }
        if field
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            required.push(json!(name));
        }
        properties.insert(name, schema);
    }
    let mut schema = json!({ "type": "object", "properties": properties });
    if !required.is_empty() {
        schema["required"] = Value::Array(required);
    }
    let form_types: Vec<&String> = consumes
        .iter()
        .filter(|c| *c == "multipart/form-data" || *c == "application/x-www-form-urlencoded")
        .collect();
    let mut content = Map::new();
    if form_types.is_empty() {
        let default = if has_file {
            "multipart/form-data"
        } else {
            "application/x-www-form-urlencoded"
        };
        content.insert(default.into(), json!({ "schema": schema }));
    } else {
        for media_type in form_types {
            if has_file && media_type != "multipart/form-data" {
                return Err(unsupported(ptr, format!("file field sent as {media_type}")));
            }
            content.insert(media_type.clone(), json!({ "schema": schema }));
        }
    }
    Ok(json!({ "content": content, "required": true }))
}

fn convert_response(response: &Value, ptr: &str, produces: &[String]) -> Result<Value> {
    let obj = as_object(response, ptr)?;
    if obj.contains_key("$ref") {
        return Err(unsupported(ptr, "response $ref".into()));
    }
    check_keys(obj, ptr, &["description", "schema", "headers", "examples"])?;
    let mut out = Map::new();
    out.insert(
        "description".into(),
        obj.get("description").cloned().unwrap_or_else(|| json!("")),
    );
    if let Some(headers) = obj.get("headers") {
        let h_ptr = format!("{ptr}/headers");
        let mut converted = Map::new();
        for (name, header) in as_object(headers, &h_ptr)? {
            let one_ptr = format!("{h_ptr}/{}", escape(name));
            let header = as_object(header, &one_ptr)?;
            let mut allowed = vec!["description", "collectionFormat"];
            allowed.extend(SIMPLE_SCHEMA_KEYS);
            check_keys(header, &one_ptr, &allowed)?;
            let mut h = Map::new();
            if let Some(d) = header.get("description") {
                h.insert("description".into(), d.clone());
            }
            h.insert("schema".into(), simple_schema(header, &one_ptr)?);
            converted.insert(name.clone(), Value::Object(h));
        }
        out.insert("headers".into(), Value::Object(converted));
    }
    let examples = match obj.get("examples") {
        Some(e) => Some(as_object(e, &format!("{ptr}/examples"))?),
        None => None,
    };
    if let Some(schema) = obj.get("schema") {
        let schema = convert_schema(schema, &format!("{ptr}/schema"))?;
        let mut content = Map::new();
        for media_type in produces {
            let mut entry = Map::new();
            entry.insert("schema".into(), schema.clone());
            if let Some(example) = examples.and_then(|e| e.get(media_type)) {
                entry.insert("example".into(), example.clone());
            }
            content.insert(media_type.clone(), Value::Object(entry));
        }
        out.insert("content".into(), Value::Object(content));
    } else if examples.is_some_and(|e| !e.is_empty()) {
        return Err(unsupported(
            ptr,
            "examples on a response without schema".into(),
        ));
    }
    Ok(Value::Object(out))
}

/// Schema keywords Swagger 2.0 allows (extensions aside).
const SCHEMA_KEYS: [&str; 31] = [
    "$ref",
    "format",
    "title",
    "description",
    "default",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "enum",
    "type",
    "items",
    "allOf",
    "properties",
    "additionalProperties",
    "discriminator",
    "readOnly",
    "xml",
    "externalDocs",
    "example",
    "x-nullable",
];

/// Converts a Swagger 2.0 schema object (recursively).
pub fn convert_schema(schema: &Value, ptr: &str) -> Result<Value> {
    let obj = as_object(schema, ptr)?;
    check_keys(obj, ptr, &SCHEMA_KEYS)?;
    let mut out = Map::new();
    for (key, value) in obj {
        let child = format!("{ptr}/{}", escape(key));
        match key.as_str() {
            "$ref" => {
                let target = value
                    .as_str()
                    .ok_or_else(|| unsupported(&child, "non-string $ref".into()))?;
                let name = target.strip_prefix("#/definitions/").ok_or_else(|| {
                    unsupported(&child, format!("$ref {target:?} outside #/definitions"))
                })?;
                out.insert(key.clone(), json!(format!("#/components/schemas/{name}")));
            }
            "type" => match value.as_str() {
                Some("file") => {
                    out.insert("type".into(), json!("string"));
                    out.insert("format".into(), json!("binary"));
                }
                Some(_) => {
                    out.insert(key.clone(), value.clone());
                }
                None => {
                    return Err(unsupported(
                        &child,
                        "type that is not a single string".into(),
                    ));
                }
            },
            "format" if obj.get("type").and_then(Value::as_str) == Some("file") => {}
            "items" => {
                let items = if value.is_array() {
                    return Err(unsupported(&child, "tuple items".into()));
                } else {
                    convert_schema(value, &child)?
                };
                out.insert(key.clone(), items);
            }
            "allOf" => {
                let parts = as_array(value, &child)?
                    .iter()
                    .enumerate()
                    .map(|(i, s)| convert_schema(s, &format!("{child}/{i}")))
                    .collect::<Result<Vec<_>>>()?;
                out.insert(key.clone(), Value::Array(parts));
            }
            "properties" => {
                let mut props = Map::new();
                for (name, prop) in as_object(value, &child)? {
                    props.insert(
                        name.clone(),
                        convert_schema(prop, &format!("{child}/{}", escape(name)))?,
                    );
                }
                out.insert(key.clone(), Value::Object(props));
            }
            "additionalProperties" => {
                let converted = match value {
                    Value::Bool(_) => value.clone(),
                    _ => convert_schema(value, &child)?,
                };
                out.insert(key.clone(), converted);
            }
            "discriminator" => {
                let name = value
                    .as_str()
                    .ok_or_else(|| unsupported(&child, "non-string discriminator".into()))?;
                out.insert(key.clone(), json!({ "propertyName": name }));
            }
            "x-nullable" => {
                out.insert("nullable".into(), value.clone());
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(Value::Object(out))
}

fn convert_security_scheme(def: &Value, ptr: &str) -> Result<Value> {
    let obj = as_object(def, ptr)?;
    check_keys(
        obj,
        ptr,
        &[
            "type",
            "description",
            "name",
            "in",
            "flow",
            "authorizationUrl",
            "tokenUrl",
            "scopes",
        ],
    )?;
    let mut out = match obj.get("type").and_then(Value::as_str) {
        Some("basic") => json!({ "type": "http", "scheme": "basic" }),
        Some("apiKey") => json!({ "type": "apiKey", "name": obj.get("name"), "in": obj.get("in") }),
        Some("oauth2") => {
            let scopes = obj.get("scopes").cloned().unwrap_or_else(|| json!({}));
            let (flow, value) = match obj.get("flow").and_then(Value::as_str) {
                Some("implicit") => (
                    "implicit",
                    json!({ "authorizationUrl": obj.get("authorizationUrl"), "scopes": scopes }),
                ),
                Some("password") => (
                    "password",
                    json!({ "tokenUrl": obj.get("tokenUrl"), "scopes": scopes }),
                ),
                Some("application") => (
                    "clientCredentials",
                    json!({ "tokenUrl": obj.get("tokenUrl"), "scopes": scopes }),
                ),
                Some("accessCode") => (
                    "authorizationCode",
                    json!({
                        "authorizationUrl": obj.get("authorizationUrl"),
                        "tokenUrl": obj.get("tokenUrl"),
                        "scopes": scopes,
                    }),
                ),
                other => return Err(unsupported(&format!("{ptr}/flow"), format!("{other:?}"))),
            };
            json!({ "type": "oauth2", "flows": { flow: value } })
        }
        other => return Err(unsupported(&format!("{ptr}/type"), format!("{other:?}"))),
    };
    if let Some(d) = obj.get("description") {
        out["description"] = d.clone();
    }
    Ok(out)
}

fn check_keys(obj: &Map<String, Value>, ptr: &str, allowed: &[&str]) -> Result<()> {
    for key in obj.keys() {
        if !key.starts_with("x-") && !allowed.contains(&key.as_str()) {
            return Err(unsupported(
                &format!("{ptr}/{}", escape(key)),
                "unknown keyword".into(),
            ));
        }
    }
    Ok(())
}

fn string_list(value: Option<&Value>, ptr: &str) -> Result<Option<Vec<String>>> {
    let Some(value) = value else { return Ok(None) };
    as_array(value, ptr)?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| unsupported(ptr, "non-string entry".into()))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn as_object<'a>(value: &'a Value, ptr: &str) -> Result<&'a Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| unsupported(ptr, "expected an object".into()))
}

fn as_array<'a>(value: &'a Value, ptr: &str) -> Result<&'a Vec<Value>> {
    value
        .as_array()
        .ok_or_else(|| unsupported(ptr, "expected an array".into()))
}

/// Escapes a key for use in a JSON pointer.
pub(crate) fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn unsupported(ptr: &str, what: String) -> Error {
    Error::Unsupported {
        pointer: if ptr.is_empty() {
            "/".into()
        } else {
            ptr.into()
        },
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Value {
        json!({
            "swagger": "2.0",
            "info": { "title": "t", "version": "1" },
            "host": "localhost:1",
            "paths": {
                "/api/v1/Thing/{id}": {
                    "get": {
                        "operationId": "v1Thing_Get",
                        "tags": ["Thing"],
                        "consumes": [],
                        "produces": ["application/json", "text/json"],
                        "parameters": [
                            { "name": "id", "in": "path", "required": true, "type": "integer", "format": "int32" },
                            { "name": "$select", "in": "query", "required": false, "type": "string" },
                            { "name": "ids", "in": "query", "required": false, "type": "array",
                              "items": { "type": "integer" }, "collectionFormat": "multi" }
                        ],
                        "responses": { "200": { "description": "OK", "schema": { "$ref": "#/definitions/A.Thing" } },
                                       "404": { "description": "Not found" } }
                    }
                }
            },
            "definitions": { "A.Thing": { "type": "object", "properties": {
                "Id": { "type": "integer", "format": "int32" },
                "File": { "type": "file" },
                "Maybe": { "type": "string", "x-nullable": true } } } }
        })
    }

    #[test]
    fn converts_parameters_responses_and_refs() {
        let out = convert(&minimal()).unwrap();
        let op = &out["paths"]["/api/v1/Thing/{id}"]["get"];
        assert_eq!(
            op["parameters"][0]["schema"],
            json!({ "type": "integer", "format": "int32" })
        );
        assert_eq!(op["parameters"][2]["style"], "form");
        assert_eq!(op["parameters"][2]["explode"], true);
        let content = op["responses"]["200"]["content"].as_object().unwrap();
        assert_eq!(content.len(), 2);
        assert_eq!(
            content["application/json"]["schema"]["$ref"],
            "#/components/schemas/A.Thing"
        );
        assert!(op["responses"]["404"].get("content").is_none());
        let thing = &out["components"]["schemas"]["A.Thing"]["properties"];
        assert_eq!(
            thing["File"],
            json!({ "type": "string", "format": "binary" })
        );
        assert_eq!(thing["Maybe"]["nullable"], true);
        assert_eq!(out["servers"][0]["url"], "https://localhost:1");
    }

    #[test]
    fn unknown_keywords_fail_with_their_pointer() {
        let mut spec = minimal();
        spec["definitions"]["A.Thing"]["oneOf"] = json!([]);
        let err = convert(&spec).unwrap_err().to_string();
        assert!(err.contains("/definitions/A.Thing/oneOf"), "{err}");

        let mut spec = minimal();
        spec["paths"]["/api/v1/Thing/{id}"]["get"]["parameters"][2]["collectionFormat"] =
            json!("tsv");
        let err = convert(&spec).unwrap_err().to_string();
        assert!(err.contains("collectionFormat"), "{err}");

        let mut spec = minimal();
        spec["swagger"] = json!("3.0");
        assert!(convert(&spec).is_err());
    }

    #[test]
    fn body_and_form_parameters_become_request_bodies() {
        let mut spec = minimal();
        spec["paths"]["/api/v1/Thing"] = json!({
            "post": { "operationId": "v1Thing_Post", "consumes": ["application/json", "text/json"],
                      "parameters": [{ "name": "e", "in": "body", "required": true, "schema": { "$ref": "#/definitions/A.Thing" } }],
                      "responses": { "200": { "description": "OK" } } },
            "put": { "operationId": "v1Thing_Image", "consumes": ["image/png", "multipart/form-data"],
                     "parameters": [{ "name": "image", "in": "formData", "required": true, "type": "file" }],
                     "responses": { "200": { "description": "OK" } } }
        });
        let out = convert(&spec).unwrap();
        let post = &out["paths"]["/api/v1/Thing"]["post"]["requestBody"];
        assert_eq!(post["required"], true);
        assert_eq!(post["content"].as_object().unwrap().len(), 2);
        let put = &out["paths"]["/api/v1/Thing"]["put"]["requestBody"]["content"];
        assert_eq!(
            put.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["multipart/form-data"]
        );
        assert_eq!(
            put["multipart/form-data"]["schema"]["properties"]["image"]["format"],
            "binary"
        );
    }
}
