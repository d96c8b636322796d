//! ForeignApp keys (FACTS §6): the external identity of the records the outbox creates.
//!
//! The app (`outbox.foreign_app`) has one device (`outbox.device`, also used as the device
//! identifier) whose keys named `outbox.key_name` map a value (the task's record key: its
//! external key, else its idempotency key) to a record of a table. Lookups by value use
//! `GET …/Key/{keyName}/{table}?keyValue=…`, or the `ForeignKeys` archive for a batch
//! (`keyValue oneOf (…)`); keys are added with `POST …/{device}/{identifier}/Key`. Every call is
//! the SDK's generated operation (`ClientForeignAppExt`: `v1ForeignAppEntity_GetKeyByValue`,
//! `…_AddForeignKey`, `…_GetAppByName`, `…_PostForeignApp`, `…_GetDeviceByIdentifier`,
//! `…_AddDeviceByIdentifier`), so paths, auth, tenant resolution, retries and decoding are the
//! SDK's; its typed errors flow through.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use serde_json::Value;
use superoffice::Client;
use superoffice::entity::EntityKind;
use superoffice::odata::{Filter, Query, col};
use superoffice::paginate::{self, Source, Strategy};
use superoffice::prelude::ClientForeignAppExt;
use superoffice::types::ForeignKey;

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

    /// The key that stores `value` on `record` (the body of `AddForeignKey`).
    fn key(&self, kind: EntityKind, value: &str, record: Option<i32>) -> ForeignKey {
        ForeignKey {
            key: Some(self.key_name.clone()),
            value: Some(value.to_string()),
            table_name: Some(kind.table().to_string()),
            record_id: record,
            created_by: None,
            created_date: None,
            field_properties: None,
            table_right: None,
            updated_by: None,
            updated_date: None,
            extra: Default::default(),
        }
    }

    /// The body that stores `value` on a record, as [`ForeignKeys::store`] sends it; `record`
    /// is shown as given (`--dry-run` prints a placeholder there).
    pub fn store_body(&self, kind: EntityKind, value: &str, record: Value) -> Value {
        let mut body = serde_json::to_value(self.key(kind, value, None))
            .expect("a ForeignKey serializes to JSON");
        if let Value::Object(map) = &mut body {
            map.insert("RecordId".into(), record);
        }
        body
    }

    /// Creates the app and the device unless they exist.
    pub async fn ensure(&self, client: &Client) -> Result<()> {
        let device = client
            .foreign_app_get_device_by_identifier()
            .application_name(self.app.as_str())
            .device_name(self.device.as_str())
            .device_identifier(self.device.as_str())
            .send()
            .await;
        match device.map_err(superoffice::Error::from) {
            Ok(_) => return Ok(()),
            Err(superoffice::Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let app = client
            .foreign_app_get_app_by_name()
            .application_name(self.app.as_str())
            .send()
            .await;
        match app.map_err(superoffice::Error::from) {
            Ok(_) => {}
            Err(superoffice::Error::NotFound(_)) => {
                client
                    .foreign_app_entity_post_foreign_app()
                    .app_name(self.app.as_str())
                    .send()
                    .await
                    .map_err(superoffice::Error::from)?;
            }
            Err(e) => return Err(e.into()),
        }
        client
            .foreign_app_add_device_by_identifier()
            .application_name(self.app.as_str())
            .device_name(self.device.as_str())
            .device_identifier(self.device.as_str())
            .send()
            .await
            .map_err(superoffice::Error::from)?;
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
        let answer = client
            .foreign_app_get_key_by_value()
            .application_name(self.app.as_str())
            .device_name(self.device.as_str())
            .key_name(self.key_name.as_str())
            .table_name(kind.table())
            .key_value(value)
            .send()
            .await
            .map(superoffice::ResponseValue::into_inner)
            .map_err(superoffice::Error::from);
        lookup_answer(&self.lookup_path(kind, value), kind, answer)
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
        let record = i32::try_from(record).map_err(|_| {
            superoffice::Error::InvalidRequest(format!(
                "{} id {record} does not fit a ForeignKey's RecordId (int32)",
                kind.name()
            ))
        })?;
        client
            .foreign_app_add_foreign_key()
            .application_name(self.app.as_str())
            .device_name(self.device.as_str())
            .device_identifier(self.device.as_str())
            .body(self.key(kind, value, Some(record)))
            .send()
            .await
            .map_err(superoffice::Error::from)?;
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

/// Reads the answer of a lookup by value (see [`ForeignKeys::lookup`]): a 404 or a `null`
/// body is "no record"; the SDK's decode error for anything else that is not a `ForeignKey`
/// (not an object, not JSON, a `RecordId` that is no integer) stays an error, as does a
/// `ForeignKey` without `RecordId`.
fn lookup_answer(
    path: &str,
    kind: EntityKind,
    answer: std::result::Result<ForeignKey, superoffice::Error>,
) -> Result<Option<i64>> {
    let source = format!("ForeignKey lookup {path}");
    let key = match answer {
        Ok(key) => key,
        Err(superoffice::Error::NotFound(_)) => return Ok(None),
        // The generated operation decodes a `ForeignKey`, which `null` is not; the SDK keeps
        // the body in the excerpt, and a body of exactly `null` is the documented "none".
        Err(superoffice::Error::Decode { excerpt, .. }) if excerpt.trim() == "null" => {
            return Ok(None);
        }
        Err(superoffice::Error::Decode { message, excerpt }) => {
            return Err(Error::Api(superoffice::Error::Decode {
                message: format!("{source}: {message}"),
                excerpt,
            }));
        }
        Err(e) => return Err(e.into()),
    };
    let Some(record) = key.record_id else {
        return Err(unexpected(
            &source,
            "the answer has no integer RecordId",
            &serde_json::to_value(&key).unwrap_or(Value::Null),
        ));
    };
    // RecordId 0: a key bound to no record (FACTS §6); a key of another table is not ours.
    let table_matches = key
        .table_name
        .as_deref()
        .is_none_or(|t| t.eq_ignore_ascii_case(kind.table()));
    Ok(Some(i64::from(record)).filter(|id| *id > 0 && table_matches))
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

    /// What the generated operation hands back for `body` (a 200 answer): the `ForeignKey`,
    /// or the SDK's decode error, which keeps the body as its excerpt.
    fn answer(body: &str) -> std::result::Result<ForeignKey, superoffice::Error> {
        serde_json::from_str(body).map_err(|e| superoffice::Error::Decode {
            message: e.to_string(),
            excerpt: body.to_string(),
        })
    }

    #[test]
    fn only_a_well_formed_answer_404_or_null_is_read_as_found_or_absent() {
        let read = |body: &str| lookup_answer("/p", EntityKind::Contact, answer(body));
        assert_eq!(
            read(r#"{"RecordId":7,"TableName":"contact"}"#).unwrap(),
            Some(7)
        );
        assert_eq!(read(r#"{"RecordId":7}"#).unwrap(), Some(7));
        assert_eq!(read("null").unwrap(), None);
        assert_eq!(read(" null\n").unwrap(), None);
        assert_eq!(
            read(r#"{"RecordId":0,"TableName":""}"#).unwrap(),
            None,
            "unbound key"
        );
        assert_eq!(
            read(r#"{"RecordId":7,"TableName":"person"}"#).unwrap(),
            None
        );
        let api = |status: u16| {
            Box::new(superoffice::ApiError {
                status: reqwest::StatusCode::from_u16(status).unwrap(),
                error_type: None,
                message: None,
                source: None,
                json_body: false,
                operation: Some("foreign_app_get_key_by_value".into()),
            })
        };
        let not_found = superoffice::Error::NotFound(api(404));
        assert_eq!(
            lookup_answer("/p", EntityKind::Contact, Err(not_found)).unwrap(),
            None
        );
        for bad in [
            r#"{}"#,
            r#"{"RecordId":null}"#,
            r#"{"RecordId":"seven"}"#,
            r#"{"RecordId":true}"#,
            "[]",
            r#""x""#,
            "<html>",
            "",
        ] {
            let error = read(bad).unwrap_err().to_string();
            assert!(error.contains("ForeignKey lookup /p"), "{bad}: {error}");
        }
        // Any other failure stays what it is (a retry decides), never "absent".
        let failed = superoffice::Error::Api(api(500));
        assert!(lookup_answer("/p", EntityKind::Contact, Err(failed)).is_err());
    }
}
