//! The one canonical hash of syncd, shared by the subscriptions (`records.hash`,
//! `changes.hash`, echo detection) and the outbox (`tasks.payload_hash`, default idempotency
//! keys, `echoes.entity_hash`). Consumers of the change feed see it (`hash`, `previous_hash`),
//! so its definition is part of the interface (`syncd/docs/change-event.schema.json`):
//!
//! **hash = lower-case hex of SHA-256 over the UTF-8 bytes of the canonical JSON of the value**,
//! where canonical JSON is:
//! - objects: members sorted by key, comparing the keys' UTF-8 bytes (so `"B" < "a" < "É"`);
//!   each key and value written as below, `{` `:` `,` `}` with no whitespace;
//! - arrays: elements in their order, `[` `,` `]` with no whitespace;
//! - strings (keys too): as serde_json writes them: `"` and `\` escaped as `\"` and `\\`,
//!   control characters as `\b \f \n \r \t` or `\u00XX` (lower-case hex), everything else
//!   (including non-ASCII and `/`) as itself in UTF-8;
//! - numbers: as serde_json writes them: integers in decimal, other numbers in the shortest
//!   form that reads back to the same `f64`, always with a `.` or an exponent (`1.5`, `2.0`,
//!   `-0.0`, `1e+20`, `1e-7`), as parsed from the answer;
//! - `true`, `false`, `null`.
//!
//! Equal data hashes equal whatever order or spacing the server used.
//!
//! - [`record_hash`]: the `records.hash` / `changes.hash` of what a subscription stores (after
//!   the transform).
//! - [`entity_hash`]: the hash of an entity document as the API answers it, without the
//!   top-level metadata that is not data ([`METADATA_KEYS`]: `_Links`, `TableRight`,
//!   `FieldProperties`). The outbox stores it in `echoes.entity_hash` after its own writes, and
//!   entity-shape subscriptions compare it with what they fetch to recognise their own echoes.
//!   Without those keys in the document, `entity_hash` equals the emulator's
//!   `/__admin/truth` hash.
//! - [`canonical`] / [`sha256_hex`]: the outbox's payload hash of its canonical request.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Top-level keys of an entity document that describe rights and links rather than data.
pub const METADATA_KEYS: [&str; 3] = ["_Links", "TableRight", "FieldProperties"];

/// Lower-case hex SHA-256 of the canonical JSON of `value`.
pub fn record_hash(value: &Value) -> String {
    hex_digest(Sha256::digest(canonical_json(value)))
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
    let hash = hex_digest(Sha256::digest(&buffer));
    // Canonical JSON is serde_json output: valid UTF-8.
    let text = String::from_utf8(buffer).unwrap_or_default();
    (text, hash)
}

/// The canonical JSON text of `value`.
pub fn canonical(value: &Value) -> String {
    // Canonical JSON is serde_json output: valid UTF-8.
    String::from_utf8(canonical_json(value)).unwrap_or_default()
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_digest(Sha256::digest(bytes))
}

/// Lower-case hex of a digest, written into one buffer (one allocation per hash: a hash is
/// computed for every row of every page).
fn hex_digest(digest: impl AsRef<[u8]>) -> String {
    let digest = digest.as_ref();
    let mut out = vec![0u8; digest.len() * 2];
    // The buffer holds exactly two digits per byte.
    let _ = hex::encode_to_slice(digest, &mut out);
    String::from_utf8(out).unwrap_or_default()
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

    /// The outbox's former implementation (`outbox/hash.rs` until the hashes were merged),
    /// kept as the reference: `tasks.payload_hash` values in existing databases were computed
    /// with it, so the shared module must write the same bytes.
    fn former_outbox_canonical(value: &Value) -> String {
        fn write(value: &Value, out: &mut String) {
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
                        write(&map[key.as_str()], out);
                    }
                    out.push('}');
                }
                Value::Array(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write(item, out);
                    }
                    out.push(']');
                }
                other => out.push_str(&other.to_string()),
            }
        }
        let mut out = String::new();
        write(value, &mut out);
        out
    }

    #[test]
    fn the_former_outbox_canonical_json_writes_the_same_bytes() {
        let tricky = [
            r#"{"b": 1, "a": {"y": [1, 2], "x": "é\""}}"#,
            r#"{"É": 1, "a": 2, "B": 3, "_Links": {}, "ä": [], "Z": {}, "": null}"#,
            r#"{"s": "tab\tnl\ncr\rbs\\quote\"slash/ctl\u0001\u001f del\u007f"}"#,
            r#"{"u": "\u00e9\u4e2d\ud83d\ude00 emoji 😀 ß ø", "🔑": "k"}"#,
            r#"{"n": [0, -0, 1, -1, 1.5, -0.0, 1e20, 1.0e-7, 123456789012345678, 18446744073709551615, -9223372036854775808, 3.141592653589793, 0.1]}"#,
            r#"[true, false, null, [], {}, [[[]]], {"a": {"b": {"c": [1, {"d": null}]}}}]"#,
            r#""just a string with \u2028 and \u2029""#,
            r#"42"#,
            r#"{"dup": 1, "dup": 2}"#,
        ];
        for text in tricky {
            let value: Value = serde_json::from_str(text).unwrap();
            let ours = canonical(&value);
            assert_eq!(ours, former_outbox_canonical(&value), "{text}");
            assert_eq!(ours.as_bytes(), canonical_json(&value).as_slice());
            assert_eq!(sha256_hex(ours.as_bytes()), record_hash(&value));
            // Canonical JSON reads back to the same value.
            assert_eq!(serde_json::from_str::<Value>(&ours).unwrap(), value);
        }
    }

    #[test]
    fn control_characters_are_escaped_as_documented() {
        let value = Value::String("\u{1f}\u{8}\u{c}\n\r\t\u{7f}/é".into());
        assert_eq!(canonical(&value), "\"\\u001f\\b\\f\\n\\r\\t\u{7f}/é\"");
    }

    #[test]
    fn numbers_are_written_as_documented() {
        let value: Value = serde_json::from_str("[1e20, -0.0, 0.1, 1.0e-7, 12, 1.50]").unwrap();
        assert_eq!(canonical(&value), "[1e+20,-0.0,0.1,1e-7,12,1.5]");
    }

    #[test]
    fn the_documented_definition_holds_for_an_example() {
        let value: Value =
            serde_json::from_str("{ \"é\": \"a\\u0001/\", \"B\": [1.50, 2e0], \"a\": true }")
                .unwrap();
        assert_eq!(
            canonical(&value),
            r#"{"B":[1.5,2.0],"a":true,"é":"a\u0001/"}"#
        );
        assert_eq!(
            record_hash(&value),
            sha256_hex(r#"{"B":[1.5,2.0],"a":true,"é":"a\u0001/"}"#.as_bytes())
        );
    }

    #[test]
    fn matches_the_emulator_truth_hash_without_metadata() {
        let doc = json!({"ContactId": 7, "Name": "Ånes AS", "Amount": 1.5, "Tags": [true, null]});
        assert_eq!(entity_hash(&doc), emulator::entity_hash(&doc));
    }
}
