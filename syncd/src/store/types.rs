//! The typed values the store reads and writes: each implements `ToSql`/`FromSql`, so no
//! caller formats or re-parses a column by hand.
//!
//! - [`Seq`]: a change-feed sequence number (`changes.seq`).
//! - [`UtcTime`]: every timestamp of OUR clock (`created_at`, `updated_at`, `started_at`,
//!   `received_at`, `published_at`, `next_attempt_at`, …). Stored as RFC 3339 UTC text with
//!   exactly three fraction digits and `Z` (`2026-12-04T23:09:47.123Z`): what `now_text`, the
//!   outbox's `to_rfc3339_opts(Millis, true)` and the `outbox.created_at` default
//!   (`strftime('%Y-%m-%dT%H:%M:%fZ')`) have always written, so old rows read unchanged and text
//!   order is time order. Reading also accepts any RFC 3339 instant and the naive
//!   `YYYY-MM-DDTHH:MM:SS[.fff]` (UTC) that `cursors.resume.started` was written in before.
//!   SuperOffice's own timestamps (`source_modified`, watermarks) are the server's text and are
//!   not a `UtcTime`.
//! - [`PassKind`]: the kind of a sync pass or run (`runs.kind`, `cursors.resume.kind`).
//! - [`TableName`] / [`RestName`]: an SDK [`EntityKind`] stored as its table name (`contact`:
//!   `subscriptions.entity`, `changes.entity`) or its REST name (`Contact`: `tasks.entity`).
//!   Both read either spelling (case-insensitive), since `echoes.entity` has held both.
//! - [`RecordId`]: a SuperOffice primary key as stored in `records.id`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, SubsecRound, TimeDelta, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use superoffice::entity::EntityKind;

/// A value the store read that is not of the type the column holds.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {text:?} is not valid")]
pub struct BadValue {
    /// What was expected (`a UTC timestamp`, `a pass kind`, …).
    pub what: &'static str,
    /// The text found.
    pub text: String,
}

fn bad(what: &'static str, text: &str) -> FromSqlError {
    FromSqlError::Other(Box::new(BadValue {
        what,
        text: text.to_string(),
    }))
}

/// A change-feed sequence number (`changes.seq`): only grows; consumers remember the last one
/// they processed.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub i64);

impl Seq {
    /// The raw number.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<i64> for Seq {
    fn from(seq: i64) -> Seq {
        Seq(seq)
    }
}

impl ToSql for Seq {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0))
    }
}

impl FromSql for Seq {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(Seq)
    }
}

/// A SuperOffice primary key as the store keeps it (`records.id`, `changes.id`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct RecordId(pub i64);

impl RecordId {
    /// The raw number.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<i64> for RecordId {
    fn from(id: i64) -> RecordId {
        RecordId(id)
    }
}

impl ToSql for RecordId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0))
    }
}

impl FromSql for RecordId {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(RecordId)
    }
}

/// An instant of our own clock, in UTC, at millisecond precision (what the store keeps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcTime(DateTime<Utc>);

impl UtcTime {
    /// Now, truncated to milliseconds (so a stored value reads back equal).
    pub fn now() -> UtcTime {
        UtcTime::from(Utc::now())
    }

    /// The instant.
    pub fn at(self) -> DateTime<Utc> {
        self.0
    }

    /// The stored text: `2026-12-04T23:09:47.123Z`.
    pub fn text(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Parses the stored text, any RFC 3339 instant, or a naive `YYYY-MM-DDTHH:MM:SS[.f]`
    /// taken as UTC (older `cursors.resume.started`).
    pub fn parse(text: &str) -> Option<UtcTime> {
        let text = text.trim();
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Some(UtcTime::from(at.with_timezone(&Utc)));
        }
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|naive| UtcTime::from(naive.and_utc()))
    }

    /// This instant plus `delta` (saturating at the representable range).
    pub fn plus(self, delta: TimeDelta) -> UtcTime {
        UtcTime::from(self.0.checked_add_signed(delta).unwrap_or(self.0))
    }

    /// This instant minus `delta` (saturating at the representable range).
    pub fn minus(self, delta: TimeDelta) -> UtcTime {
        UtcTime::from(self.0.checked_sub_signed(delta).unwrap_or(self.0))
    }
}

impl From<DateTime<Utc>> for UtcTime {
    fn from(at: DateTime<Utc>) -> UtcTime {
        UtcTime(at.trunc_subsecs(3))
    }
}

impl From<UtcTime> for DateTime<Utc> {
    fn from(at: UtcTime) -> DateTime<Utc> {
        at.0
    }
}

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl FromStr for UtcTime {
    type Err = BadValue;

    fn from_str(text: &str) -> Result<UtcTime, BadValue> {
        UtcTime::parse(text).ok_or_else(|| BadValue {
            what: "a UTC timestamp",
            text: text.to_string(),
        })
    }
}

impl ToSql for UtcTime {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.text()))
    }
}

impl FromSql for UtcTime {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        UtcTime::parse(text).ok_or_else(|| bad("a UTC timestamp", text))
    }
}

