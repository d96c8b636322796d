//! Content hashes: SHA-256 of canonical JSON (object keys sorted, no whitespace, numbers as
//! `serde_json` prints them, strings JSON-escaped). The same bytes whatever order the server
//! sent the keys in, so equal data always hashes equal.
//!
//! - [`record_hash`]: the `records.hash` / `changes.hash` of what a subscription stores (after
//!   the transform).
//! - [`entity_hash`]: the hash of an entity document as the API answers it, without the
//!   top-level metadata that is not data ([`METADATA_KEYS`]: `_Links`, `TableRight`,
//!   `FieldProperties`). The outbox stores it in `echoes.entity_hash` after its own writes, and
//!   entity-shape subscriptions compare it with what they fetch to recognise their own echoes.
//!   Without those keys in the document, `entity_hash` equals the emulator's
//!   `/__admin/truth` hash.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Top-level keys of an entity document that describe rights and links rather than data.
pub const METADATA_KEYS: [&str; 3] = ["_Links", "TableRight", "FieldProperties"];

/// Lower-case hex SHA-256 of the canonical JSON of `value`.
pub fn record_hash(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value)))
}

/// Lower-case hex SHA-256 of the canonical JSON of an entity document without its top-level
/// [`METADATA_KEYS`]. Call it on what a write answered (outbox) or what a GET returned (sync).
pub fn entity_hash(entity: &Value) -> String {
    match entity {
        Value::Object(map) if METADATA_KEYS.iter().any(|k| map.contains_key(*k)) => {
            record_hash(&Value::Object(strip_metadata_ref(map)))
        }
        other => record_hash(other),
    }
}

/// Removes the top-level [`METADATA_KEYS`] from an entity document (what entity-shape
/// subscriptions store).
pub fn strip_metadata(mut entity: Value) -> Value {
    if let Value::Object(map) = &mut entity {
        for key in METADATA_KEYS {
            map.remove(key);
        }
    }
    entity
}

fn strip_metadata_ref(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| !METADATA_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The canonical JSON text of `value` and its [`record_hash`], from one serialisation (what
/// subscriptions store: the stored text is canonical, so its hash is the hash of the text).
pub fn canonical_text_and_hash(value: &Value) -> (String, String) {
    let buffer = canonical_json(value);
    let hash = hex::encode(Sha256::digest(&buffer));
    // Canonical JSON is serde_json output: valid UTF-8.
    let text = String::from_utf8(buffer).unwrap_or_default();
    (text, hash)
}

/// The canonical bytes of `value`.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            // Entries, not keys: sorting pairs saves a hash lookup per key.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (index, (key, value)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::String(text) => write_string(text, out),
        // Null, booleans and numbers: serde_json's own compact form (cannot fail).
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "é\""}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":"é\"","y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(record_hash(&a), record_hash(&b));
        assert_eq!(
            String::from_utf8(canonical_json(&a)).unwrap(),
            r#"{"a":{"x":"é\"","y":[1,2]},"b":1}"#
        );
        assert_ne!(record_hash(&a), record_hash(&json!({"b": 2})));
    }

    #[test]
    fn the_stored_text_is_canonical_and_hashes_to_the_record_hash() {
        let value = json!({"b": [1, {"z": null, "a": "x"}], "a": 1.5});
        let (text, hash) = canonical_text_and_hash(&value);
        assert_eq!(text, r#"{"a":1.5,"b":[1,{"a":"x","z":null}]}"#);
        assert_eq!(hash, record_hash(&value));
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
    }

    #[test]
    fn entity_hash_ignores_links_and_rights() {
        let plain = json!({"ContactId": 5, "Name": "Acme"});
        let decorated = json!({
            "ContactId": 5, "Name": "Acme",
            "_Links": {"Self": "http://x/api/v1/Contact/5"},
            "TableRight": {"Mask": "FULL"}, "FieldProperties": {}
        });
        assert_eq!(entity_hash(&plain), entity_hash(&decorated));
        assert_eq!(entity_hash(&plain), record_hash(&plain));
        assert_eq!(strip_metadata(decorated), plain);
    }

    #[test]
    fn matches_the_emulator_truth_hash_without_metadata() {
        let doc = json!({"ContactId": 7, "Name": "Ånes AS", "Amount": 1.5, "Tags": [true, null]});
        assert_eq!(entity_hash(&doc), emulator::entity_hash(&doc));
    }
}
