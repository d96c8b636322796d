//! Rows of the `outbox` table as SQLite stored them, and their typed conversion into a
//! [`PublishRequest`].
//!
//! The `outbox` table is written by other programs, and SQLite keeps whatever they wrote: a
//! BLOB in a `TEXT` column, text such as `'abc'` in the `INTEGER` column `record_id`, a real
//! number. The poller ([`super::ledger::poll_outbox`]) therefore reads every column as stored
//! ([`crate::store::outbox_rows::oldest`]) into a [`Stored`] value and converts it here, column by column,
//! with a [`ColumnError`] naming the column, what it holds and what was expected. A row that
//! does not convert becomes a `dead` task (its last error says `outbox row 17: column payload:
//! a BLOB of 4 bytes, expected JSON text`) and the rows after it are taken in the same pass.
//! The raw row is kept in the dead task ([`OutboxRow::raw_json`]), so nothing is lost.
//!
//! Note that SQLite's column affinity converts some values on INSERT: a number written into a
//! `TEXT` column (`key`, `action`, …) is stored as its text (`42` → `'42'`), and text that looks
//! like an integer written into `record_id` is stored as that integer (`'17'` → `17`). What
//! reaches this module is what SQLite stored.

use std::fmt;

use serde_json::{Map, Value, json};

use super::task::PublishRequest;
pub use crate::store::outbox_rows::{OutboxRow, Stored};

/// A column of the `outbox` table that carries part of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    /// `key`: idempotency key (text).
    Key,
    /// `action` (text, required).
    Action,
    /// `entity` (text, required).
    Entity,
    /// `record_id` (integer).
    RecordId,
    /// `external_key` (text).
    ExternalKey,
    /// `path`: JSON object text.
    Path,
    /// `query`: JSON object text.
    Query,
    /// `payload`: JSON text.
    Payload,
    /// `if_unmodified_since` (text).
    IfUnmodifiedSince,
}

impl Column {
    /// The columns in the order the poller selects them (after `id`).
    pub const ALL: [Column; 9] = [
        Column::Key,
        Column::Action,
        Column::Entity,
        Column::RecordId,
        Column::ExternalKey,
        Column::Path,
        Column::Query,
        Column::Payload,
        Column::IfUnmodifiedSince,
    ];

    /// The column's name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Column::Key => "key",
            Column::Action => "action",
            Column::Entity => "entity",
            Column::RecordId => "record_id",
            Column::ExternalKey => "external_key",
            Column::Path => "path",
            Column::Query => "query",
            Column::Payload => "payload",
            Column::IfUnmodifiedSince => "if_unmodified_since",
        }
    }

    /// The column a validation error names by its request field (`id` is `record_id`,
    /// `payload.Name` is `payload`); `None` for a field that is no column.
    pub fn of_field(field: &str) -> Option<Column> {
        let head = field.split(['.', '[']).next().unwrap_or_default();
        match head {
            "id" => Some(Column::RecordId),
            other => Column::ALL.into_iter().find(|c| c.name() == other),
        }
    }

    fn expected(self) -> Expected {
        match self {
            Column::RecordId => Expected::Integer,
            Column::Path | Column::Query | Column::Payload => Expected::JsonText,
            _ => Expected::Text,
        }
    }

    fn required(self) -> bool {
        matches!(self, Column::Action | Column::Entity)
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Stored {
    /// What the value is, for an error message (`a BLOB of 4 bytes`, `text "abc"`).
    pub fn describe(&self) -> String {
        match self {
            Stored::Null => "NULL".into(),
            Stored::Integer(i) => format!("an integer ({i})"),
            Stored::Real(r) => format!("a real number ({r})"),
            Stored::Text(t) => match std::str::from_utf8(t) {
                Ok(text) => {
                    let shown: String = text.chars().take(40).collect();
                    let more = if shown.len() < text.len() { "…" } else { "" };
                    format!("text {shown:?}{more}")
                }
                Err(_) => format!("text of {} bytes that is not UTF-8", t.len()),
            },
            Stored::Blob(b) => format!(
                "a BLOB of {} byte{}",
                b.len(),
                if b.len() == 1 { "" } else { "s" }
            ),
        }
    }

    /// The value as JSON, losslessly: NULL, numbers and UTF-8 text as themselves; a BLOB as
    /// `{"blob_hex": "…"}`, text that is not UTF-8 as `{"text_hex": "…"}`, a non-finite real
    /// as `{"real": "inf"}`.
    pub fn to_json(&self) -> Value {
        match self {
            Stored::Null => Value::Null,
            Stored::Integer(i) => json!(i),
            Stored::Real(r) => serde_json::Number::from_f64(*r)
                .map(Value::Number)
                .unwrap_or_else(|| json!({ "real": r.to_string() })),
            Stored::Text(t) => match std::str::from_utf8(t) {
                Ok(text) => Value::String(text.to_string()),
                Err(_) => json!({ "text_hex": hex::encode(t) }),
            },
            Stored::Blob(b) => json!({ "blob_hex": hex::encode(b) }),
        }
    }

    /// A short text form for ledger columns that must hold text (the action and entity of a
    /// rejected row): UTF-8 text as is, anything else as [`Stored::describe`] says.
    pub fn lossy_text(&self) -> String {
        match self {
            Stored::Text(t) => match std::str::from_utf8(t) {
                Ok(text) => text.to_string(),
                Err(_) => self.describe(),
            },
            Stored::Integer(i) => i.to_string(),
            other => other.describe(),
        }
    }
}

/// What a column should have held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// UTF-8 text.
    Text,
    /// UTF-8 text holding JSON.
    JsonText,
    /// An integer.
    Integer,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expected::Text => "text",
            Expected::JsonText => "JSON text",
            Expected::Integer => "an integer",
        })
    }
}

