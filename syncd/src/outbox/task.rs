//! Publish requests and tasks: what arrives at intake ([`PublishRequest`]), how it is validated
//! into a [`NewTask`] (every error names the field), and the ledger row ([`Task`]).
//!
//! Validation is done once, at intake, against the entity: a known entity and action, an id
//! (or an external key) for `update`/`patch`/`delete`, a JSON object for
//! `create`/`update`/`upsert` and merge patches, an array of `{op, path, value?}` for JSON
//! Patch, and a light type check of every top-level field by decoding it into the SDK's
//! generated write type (`ContactEntity`, …). A bad request never reaches the ledger.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use superoffice::entity::EntityKind;

use crate::hash;
use crate::store::types::UtcTime;
use crate::{Config, Error, Result};

/// The longest idempotency or external key (a ForeignKey value holds 239 characters).
pub const MAX_KEY_LEN: usize = 239;

pub use crate::store::ledger::{
    Action, IusSource, Named, NewTask, REJECTED_PREFIX, Task, TaskId, TaskState, lane, record_key,
};
/// A publish as it arrives (CLI flags, `POST /publish` JSON, an `outbox` row), unvalidated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishRequest {
    /// `create`, `update`, `patch`, `delete` or `upsert`.
    pub action: String,
    /// Entity name (`contact`, `Person`, …).
    pub entity: String,
    /// SuperOffice record id (required for update/patch/delete unless `external_key` is given).
    pub id: Option<i64>,
    /// The record's external key (ForeignApp value): identifies the record for upserts, tags
    /// created records, and may stand in for `id`.
    pub external_key: Option<String>,
    /// Path parameters; the entity routes know only `id`.
    pub path: BTreeMap<String, String>,
    /// Query parameters sent with the write (e.g. `$select`).
    pub query: BTreeMap<String, String>,
    /// The body, as JSON text (`None`: none given).
    pub payload: Option<String>,
    /// `If-Unmodified-Since` (RFC 3339 or SuperOffice's `yyyy-MM-ddTHH:mm:ss`, UTC).
    pub if_unmodified_since: Option<String>,
    /// Idempotency key (default: derived from the content).
    pub key: Option<String>,
}

impl PublishRequest {
    /// Reads the JSON object of `POST /publish`; unknown fields and wrong types are errors
    /// naming the field. `payload` may be any JSON value.
    pub fn from_json(body: &Value) -> Result<PublishRequest> {
        let Value::Object(map) = body else {
            return Err(Error::invalid(
                "body",
                "expected a JSON object with action, entity, payload, …",
            ));
        };
        let mut request = PublishRequest::default();
        for (field, value) in map {
            match field.as_str() {
                "action" => request.action = string_field(field, value)?,
                "entity" => request.entity = string_field(field, value)?,
                "id" => {
                    request.id = match value {
                        Value::Null => None,
                        Value::Number(n) => Some(n.as_i64().ok_or_else(|| {
                            Error::invalid("id", format!("{n} is not an integer"))
                        })?),
                        other => {
                            return Err(Error::invalid(
                                "id",
                                format!("expected an integer, got {}", kind_of(other)),
                            ));
                        }
                    }
                }
                "external_key" => request.external_key = optional_string(field, value)?,
                "key" => request.key = optional_string(field, value)?,
                "if_unmodified_since" => {
                    request.if_unmodified_since = optional_string(field, value)?
                }
                "path" => request.path = string_map(field, value)?,
                "query" => request.query = string_map(field, value)?,
                "payload" => {
                    request.payload = match value {
                        Value::Null => None,
                        other => Some(other.to_string()),
                    }
                }
                other => {
                    return Err(Error::invalid(
                        other,
                        "unknown field (expected action, entity, id, external_key, path, query, payload, if_unmodified_since, key)",
                    ));
                }
            }
        }
        Ok(request)
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string_field(field: &str, value: &Value) -> Result<String> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::invalid(field, format!("expected a string, got {}", kind_of(value))))
}

fn optional_string(field: &str, value: &Value) -> Result<Option<String>> {
    match value {
        Value::Null => Ok(None),
        other => string_field(field, other).map(Some),
    }
}

fn string_map(field: &str, value: &Value) -> Result<BTreeMap<String, String>> {
    match value {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err(Error::invalid(
                            format!("{field}.{k}"),
                            format!("expected a string, got {}", kind_of(other)),
                        ));
                    }
                };
                Ok((k.clone(), text))
            })
            .collect(),
        other => Err(Error::invalid(
            field,
            format!("expected an object of strings, got {}", kind_of(other)),
        )),
    }
}

