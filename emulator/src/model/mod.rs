//! Entities: compact typed records, their JSON shape, their archive columns and their webhook
//! column names.
//!
//! Each entity keeps the fields that seeded data and archives need as typed Rust values and
//! renders the full entity JSON (every property of the official `…Entity` definition) on
//! demand. Properties a client sets that are not modelled are kept in a per-record overflow
//! map, so a PUT/PATCH round-trips them. The [`Entity`] trait is the contract each entity
//! implements; [`render`] and [`apply_doc`] are the generic halves around it.

pub mod appointment;
pub mod contact;
pub mod document;
pub mod lists;
pub mod person;
pub mod project;
pub mod sale;
pub mod selection;
pub mod ticket;

pub mod json_parts;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use crate::clock::{DAY, Ts};
use crate::error::SoError;
use crate::store::Db;

/// The entities the emulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityType {
    /// Company.
    Contact,
    /// Contact person.
    Person,
    /// Sale.
    Sale,
    /// Project.
    Project,
    /// Follow-up (appointment).
    Appointment,
    /// Document.
    Document,
    /// Request (ticket).
    Ticket,
    /// Selection.
    Selection,
}

impl EntityType {
    /// Every entity type, in seeding order.
    pub const ALL: [EntityType; 8] = [
        EntityType::Contact,
        EntityType::Person,
        EntityType::Project,
        EntityType::Sale,
        EntityType::Appointment,
        EntityType::Document,
        EntityType::Ticket,
        EntityType::Selection,
    ];

    /// The REST name (`Contact`).
    pub fn name(self) -> &'static str {
        match self {
            EntityType::Contact => "Contact",
            EntityType::Person => "Person",
            EntityType::Sale => "Sale",
            EntityType::Project => "Project",
            EntityType::Appointment => "Appointment",
            EntityType::Document => "Document",
            EntityType::Ticket => "Ticket",
            EntityType::Selection => "Selection",
        }
    }

    /// The database table (`contact`); also the name used by `/__admin/truth/{entity}`.
    pub fn table(self) -> &'static str {
        match self {
            EntityType::Contact => "contact",
            EntityType::Person => "person",
            EntityType::Sale => "sale",
            EntityType::Project => "project",
            EntityType::Appointment => "appointment",
            EntityType::Document => "document",
            EntityType::Ticket => "ticket",
            EntityType::Selection => "selection",
        }
    }

    /// The table number SuperOffice uses for foreign keys and selections.
    pub fn table_id(self) -> i32 {
        match self {
            EntityType::Contact => 5,
            EntityType::Person => 6,
            EntityType::Appointment => 9,
            EntityType::Document => 10,
            EntityType::Project => 11,
            EntityType::Sale => 13,
            EntityType::Selection => 23,
            EntityType::Ticket => 262,
        }
    }

    /// Parses a REST or table name, case-insensitively.
    pub fn parse(s: &str) -> Option<EntityType> {
        EntityType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
    }

    /// The archive column holding the primary key (`contactId`).
    pub fn pk_column(self) -> &'static str {
        match self {
            EntityType::Contact => "contactId",
            EntityType::Person => "personId",
            EntityType::Sale => "saleId",
            EntityType::Project => "projectId",
            EntityType::Appointment => "appointmentId",
            EntityType::Document => "documentId",
            EntityType::Ticket => "ticketId",
            EntityType::Selection => "selectionId",
        }
    }

    /// The entity JSON property holding the primary key (`ContactId`).
    pub fn pk_property(self) -> &'static str {
        match self {
            EntityType::Contact => "ContactId",
            EntityType::Person => "PersonId",
            EntityType::Sale => "SaleId",
            EntityType::Project => "ProjectId",
            EntityType::Appointment => "AppointmentId",
            EntityType::Document => "DocumentId",
            EntityType::Ticket => "TicketId",
            EntityType::Selection => "SelectionId",
        }
    }

    /// The database primary-key column (`contact_id`), first in webhook `Changes`.
    pub fn db_pk(self) -> &'static str {
        match self {
            EntityType::Contact => "contact_id",
            EntityType::Person => "person_id",
            EntityType::Sale => "sale_id",
            EntityType::Project => "project_id",
            EntityType::Appointment => "appointment_id",
            EntityType::Document => "document_id",
            EntityType::Ticket => "id",
            EntityType::Selection => "selection_id",
        }
    }

    /// The archive provider behind `GET /api/v1/{Entity}`.
    pub fn list_provider(self) -> &'static str {
        match self {
            EntityType::Contact => "SimpleContact",
            EntityType::Person => "Person",
            EntityType::Sale => "FindSale",
            EntityType::Project => "FindProject",
            EntityType::Appointment => "FindAppointment",
            EntityType::Document => "FindDocument",
            EntityType::Ticket => "Ticket",
            EntityType::Selection => "FindSelection",
        }
    }

    /// Contacts and persons are soft-deleted; the rest are removed (tickets get status Deleted).
    pub fn soft_deletes(self) -> bool {
        matches!(self, EntityType::Contact | EntityType::Person)
    }

    /// The webhook entity name, or `None` when the entity fires no events (selection).
    pub fn event_entity(self) -> Option<&'static str> {
        match self {
            EntityType::Contact => Some("contact"),
            EntityType::Person => Some("person"),
            EntityType::Sale => Some("sale"),
            EntityType::Project => Some("project"),
            EntityType::Appointment => Some("activity"),
            EntityType::Document => Some("document"),
            EntityType::Ticket => Some("ticket"),
            EntityType::Selection => None,
        }
    }
}

