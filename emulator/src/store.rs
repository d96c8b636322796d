//! The database: one ordered table per entity, tombstones of deleted rows, and every write
//! operation (create, save, soft/hard delete, restore, purge, seeding, simulated activity).
//!
//! Writes return [`Change`] records; the caller turns them into webhook events after it has
//! released the lock. Tables are `BTreeMap`s keyed by primary key so archive paging ordered by
//! the key can start at any id and stop after one page.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::clock::Ts;
use crate::error::SoError;
use crate::foreign::ForeignStore;
use crate::json::canonical_bytes;
use crate::model::appointment::Appointment;
use crate::model::contact::Contact;
use crate::model::document::Document;
use crate::model::person::Person;
use crate::model::project::Project;
use crate::model::sale::{self, Sale};
use crate::model::selection::Selection;
use crate::model::ticket::{self, Ticket};
use crate::model::{Audit, Cx, Entity, EntityType, Gen, Refs, apply_doc, lists, render};

/// What remains of a hard-deleted row, for `/__admin/truth`.
#[derive(Debug, Clone, Copy)]
pub struct Tombstone {
    /// When it was deleted.
    pub deleted: Ts,
    /// Hash of its last state.
    pub hash: [u8; 32],
}

/// One entity's rows.
#[derive(Debug)]
pub struct Table<T> {
    rows: BTreeMap<i32, T>,
    tombstones: BTreeMap<i32, Tombstone>,
    next_id: i32,
    version: u64,
    rng: ChaCha8Rng,
}

impl<T: Entity> Table<T> {
    fn new(seed: u64) -> Self {
        let stream = seed ^ (T::TYPE.table_id() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Table {
            rows: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            next_id: 1,
            version: 0,
            rng: ChaCha8Rng::seed_from_u64(stream),
        }
    }

    /// A stored row, soft-deleted or not.
    pub fn get(&self, id: i32) -> Option<&T> {
        self.rows.get(&id)
    }

    /// A row that the API can see (not soft-deleted).
    pub fn live(&self, id: i32) -> Option<&T> {
        self.rows.get(&id).filter(|r| r.deleted_at().is_none())
    }

    /// All stored rows in key order.
    pub fn rows(&self) -> &BTreeMap<i32, T> {
        &self.rows
    }

    /// Number of stored rows (including soft-deleted ones).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when no rows are stored.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Highest id ever assigned.
    pub fn max_id(&self) -> i32 {
        self.next_id - 1
    }

    /// Increments on every write; archive caches key on it.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn insert_new(&mut self, mut row: T) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        row.set_id(id);
        self.rows.insert(id, row);
        self.version += 1;
        id
    }

    fn put(&mut self, row: T) {
        self.rows.insert(row.id(), row);
        self.version += 1;
    }
}

/// Table access by entity type, for the generic operations below.
pub trait Stored: Entity {
    /// The table of this entity.
    fn table(db: &Db) -> &Table<Self>;
    /// The table of this entity, mutably.
    fn table_mut(db: &mut Db) -> &mut Table<Self>;
}

macro_rules! stored {
    ($t:ty, $field:ident) => {
        impl Stored for $t {
            fn table(db: &Db) -> &Table<Self> {
                &db.$field
            }
            fn table_mut(db: &mut Db) -> &mut Table<Self> {
                &mut db.$field
            }
        }
    };
}

stored!(Contact, contacts);
stored!(Person, persons);
stored!(Sale, sales);
stored!(Project, projects);
stored!(Appointment, appointments);
stored!(Document, documents);
stored!(Ticket, tickets);
stored!(Selection, selections);

