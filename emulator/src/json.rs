//! JSON utilities: canonical serialisation and hashing, JSON Patch (RFC 6902) and JSON Merge
//! Patch (RFC 7396) with SuperOffice's quirks.
//!
//! SuperOffice patch paths are case-insensitive and may omit the leading `/`; only `add`,
//! `replace`, `remove` and `test` are supported (`move`/`copy` answer 400). In a merge patch an
//! object where the target holds an array is appended to it, as the server converts it to
//! `add /Array/-`.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::SoError;

/// Canonical JSON: object keys sorted, no whitespace, numbers as serde_json prints them.
pub fn canonical_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Serialising a string cannot fail.
                out.extend(serde_json::to_vec(k).unwrap_or_default());
                out.push(b':');
                write_canonical(&m[k.as_str()], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(x, out);
            }
            out.push(b']');
        }
        other => out.extend(serde_json::to_vec(other).unwrap_or_default()),
    }
}

/// The `hash` of `/__admin/truth`: lower-case hex sha256 of the canonical JSON of an entity
/// document as `GET /api/v1/{Entity}/{id}` returns it, with `_Links` removed. Clients can call
/// this on a document they fetched to compare it with the ground truth.
pub fn entity_hash(doc: &Value) -> String {
    let mut doc = doc.clone();
    if let Value::Object(m) = &mut doc {
        m.remove("_Links");
    }
    hex::encode(Sha256::digest(canonical_bytes(&doc)))
}

/// Numeric-tolerant equality (`1` equals `1.0`), used by the `test` operation.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .find(|(k2, _)| k2.eq_ignore_ascii_case(k))
                        .is_some_and(|(_, v2)| json_eq(v, v2))
                })
        }
        _ => a == b,
    }
}

fn tokens(path: &str) -> Vec<String> {
    let p = path.strip_prefix('/').unwrap_or(path);
    if p.is_empty() {
        return Vec::new();
    }
    p.split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn find_key(m: &Map<String, Value>, token: &str) -> Option<String> {
    m.keys().find(|k| k.eq_ignore_ascii_case(token)).cloned()
}

fn bad_path(path: &str) -> SoError {
    SoError::bad_request(format!("JSON Patch path '{path}' does not exist"))
}

fn parent_mut<'a>(
    root: &'a mut Value,
    toks: &[String],
    path: &str,
) -> Result<&'a mut Value, SoError> {
    let mut cur = root;
    for t in toks {
        cur = match cur {
            Value::Object(m) => {
                let k = find_key(m, t).ok_or_else(|| bad_path(path))?;
                m.get_mut(&k).ok_or_else(|| bad_path(path))?
            }
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| bad_path(path))?;
                a.get_mut(i).ok_or_else(|| bad_path(path))?
            }
            _ => return Err(bad_path(path)),
        };
    }
    Ok(cur)
}

fn get<'a>(root: &'a Value, toks: &[String]) -> Option<&'a Value> {
    let mut cur = root;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(t))
                .map(|(_, v)| v)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Applies a JSON Patch document to `doc`. A failed `test` gives 409; malformed operations
