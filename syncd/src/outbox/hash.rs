//! Canonical JSON and the hashes the outbox keeps: the payload hash that tells a replay from a
//! mismatch, the default idempotency key, and the `echoes.entity_hash` of what a write answered.
//!
//! Canonical JSON: object keys sorted (byte order), no whitespace, numbers and strings as
//! serde_json prints them. [`entity_hash`] is the subscription engine's
//! [`crate::sync::hash::entity_hash`] (top-level `_Links`, `TableRight` and `FieldProperties`
//! removed), so an echo row matches what an entity-shape subscription computes on its fetch.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Canonical JSON text of `value`.
pub fn canonical(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push(':');
                write_canonical(&map[key.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub use crate::sync::hash::entity_hash;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_keys_recursively_without_whitespace() {
        let value = json!({ "b": [1, { "z": 1, "a": "x" }], "a": null, "É": 1.5 });
        assert_eq!(
            canonical(&value),
            r#"{"a":null,"b":[1,{"a":"x","z":1}],"É":1.5}"#
        );
    }

    #[test]
    fn entity_hash_ignores_links_and_key_order() {
        let a = json!({ "Name": "A", "ContactId": 5, "_Links": { "Self": "x" } });
        let b = json!({ "ContactId": 5, "Name": "A" });
        assert_eq!(entity_hash(&a), entity_hash(&b));
        assert_eq!(entity_hash(&a), emulator::entity_hash(&a));
        assert_eq!(sha256_hex(canonical(&b).as_bytes()), entity_hash(&b));
        assert_ne!(entity_hash(&a), entity_hash(&json!({ "ContactId": 5 })));
    }
}