/// Parses `k=v` pairs (CLI `--path`/`--query`).
pub fn parse_pairs(field: &str, pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::invalid(field, format!("{pair:?} is not key=value")))?;
        if k.trim().is_empty() {
            return Err(Error::invalid(field, format!("{pair:?} has an empty key")));
        }
        map.insert(k.trim().to_string(), v.to_string());
    }
    Ok(map)
}

impl NewTask {
    /// Whether intake captures the synced record's last-modified time as the task's
    /// `If-Unmodified-Since` (no explicit one, an existing record, and the route asks for it).
    pub fn uses_synced_ius(&self, config: &Config) -> bool {
        self.if_unmodified_since.is_none()
            && self.record_id.is_some()
            && self.action != Action::Create
            && config.route(self.entity).use_synced_last_modified
    }
}

/// Formats a timestamp the way the ledger stores it (sortable RFC 3339, UTC, milliseconds:
/// [`UtcTime::text`]).
pub fn ts(at: DateTime<Utc>) -> String {
    UtcTime::from(at).text()
}

/// Parses an `If-Unmodified-Since` value: RFC 3339, an HTTP date, or an offset-less
/// SuperOffice timestamp (taken as UTC).
pub fn parse_instant(field: &str, text: &str) -> Result<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(at) = httpdate_parse(text) {
        return Ok(at);
    }
    text.parse::<superoffice::SoDateTime>()
        .map(|t| t.to_utc())
        .map_err(|_| {
            Error::invalid(
                field,
                format!("{text:?} is not a timestamp (use RFC 3339, e.g. 2026-03-05T14:22:10Z)"),
            )
        })
}

fn httpdate_parse(text: &str) -> std::result::Result<DateTime<Utc>, ()> {
    DateTime::parse_from_rfc2822(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ())
}

fn check_key(field: &str, key: &str) -> Result<()> {
    if key.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if key.chars().count() > MAX_KEY_LEN {
        return Err(Error::invalid(
            field,
            format!(
                "longer than {MAX_KEY_LEN} characters (a ForeignKey value holds {MAX_KEY_LEN})"
            ),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::invalid(field, "contains control characters"));
    }
    if field == "key"
        && key
            .get(..REJECTED_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(REJECTED_PREFIX))
    {
        return Err(Error::invalid(
            field,
            format!("keys starting with {REJECTED_PREFIX:?} are reserved for rejected outbox rows"),
        ));
    }
    Ok(())
}

/// Validates a request against the configuration and the entity: each part by its own check
/// below, in this order (the first error is answered).
pub fn validate(config: &Config, request: &PublishRequest) -> Result<NewTask> {
    let action: Action = request.action.parse()?;
    let entity = parse_entity(&request.entity)?;
    let tenant = publish_tenant(config)?;
    let (record_id, path) = check_target(entity, request.id, &request.path)?;
    check_query(&request.query)?;
    if let Some(key) = &request.external_key {
        check_key("external_key", key)?;
    }
    if let Some(key) = &request.key {
        check_key("key", key)?;
    }
    check_action(action, entity, record_id, request.external_key.is_some())?;
    let payload = parse_payload(action, entity, request.payload.as_deref())?;
    let if_unmodified_since = request
        .if_unmodified_since
        .as_deref()
        .map(|t| parse_instant("if_unmodified_since", t))
        .transpose()?;

    let canonical_request = json!({
        "action": action.as_str(),
        "entity": entity.name(),
        "id": record_id,
        "external_key": request.external_key,
        "path": path,
        "query": request.query,
        "payload": payload,
        "if_unmodified_since": if_unmodified_since.map(ts),
    });
    let payload_hash = hash::sha256_hex(hash::canonical(&canonical_request).as_bytes());
    let key = request.key.clone().unwrap_or_else(|| payload_hash.clone());
    Ok(NewTask {
        key,
        tenant,
        action,
        entity,
        record_id,
        external_key: request.external_key.clone(),
        path,
        query: request.query.clone(),
        payload,
        if_unmodified_since,
        payload_hash,
    })
}

/// The entity a request names (any case).
fn parse_entity(name: &str) -> Result<EntityKind> {
    name.parse()
        .map_err(|e: superoffice::Error| Error::invalid("entity", strip_prefix(&e)))
}

/// The tenant tasks are published to: `[outbox] tenant`, else the first configured one.
fn publish_tenant(config: &Config) -> Result<String> {
    match &config.outbox.tenant {
        Some(t) => Ok(t.clone()),
        None => config
            .tenants
            .first()
            .map(|t| t.name.clone())
            .ok_or_else(|| Error::config("no [[tenant]] is configured to publish to".into())),
    }
}

/// The record id (from `id` and/or `path.id`, which must agree) and the remaining path
/// parameters (none: the entity routes take only `id`).
fn check_target(
    entity: EntityKind,
    id: Option<i64>,
    path: &BTreeMap<String, String>,
) -> Result<(Option<i32>, BTreeMap<String, String>)> {
    let mut record_id = match id {
        None => None,
        Some(id) if id > 0 && id <= i64::from(i32::MAX) => Some(id as i32),
        Some(id) => {
            return Err(Error::invalid(
                "id",
                format!("{id} is not a SuperOffice record id (1..{})", i32::MAX),
            ));
        }
    };
    let mut path = path.clone();
    if let Some(text) = path.remove("id") {
        let id: i32 = text
            .trim()
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| Error::invalid("path.id", format!("{text:?} is not a record id")))?;
        if let Some(given) = record_id.filter(|given| *given != id) {
            return Err(Error::invalid(
                "path.id",
                format!("{id} differs from id {given}"),
            ));
        }
        record_id = Some(id);
    }
    if let Some(unknown) = path.keys().next() {
        return Err(Error::invalid(
            format!("path.{unknown}"),
            format!("unknown path parameter (the {entity} routes take only id)"),
        ));
    }
    Ok((record_id, path))
}