impl std::fmt::Display for EntityType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Who created and last changed a record, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audit {
    /// `registered` / `CreatedDate` (tickets: `created_at`).
    pub created: Ts,
    /// `updated` / `UpdatedDate` (tickets: `last_changed`); [`Ts::MIN`] if never edited.
    pub updated: Ts,
    /// `registered_associate_id`.
    pub created_by: i32,
    /// `updated_associate_id` (0 if never edited).
    pub updated_by: i32,
    /// `updatedCount`.
    pub updated_count: u32,
}

impl Audit {
    /// A record created at `at` by `by`, never edited.
    pub fn created(at: Ts, by: i32) -> Audit {
        Audit {
            created: at,
            updated: Ts::MIN,
            created_by: by,
            updated_by: 0,
            updated_count: 0,
        }
    }

    /// The time of the last change: the update, or the creation if never updated.
    pub fn last_change(&self) -> Ts {
        self.updated.max(self.created)
    }

    /// Records an edit.
    pub fn touch(&mut self, at: Ts, by: i32) {
        self.updated = at;
        self.updated_by = by;
        self.updated_count += 1;
    }
}

/// Rendering context: the database (for related records) and output settings.
#[derive(Debug, Clone, Copy)]
pub struct Cx<'a> {
    /// The whole database.
    pub db: &'a Db,
    /// Append `Z` to timestamps.
    pub utc: bool,
}

impl<'a> Cx<'a> {
    /// A timestamp as a JSON string.
    pub fn ts(&self, t: Ts) -> Value {
        let mut s = String::with_capacity(20);
        t.write_iso(&mut s, self.utc && !t.is_min());
        Value::String(s)
    }
}

/// The type of an archive column (its restriction type, simplified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// Integer.
    Int,
    /// Decimal.
    Dec,
    /// Boolean.
    Bool,
    /// Text.
    Str,
    /// Date: filters compare the day only.
    Date,
    /// Date and time: filters compare the full timestamp.
    DateTime,
    /// A list item: filtered by id, shown by label.
    List,
    /// An associate: filtered by id, shown by login name.
    Assoc,
}

/// An archive column.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Column name as used in `$select`/`$filter`/`$orderBy`.
    pub name: &'static str,
    /// Its type.
    pub ty: ColType,
}

/// Shorthand for building column tables.
pub const fn col(name: &'static str, ty: ColType) -> Column {
    Column { name, ty }
}

