//! The change event: one row of the change feed with its content, as `syncd changes`,
//! `GET /changes`, `GET /changes/stream` (and the NATS sink) emit it. The JSON schema is
//! `syncd/docs/change-event.schema.json` (version [`SCHEMA_VERSION`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Version of the event shape (`$id` of `syncd/docs/change-event.schema.json` ends in `v1`).
pub const SCHEMA_VERSION: u32 = 1;

/// What happened to the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// The record appeared (first seen, or back after a delete).
    Insert,
    /// Its content hash changed.
    Update,
    /// It was deleted at the source.
    Delete,
}

impl Op {
    /// The text stored in `changes.op`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }

    /// Parses `changes.op`.
    pub fn parse(text: &str) -> Option<Op> {
        match text {
            "insert" => Some(Op::Insert),
            "update" => Some(Op::Update),
            "delete" => Some(Op::Delete),
            _ => None,
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change, with the stored content after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Position in the feed: increasing, unique per database.
    pub seq: i64,
    /// The tenant of the subscription (from the configuration); `null` only for changes of a
    /// subscription that is no longer configured.
    pub tenant: Option<String>,
    /// The subscription that recorded it.
    pub subscription: String,
    /// Entity label (`contact`, `person`, …).
    pub entity: String,
    /// Record id (primary key at the source).
    pub id: i64,
    /// What happened.
    pub op: Op,
    /// When syncd recorded the change (UTC, milliseconds).
    #[serde(serialize_with = "rfc3339_millis", deserialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// Content hash after the change (`null` for deletes): lower-case hex SHA-256 of the
    /// canonical JSON of `record` (see [`crate::hash`]).
    pub hash: Option<String>,
    /// The hash stored just before the change when the record was live (updates, deletes);
    /// `null` for inserts and for changes recorded before the `0006_change_content` migration.
    pub previous_hash: Option<String>,
    /// The stored JSON after the change (`null` for deletes, and for changes recorded before
    /// the `0006_change_content` migration whose content is no longer stored).
    pub record: Option<Value>,
}

fn rfc3339_millis<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::store::types::UtcTime::from(*at).text())
}

fn rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ops_round_trip_and_unknown_text_is_none() {
        for op in [Op::Insert, Op::Update, Op::Delete] {
            assert_eq!(Op::parse(op.as_str()), Some(op));
            assert_eq!(serde_json::to_value(op).unwrap(), json!(op.as_str()));
        }
        assert_eq!(Op::parse("upsert"), None);
    }

    #[test]
    fn an_event_serialises_to_the_documented_shape_and_back() {
        let event = ChangeEvent {
            seq: 7,
            tenant: Some("emu".into()),
            subscription: "contacts".into(),
            entity: "contact".into(),
            id: 5,
            op: Op::Update,
            at: DateTime::parse_from_rfc3339("2026-12-04T23:40:58.120Z")
                .unwrap()
                .with_timezone(&Utc),
            hash: Some("ab".into()),
            previous_hash: Some("cd".into()),
            record: Some(json!({"name": "x"})),
        };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(
            value,
            json!({"seq": 7, "tenant": "emu", "subscription": "contacts", "entity": "contact",
                   "id": 5, "op": "update", "at": "2026-12-04T23:40:58.120Z", "hash": "ab",
                   "previous_hash": "cd", "record": {"name": "x"}})
        );
        let back: ChangeEvent = serde_json::from_value(value).unwrap();
        assert_eq!(back, event);
    }
}
