//! Tag selection and exclusions: which operations are generated, and the schemas they reach.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::normalize::{UPSTREAM_ID, operations};
use crate::{Error, Result};

/// An operation as the coverage report and API surface name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpRef {
    /// The operation's (single) tag.
    pub tag: String,
    /// Its operationId in the upstream spec.
    pub upstream_id: String,
    /// HTTP method, upper case.
    pub method: String,
    /// Path template.
    pub path: String,
}

/// Every operation of a (normalised) document.
pub fn op_refs(doc: &Value) -> Result<Vec<OpRef>> {
    operations(doc)
        .into_iter()
        .map(|(path, method, op)| {
            let tag = single_tag(op, path, method)?;
            let upstream_id = op
                .get(UPSTREAM_ID)
                .or_else(|| op.get("operationId"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            Ok(OpRef {
                tag,
                upstream_id,
                method: method.to_uppercase(),
                path: path.to_string(),
            })
        })
        .collect()
}

fn single_tag(op: &serde_json::Map<String, Value>, path: &str, method: &str) -> Result<String> {
    match op.get("tags").and_then(Value::as_array).map(Vec::as_slice) {
        Some([tag]) => Ok(tag.as_str().unwrap_or_default().to_string()),
        _ => Err(Error::Normalize(format!(
            "{method} {path}: expected exactly one tag"
        ))),
    }
}

/// Keeps the operations whose tag is selected (`None` = all) and that are not excluded, and
/// the component schemas they reach. Returns the document and warnings (selected tags that
/// match nothing).
pub fn select(
    doc: &Value,
    tags: Option<&BTreeSet<String>>,
    exclude: &BTreeMap<String, String>,
) -> Result<(Value, Vec<String>)> {
    let mut warnings = Vec::new();
    let all = op_refs(doc)?;
    let known_tags: BTreeSet<&str> = all.iter().map(|o| o.tag.as_str()).collect();
    if let Some(tags) = tags {
        for tag in tags.iter().filter(|t| !known_tags.contains(t.as_str())) {
            warnings.push(format!(
                "tag `{tag}` is selected in spec/superoffice.toml but no operation has it"
            ));
        }
    }
    let mut out = doc.clone();
    let paths = out
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error::Normalize("document has no paths".into()))?;
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        item.retain(|method, op| {
            if method.starts_with("x-") || method == "parameters" {
                return true;
            }
            let tag = op["tags"][0].as_str().unwrap_or_default();
            let id = op[UPSTREAM_ID]
                .as_str()
                .or_else(|| op["operationId"].as_str())
                .unwrap_or_default();
            tags.is_none_or(|t| t.contains(tag)) && !exclude.contains_key(id)
        });
    }
    paths.retain(|_, item| {
        item.as_object()
            .is_some_and(|i| i.keys().any(|k| !k.starts_with("x-") && k != "parameters"))
    });

    // Transitive closure of the schemas the remaining paths reference.
    let schemas = out
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut reached = BTreeSet::new();
    let mut queue = Vec::new();
    collect_refs(&out["paths"], &mut queue);
    while let Some(name) = queue.pop() {
        if reached.insert(name.clone()) {
            let schema = schemas
                .get(&name)
                .ok_or_else(|| Error::Normalize(format!("$ref to missing schema `{name}`")))?;
            collect_refs(schema, &mut queue);
        }
    }
    if let Some(schemas) = out
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.retain(|name, _| reached.contains(name));
    }
    let used_tags: BTreeSet<String> = op_refs(&out)?.into_iter().map(|o| o.tag).collect();
    if let Some(list) = out.get_mut("tags").and_then(Value::as_array_mut) {
        list.retain(|t| t["name"].as_str().is_some_and(|n| used_tags.contains(n)));
    }
    Ok((out, warnings))
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    if let Some(name) = v
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    {
                        out.push(name.to_string());
                    }
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(list) => list.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