/// Query parameters: a non-empty name without `&`, `=` or `#`, a value without `#`.
fn check_query(query: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in query {
        if k.trim().is_empty() || k.contains(['&', '=', '#']) || v.contains(['#']) {
            return Err(Error::invalid(
                format!("query.{k}"),
                "not a valid query parameter",
            ));
        }
    }
    Ok(())
}

/// Whether the action fits the record (an id or external key where one is needed, none for a
/// create) and the entity (deletable, readable for upserts).
fn check_action(
    action: Action,
    entity: EntityKind,
    record_id: Option<i32>,
    has_external_key: bool,
) -> Result<()> {
    match action {
        Action::Create if record_id.is_some() => Err(Error::invalid(
            "id",
            "not allowed for create (use update, patch or upsert for an existing record)",
        )),
        Action::Update | Action::Patch | Action::Delete
            if record_id.is_none() && !has_external_key =>
        {
            Err(Error::invalid(
                "id",
                format!("required for {action} (or give external_key)"),
            ))
        }
        Action::Delete if entity.deletes() == superoffice::entity::DeleteKind::Unsupported => {
            Err(Error::invalid(
                "action",
                format!("{entity} cannot be deleted through the REST API"),
            ))
        }
        Action::Upsert if !entity.supports_get() => Err(Error::invalid(
            "action",
            format!("upsert needs GET by id, which {entity} does not have"),
        )),
        _ => Ok(()),
    }
}

/// The payload as JSON, checked for the action and the entity: required except for a delete,
/// which takes none (`null` and `{}` count as none).
fn parse_payload(action: Action, entity: EntityKind, text: Option<&str>) -> Result<Option<Value>> {
    let value: Value = match (text, action) {
        (None, Action::Delete) => return Ok(None),
        (None, _) => {
            return Err(Error::invalid("payload", format!("required for {action}")));
        }
        (Some(text), _) => serde_json::from_str(text)
            .map_err(|e| Error::invalid("payload", format!("not JSON: {e}")))?,
    };
    check_payload(action, entity, &value)?;
    match (action, value) {
        (Action::Delete, Value::Null) => Ok(None),
        (Action::Delete, Value::Object(m)) if m.is_empty() => Ok(None),
        (Action::Delete, _) => Err(Error::invalid(
            "payload",
            "delete takes no payload (omit it)",
        )),
        (_, payload) => Ok(Some(payload)),
    }
}

fn strip_prefix(error: &superoffice::Error) -> String {
    let text = error.to_string();
    text.strip_prefix("invalid configuration: ")
        .unwrap_or(&text)
        .to_string()
}