/// Runs `$body` with `$t` bound to the Rust type of an [`EntityType`].
#[macro_export]
#[doc(hidden)]
macro_rules! with_entity {
    ($ty:expr, $t:ident => $body:expr) => {
        match $ty {
            $crate::model::EntityType::Contact => {
                type $t = $crate::model::contact::Contact;
                $body
            }
            $crate::model::EntityType::Person => {
                type $t = $crate::model::person::Person;
                $body
            }
            $crate::model::EntityType::Sale => {
                type $t = $crate::model::sale::Sale;
                $body
            }
            $crate::model::EntityType::Project => {
                type $t = $crate::model::project::Project;
                $body
            }
            $crate::model::EntityType::Appointment => {
                type $t = $crate::model::appointment::Appointment;
                $body
            }
            $crate::model::EntityType::Document => {
                type $t = $crate::model::document::Document;
                $body
            }
            $crate::model::EntityType::Ticket => {
                type $t = $crate::model::ticket::Ticket;
                $body
            }
            $crate::model::EntityType::Selection => {
                type $t = $crate::model::selection::Selection;
                $body
            }
        }
    };
}

/// What kind of change a write made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A row was inserted.
    Created,
    /// Root-table fields changed.
    Changed,
    /// A contact or person went to the recycle bin.
    SoftDeleted,
    /// A row was removed for good.
    Deleted,
}

/// One committed write, the raw material of webhook events.
#[derive(Debug, Clone)]
pub struct Change {
    /// Entity.
    pub entity: EntityType,
    /// Primary key.
    pub id: i32,
    /// What happened.
    pub kind: ChangeKind,
    /// `ChangedByAssociateId`.
    pub by: i32,
    /// Changed database columns (`Changes`).
    pub columns: Vec<String>,
    /// `FieldValues`, when the event carries them.
    pub field_values: Option<Map<String, Value>>,
    /// `Values` of a delete event.
    pub values: Option<Map<String, Value>>,
    /// Extra event suffixes (`sold`, `lost`, `completed`).
    pub extra_events: Vec<&'static str>,
}

/// One row of `/__admin/truth/{entity}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TruthRow {
    /// Primary key.
    pub id: i32,
    /// Time of the last change (ISO, `updated` or, if never updated, `registered`).
    pub updated: String,
    /// Hex sha256 of the canonical entity JSON (see [`crate::json::entity_hash`]).
    pub hash: String,
    /// Soft- or hard-deleted (tickets: base status Deleted).
    pub deleted: bool,
}

/// The whole tenant database.
#[derive(Debug)]
pub struct Db {
    /// Contacts.
    pub contacts: Table<Contact>,
    /// Persons.
    pub persons: Table<Person>,
    /// Sales.
    pub sales: Table<Sale>,
    /// Projects.
    pub projects: Table<Project>,
    /// Appointments.
    pub appointments: Table<Appointment>,
    /// Documents.
    pub documents: Table<Document>,
    /// Tickets.
    pub tickets: Table<Ticket>,
    /// Selections.
    pub selections: Table<Selection>,
    /// Foreign apps, devices and keys.
    pub foreign: ForeignStore,
    /// Render timestamps with a `Z` suffix (also used for truth hashes).
    pub utc: bool,
    activity_rng: ChaCha8Rng,
    last_updated: Option<(EntityType, i32)>,
}

/// Settings the write operations need.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// Child-only saves bump `updated` and fire `changed`.
    pub child_touches_root: bool,
    /// New rows get `updated` = creation time instead of `0001-01-01`.
    pub new_rows_set_updated: bool,
}

impl Db {
    /// An empty database whose random streams derive from `seed`.
    pub fn new(seed: u64) -> Db {
        Db {
            contacts: Table::new(seed),
            persons: Table::new(seed),
            sales: Table::new(seed),
            projects: Table::new(seed),
            appointments: Table::new(seed),
            documents: Table::new(seed),
            tickets: Table::new(seed),
            selections: Table::new(seed),
            foreign: ForeignStore::default(),
            utc: false,
            activity_rng: ChaCha8Rng::seed_from_u64(seed ^ 0xAC71_7177),
            last_updated: None,
        }
    }