/// A column whose stored value has the wrong type.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnError {
    /// The column.
    pub column: Column,
    /// What it holds ([`Stored::describe`]).
    pub found: String,
    /// What it should hold.
    pub expected: Expected,
}

impl fmt::Display for ColumnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "column {}: {}, expected {}",
            self.column, self.found, self.expected
        )
    }
}

fn column_error(column: Column, value: &Stored) -> ColumnError {
    let expected = column.expected();
    let expected = if matches!(value, Stored::Null) && column.required() {
        Expected::Text
    } else {
        expected
    };
    ColumnError {
        column,
        found: value.describe(),
        expected,
    }
}

fn text(column: Column, value: &Stored) -> Result<Option<String>, ColumnError> {
    match value {
        Stored::Null if !column.required() => Ok(None),
        Stored::Text(t) => std::str::from_utf8(t)
            .map(|s| Some(s.to_string()))
            .map_err(|_| column_error(column, value)),
        other => Err(column_error(column, other)),
    }
}

fn integer(column: Column, value: &Stored) -> Result<Option<i64>, ColumnError> {
    match value {
        Stored::Null => Ok(None),
        Stored::Integer(i) => Ok(Some(*i)),
        other => Err(column_error(column, other)),
    }
}

/// A row converted column by column; `path` and `query` are still JSON text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Converted {
    /// The request without `path` and `query`.
    pub request: PublishRequest,
    /// `path` as text.
    pub path: Option<String>,
    /// `query` as text.
    pub query: Option<String>,
}

impl OutboxRow {
    /// The stored value of a column.
    pub fn get(&self, column: Column) -> &Stored {
        let index = Column::ALL
            .iter()
            .position(|c| *c == column)
            .unwrap_or_default();
        &self.values[index]
    }

    /// `outbox row 17`: how errors refer to the row.
    pub fn reference(&self) -> String {
        format!("outbox row {}", self.id)
    }

    /// Converts every column to its type; the errors of all columns that do not convert.
    pub fn convert(&self) -> Result<Converted, Vec<ColumnError>> {
        let mut errors = Vec::new();
        let mut text_of = |column: Column| match text(column, self.get(column)) {
            Ok(value) => value,
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let key = text_of(Column::Key);
        let action = text_of(Column::Action).unwrap_or_default();
        let entity = text_of(Column::Entity).unwrap_or_default();
        let external_key = text_of(Column::ExternalKey);
        let path = text_of(Column::Path);
        let query = text_of(Column::Query);
        let payload = text_of(Column::Payload);
        let if_unmodified_since = text_of(Column::IfUnmodifiedSince);
        let id = match integer(Column::RecordId, self.get(Column::RecordId)) {
            Ok(id) => id,
            Err(e) => {
                errors.push(e);
                None
            }
        };
        if !errors.is_empty() {
            errors.sort_by_key(|e| Column::ALL.iter().position(|c| *c == e.column));
            return Err(errors);
        }
        Ok(Converted {
            request: PublishRequest {
                action,
                entity,
                id,
                external_key,
                payload,
                if_unmodified_since,
                key,
                ..PublishRequest::default()
            },
            path,
            query,
        })
    }

    /// The whole row as stored, as JSON ([`Stored::to_json`] per column): what a rejected row's
    /// dead task keeps in its `payload`.
    pub fn raw_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("id".into(), json!(self.id));
        for (column, value) in Column::ALL.iter().zip(&self.values) {
            map.insert(column.name().into(), value.to_json());
        }
        map.insert("created_at".into(), self.created_at.to_json());
        json!({ "outbox_row": Value::Object(map) })
    }
}

/// The `last_error` of a rejected row: `outbox row 17: column payload: …`. `reason` is a
/// validation message that starts with the field it concerns (`payload: not JSON: …`,
/// `id: required for update`); the field is turned into its column.
pub fn rejection(row: &OutboxRow, reason: &str) -> String {
    let reference = row.reference();
    let Some((field, rest)) = reason.split_once(": ") else {
        return format!("{reference}: {reason}");
    };
    match Column::of_field(field) {
        // The field is the column itself: say it once.
        Some(column) if field == column.name() || field == "id" => {
            format!("{reference}: column {column}: {rest}")
        }
        Some(column) => format!("{reference}: column {column}: {reason}"),
        None => format!("{reference}: {reason}"),
    }
}