/// Checks the payload's shape for the action and type-checks its fields against the entity.
fn check_payload(action: Action, entity: EntityKind, payload: &Value) -> Result<()> {
    match (action, payload) {
        (Action::Delete, _) => Ok(()),
        (Action::Patch, Value::Array(ops)) => check_json_patch(ops),
        (Action::Patch | Action::Create | Action::Update | Action::Upsert, Value::Object(map)) => {
            check_fields(entity, map)
        }
        (Action::Patch, other) => Err(Error::invalid(
            "payload",
            format!(
                "a patch is a JSON Patch array or a merge-patch object, got {}",
                kind_of(other)
            ),
        )),
        (_, other) => Err(Error::invalid(
            "payload",
            format!("{action} needs a JSON object, got {}", kind_of(other)),
        )),
    }
}

fn check_json_patch(ops: &[Value]) -> Result<()> {
    if ops.is_empty() {
        return Err(Error::invalid(
            "payload",
            "the JSON Patch has no operations",
        ));
    }
    for (i, op) in ops.iter().enumerate() {
        let Value::Object(map) = op else {
            return Err(Error::invalid(
                format!("payload[{i}]"),
                format!(
                    "expected an object {{op, path, value?}}, got {}",
                    kind_of(op)
                ),
            ));
        };
        let name = map.get("op").and_then(Value::as_str).ok_or_else(|| {
            Error::invalid(
                format!("payload[{i}].op"),
                "required (add, replace, remove, test)",
            )
        })?;
        if !["add", "replace", "remove", "test"].contains(&name) {
            return Err(Error::invalid(
                format!("payload[{i}].op"),
                format!(
                    "{name:?} is not supported (add, replace, remove, test; SuperOffice has no move/copy)"
                ),
            ));
        }
        match map.get("path") {
            Some(Value::String(_)) => {}
            _ => {
                return Err(Error::invalid(
                    format!("payload[{i}].path"),
                    "required, a string such as /Name",
                ));
            }
        }
        if name != "remove" && !map.contains_key("value") {
            return Err(Error::invalid(
                format!("payload[{i}].value"),
                format!("required for {name}"),
            ));
        }
        if let Some(unknown) = map
            .keys()
            .find(|k| !["op", "path", "value"].contains(&k.as_str()))
        {
            return Err(Error::invalid(
                format!("payload[{i}].{unknown}"),
                "unknown member of a patch operation",
            ));
        }
    }
    Ok(())
}

/// Decodes each top-level field alone into the generated write type; the first that does not
/// decode is named.
fn check_fields(entity: EntityKind, map: &Map<String, Value>) -> Result<()> {
    for (field, value) in map {
        if value.is_null() {
            continue;
        }
        let mut single = Map::new();
        single.insert(field.clone(), value.clone());
        if let Err(e) = decode_write(entity, Value::Object(single)) {
            return Err(Error::invalid(
                format!("payload.{field}"),
                e.to_string().split(" at line").next().unwrap_or_default(),
            ));
        }
    }
    Ok(())
}