    /// A rendering context over this database.
    pub fn cx(&self) -> Cx<'_> {
        Cx {
            db: self,
            utc: self.utc,
        }
    }

    /// An empty database (for templates and tests).
    pub fn empty() -> Db {
        Db::new(0)
    }

    /// The highest ids of the tables other entities point at.
    pub fn refs(&self) -> Refs {
        Refs {
            contacts: self.contacts.max_id(),
            persons: self.persons.max_id(),
            projects: self.projects.max_id(),
            sales: self.sales.max_id(),
        }
    }

    /// The version counter of an entity's table.
    pub fn version(&self, ty: EntityType) -> u64 {
        with_entity!(ty, T => T::table(self).version())
    }

    /// Number of stored rows of an entity (soft-deleted included).
    pub fn count(&self, ty: EntityType) -> usize {
        with_entity!(ty, T => T::table(self).len())
    }

    /// Seeds `count` deterministic rows of an entity.
    pub fn seed(&mut self, ty: EntityType, count: u32, anchor: Ts, never_updated: f64) {
        with_entity!(ty, T => seed_table::<T>(self, count, anchor, never_updated))
    }

    /// The ground truth of an entity: every row ever created.
    pub fn truth(&self, ty: EntityType) -> Vec<TruthRow> {
        with_entity!(ty, T => truth_of::<T>(self))
    }
}

fn seed_table<T: Stored>(db: &mut Db, count: u32, anchor: Ts, never_updated: f64) {
    let refs = db.refs();
    let mut rng = std::mem::replace(&mut T::table_mut(db).rng, ChaCha8Rng::seed_from_u64(0));
    let mut g = Gen {
        rng: &mut rng,
        anchor,
        never_updated,
        refs,
        previous: None,
    };
    for _ in 0..count {
        let mut row = T::seed(&mut g);
        row.link(db);
        T::table_mut(db).insert_new(row);
    }
    T::table_mut(db).rng = rng;
}

/// Hex sha256 of a rendered entity (see [`crate::json::entity_hash`]).
pub fn hash_row<T: Entity>(row: &T, db: &Db) -> [u8; 32] {
    let cx = db.cx();
    let doc = Value::Object(render(row, &cx));
    Sha256::digest(canonical_bytes(&doc)).into()
}

fn truth_of<T: Stored>(db: &Db) -> Vec<TruthRow> {
    let table = T::table(db);
    let mut out: Vec<TruthRow> = table
        .rows
        .values()
        .map(|r| TruthRow {
            id: r.id(),
            updated: r.audit().last_change().iso(),
            hash: hex::encode(hash_row(r, db)),
            deleted: r.is_deleted(),
        })
        .collect();
    out.extend(table.tombstones.iter().map(|(id, t)| TruthRow {
        id: *id,
        updated: t.deleted.iso(),
        hash: hex::encode(t.hash),
        deleted: true,
    }));
    out.sort_by_key(|r| r.id);
    out
}

fn audit_columns(ty: EntityType) -> &'static [&'static str] {
    if ty == EntityType::Ticket {
        &["last_changed"]
    } else {
        &["updated_associate_id", "updated", "updatedCount"]
    }
}

/// Creates a row from a client document. Returns the new id and its change.
pub fn create<T: Stored>(
    db: &mut Db,
    doc: &Map<String, Value>,
    by: i32,
    now: Ts,
    opts: WriteOptions,
) -> Result<(i32, Change), SoError> {
    let mut row = T::blank();
    apply_doc(&mut row, doc)?;
    Ok(insert_row(db, row, by, now, opts))
}

fn insert_row<T: Stored>(
    db: &mut Db,
    mut row: T,
    by: i32,
    now: Ts,
    opts: WriteOptions,
) -> (i32, Change) {
    row.link(db);
    let mut audit = Audit::created(now, by);
    if opts.new_rows_set_updated || T::TYPE == EntityType::Ticket {
        audit.updated = now;
        audit.updated_by = by;
    }
    *row.audit_mut() = audit;
    let id = T::table_mut(db).insert_new(row);
    let row = T::table(db).get(id).expect("row was just inserted");
    let mut columns = vec![T::TYPE.db_pk().to_string()];
    columns.extend(row.db_columns().into_iter().map(|(k, _)| k.to_string()));
    columns.extend(
        ["registered", "registered_associate_id"]
            .iter()
            .chain(audit_columns(T::TYPE))
            .map(|s| s.to_string()),
    );
    let cx = db.cx();
    let change = Change {
        entity: T::TYPE,
        id,
        kind: ChangeKind::Created,
        by,
        columns: if T::TYPE == EntityType::Ticket {
            Vec::new()
        } else {
            columns
        },
        field_values: Some(row.field_values(&cx)),
        values: None,
        extra_events: Vec::new(),
    };
    (id, change)
}