/// The value of one archive cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// No value.
    Null,
    /// Integer.
    Int(i64),
    /// Decimal.
    Dec(f64),
    /// Boolean.
    Bool(bool),
    /// Text.
    Str(Cow<'a, str>),
    /// Date or date-time.
    Time(Ts),
    /// A list item or associate: id and display label.
    Item(i64, Cow<'a, str>),
}

/// What every entity provides. See the module docs for how the pieces fit together.
pub trait Entity: Clone + Send + Sync + Sized + 'static {
    /// Which entity this is.
    const TYPE: EntityType;
    /// Lower-case property names that [`Entity::apply`] reads.
    const TYPED: &'static [&'static str];
    /// Lower-case property names rendered from typed data that clients cannot set.
    const DERIVED: &'static [&'static str];
    /// Lower-case property names stored in child tables (changes fire no webhook).
    const CHILD: &'static [&'static str];

    /// Primary key.
    fn id(&self) -> i32;
    /// Sets the primary key (on create).
    fn set_id(&mut self, id: i32);
    /// Audit fields.
    fn audit(&self) -> &Audit;
    /// Audit fields, mutably.
    fn audit_mut(&mut self) -> &mut Audit;
    /// Properties set by clients that are not modelled.
    fn extra(&self) -> Option<&Map<String, Value>>;
    /// Mutable overflow map.
    fn extra_mut(&mut self) -> &mut Option<Box<Map<String, Value>>>;
    /// When the record was soft-deleted (contacts and persons only).
    fn deleted_at(&self) -> Option<Ts> {
        None
    }
    /// Sets or clears the soft-delete time (no-op for entities without soft delete).
    fn set_deleted_at(&mut self, _at: Option<Ts>) {}
    /// Whether the record counts as deleted for `/__admin/truth` while still stored.
    fn is_deleted(&self) -> bool {
        self.deleted_at().is_some()
    }

    /// A new, empty record (what `GET /{Entity}/default` starts from).
    fn blank() -> Self;
    /// Writes every property of the entity definition, in spec order.
    fn render_into(&self, m: &mut Map<String, Value>, cx: &Cx<'_>);
    /// Reads the typed properties present in `input`.
    fn apply(&mut self, input: &Input<'_>) -> Result<(), SoError>;
    /// Root-table columns (database names) and values, for webhook `Changes`.
    fn db_columns(&self) -> Vec<(&'static str, Value)>;
    /// The webhook `FieldValues` of this record.
    fn field_values(&self, cx: &Cx<'_>) -> Map<String, Value>;
    /// The webhook `Values` of a delete event.
    fn delete_values(&self) -> Map<String, Value>;

    /// The archive columns of this entity (shared by its list and recycle providers).
    fn columns() -> &'static [Column];
    /// One archive cell. Unknown names give [`Cell::Null`].
    fn cell<'a>(&'a self, col: &str, cx: &Cx<'a>) -> Cell<'a>;

    /// Fills denormalised fields from related records after a seed or save.
    fn link(&mut self, _db: &Db) {}

    /// A deterministic random record.
    fn seed(g: &mut Gen<'_>) -> Self;
    /// A random change to root-table fields, as another user would make it.
    fn mutate(&mut self, rng: &mut ChaCha8Rng, g: &Refs);
}

/// Upper bounds of the ids seeded records may point at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Refs {
    /// Highest contact id.
    pub contacts: i32,
    /// Highest person id.
    pub persons: i32,
    /// Highest project id.
    pub projects: i32,
    /// Highest sale id.
    pub sales: i32,
}

impl Refs {
    /// A random id in 1..=max, or 0 when there are none (or by chance, `none_pct` percent).
    pub fn pick(rng: &mut ChaCha8Rng, max: i32, none_pct: u32) -> i32 {
        if max <= 0 || rng.gen_range(0..100) < none_pct {
            0
        } else {
            rng.gen_range(1..=max)
        }
    }
}

/// Everything a seeder needs: randomness, time anchor and the ids that exist.
#[derive(Debug)]
pub struct Gen<'a> {
    /// The entity's own random stream.
    pub rng: &'a mut ChaCha8Rng,
    /// Seeded timestamps lie in the three years before this.
    pub anchor: Ts,
    /// Fraction of records that were never edited.
    pub never_updated: f64,
    /// Ids that exist.
    pub refs: Refs,
    /// The audit timestamps of the previous seeded record (for same-second clusters).
    pub previous: Option<Audit>,
}

impl Gen<'_> {
    /// Random audit fields: created in the three years before the anchor, updated later (or
    /// never); about one record in twenty shares the previous record's second exactly.
    pub fn audit(&mut self) -> Audit {
        if let Some(prev) = self.previous
            && self.rng.gen_range(0..20) == 0
        {
            let by = self.other_user();
            let mut a = Audit::created(prev.created, by);
            a.updated = prev.updated;
            if !a.updated.is_min() {
                a.updated_by = self.other_user();
                a.updated_count = self.rng.gen_range(1..5);
            }
            self.previous = Some(a);
            return a;
        }
        let span = 3 * 365 * DAY;
        let created = self.anchor.plus(-self.rng.gen_range(1..span));
        let mut a = Audit::created(created, self.other_user());
        if !self.rng.gen_bool(self.never_updated) {
            let room = (self.anchor.0 - created.0).max(1);
            a.updated = created.plus(self.rng.gen_range(0..room));
            a.updated_by = self.other_user();
            a.updated_count = self.rng.gen_range(1..20);
        }
        self.previous = Some(a);
        a
    }

    /// A random associate among the "other users".
    pub fn other_user(&mut self) -> i32 {
        self.rng.gen_range(lists::OTHER_USERS)
    }

    /// A random element.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.gen_range(0..items.len())]
    }

    /// A random list id.
    pub fn item(&mut self, items: &'static [lists::Item]) -> i32 {
        items[self.rng.gen_range(0..items.len())].id
    }

    /// A random time within `days` days after `from`.
    pub fn after(&mut self, from: Ts, days: i64) -> Ts {
        from.plus(self.rng.gen_range(0..days.max(1) * DAY))
    }
}

