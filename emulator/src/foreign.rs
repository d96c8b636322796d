//! Foreign keys (external ids): ForeignApp → ForeignDevice → ForeignKey, as in FACTS §6.
//!
//! A key stores `Key` (sub-key name), `Value`, `TableName` and `RecordId`. Clients look a
//! record up by value (`…/Key/{keyName}/{table}?keyValue=EXT-42`) or by record
//! (`…/Key/{keyName}/{table}/{recordId}`). Hard-deleting a contact or person drops its keys.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use crate::clock::Ts;
use crate::error::SoError;
use crate::model::{Cell, ColType, Column, Cx, EntityType, col, json_parts as j, lists};

/// A foreign application.
#[derive(Debug, Clone)]
pub struct App {
    /// `ForeignAppId`.
    pub id: i32,
    /// `Name`.
    pub name: String,
    /// Created.
    pub created: Ts,
    /// Updated.
    pub updated: Ts,
    /// Creator.
    pub created_by: i32,
    /// Last editor.
    pub updated_by: i32,
    /// Devices.
    pub devices: Vec<Device>,
}

/// A device of a foreign application.
#[derive(Debug, Clone)]
pub struct Device {
    /// `ForeignDeviceId`.
    pub id: i32,
    /// `Name`.
    pub name: String,
    /// `DeviceIdentifier`.
    pub identifier: String,
    /// Created.
    pub created: Ts,
    /// Updated.
    pub updated: Ts,
    /// Creator.
    pub created_by: i32,
    /// Last editor.
    pub updated_by: i32,
    /// Keys.
    pub keys: Vec<Key>,
}

/// One foreign key.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Internal id (`foreignkeyId` in the archive).
    pub id: i32,
    /// `Key` (the sub-key name).
    pub key: String,
    /// `Value`.
    pub value: String,
    /// `TableName` (empty for unbound keys).
    pub table: String,
    /// `RecordId`.
    pub record_id: i32,
    /// Created.
    pub created: Ts,
    /// Updated.
    pub updated: Ts,
    /// Creator.
    pub created_by: i32,
    /// Last editor.
    pub updated_by: i32,
}

/// All foreign apps.
#[derive(Debug, Default)]
pub struct ForeignStore {
    apps: BTreeMap<i32, App>,
    next_id: i32,
    version: u64,
    /// The `ForeignKeys` archive, kept in step with `apps`: a key added or saved updates its
    /// row, a hard-deleted record drops its rows; the rare structural changes (rename, deletes
    /// of apps, devices or keys) rebuild it.
    archive: FkArchive,
}

/// The `ForeignKeys` archive's rows by key id, with an index on the lower-cased value
/// (SuperOffice indexes `subvalue`).
#[derive(Debug, Default)]
struct FkArchive {
    rows: BTreeMap<i32, FkRow>,
    by_value: HashMap<String, BTreeSet<i32>>,
}

impl FkArchive {
    /// Adds or replaces the row of `row.key.id`.
    fn insert(&mut self, row: FkRow) {
        let id = row.key.id;
        self.remove(id);
        self.by_value
            .entry(row.key.value.to_lowercase())
            .or_default()
            .insert(id);
        self.rows.insert(id, row);
    }

    fn remove(&mut self, id: i32) -> Option<FkRow> {
        let row = self.rows.remove(&id)?;
        let value = row.key.value.to_lowercase();
        if let Some(ids) = self.by_value.get_mut(&value) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_value.remove(&value);
            }
        }
        Some(row)
    }
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn assoc_name(id: i32) -> String {
    lists::associate(id)
        .map(|a| a.name.to_string())
        .unwrap_or_default()
}

/// Normalises a table name and checks it can carry keys.
pub fn check_table(table: &str) -> Result<String, SoError> {
    let t = table.to_ascii_lowercase();
    if t.is_empty() || t == "associate" || EntityType::parse(&t).is_some() {
        Ok(t)
    } else {
        Err(SoError::bad_request(format!(
            "Unknown table name '{table}'"
        )))
    }
}

/// Where a key lives: app name, device name and optional device identifier.
#[derive(Debug, Clone, Copy)]
pub struct DeviceRef<'a> {
    /// Application name.
    pub app: &'a str,
    /// Device name.
    pub device: &'a str,
    /// Device identifier; `None` matches any device of that name.
    pub identifier: Option<&'a str>,
}

impl ForeignStore {
    fn next(&mut self) -> i32 {
        self.next_id += 1;
        self.version += 1;
        self.next_id
    }

    /// Bumped on every change (archive caches key on it).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// An app by id.
    pub fn app(&self, id: i32) -> Option<&App> {
        self.apps.get(&id)
    }

