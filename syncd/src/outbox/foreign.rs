//! ForeignApp keys (FACTS §6): the external identity of the records the outbox creates.
//!
//! The app (`outbox.foreign_app`) has one device (`outbox.device`, also used as the device
//! identifier) whose keys named `outbox.key_name` map a value (the task's record key: its
//! external key, else its idempotency key) to a record of a table. Lookups by value use
//! `GET …/Key/{keyName}/{table}?keyValue=…`, or the `ForeignKeys` archive for a batch
//! (`keyValue oneOf (…)`); keys are added with `POST …/{device}/{identifier}/Key`. Calls go
//! through [`superoffice::Client::send_raw`], so auth, tenant resolution and retries apply.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use superoffice::entity::EntityKind;
use superoffice::odata::{Filter, Query, col};
use superoffice::paginate::{self, Source, Strategy};
use superoffice::{Client, RawRequest};

use crate::config::Outbox;
use crate::{Error, Result};

/// The most values one batch lookup asks for (keeps the URL short).
pub const BATCH: usize = 40;

/// Builds `/api/v1/ForeignApp/a/b/…` with each segment percent-encoded.
pub fn api_path(segments: &[&str]) -> String {
    let mut url = url::Url::parse("http://localhost/api/v1/ForeignApp").expect("a valid URL");
    {
        let mut path = url.path_segments_mut().expect("an http URL has segments");
        for segment in segments {
            path.push(segment);
        }
    }
    url.path().to_string()
}