/// Renders the full entity JSON: typed fields, then the overflow map on top.
pub fn render<T: Entity>(e: &T, cx: &Cx<'_>) -> Map<String, Value> {
    let mut m = Map::new();
    e.render_into(&mut m, cx);
    if let Some(extra) = e.extra() {
        for (k, v) in extra {
            set_ci(&mut m, k, v.clone());
        }
    }
    m
}

/// The rendering of [`Entity::blank`], used to decide which overflow values are defaults.
pub fn template<T: Entity>() -> &'static Map<String, Value> {
    static TEMPLATES: OnceLock<HashMap<EntityType, Map<String, Value>>> = OnceLock::new();
    let all = TEMPLATES.get_or_init(|| {
        let db = Db::empty();
        let cx = Cx {
            db: &db,
            utc: false,
        };
        let mut out = HashMap::new();
        out.insert(EntityType::Contact, render(&contact::Contact::blank(), &cx));
        out.insert(EntityType::Person, render(&person::Person::blank(), &cx));
        out.insert(EntityType::Sale, render(&sale::Sale::blank(), &cx));
        out.insert(EntityType::Project, render(&project::Project::blank(), &cx));
        out.insert(
            EntityType::Appointment,
            render(&appointment::Appointment::blank(), &cx),
        );
        out.insert(
            EntityType::Document,
            render(&document::Document::blank(), &cx),
        );
        out.insert(EntityType::Ticket, render(&ticket::Ticket::blank(), &cx));
        out.insert(
            EntityType::Selection,
            render(&selection::Selection::blank(), &cx),
        );
        out
    });
    &all[&T::TYPE]
}

/// Applies an entity document (a full rendering or a client body) to a record: typed fields
/// through [`Entity::apply`], everything else known to the definition into the overflow map.
/// Unknown properties are ignored, like the real server's deserializer does.
pub fn apply_doc<T: Entity>(e: &mut T, doc: &Map<String, Value>) -> Result<(), SoError> {
    let input = Input::new(doc);
    e.apply(&input)?;
    let template = template::<T>();
    let pk = T::TYPE.pk_property().to_ascii_lowercase();
    for (k, v) in doc {
        let lk = k.to_ascii_lowercase();
        if lk == pk || T::TYPED.contains(&lk.as_str()) || T::DERIVED.contains(&lk.as_str()) {
            continue;
        }
        let Some((canonical, default)) = template.iter().find(|(tk, _)| tk.eq_ignore_ascii_case(k))
        else {
            continue;
        };
        let normalized = if v.is_null() && !default.is_null() {
            default.clone()
        } else {
            v.clone()
        };
        let extra = e.extra_mut();
        if &normalized == default {
            if let Some(map) = extra.as_mut() {
                map.remove(canonical);
                if map.is_empty() {
                    *extra = None;
                }
            }
        } else {
            extra
                .get_or_insert_with(Default::default)
                .insert(canonical.clone(), normalized);
        }
    }
    Ok(())
}