    /// An app by name (case-insensitive).
    pub fn app_by_name(&self, name: &str) -> Option<&App> {
        self.apps.values().find(|a| eq(&a.name, name))
    }

    /// Creates an app, or returns the existing one with that name.
    pub fn create_app(&mut self, name: &str, by: i32, now: Ts) -> Result<i32, SoError> {
        if name.trim().is_empty() {
            return Err(SoError::bad_request("ForeignApp name must not be empty"));
        }
        if let Some(a) = self.app_by_name(name) {
            return Ok(a.id);
        }
        let id = self.next();
        self.apps.insert(
            id,
            App {
                id,
                name: name.to_string(),
                created: now,
                updated: Ts::MIN,
                created_by: by,
                updated_by: 0,
                devices: Vec::new(),
            },
        );
        Ok(id)
    }

    /// Renames an app (PUT/PATCH of a ForeignAppEntity).
    pub fn rename_app(&mut self, id: i32, name: &str, by: i32, now: Ts) -> Result<(), SoError> {
        self.version += 1;
        let app = self
            .apps
            .get_mut(&id)
            .ok_or_else(|| SoError::not_found(format!("ForeignApp id {id} not found")))?;
        if app.name != name && !name.is_empty() {
            app.name = name.to_string();
            app.updated = now;
            app.updated_by = by;
        }
        self.rebuild_archive();
        Ok(())
    }

    fn rebuild_archive(&mut self) {
        self.archive = FkArchive::default();
        for a in self.apps.values() {
            for d in &a.devices {
                for k in &d.keys {
                    self.archive.insert(FkRow {
                        app: a.name.clone(),
                        device: d.name.clone(),
                        identifier: d.identifier.clone(),
                        key: k.clone(),
                    });
                }
            }
        }
    }

    /// Deletes an app with all its devices and keys.
    pub fn delete_app(&mut self, id: i32) -> Result<(), SoError> {
        self.version += 1;
        let removed = self
            .apps
            .remove(&id)
            .map(|_| ())
            .ok_or_else(|| SoError::not_found(format!("ForeignApp id {id} not found")));
        self.rebuild_archive();
        removed
    }

    fn app_mut(&mut self, name: &str) -> Result<&mut App, SoError> {
        self.apps
            .values_mut()
            .find(|a| eq(&a.name, name))
            .ok_or_else(|| SoError::not_found(format!("ForeignApp '{name}' not found")))
    }

    /// Adds a device (or returns the existing one with that name and identifier).
    pub fn add_device(
        &mut self,
        app: &str,
        device: &str,
        identifier: &str,
        by: i32,
        now: Ts,
    ) -> Result<i32, SoError> {
        let id = self.next_id + 1;
        let a = self.app_mut(app)?;
        if let Some(d) = a
            .devices
            .iter()
            .find(|d| eq(&d.name, device) && eq(&d.identifier, identifier))
        {
            return Ok(d.id);
        }
        a.devices.push(Device {
            id,
            name: device.to_string(),
            identifier: identifier.to_string(),
            created: now,
            updated: Ts::MIN,
            created_by: by,
            updated_by: 0,
            keys: Vec::new(),
        });
        self.next();
        Ok(id)
    }

    /// Finds a device.
    pub fn device(&self, r: DeviceRef<'_>) -> Option<(&App, &Device)> {
        let app = self.app_by_name(r.app)?;
        let dev = app
            .devices
            .iter()
            .find(|d| eq(&d.name, r.device) && r.identifier.is_none_or(|i| eq(&d.identifier, i)))?;
        Some((app, dev))
    }

    fn device_mut(&mut self, r: DeviceRef<'_>) -> Result<&mut Device, SoError> {
        let app = self.app_mut(r.app)?;
        app.devices
            .iter_mut()
            .find(|d| eq(&d.name, r.device) && r.identifier.is_none_or(|i| eq(&d.identifier, i)))
            .ok_or_else(|| SoError::not_found(format!("ForeignDevice '{}' not found", r.device)))
    }

    /// Deletes a device and its keys.
    pub fn delete_device(&mut self, r: DeviceRef<'_>) -> Result<(), SoError> {
        self.version += 1;
        let app = self.app_mut(r.app)?;
        let before = app.devices.len();
        app.devices.retain(|d| {
            !(eq(&d.name, r.device) && r.identifier.is_none_or(|i| eq(&d.identifier, i)))
        });
        if app.devices.len() == before {
            return Err(SoError::not_found(format!(
                "ForeignDevice '{}' not found",
                r.device
            )));
        }
        self.rebuild_archive();
        Ok(())
    }