/// Stores a new state of an existing row. Returns the change, or `None` when nothing that
/// counts as a root-table change happened.
pub fn save<T: Stored>(
    db: &mut Db,
    mut new: T,
    by: i32,
    now: Ts,
    opts: WriteOptions,
) -> Result<Option<Change>, SoError> {
    let id = new.id();
    let old = T::table(db)
        .live(id)
        .ok_or_else(|| SoError::not_found(format!("{} id {id} not found", T::TYPE)))?
        .clone();
    new.link(db);
    let mut columns: Vec<String> = Vec::new();
    for ((k, a), (_, b)) in old.db_columns().into_iter().zip(new.db_columns()) {
        if a != b {
            columns.push(k.to_string());
        }
    }
    let mut child_changed = false;
    let empty = Map::new();
    let (old_x, new_x) = (old.extra().unwrap_or(&empty), new.extra().unwrap_or(&empty));
    let keys: std::collections::BTreeSet<&String> = old_x.keys().chain(new_x.keys()).collect();
    for k in keys {
        if old_x.get(k) != new_x.get(k) {
            if T::CHILD.contains(&k.to_ascii_lowercase().as_str()) {
                child_changed = true;
            } else {
                columns.push(k.to_ascii_lowercase());
            }
        }
    }
    let root_changed = !columns.is_empty();
    let touches_root = root_changed || (child_changed && opts.child_touches_root);
    if !touches_root {
        // Child rows (or nothing) changed: the root row and its timestamps stay as they were.
        *new.audit_mut() = *old.audit();
        T::table_mut(db).put(new);
        return Ok(None);
    }
    *new.audit_mut() = *old.audit();
    new.audit_mut().touch(now, by);
    let mut extra_events = Vec::new();
    if T::TYPE == EntityType::Sale {
        let (o, n) = (sale_state(&old), sale_state(&new));
        if o.0 != n.0 && n.0 == sale::STATUS_SOLD {
            extra_events.push("sold");
        }
        if o.0 != n.0 && n.0 == sale::STATUS_LOST {
            extra_events.push("lost");
        }
        if o.1 != n.1 && n.1 == sale::COMPLETED {
            extra_events.push("completed");
        }
    }
    let mut all = vec![T::TYPE.db_pk().to_string()];
    all.extend(columns);
    all.extend(audit_columns(T::TYPE).iter().map(|s| s.to_string()));
    T::table_mut(db).put(new);
    let row = T::table(db).get(id).expect("row was just stored");
    let cx = db.cx();
    Ok(Some(Change {
        entity: T::TYPE,
        id,
        kind: ChangeKind::Changed,
        by,
        columns: all,
        field_values: Some(row.field_values(&cx)),
        values: None,
        extra_events,
    }))
}

fn sale_state<T: Entity>(row: &T) -> (u8, u8) {
    let cols = row.db_columns();
    let get = |name: &str| {
        cols.iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(0) as u8
    };
    (get("status"), get("done"))
}

/// Deletes a row the way its entity is deleted: contacts and persons go to the recycle bin,
/// tickets get base status Deleted, everything else is removed.
pub fn delete<T: Stored>(
    db: &mut Db,
    id: i32,
    by: i32,
    now: Ts,
    opts: WriteOptions,
) -> Result<Change, SoError> {
    let not_found = || SoError::not_found(format!("{} id {id} not found", T::TYPE));
    let row = T::table(db).live(id).ok_or_else(not_found)?;
    if T::TYPE == EntityType::Ticket && row.is_deleted() {
        return Err(not_found());
    }
    if T::TYPE.soft_deletes() {
        let mut row = row.clone();
        row.set_deleted_at(Some(now));
        row.audit_mut().touch(now, by);
        T::table_mut(db).put(row);
        let row = T::table(db).get(id).expect("row exists");
        let cx = db.cx();
        return Ok(Change {
            entity: T::TYPE,
            id,
            kind: ChangeKind::SoftDeleted,
            by,
            columns: vec![
                T::TYPE.db_pk().to_string(),
                "DeletedDate".into(),
                "updated".into(),
            ],
            field_values: Some(row.field_values(&cx)),
            values: None,
            extra_events: Vec::new(),
        });
    }
    if T::TYPE == EntityType::Ticket {
        let mut doc = Map::new();
        doc.insert("BaseStatus".into(), Value::from(ticket::STATUS_DELETED));
        let mut row = row.clone();
        apply_doc(&mut row, &doc)?;
        return save(db, row, by, now, opts)?.ok_or_else(not_found);
    }
    Ok(hard_delete::<T>(db, id, by, now))
}