/// Inserts `v` under the key that equals `k` ignoring case, or under `k`.
pub fn set_ci(m: &mut Map<String, Value>, k: &str, v: Value) {
    if let Some(existing) = m.keys().find(|mk| mk.eq_ignore_ascii_case(k)).cloned() {
        m.insert(existing, v);
    } else {
        m.insert(k.to_string(), v);
    }
}

/// Case-insensitive, typed access to a client's entity document.
#[derive(Debug)]
pub struct Input<'a> {
    fields: HashMap<String, &'a Value>,
}

impl<'a> Input<'a> {
    /// Indexes a document by lower-case property name.
    pub fn new(doc: &'a Map<String, Value>) -> Self {
        Input {
            fields: doc
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        }
    }

    /// The raw value of a property (lower-case name).
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.fields.get(key).copied()
    }

    fn type_error(key: &str, want: &str) -> SoError {
        SoError::bad_request(format!("Property '{key}' must be {want}"))
    }

    /// A string property; null reads as empty.
    pub fn string(&self, key: &str) -> Result<Option<Box<str>>, SoError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some("".into())),
            Some(Value::String(s)) => Ok(Some(s.as_str().into())),
            Some(Value::Number(n)) => Ok(Some(n.to_string().into())),
            Some(_) => Err(Self::type_error(key, "a string")),
        }
    }

    /// An integer property; null reads as 0, numeric strings are accepted.
    pub fn int(&self, key: &str) -> Result<Option<i32>, SoError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => to_i32(v)
                .map(Some)
                .ok_or_else(|| Self::type_error(key, "an int32")),
        }
    }

    /// A number property; null reads as 0.
    pub fn float(&self, key: &str) -> Result<Option<f64>, SoError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(0.0)),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Self::type_error(key, "a number")),
            Some(_) => Err(Self::type_error(key, "a number")),
        }
    }

    /// A boolean property; null reads as false.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, SoError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(false)),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) => Ok(Some(n.as_i64() != Some(0))),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(Self::type_error(key, "a boolean")),
        }
    }

    /// A date-time property; null or empty reads as never set.
    pub fn ts(&self, key: &str) -> Result<Option<Ts>, SoError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(Ts::MIN)),
            Some(Value::String(s)) if s.is_empty() => Ok(Some(Ts::MIN)),
            Some(Value::String(s)) => Ts::parse_literal(s)
                .map(|(t, _)| Some(t))
                .ok_or_else(|| Self::type_error(key, "an ISO date-time")),
            Some(_) => Err(Self::type_error(key, "an ISO date-time")),
        }
    }

    /// The id inside a nested object (`{"Id": 3}`), a bare number, or 0 for null.
    pub fn nested_id(&self, key: &str, id_keys: &[&str]) -> Result<Option<i32>, SoError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(o)) => {
                for (k, v) in o {
                    if id_keys.iter().any(|ik| k.eq_ignore_ascii_case(ik)) {
                        return to_i32(v)
                            .map(Some)
                            .ok_or_else(|| Self::type_error(key, "an object with an int32 id"));
                    }
                }
                Ok(Some(0))
            }
            Some(v) => to_i32(v)
                .map(Some)
                .ok_or_else(|| Self::type_error(key, "an object")),
        }
    }

    /// A string-enum property, by its position in `list` (a number is taken as is).
    pub fn enum_id(&self, key: &str, list: &'static [lists::Item]) -> Result<Option<i32>, SoError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(0)),
            Some(Value::String(s)) => lists::id_of(list, s).map(Some).ok_or_else(|| {
                SoError::bad_request(format!("'{s}' is not a valid value of '{key}'"))
            }),
            Some(v) => to_i32(v)
                .map(Some)
                .ok_or_else(|| Self::type_error(key, "an enum value")),
        }
    }
}