/// and paths give 400. Removing a top-level property resets it (sets it to null).
pub fn apply_json_patch(doc: &mut Value, patch: &Value) -> Result<(), SoError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| SoError::bad_request("A JSON Patch document must be an array"))?;
    for op in ops {
        let field = |name: &str| {
            op.as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                .map(|(_, v)| v)
        };
        let kind = field("op")
            .and_then(Value::as_str)
            .ok_or_else(|| SoError::bad_request("JSON Patch operation without 'op'"))?;
        let path = field("path")
            .and_then(Value::as_str)
            .ok_or_else(|| SoError::bad_request("JSON Patch operation without 'path'"))?;
        let toks = tokens(path);
        let Some((last, parents)) = toks.split_last() else {
            return Err(SoError::bad_request(
                "JSON Patch operations on the whole document are not supported",
            ));
        };
        match kind.to_ascii_lowercase().as_str() {
            "test" => {
                let want = field("value").cloned().unwrap_or(Value::Null);
                let have = get(doc, &toks).cloned().unwrap_or(Value::Null);
                if !json_eq(&have, &want) {
                    return Err(SoError::conflict(format!(
                        "JSON Patch test failed: '{path}' is {have}, not {want}"
                    )));
                }
            }
            "add" | "replace" => {
                let value = field("value").cloned().ok_or_else(|| {
                    SoError::bad_request(format!("'{kind}' of '{path}' without a value"))
                })?;
                let parent = parent_mut(doc, parents, path)?;
                match parent {
                    Value::Object(m) => {
                        let k = find_key(m, last).unwrap_or_else(|| last.clone());
                        m.insert(k, value);
                    }
                    Value::Array(a) => {
                        if last == "-" {
                            a.push(value);
                        } else {
                            let i: usize = last.parse().map_err(|_| bad_path(path))?;
                            if kind.eq_ignore_ascii_case("add") && i <= a.len() {
                                a.insert(i, value);
                            } else if i < a.len() {
                                a[i] = value;
                            } else {
                                return Err(bad_path(path));
                            }
                        }
                    }
                    Value::Null => {
                        // Setting a member of a null carrier creates the carrier.
                        let mut m = Map::new();
                        m.insert(last.clone(), value);
                        *parent = Value::Object(m);
                    }
                    _ => return Err(bad_path(path)),
                }
            }
            "remove" => {
                let top_level = parents.is_empty();
                let parent = parent_mut(doc, parents, path)?;
                match parent {
                    Value::Object(m) => {
                        let k = find_key(m, last).ok_or_else(|| bad_path(path))?;
                        if top_level {
                            m.insert(k, Value::Null);
                        } else {
                            m.remove(&k);
                        }
                    }
                    Value::Array(a) => {
                        let i: usize = last.parse().map_err(|_| bad_path(path))?;
                        if i >= a.len() {
                            return Err(bad_path(path));
                        }
                        a.remove(i);
                    }
                    _ => return Err(bad_path(path)),
                }
            }
            other => {
                return Err(SoError::bad_request(format!(
                    "JSON Patch operation '{other}' is not supported (use add, replace, remove or test)"
                )));
            }
        }
    }
    Ok(())
}

/// Applies a JSON Merge Patch to `doc` (objects into arrays append, arrays replace).
pub fn apply_merge_patch(doc: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *doc = patch.clone();
        return;
    };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Value::Object(target) = doc else { return };
    for (k, v) in p {
        let key = find_key(target, k).unwrap_or_else(|| k.clone());
        match (target.get_mut(&key), v) {
            (Some(Value::Array(a)), Value::Object(_)) => a.push(v.clone()),
            (Some(existing @ Value::Object(_)), Value::Object(_)) => apply_merge_patch(existing, v),
            (_, Value::Null) => {
                target.insert(key, Value::Null);
            }
            _ => {
                target.insert(key, v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_sorts_keys() {
        let a = json!({"b": 1, "a": {"d": [1, 2], "c": null}});
        assert_eq!(
            String::from_utf8(canonical_bytes(&a)).unwrap(),
            r#"{"a":{"c":null,"d":[1,2]},"b":1}"#
        );
        let b = json!({"a": {"c": null, "d": [1, 2]}, "b": 1, "_Links": {"Self": "x"}});
        assert_eq!(entity_hash(&a), entity_hash(&b));
    }

    #[test]
    fn json_patch_is_case_insensitive_and_tests() {
        let mut doc = json!({"Name": "A", "Phones": [], "Category": {"Id": 1}});
        apply_json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/name", "value": "A"},
                {"op": "replace", "path": "name", "value": "B"},
                {"op": "add", "path": "/phones/-", "value": {"Value": "1"}},
                {"op": "replace", "path": "/category/id", "value": 2},
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"Name": "B", "Phones": [{"Value": "1"}], "Category": {"Id": 2}})
        );
        let err = apply_json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/Name", "value": "A"}]),
        )
        .unwrap_err();
        assert_eq!(err.status.as_u16(), 409);
        let err = apply_json_patch(
            &mut doc,
            &json!([{"op": "move", "from": "/Name", "path": "/X"}]),
        )
        .unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
        apply_json_patch(&mut doc, &json!([{"op": "remove", "path": "/Phones/0"}])).unwrap();
        apply_json_patch(&mut doc, &json!([{"op": "remove", "path": "/Name"}])).unwrap();
        assert_eq!(
            doc,
            json!({"Name": null, "Phones": [], "Category": {"Id": 2}})
        );
    }

    #[test]
    fn merge_patch_appends_objects_to_arrays() {
        let mut doc =
            json!({"Name": "A", "Phones": [{"Value": "1"}], "Category": {"Id": 1, "Value": "x"}});
        apply_merge_patch(
            &mut doc,
            &json!({"name": "B", "Phones": {"Value": "2"}, "Category": {"Id": 3}}),
        );
        assert_eq!(
            doc,
            json!({"Name": "B", "Phones": [{"Value": "1"}, {"Value": "2"}], "Category": {"Id": 3, "Value": "x"}})
        );
        apply_merge_patch(&mut doc, &json!({"Phones": []}));
        assert_eq!(doc["Phones"], json!([]));
    }
}