/// Removes a row for good, leaving a tombstone, and drops its foreign keys.
pub fn hard_delete<T: Stored>(db: &mut Db, id: i32, by: i32, now: Ts) -> Change {
    let hash = T::table(db)
        .get(id)
        .map(|r| hash_row(r, db))
        .unwrap_or_default();
    let table = T::table_mut(db);
    let values = table.rows.remove(&id).map(|r| r.delete_values());
    table
        .tombstones
        .insert(id, Tombstone { deleted: now, hash });
    table.version += 1;
    db.foreign.remove_record(T::TYPE.table(), id);
    Change {
        entity: T::TYPE,
        id,
        kind: ChangeKind::Deleted,
        by,
        columns: Vec::new(),
        field_values: None,
        values,
        extra_events: Vec::new(),
    }
}

/// Takes a soft-deleted contact or person out of the recycle bin.
pub fn restore<T: Stored>(
    db: &mut Db,
    id: i32,
    by: i32,
    now: Ts,
    _opts: WriteOptions,
) -> Result<Change, SoError> {
    let row = T::table(db)
        .get(id)
        .filter(|r| r.deleted_at().is_some())
        .ok_or_else(|| {
            SoError::not_found(format!("{} id {id} is not in the recycle bin", T::TYPE))
        })?;
    let mut row = row.clone();
    row.set_deleted_at(None);
    row.audit_mut().touch(now, by);
    T::table_mut(db).put(row);
    let row = T::table(db).get(id).expect("row exists");
    let cx = db.cx();
    Ok(Change {
        entity: T::TYPE,
        id,
        kind: ChangeKind::Changed,
        by,
        columns: vec![
            T::TYPE.db_pk().to_string(),
            "DeletedDate".into(),
            "updated".into(),
        ],
        field_values: Some(row.field_values(&cx)),
        values: None,
        extra_events: Vec::new(),
    })
}

/// Hard-deletes soft-deleted contacts and persons older than `days` days.
pub fn purge(db: &mut Db, now: Ts, days: i64) -> Vec<Change> {
    let cutoff = now.plus(-days * crate::clock::DAY);
    let mut out = Vec::new();
    for ty in [EntityType::Contact, EntityType::Person] {
        let due: Vec<i32> = with_entity!(ty, T => T::table(db)
            .rows
            .values()
            .filter(|r| r.deleted_at().is_some_and(|d| d <= cutoff))
            .map(|r| r.id())
            .collect());
        for id in due {
            out.push(with_entity!(ty, T => hard_delete::<T>(db, id, 0, now)));
        }
    }
    out
}

/// The earliest soft-delete time still in the recycle bin.
pub fn oldest_soft_delete(db: &Db) -> Option<Ts> {
    let c = db.contacts.rows.values().filter_map(|r| r.deleted);
    let p = db.persons.rows.values().filter_map(|r| r.deleted);
    c.chain(p).min()
}

/// One simulated edit, for [`ActivityReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Touched {
    /// Entity (lower-case table name).
    pub entity: &'static str,
    /// Primary key.
    pub id: i32,
}

/// What `POST /__admin/activity` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActivityReport {
    /// Rows created.
    pub created: Vec<Touched>,
    /// Rows updated (a row can appear more than once).
    pub updated: Vec<Touched>,
    /// Rows deleted (soft for contacts/persons, status for tickets).
    pub deleted: Vec<Touched>,
}