    /// Adds (`replace == false`) or saves (`replace == true`: updates the key with the same
    /// name, table and record) a key from a `ForeignKey` body.
    pub fn put_key(
        &mut self,
        r: DeviceRef<'_>,
        body: &Map<String, Value>,
        replace: bool,
        by: i32,
        now: Ts,
    ) -> Result<Key, SoError> {
        let field = |name: &str| body.iter().find(|(k, _)| eq(k, name)).map(|(_, v)| v);
        let key = field("Key")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SoError::bad_request("ForeignKey.Key is required"))?
            .to_string();
        let value = match field("Value") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let table = check_table(field("TableName").and_then(Value::as_str).unwrap_or(""))?;
        let record_id = field("RecordId").and_then(Value::as_i64).unwrap_or(0) as i32;
        if table.is_empty() && record_id != 0 {
            return Err(SoError::bad_request(
                "RecordId must be 0 when TableName is empty",
            ));
        }
        let id = self.next_id + 1;
        let app = self
            .app_by_name(r.app)
            .map(|a| a.name.clone())
            .unwrap_or_default();
        let dev = self.device_mut(r)?;
        if replace
            && let Some(k) = dev
                .keys
                .iter_mut()
                .find(|k| eq(&k.key, &key) && k.table == table && k.record_id == record_id)
        {
            if k.value != value {
                k.value = value;
                k.updated = now;
                k.updated_by = by;
            }
            let out = k.clone();
            self.version += 1;
            if let Some(mut row) = self.archive.remove(out.id) {
                row.key = out.clone();
                self.archive.insert(row);
            }
            return Ok(out);
        }
        let (device, identifier) = (dev.name.clone(), dev.identifier.clone());
        let k = Key {
            id,
            key,
            value,
            table,
            record_id,
            created: now,
            updated: Ts::MIN,
            created_by: by,
            updated_by: 0,
        };
        dev.keys.push(k.clone());
        self.next();
        self.archive.insert(FkRow {
            app,
            device,
            identifier,
            key: k.clone(),
        });
        Ok(k)
    }

    /// The first key with this name and value on a table.
    pub fn find_by_value(
        &self,
        r: DeviceRef<'_>,
        key: &str,
        table: &str,
        value: &str,
    ) -> Option<&Key> {
        self.keys_of(r)
            .into_iter()
            .find(|k| eq(&k.key, key) && eq(&k.table, table) && k.value == value)
    }

    /// The key with this name on a record.
    pub fn find_by_record(
        &self,
        r: DeviceRef<'_>,
        key: &str,
        table: &str,
        record: i32,
    ) -> Option<&Key> {
        self.keys_of(r)
            .into_iter()
            .find(|k| eq(&k.key, key) && eq(&k.table, table) && k.record_id == record)
    }

    fn keys_of(&self, r: DeviceRef<'_>) -> Vec<&Key> {
        self.app_by_name(r.app)
            .into_iter()
            .flat_map(|a| a.devices.iter())
            .filter(|d| eq(&d.name, r.device) && r.identifier.is_none_or(|i| eq(&d.identifier, i)))
            .flat_map(|d| d.keys.iter())
            .collect()
    }

    /// Deletes keys: a blank table deletes every key of that name; record 0 every key of that
    /// name on the table. Returns how many were deleted.
    pub fn delete_keys(
        &mut self,
        r: DeviceRef<'_>,
        key: &str,
        table: &str,
        record: i32,
    ) -> Result<usize, SoError> {
        self.version += 1;
        let dev = self.device_mut(r)?;
        let before = dev.keys.len();
        dev.keys.retain(|k| {
            !(eq(&k.key, key)
                && (table.is_empty() || eq(&k.table, table))
                && (record == 0 || k.record_id == record))
        });
        let deleted = before - dev.keys.len();
        if deleted > 0 {
            self.rebuild_archive();
        }
        Ok(deleted)
    }

    /// Every key on a record as `{"app.device.key": "value"}`.
    pub fn keys_on_record(&self, table: &str, record: i32) -> Map<String, Value> {
        let mut m = Map::new();
        for a in self.apps.values() {
            for d in &a.devices {
                for k in d
                    .keys
                    .iter()
                    .filter(|k| eq(&k.table, table) && k.record_id == record)
                {
                    m.insert(format!("{}.{}.{}", a.name, d.name, k.key), json!(k.value));
                }
            }
        }
        m
    }

    /// Drops the keys of a hard-deleted record.
    pub fn remove_record(&mut self, table: &str, record: i32) {
        for a in self.apps.values_mut() {
            for d in &mut a.devices {
                d.keys
                    .retain(|k| !(eq(&k.table, table) && k.record_id == record));
            }
        }
        // Runs on every hard delete: drop only this record's rows, do not rebuild.
        let gone: Vec<i32> = self
            .archive
            .rows
            .values()
            .filter(|r| eq(&r.key.table, table) && r.key.record_id == record)
            .map(|r| r.key.id)
            .collect();
        for id in gone {
            self.archive.remove(id);
        }
        self.version += 1;
    }

    /// Flat rows for the `ForeignKeys` archive, ordered by key id.
    pub fn archive_rows(&self) -> &BTreeMap<i32, FkRow> {
        &self.archive.rows
    }

    /// The archive rows whose value is one of `values` (lower-cased), through the value index.
    pub fn archive_rows_with_values(&self, values: &[String]) -> BTreeMap<i32, FkRow> {
        values
            .iter()
            .filter_map(|v| self.archive.by_value.get(v))
            .flatten()
            .filter_map(|id| self.archive.rows.get(id).map(|row| (*id, row.clone())))
            .collect()
    }
}