/// The `last_error` of a row whose columns do not convert.
pub fn column_rejection(row: &OutboxRow, errors: &[ColumnError]) -> String {
    let parts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    format!("{}: {}", row.reference(), parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: [Stored; 9]) -> OutboxRow {
        OutboxRow {
            id: 17,
            values,
            created_at: Stored::Text(b"2026-12-04T10:00:00.000Z".to_vec()),
        }
    }

    fn text(s: &str) -> Stored {
        Stored::Text(s.as_bytes().to_vec())
    }

    fn good() -> [Stored; 9] {
        [
            text("k-1"),
            text("create"),
            text("contact"),
            Stored::Null,
            Stored::Null,
            Stored::Null,
            Stored::Null,
            text(r#"{"Name":"A"}"#),
            Stored::Null,
        ]
    }

    fn with(column: Column, value: Stored) -> OutboxRow {
        let mut values = good();
        let index = Column::ALL.iter().position(|c| *c == column).unwrap();
        values[index] = value;
        row(values)
    }

    fn error(row: &OutboxRow) -> String {
        column_rejection(row, &row.convert().unwrap_err())
    }

    #[test]
    fn a_good_row_converts() {
        let converted = row(good()).convert().unwrap();
        assert_eq!(converted.request.key.as_deref(), Some("k-1"));
        assert_eq!(converted.request.action, "create");
        assert_eq!(
            converted.request.payload.as_deref(),
            Some(r#"{"Name":"A"}"#)
        );
        assert_eq!(converted.path, None);
        let with_id = with(Column::RecordId, Stored::Integer(4))
            .convert()
            .unwrap();
        assert_eq!(with_id.request.id, Some(4));
    }

    #[test]
    fn each_wrong_type_names_its_column() {
        assert_eq!(
            error(&with(Column::Payload, Stored::Blob(vec![0, 1, 2, 3]))),
            "outbox row 17: column payload: a BLOB of 4 bytes, expected JSON text"
        );
        assert_eq!(
            error(&with(Column::RecordId, text("abc"))),
            "outbox row 17: column record_id: text \"abc\", expected an integer"
        );
        assert_eq!(
            error(&with(Column::RecordId, Stored::Real(1.5))),
            "outbox row 17: column record_id: a real number (1.5), expected an integer"
        );
        // SQLite's TEXT affinity makes this unreachable through INSERT, but a value of the
        // wrong type is still named, not coerced.
        assert_eq!(
            error(&with(Column::Key, Stored::Integer(42))),
            "outbox row 17: column key: an integer (42), expected text"
        );
        assert_eq!(
            error(&with(Column::Action, Stored::Null)),
            "outbox row 17: column action: NULL, expected text"
        );
        assert_eq!(
            error(&with(Column::Entity, Stored::Text(vec![0xff, 0xfe]))),
            "outbox row 17: column entity: text of 2 bytes that is not UTF-8, expected text"
        );
        let mut values = good();
        values[0] = Stored::Blob(vec![1]);
        values[7] = Stored::Blob(vec![2, 3]);
        assert_eq!(
            error(&row(values)),
            "outbox row 17: column key: a BLOB of 1 byte, expected text; column payload: a BLOB of 2 bytes, expected JSON text"
        );
    }

    #[test]
    fn validation_messages_are_turned_into_columns() {
        let row = row(good());
        assert_eq!(
            rejection(&row, "payload: not JSON: expected value"),
            "outbox row 17: column payload: not JSON: expected value"
        );
        assert_eq!(
            rejection(&row, "id: required for update (or give external_key)"),
            "outbox row 17: column record_id: required for update (or give external_key)"
        );
        assert_eq!(
            rejection(&row, "payload.Name: invalid type"),
            "outbox row 17: column payload: payload.Name: invalid type"
        );
        assert_eq!(
            rejection(&row, "payload[0].op: required"),
            "outbox row 17: column payload: payload[0].op: required"
        );
        assert_eq!(
            rejection(&row, "no tenant configured"),
            "outbox row 17: no tenant configured"
        );
    }

    #[test]
    fn the_raw_row_is_kept_losslessly() {
        let mut values = good();
        values[3] = text("abc");
        values[7] = Stored::Blob(vec![0xde, 0xad]);
        values[8] = Stored::Real(f64::INFINITY);
        let raw = row(values).raw_json();
        let r = &raw["outbox_row"];
        assert_eq!(r["id"], 17);
        assert_eq!(r["key"], "k-1");
        assert_eq!(r["record_id"], "abc");
        assert_eq!(r["payload"], json!({ "blob_hex": "dead" }));
        assert_eq!(r["if_unmodified_since"], json!({ "real": "inf" }));
        assert_eq!(r["path"], Value::Null);
        assert_eq!(r["created_at"], "2026-12-04T10:00:00.000Z");
    }
}