/// Simulates other users: `creates` new rows, `updates` edits (about a quarter of them hit the
/// row edited just before, in the same second) and `deletes` deletions.
pub fn activity(
    db: &mut Db,
    creates: u32,
    updates: u32,
    deletes: u32,
    only: Option<EntityType>,
    now: Ts,
    opts: WriteOptions,
) -> (ActivityReport, Vec<Change>) {
    let mut report = ActivityReport::default();
    let mut changes = Vec::new();
    let mut rng = std::mem::replace(&mut db.activity_rng, ChaCha8Rng::seed_from_u64(0));
    let pick_type = |rng: &mut ChaCha8Rng| {
        only.unwrap_or_else(|| EntityType::ALL[rng.gen_range(0..EntityType::ALL.len())])
    };
    for _ in 0..creates {
        let ty = pick_type(&mut rng);
        let by = rng.gen_range(lists::OTHER_USERS);
        let (id, change) = with_entity!(ty, T => {
            let refs = db.refs();
            let mut g = Gen { rng: &mut rng, anchor: now, never_updated: 1.0, refs, previous: None };
            let row = T::seed(&mut g);
            insert_row::<T>(db, row, by, now, opts)
        });
        report.created.push(Touched {
            entity: ty.table(),
            id,
        });
        changes.push(change);
    }
    for _ in 0..updates {
        let ty = pick_type(&mut rng);
        let by = rng.gen_range(lists::OTHER_USERS);
        let repeat = db
            .last_updated
            .filter(|(t, _)| *t == ty && rng.gen_range(0..4) == 0)
            .map(|(_, id)| id);
        let target = repeat.or_else(|| random_live(db, ty, &mut rng));
        let Some(id) = target else { continue };
        let result = with_entity!(ty, T => {
            let refs = db.refs();
            let mut row = T::table(db).live(id).cloned();
            match row.as_mut() {
                Some(r) => {
                    // A random edit can hit the value a field already has; try again then.
                    let before = r.db_columns();
                    for _ in 0..8 {
                        r.mutate(&mut rng, &refs);
                        if r.db_columns() != before {
                            break;
                        }
                    }
                    save::<T>(db, r.clone(), by, now, opts).ok().flatten()
                }
                None => None,
            }
        });
        if let Some(change) = result {
            db.last_updated = Some((ty, id));
            report.updated.push(Touched {
                entity: ty.table(),
                id,
            });
            changes.push(change);
        }
    }
    for _ in 0..deletes {
        let ty = pick_type(&mut rng);
        let by = rng.gen_range(lists::OTHER_USERS);
        let Some(id) = random_live(db, ty, &mut rng) else {
            continue;
        };
        if let Ok(change) = with_entity!(ty, T => delete::<T>(db, id, by, now, opts)) {
            report.deleted.push(Touched {
                entity: ty.table(),
                id,
            });
            changes.push(change);
        }
    }
    db.activity_rng = rng;
    (report, changes)
}