/// A row of the `ForeignKeys` archive.
#[derive(Debug, Clone)]
pub struct FkRow {
    /// Application name.
    pub app: String,
    /// Device name.
    pub device: String,
    /// Device identifier.
    pub identifier: String,
    /// The key.
    pub key: Key,
}

/// Columns of the `ForeignKeys` archive.
pub static FK_COLUMNS: &[Column] = &[
    col("foreignkeyId", ColType::Int),
    col("appName", ColType::Str),
    col("deviceName", ColType::Str),
    col("deviceIdentifier", ColType::Str),
    col("keyName", ColType::Str),
    col("keyValue", ColType::Str),
    col("tableName", ColType::Str),
    col("tableId", ColType::Int),
    col("recordId", ColType::Int),
    col("registeredDate", ColType::DateTime),
    col("updatedDate", ColType::DateTime),
];

impl FkRow {
    /// One archive cell.
    pub fn cell(&self, col: &str) -> Cell<'_> {
        match col {
            "foreignkeyId" => Cell::Int(self.key.id.into()),
            "appName" => Cell::Str(Cow::Borrowed(&self.app)),
            "deviceName" => Cell::Str(Cow::Borrowed(&self.device)),
            "deviceIdentifier" => Cell::Str(Cow::Borrowed(&self.identifier)),
            "keyName" => Cell::Str(Cow::Borrowed(&self.key.key)),
            "keyValue" => Cell::Str(Cow::Borrowed(&self.key.value)),
            "tableName" => Cell::Str(Cow::Borrowed(&self.key.table)),
            "tableId" => Cell::Int(
                EntityType::parse(&self.key.table)
                    .map(|t| t.table_id())
                    .unwrap_or(0)
                    .into(),
            ),
            "recordId" => Cell::Int(self.key.record_id.into()),
            "registeredDate" => Cell::Time(self.key.created),
            "updatedDate" => Cell::Time(self.key.updated),
            _ => Cell::Null,
        }
    }
}

/// `ForeignAppEntity` JSON.
pub fn app_json(a: &App, cx: &Cx<'_>) -> Value {
    let mut m = Map::new();
    j::put(
        &mut m,
        vec![
            ("ForeignAppId", json!(a.id)),
            ("Name", json!(a.name)),
            ("CreatedDate", cx.ts(a.created)),
            ("UpdatedDate", cx.ts(a.updated)),
            ("CreatedBy", j::associate(a.created_by)),
            ("UpdatedBy", j::associate(a.updated_by)),
            (
                "Devices",
                Value::Array(a.devices.iter().map(|d| device_json(a, d, cx)).collect()),
            ),
        ],
    );
    j::tail(&mut m);
    Value::Object(m)
}

/// An empty `ForeignAppEntity` (the `/default` template).
pub fn default_app_json(cx: &Cx<'_>) -> Value {
    let a = App {
        id: 0,
        name: String::new(),
        created: Ts::MIN,
        updated: Ts::MIN,
        created_by: 0,
        updated_by: 0,
        devices: Vec::new(),
    };
    app_json(&a, cx)
}