fn query_value(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The ForeignApp keys of one configuration.
#[derive(Debug, Clone)]
pub struct ForeignKeys {
    app: String,
    device: String,
    key_name: String,
}

impl ForeignKeys {
    /// Keys as configured in `[outbox]`.
    pub fn new(config: &Outbox) -> ForeignKeys {
        ForeignKeys {
            app: config.foreign_app.clone(),
            device: config.device.clone(),
            key_name: config.key_name.clone(),
        }
    }

    /// `app.device.key` as `GET …?fk=true` shows it in `ExtraFields`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}.{}", self.app, self.device, self.key_name)
    }

    /// The lookup request for one value (also printed by `--dry-run`).
    pub fn lookup_path(&self, kind: EntityKind, value: &str) -> String {
        format!(
            "{}?keyValue={}",
            api_path(&[&self.app, &self.device, "Key", &self.key_name, kind.table()]),
            query_value(value)
        )
    }

    /// The path keys are added under.
    pub fn store_path(&self) -> String {
        api_path(&[&self.app, &self.device, &self.device, "Key"])
    }

    /// The body that stores `value` on a record.
    pub fn store_body(&self, kind: EntityKind, value: &str, record: Value) -> Value {
        json!({ "Key": self.key_name, "Value": value, "TableName": kind.table(), "RecordId": record })
    }

    /// Creates the app and the device unless they exist.
    pub async fn ensure(&self, client: &Client) -> Result<()> {
        let device = api_path(&[&self.app, &self.device, &self.device]);
        match client
            .send_raw("foreign_device_get", RawRequest::new(Method::GET, &device))
            .await
        {
            Ok(_) => return Ok(()),
            Err(superoffice::Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let app = api_path(&[&self.app]);
        match client
            .send_raw("foreign_app_get", RawRequest::new(Method::GET, &app))
            .await
        {
            Ok(_) => {}
            Err(superoffice::Error::NotFound(_)) => {
                client
                    .send_raw("foreign_app_create", RawRequest::new(Method::POST, &app))
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
        client
            .send_raw("foreign_device_add", RawRequest::new(Method::POST, &device))
            .await?;
        Ok(())
    }

    /// The record a value is stored on, if any. Only a 404 (or a `null` body) means "no
    /// record": an answer of any other shape (no integer `RecordId`, not an object, not JSON)
    /// is an error, never "absent", because absent lets a create go ahead.
    pub async fn lookup(
        &self,
        client: &Client,
        kind: EntityKind,
        value: &str,
    ) -> Result<Option<i64>> {
        let path = self.lookup_path(kind, value);
        let request = RawRequest::new(Method::GET, path.clone());
        let response = match client.send_raw("foreign_key_lookup", request).await {
            Ok(response) => response,
            Err(superoffice::Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::Api(superoffice::Error::Transport(e)))?;
        lookup_answer(&path, kind, &bytes)
    }

    fn archive_filter(&self, kind: EntityKind) -> Filter {
        col("appName")
            .eq(self.app.as_str())
            .and(col("deviceName").eq(self.device.as_str()))
            .and(col("keyName").eq(self.key_name.as_str()))
            .and(col("tableName").eq(kind.table()))
    }

    /// Looks up many values at once through the `ForeignKeys` archive (in batches of
    /// [`BATCH`]); values without a key are absent from the answer. Values compare
    /// case-insensitively, as SuperOffice's database does.
    pub async fn lookup_many(
        &self,
        client: &Client,
        kind: EntityKind,
        values: &[String],
    ) -> Result<BTreeMap<String, i64>> {
        let mut found = BTreeMap::new();
        for chunk in values.chunks(BATCH) {
            let query = Query::new()
                .select(["foreignkeyId", "keyValue", "recordId"])
                .filter(
                    self.archive_filter(kind)
                        .and(col("keyValue").one_of(chunk.iter().map(String::as_str))),
                );
            let rows = archive_rows(client, query).await?;
            for row in rows {
                let (Some(value), Some(record)) = (row.str("keyValue"), row.int("recordId")) else {
                    return Err(unexpected(
                        "ForeignKeys archive",
                        "a row without keyValue or recordId",
                        &Value::Object(row.into_map()),
                    ));
                };
                if record <= 0 {
                    continue;
                }
                if let Some(wanted) = chunk.iter().find(|v| v.eq_ignore_ascii_case(value)) {
                    found.entry(wanted.clone()).or_insert(record);
                }
            }
        }
        Ok(found)
    }

    /// Which of `ids` carry a key of ours (any value).
    pub async fn keyed_records(
        &self,
        client: &Client,
        kind: EntityKind,
        ids: &[i64],
    ) -> Result<BTreeSet<i64>> {
        let mut keyed = BTreeSet::new();
        for chunk in ids.chunks(BATCH * 2) {
            let query = Query::new().select(["foreignkeyId", "recordId"]).filter(
                self.archive_filter(kind)
                    .and(col("recordId").one_of(chunk.iter().copied())),
            );
            let rows = archive_rows(client, query).await?;
            for row in rows {
                let Some(record) = row.int("recordId") else {
                    return Err(unexpected(
                        "ForeignKeys archive",
                        "a row without recordId",
                        &Value::Object(row.into_map()),
                    ));
                };
                keyed.insert(record);
            }
        }
        Ok(keyed)
    }

    /// Stores `value` on a record (adds a key).
    pub async fn store(
        &self,
        client: &Client,
        kind: EntityKind,
        value: &str,
        record: i64,
    ) -> Result<()> {
        let request = RawRequest::new(Method::POST, self.store_path()).json(
            "application/json",
            &self.store_body(kind, value, json!(record)),
        )?;
        client.send_raw("foreign_key_add", request).await?;
        Ok(())
    }

    /// Stores `value` on a record unless it is there already (a retry after an ambiguous
    /// failure must not add it twice).
    pub async fn ensure_stored(
        &self,
        client: &Client,
        kind: EntityKind,
        value: &str,
        record: i64,
    ) -> Result<()> {
        if self.lookup(client, kind, value).await? == Some(record) {
            return Ok(());
        }
        self.store(client, kind, value, record).await
    }
}

/// An answer of unexpected shape: a decode error naming where and what, so the caller retries
/// (or gives up) instead of reading it as "no key".
fn unexpected(source: &str, what: &str, body: &Value) -> Error {
    let text = body.to_string();
    Error::Api(superoffice::Error::Decode {
        message: format!("{source}: {what}"),
        excerpt: text.chars().take(512).collect(),
    })
}

/// Reads the answer of a lookup by value (see [`ForeignKeys::lookup`]).
fn lookup_answer(path: &str, kind: EntityKind, bytes: &[u8]) -> Result<Option<i64>> {
    let body: Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::Api(superoffice::Error::Decode {
            message: format!("ForeignKey lookup {path}: {e}"),
            excerpt: String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
        })
    })?;
    let source = format!("ForeignKey lookup {path}");
    let map = match &body {
        Value::Null => return Ok(None),
        Value::Object(map) => map,
        other => return Err(unexpected(&source, "the answer is not an object", other)),
    };
    let Some(record) = map.get("RecordId").and_then(Value::as_i64) else {
        return Err(unexpected(
            &source,
            "the answer has no integer RecordId",
            &body,
        ));
    };
    // RecordId 0: a key bound to no record (FACTS §6); a key of another table is not ours.
    let table_matches = map
        .get("TableName")
        .and_then(Value::as_str)
        .is_none_or(|t| t.eq_ignore_ascii_case(kind.table()));
    Ok(Some(record).filter(|id| *id > 0 && table_matches))
}

/// Every row of the `ForeignKeys` archive that `query` selects, keyset-paged on the key id.
async fn archive_rows(client: &Client, query: Query) -> Result<Vec<superoffice::odata::Row>> {
    Ok(paginate::rows(
        client,
        Source::List("ForeignApp".into()),
        query,
        1000,
        Strategy::Keyset {
            key: "foreignkeyId".into(),
        },
    )
    .try_collect()
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_encode_each_segment() {
        let keys = ForeignKeys {
            app: "my app".into(),
            device: "dev/1".into(),
            key_name: "idempotency_key".into(),
        };
        assert_eq!(
            keys.lookup_path(EntityKind::Contact, "a&b c"),
            "/api/v1/ForeignApp/my%20app/dev%2F1/Key/idempotency_key/contact?keyValue=a%26b+c"
        );
        assert_eq!(
            keys.store_path(),
            "/api/v1/ForeignApp/my%20app/dev%2F1/dev%2F1/Key"
        );
    }

    #[test]
    fn only_a_well_formed_answer_or_null_is_read_as_found_or_absent() {
        let read = |body: &str| lookup_answer("/p", EntityKind::Contact, body.as_bytes());
        assert_eq!(
            read(r#"{"RecordId":7,"TableName":"contact"}"#).unwrap(),
            Some(7)
        );
        assert_eq!(read(r#"{"RecordId":7}"#).unwrap(), Some(7));
        assert_eq!(read("null").unwrap(), None);
        assert_eq!(
            read(r#"{"RecordId":0,"TableName":""}"#).unwrap(),
            None,
            "unbound key"
        );
        assert_eq!(
            read(r#"{"RecordId":7,"TableName":"person"}"#).unwrap(),
            None
        );
        for bad in [r#"{}"#, r#"{"RecordId":"7"}"#, "[]", r#""x""#, "<html>"] {
            let error = read(bad).unwrap_err().to_string();
            assert!(error.contains("ForeignKey lookup /p"), "{bad}: {error}");
        }
    }
}