fn to_i32(v: &Value) -> Option<i32> {
    match v {
        Value::Null => Some(0),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .and_then(|i| i32::try_from(i).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Sets a boxed string when the input carries it.
pub fn take_str(dst: &mut Box<str>, v: Option<Box<str>>) {
    if let Some(v) = v {
        *dst = v;
    }
}

/// Sets a copyable value when the input carries it.
pub fn take<T>(dst: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *dst = v;
    }
}

/// A random string from a word list, as a boxed str.
pub fn word(rng: &mut ChaCha8Rng, words: &[&str]) -> Box<str> {
    words[rng.gen_range(0..words.len())].into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Db, Stored};
    use crate::with_entity;

    fn db() -> Db {
        let mut db = Db::new(11);
        for ty in EntityType::ALL {
            db.seed(ty, 20, Ts::from_parts(2025, 1, 1, 0, 0, 0), 0.1);
        }
        db
    }

    fn cell_matches(c: &Cell<'_>, ty: ColType) -> bool {
        matches!(
            (c, ty),
            (Cell::Int(_), ColType::Int)
                | (Cell::Dec(_), ColType::Dec)
                | (Cell::Bool(_), ColType::Bool)
                | (Cell::Str(_), ColType::Str)
                | (Cell::Time(_), ColType::Date | ColType::DateTime)
                | (Cell::Item(..), ColType::List | ColType::Assoc)
        )
    }

    fn check_columns<T: Stored>(db: &Db) {
        let cx = db.cx();
        let pk = T::TYPE.pk_column();
        assert!(
            T::columns().iter().any(|c| c.name == pk),
            "{} lacks {pk}",
            T::TYPE
        );
        for row in T::table(db).rows().values() {
            for c in T::columns() {
                let cell = row.cell(c.name, &cx);
                assert!(
                    cell_matches(&cell, c.ty),
                    "{}.{} gave {cell:?}",
                    T::TYPE,
                    c.name
                );
            }
        }
    }

    fn round_trip<T: Stored>(db: &Db) {
        let cx = db.cx();
        for row in T::table(db).rows().values() {
            let doc = render(row, &cx);
            assert_eq!(doc[T::TYPE.pk_property()], serde_json::json!(row.id()));
            let mut copy = row.clone();
            apply_doc(&mut copy, &doc).unwrap();
            assert_eq!(
                copy.db_columns(),
                row.db_columns(),
                "{} {}",
                T::TYPE,
                row.id()
            );
            assert!(
                copy.extra().is_none(),
                "a rendering holds only defaults: {:?}",
                copy.extra()
            );
            assert_eq!(render(&copy, &cx), doc);
        }
    }

    #[test]
    fn every_column_has_a_value_of_its_type() {
        let db = db();
        for ty in EntityType::ALL {
            with_entity!(ty, T => check_columns::<T>(&db));
        }
    }

    #[test]
    fn renderings_apply_back_unchanged() {
        let db = db();
        for ty in EntityType::ALL {
            with_entity!(ty, T => round_trip::<T>(&db));
        }
    }

    #[test]
    fn unmodelled_properties_go_to_the_overflow_map() {
        let mut c = contact::Contact::blank();
        let doc = serde_json::json!({
            "name": "Acme",
            "Phones": [{"Value": "+47 22 00 00 00"}],
            "NoSuchProperty": 1,
            "UpdatedDate": "2030-01-01T00:00:00"
        });
        apply_doc(&mut c, doc.as_object().unwrap()).unwrap();
        assert_eq!(&*c.name, "Acme");
        assert_eq!(c.audit.updated, Ts::MIN, "audit fields are read-only");
        let extra = c.extra().unwrap();
        assert_eq!(extra.len(), 1);
        assert!(extra.contains_key("Phones"));
        let bad = serde_json::json!({"Name": {"x": 1}});
        assert_eq!(
            apply_doc(&mut c, bad.as_object().unwrap())
                .unwrap_err()
                .status
                .as_u16(),
            400
        );
    }
}