/// `ForeignDevice` JSON.
pub fn device_json(a: &App, d: &Device, cx: &Cx<'_>) -> Value {
    let mut m = Map::new();
    j::put(
        &mut m,
        vec![
            ("ForeignDeviceId", json!(d.id)),
            ("Name", json!(d.name)),
            ("CreatedDate", cx.ts(d.created)),
            ("UpdatedDate", cx.ts(d.updated)),
            (
                "AssociateFullName",
                json!(
                    lists::associate(d.created_by)
                        .map(|x| x.full_name())
                        .unwrap_or_default()
                ),
            ),
            ("CreatedBy", json!(assoc_name(d.created_by))),
            ("UpdatedBy", json!(assoc_name(d.updated_by))),
            ("DeviceIdentifier", json!(d.identifier)),
            ("ForeignAppId", json!(a.id)),
        ],
    );
    j::tail(&mut m);
    Value::Object(m)
}

/// `ForeignKey` JSON.
pub fn key_json(k: &Key, cx: &Cx<'_>) -> Value {
    let mut m = Map::new();
    j::put(
        &mut m,
        vec![
            ("Key", json!(k.key)),
            ("Value", json!(k.value)),
            ("RecordId", json!(k.record_id)),
            ("CreatedDate", cx.ts(k.created)),
            ("UpdatedDate", cx.ts(k.updated)),
            ("UpdatedBy", json!(assoc_name(k.updated_by))),
            ("CreatedBy", json!(assoc_name(k.created_by))),
            ("TableName", json!(k.table)),
        ],
    );
    j::tail(&mut m);
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> DeviceRef<'static> {
        DeviceRef {
            app: "acme",
            device: "sync",
            identifier: Some("host1"),
        }
    }

    #[test]
    fn keys_round_trip_and_look_up() {
        let mut s = ForeignStore::default();
        let now = Ts(1000);
        let app = s.create_app("acme", 1, now).unwrap();
        assert_eq!(
            s.create_app("ACME", 1, now).unwrap(),
            app,
            "create is idempotent by name"
        );
        s.add_device("acme", "sync", "host1", 1, now).unwrap();
        let body =
            json!({"Key": "ext_id", "Value": "EXT-42", "TableName": "contact", "RecordId": 123});
        s.put_key(dev(), body.as_object().unwrap(), false, 1, now)
            .unwrap();
        let any_device = DeviceRef {
            identifier: None,
            ..dev()
        };
        assert_eq!(
            s.find_by_value(any_device, "ext_id", "contact", "EXT-42")
                .unwrap()
                .record_id,
            123
        );
        assert!(
            s.find_by_value(any_device, "ext_id", "contact", "EXT-43")
                .is_none()
        );
        assert_eq!(
            s.find_by_record(dev(), "EXT_ID", "Contact", 123)
                .unwrap()
                .value,
            "EXT-42"
        );
        let body =
            json!({"Key": "ext_id", "Value": "EXT-99", "TableName": "contact", "RecordId": 123});
        s.put_key(dev(), body.as_object().unwrap(), true, 1, now)
            .unwrap();
        assert_eq!(
            s.keys_on_record("contact", 123)["acme.sync.ext_id"],
            json!("EXT-99")
        );
        // The archive and its value index follow every change.
        let values = |v: &[&str]| v.iter().map(|v| v.to_lowercase()).collect::<Vec<_>>();
        assert!(s.archive_rows_with_values(&values(&["EXT-42"])).is_empty());
        let found = s.archive_rows_with_values(&values(&["ext-99", "EXT-7"]));
        assert_eq!(found.len(), 1);
        assert_eq!(found.values().next().unwrap().key.value, "EXT-99");
        assert_eq!(s.archive_rows().len(), 1);
        s.rename_app(app, "acme2", 1, now).unwrap();
        assert_eq!(s.archive_rows().values().next().unwrap().app, "acme2");
        s.remove_record("contact", 123);
        assert!(s.keys_on_record("contact", 123).is_empty());
        assert!(s.archive_rows().is_empty());
        assert!(s.archive_rows_with_values(&values(&["EXT-99"])).is_empty());
    }

    #[test]
    fn rejects_bad_keys() {
        let mut s = ForeignStore::default();
        s.create_app("acme", 1, Ts(0)).unwrap();
        s.add_device("acme", "sync", "host1", 1, Ts(0)).unwrap();
        let unbound = json!({"Key": "k", "Value": "v", "TableName": "", "RecordId": 5});
        assert!(
            s.put_key(dev(), unbound.as_object().unwrap(), false, 1, Ts(0))
                .is_err()
        );
        let bad_table = json!({"Key": "k", "Value": "v", "TableName": "nosuch", "RecordId": 5});
        assert!(
            s.put_key(dev(), bad_table.as_object().unwrap(), false, 1, Ts(0))
                .is_err()
        );
        assert!(s.add_device("nosuch", "d", "i", 1, Ts(0)).is_err());
    }
}