impl Serialize for UtcTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for UtcTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<UtcTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The kind of a sync pass (`cursors.resume.kind`) or run (`runs.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PassKind {
    /// The first full load.
    Initial,
    /// An incremental pass over the window since the last one.
    Poll,
    /// A full reload asked for (`syncd resync`, changed settings).
    Resync,
    /// Comparing the stored ids with the server's, confirming deletes.
    Reconcile,
    /// Refetching what webhooks announced.
    Webhook,
}

impl PassKind {
    /// Every kind.
    pub const ALL: [PassKind; 5] = [
        PassKind::Initial,
        PassKind::Poll,
        PassKind::Resync,
        PassKind::Reconcile,
        PassKind::Webhook,
    ];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            PassKind::Initial => "initial",
            PassKind::Poll => "poll",
            PassKind::Resync => "resync",
            PassKind::Reconcile => "reconcile",
            PassKind::Webhook => "webhook",
        }
    }
}

impl fmt::Display for PassKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PassKind {
    type Err = BadValue;

    fn from_str(text: &str) -> Result<PassKind, BadValue> {
        PassKind::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| BadValue {
                what: "a pass kind",
                text: text.to_string(),
            })
    }
}

impl ToSql for PassKind {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for PassKind {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        text.parse().map_err(|_| bad("a pass kind", text))
    }
}

fn entity_kind(value: ValueRef<'_>) -> FromSqlResult<EntityKind> {
    let text = value.as_str()?;
    text.parse().map_err(|_| bad("an entity", text))
}

/// An entity stored as its table name (`contact`): `subscriptions.entity`, `changes.entity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableName(pub EntityKind);

impl ToSql for TableName {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.table()))
    }
}

impl FromSql for TableName {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        entity_kind(value).map(TableName)
    }
}

/// An entity stored as its REST name (`Contact`): `tasks.entity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RestName(pub EntityKind);

impl ToSql for RestName {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.name()))
    }
}

impl FromSql for RestName {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        entity_kind(value).map(RestName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn round_trip<T: ToSql + FromSql>(value: &T) -> (T, String) {
        let conn = Connection::open_in_memory().unwrap();
        conn.query_row("SELECT ?1, CAST(?1 AS TEXT)", [value], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    }

    #[test]
    fn utc_time_is_stored_as_the_text_existing_databases_hold() {
        let at: UtcTime = "2026-12-04T23:09:47.123Z".parse().unwrap();
        let (back, text) = round_trip(&at);
        assert_eq!(back, at);
        assert_eq!(text, "2026-12-04T23:09:47.123Z");
        // What `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')` (the outbox default) writes reads too.
        let conn = Connection::open_in_memory().unwrap();
        let (stored, now): (String, UtcTime) = conn
            .query_row(
                "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(now.text(), stored);
    }

    #[test]
    fn utc_time_now_has_milliseconds_and_reads_back_equal() {
        let now = UtcTime::now();
        let text = now.text();
        assert_eq!(text.len(), "2026-12-04T23:09:47.123Z".len(), "{text}");
        assert!(text.ends_with('Z'), "{text}");
        assert_eq!(round_trip(&now).0, now);
        let later = now.plus(TimeDelta::milliseconds(1));
        assert!(
            later > now && later.text() > text,
            "text order is time order"
        );
        assert_eq!(later.minus(TimeDelta::milliseconds(1)), now);
    }

    #[test]
    fn utc_time_reads_offsets_and_the_older_naive_form() {
        let naive: UtcTime = "2026-12-04T23:09:47".parse().unwrap();
        assert_eq!(naive.text(), "2026-12-04T23:09:47.000Z");
        let offset: UtcTime = "2026-12-05T00:09:47.5+01:00".parse().unwrap();
        assert_eq!(offset.text(), "2026-12-04T23:09:47.500Z");
        let json: UtcTime = serde_json::from_str("\"2026-12-04T23:09:47\"").unwrap();
        assert_eq!(json, naive);
        assert_eq!(
            serde_json::to_string(&naive).unwrap(),
            "\"2026-12-04T23:09:47.000Z\""
        );
        let err = "yesterday".parse::<UtcTime>().unwrap_err().to_string();
        assert!(err.contains("yesterday"), "{err}");
        let conn = Connection::open_in_memory().unwrap();
        let bad = conn.query_row("SELECT 'then'", [], |r| r.get::<_, UtcTime>(0));
        assert!(bad.unwrap_err().to_string().contains("then"));
    }

    #[test]
    fn pass_kind_round_trips_and_rejects_unknown_text() {
        for kind in PassKind::ALL {
            let (back, text) = round_trip(&kind);
            assert_eq!(back, kind);
            assert_eq!(text, kind.as_str());
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
        assert!("Poll".parse::<PassKind>().is_err());
        let conn = Connection::open_in_memory().unwrap();
        assert!(
            conn.query_row("SELECT 'sometimes'", [], |r| r.get::<_, PassKind>(0))
                .is_err()
        );
    }

    #[test]
    fn entity_names_store_their_spelling_and_read_either() {
        let (table, text) = round_trip(&TableName(EntityKind::Appointment));
        assert_eq!(
            (table.0, text.as_str()),
            (EntityKind::Appointment, "appointment")
        );
        let (rest, text) = round_trip(&RestName(EntityKind::Contact));
        assert_eq!((rest.0, text.as_str()), (EntityKind::Contact, "Contact"));
        let conn = Connection::open_in_memory().unwrap();
        let read: (TableName, RestName) = conn
            .query_row("SELECT 'Person', 'sale'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((read.0.0, read.1.0), (EntityKind::Person, EntityKind::Sale));
        assert!(
            conn.query_row("SELECT 'associate'", [], |r| r.get::<_, TableName>(0))
                .is_err()
        );
    }

    #[test]
    fn seq_and_record_id_are_integers() {
        assert_eq!(round_trip(&Seq(42)).0, Seq(42));
        assert_eq!(round_trip(&RecordId(-7)).0, RecordId(-7));
        assert_eq!(serde_json::to_string(&Seq(3)).unwrap(), "3");
    }
}
