//! `short-names` and `operation-names`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::{UPSTREAM_ID, operations_mut, pascal, rename_refs, schemas_mut, snake};
use crate::{Error, Result};

/// `SuperOffice.CRM.Services.ContactEntity` → `ContactEntity`, failing when two definitions
/// would get the same name.
pub(super) fn short_names(doc: &mut Value) -> Result<String> {
    let schemas = schemas_mut(doc)?;
    let mut renames: BTreeMap<String, String> = BTreeMap::new();
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for name in schemas.keys() {
        let short = name.rsplit('.').next().unwrap_or(name).to_string();
        if short.is_empty() || !short.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::Normalize(format!(
                "definition {name:?} has no usable last segment"
            )));
        }
        if let Some(other) = taken.insert(short.clone(), name.clone()) {
            return Err(Error::Normalize(format!(
                "definitions {other:?} and {name:?} would both be named `{short}`"
            )));
        }
        renames.insert(name.clone(), short);
    }
    let old = std::mem::take(schemas);
    let mut renamed = Map::new();
    for (name, schema) in old {
        renamed.insert(renames[&name].clone(), schema);
    }
    *schemas = renamed;
    let changed = renames.iter().filter(|(a, b)| a != b).count();
    rename_refs(doc, &|name| renames.get(name).cloned());
    Ok(format!(
        "{changed} definitions renamed to their last segment"
    ))
}

/// Shorter operation ids: `v1ContactEntity_GetContactEntity` → `contact_get`.
///
/// The id is `{prefix}_{suffix}`; `v1` and a trailing `Entity` are dropped from the prefix and
/// the prefix word is dropped from the suffix. When two operations would share a short name,
/// both keep the full `{prefix}_{suffix}` form. The result must be unique.
pub(super) fn operation_names(doc: &mut Value) -> Result<String> {
    let mut ops = operations_mut(doc)?;
    let mut proposals: Vec<(String, String)> = Vec::new();
    for (ptr, op) in &ops {
        let id = op
            .get("operationId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        proposals.push((short_operation_name(id), full_operation_name(id)));
        if id.is_empty() {
            return Err(Error::Normalize(format!("{ptr}: no operationId")));
        }
    }
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (short, _) in &proposals {
        *count.entry(short.as_str()).or_default() += 1;
    }
    let mut seen = BTreeSet::new();
    let mut kept_long = 0;
    let mut new_names = Vec::new();
    for (short, full) in &proposals {
        let name = if count[short.as_str()] > 1 {
            kept_long += 1;
            full.clone()
        } else {
            short.clone()
        };
        if !seen.insert(name.clone()) {
            return Err(Error::Normalize(format!(
                "operation name `{name}` is not unique"
            )));
        }
        new_names.push(name);
    }
    for ((ptr, op), name) in ops.iter_mut().zip(new_names) {
        let upstream = op
            .get(UPSTREAM_ID)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let method_path = match ptr.split_once(' ') {
            Some((method, path)) => format!("{} {path}", method.to_uppercase()),
            None => ptr.clone(),
        };
        let note = format!("`{method_path}` (SuperOffice operation `{upstream}`).");
        let description = match op.get("description").and_then(Value::as_str) {
            Some(d) if !d.trim().is_empty() => format!("{note}\n\n{d}"),
            _ => note,
        };
        op.insert("description".into(), Value::String(description));
        op.insert("operationId".into(), Value::String(name));
    }
    Ok(format!(
        "{} operations renamed ({kept_long} keep the long form to stay unique)",
        ops.len()
    ))
}

fn split_id(id: &str) -> (String, String) {
    let (prefix, suffix) = id.split_once('_').unwrap_or((id, ""));
    let prefix = prefix.strip_prefix("v1").unwrap_or(prefix);
    (prefix.to_string(), suffix.to_string())
}

fn short_operation_name(id: &str) -> String {
    let (prefix, suffix) = split_id(id);
    let base = prefix
        .strip_suffix("Entity")
        .filter(|b| !b.is_empty())
        .unwrap_or(&prefix);
    let mut rest = suffix.clone();
    for word in [prefix.as_str(), base] {
        if !word.is_empty() && rest != word && rest.contains(word) {
            rest = rest.replacen(word, "", 1);
            break;
        }
    }
    let name = format!("{}_{}", snake(base), snake(&pascal(&rest)));
    name.trim_matches('_').to_string()
}

fn full_operation_name(id: &str) -> String {
    let (prefix, suffix) = split_id(id);
    format!("{}_{}", snake(&prefix), snake(&suffix))
        .trim_matches('_')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_follow_the_documented_scheme() {
        assert_eq!(
            short_operation_name("v1ContactEntity_GetContactEntity"),
            "contact_get"
        );
        assert_eq!(
            short_operation_name("v1ContactEntity_GetAll"),
            "contact_get_all"
        );
        assert_eq!(
            short_operation_name("v1ContactEntity_DefaultContactEntity"),
            "contact_default"
        );
        assert_eq!(short_operation_name("v1Webhook_PutWebhook"), "webhook_put");
        assert_eq!(
            short_operation_name("v1Archive_GetArchiveMetadata"),
            "archive_get_metadata"
        );
        assert_eq!(
            short_operation_name("v1ContactEntity_SaveImage_POST"),
            "contact_save_image_post"
        );
        assert_eq!(
            full_operation_name("v1ForeignAppEntity_PostForeignApp"),
            "foreign_app_entity_post_foreign_app"
        );
    }
}