fn random_live(db: &Db, ty: EntityType, rng: &mut ChaCha8Rng) -> Option<i32> {
    with_entity!(ty, T => {
        let table = T::table(db);
        let max = table.max_id();
        if max == 0 {
            return None;
        }
        // Probe random ids first; fall back to a scan from a random start.
        for _ in 0..16 {
            let id = rng.gen_range(1..=max);
            if table.live(id).is_some_and(|r| !r.is_deleted()) {
                return Some(id);
            }
        }
        let start = rng.gen_range(1..=max);
        table
            .rows
            .range(start..)
            .chain(table.rows.range(..start))
            .find(|(_, r)| !r.is_deleted())
            .map(|(id, _)| *id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> WriteOptions {
        WriteOptions {
            child_touches_root: false,
            new_rows_set_updated: false,
        }
    }

    fn seeded() -> Db {
        let mut db = Db::new(7);
        for ty in EntityType::ALL {
            db.seed(ty, 30, Ts::from_parts(2025, 1, 1, 0, 0, 0), 0.1);
        }
        db
    }

    #[test]
    fn seeding_is_deterministic() {
        let (a, b) = (seeded(), seeded());
        for ty in EntityType::ALL {
            assert_eq!(a.truth(ty), b.truth(ty), "{ty}");
            assert_eq!(a.count(ty), 30);
        }
        let other = {
            let mut db = Db::new(8);
            db.seed(
                EntityType::Contact,
                30,
                Ts::from_parts(2025, 1, 1, 0, 0, 0),
                0.1,
            );
            db
        };
        assert_ne!(
            a.truth(EntityType::Contact),
            other.truth(EntityType::Contact)
        );
    }

    #[test]
    fn seeded_rows_include_never_updated_ones() {
        let mut db = Db::new(1);
        db.seed(
            EntityType::Contact,
            500,
            Ts::from_parts(2025, 1, 1, 0, 0, 0),
            0.1,
        );
        let never = db
            .contacts
            .rows()
            .values()
            .filter(|c| c.audit.updated.is_min())
            .count();
        assert!(never > 10 && never < 150, "{never}");
        assert!(
            db.contacts
                .rows()
                .values()
                .all(|c| c.audit.created < Ts::from_parts(2025, 1, 1, 0, 0, 0))
        );
    }

    #[test]
    fn child_only_changes_leave_root_untouched() {
        let mut db = seeded();
        let now = Ts::from_parts(2026, 1, 1, 0, 0, 0);
        let mut row = db.contacts.get(1).cloned().unwrap();
        let before = row.audit;
        let mut doc = Map::new();
        doc.insert("Phones".into(), serde_json::json!([{"Value": "+47 1234"}]));
        apply_doc(&mut row, &doc).unwrap();
        assert!(
            save::<Contact>(&mut db, row.clone(), 3, now, opts())
                .unwrap()
                .is_none()
        );
        assert_eq!(db.contacts.get(1).unwrap().audit, before);
        let touch = WriteOptions {
            child_touches_root: true,
            ..opts()
        };
        doc.insert("Phones".into(), serde_json::json!([{"Value": "+47 9999"}]));
        apply_doc(&mut row, &doc).unwrap();
        let change = save::<Contact>(&mut db, row, 3, now, touch)
            .unwrap()
            .unwrap();
        assert_eq!(change.kind, ChangeKind::Changed);
        assert_eq!(db.contacts.get(1).unwrap().audit.updated, now);
    }

    #[test]
    fn deletes_follow_the_entity_rules() {
        let mut db = seeded();
        let now = Ts::from_parts(2026, 1, 1, 0, 0, 0);
        let c = delete::<Contact>(&mut db, 2, 3, now, opts()).unwrap();
        assert_eq!(c.kind, ChangeKind::SoftDeleted);
        assert!(db.contacts.live(2).is_none() && db.contacts.get(2).is_some());
        let s = delete::<Sale>(&mut db, 2, 3, now, opts()).unwrap();
        assert_eq!(s.kind, ChangeKind::Deleted);
        assert!(db.sales.get(2).is_none());
        assert!(
            db.truth(EntityType::Sale)
                .iter()
                .any(|r| r.id == 2 && r.deleted)
        );
        let t = delete::<Ticket>(&mut db, 2, 3, now, opts()).unwrap();
        assert_eq!(t.kind, ChangeKind::Changed);
        assert!(db.tickets.get(2).unwrap().is_deleted());
        assert!(delete::<Ticket>(&mut db, 2, 3, now, opts()).is_err());
        assert_eq!(
            purge(&mut db, now.plus(13 * crate::clock::DAY), 14).len(),
            0
        );
        let purged = purge(&mut db, now.plus(14 * crate::clock::DAY), 14);
        assert_eq!(purged.len(), 1);
        assert!(db.contacts.get(2).is_none());
    }

    #[test]
    fn activity_touches_rows_as_other_users() {
        let mut db = seeded();
        let now = Ts::from_parts(2026, 1, 1, 12, 0, 0);
        let (report, changes) = activity(&mut db, 3, 20, 2, Some(EntityType::Contact), now, opts());
        assert_eq!(report.created.len(), 3);
        assert_eq!(report.deleted.len(), 2);
        assert!(!report.updated.is_empty());
        assert!(changes.iter().all(|c| lists::OTHER_USERS.contains(&c.by)));
        let updated_now = db
            .contacts
            .rows()
            .values()
            .filter(|c| c.audit.updated == now)
            .count();
        assert!(updated_now >= 2);
    }
}