fn decode_write(entity: EntityKind, value: Value) -> std::result::Result<(), serde_json::Error> {
    use superoffice::entity::{self as e, Entity};
    fn try_as<E: Entity>(value: Value) -> std::result::Result<(), serde_json::Error> {
        serde_json::from_value::<E::Write>(value).map(|_| ())
    }
    match entity {
        EntityKind::Contact => try_as::<e::Contact>(value),
        EntityKind::Person => try_as::<e::Person>(value),
        EntityKind::Sale => try_as::<e::Sale>(value),
        EntityKind::Project => try_as::<e::Project>(value),
        EntityKind::Appointment => try_as::<e::Appointment>(value),
        EntityKind::Document => try_as::<e::Document>(value),
        EntityKind::Ticket => try_as::<e::Ticket>(value),
        EntityKind::Selection => try_as::<e::Selection>(value),
        EntityKind::Product => try_as::<e::Product>(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            r#"
[[tenant]]
name = "main"
environment = "http://127.0.0.1:9"
customer_id = "Cust1"
auth = "static"
token = { value = "t" }
"#,
            "syncd.toml",
            &BTreeMap::new(),
        )
        .unwrap()
    }

    fn request(action: &str, entity: &str, payload: Option<&str>) -> PublishRequest {
        PublishRequest {
            action: action.into(),
            entity: entity.into(),
            payload: payload.map(str::to_string),
            ..PublishRequest::default()
        }
    }

    fn error(request: &PublishRequest) -> String {
        validate(&config(), request).unwrap_err().to_string()
    }

    #[test]
    fn bad_input_names_the_field() {
        let config = config();
        assert!(error(&request("frobnicate", "contact", Some("{}"))).contains("action:"));
        assert!(error(&request("create", "widget", Some("{}"))).contains("entity:"));
        let e = error(&request("create", "contact", Some("{not json")));
        assert!(e.contains("payload: not JSON"), "{e}");
        let e = error(&request("create", "contact", Some(r#"{"Name": 42}"#)));
        assert!(e.contains("payload.Name"), "{e}");
        let e = error(&request(
            "create",
            "contact",
            Some(r#"{"Name": "x", "Category": "vip"}"#),
        ));
        assert!(e.contains("payload.Category"), "{e}");
        let e = error(&request("update", "contact", Some(r#"{"Name": "x"}"#)));
        assert!(e.contains("id: required for update"), "{e}");
        let mut reserved = request("create", "contact", Some(r#"{"Name": "x"}"#));
        reserved.key = Some("Rejected:outbox row 3".into());
        assert!(error(&reserved).contains("key: keys starting with"));
        let e = error(&request("create", "contact", Some("[1]")));
        assert!(e.contains("payload: create needs a JSON object"), "{e}");
        let mut patch = request(
            "patch",
            "contact",
            Some(r#"[{"op":"move","path":"/Name"}]"#),
        );
        patch.id = Some(4);
        assert!(error(&patch).contains("payload[0].op"));
        patch.payload = Some(r#"[{"op":"replace","path":"/Name"}]"#.into());
        assert!(error(&patch).contains("payload[0].value"));
        let mut path = request("delete", "contact", None);
        path.path.insert("parent".into(), "1".into());
        path.id = Some(3);
        assert!(error(&path).contains("path.parent"));
        let mut delete = request("delete", "selection", None);
        delete.id = Some(3);
        assert!(error(&delete).contains("cannot be deleted"));
        let mut ius = request("patch", "contact", Some(r#"{"Name": "x"}"#));
        ius.id = Some(3);
        ius.if_unmodified_since = Some("yesterday".into());
        assert!(error(&ius).contains("if_unmodified_since"));
        assert!(
            validate(
                &config,
                &request("create", "Contact", Some(r#"{"Name": "ok"}"#))
            )
            .is_ok()
        );
    }

    #[test]
    fn keys_default_to_the_content_hash_and_lanes_follow_the_record() {
        let config = config();
        let a = validate(
            &config,
            &request(
                "create",
                "contact",
                Some(r#"{"Name":"A","Department":"x"}"#),
            ),
        )
        .unwrap();
        let b = validate(
            &config,
            &request(
                "create",
                "CONTACT",
                Some(r#"{"Department":"x", "Name":"A"}"#),
            ),
        )
        .unwrap();
        assert_eq!(a.key, b.key, "key order and entity case do not matter");
        assert_eq!(a.key, a.payload_hash);
        assert_eq!(a.lane(), format!("Contact/key/{}", a.key));
        let mut update = request("patch", "contact", Some(r#"{"Name":"B"}"#));
        update.path.insert("id".into(), "7".into());
        let u = validate(&config, &update).unwrap();
        assert_eq!(u.record_id, Some(7));
        assert_eq!(u.lane(), "Contact/id/7");
        let mut upsert = request("upsert", "person", Some(r#"{"Firstname":"Ann"}"#));
        upsert.external_key = Some("EXT-1".into());
        upsert.key = Some("publish-1".into());
        let u = validate(&config, &upsert).unwrap();
        assert_eq!(u.lane(), "Person/key/EXT-1");
        assert_eq!(u.key, "publish-1");
    }

    #[test]
    fn http_bodies_name_the_bad_field() {
        let err = PublishRequest::from_json(&json!({ "action": "create", "id": "x" }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("id: expected an integer"), "{err}");
        let err = PublishRequest::from_json(&json!({ "action": "create", "colour": 1 }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour: unknown field"), "{err}");
        let ok = PublishRequest::from_json(&json!({
            "action": "create", "entity": "contact", "payload": { "Name": "A" }, "query": { "$select": "Name" }
        }))
        .unwrap();
        assert_eq!(ok.payload.as_deref(), Some(r#"{"Name":"A"}"#));
        assert_eq!(ok.query["$select"], "Name");
    }
}
