//! One uniform way to work with SuperOffice entities.
//!
//! [`EntityKind`] describes each entity (its list archive, primary-key and last-modified
//! columns, webhook name, how it is deleted); [`Entities`] works with any of them as JSON
//! (what `syncd` uses, driven by config); [`Entity`] and [`EntityClient`] add the generated
//! types on top.
//!
//! ```no_run
//! # async fn demo(client: &superoffice::Client) -> superoffice::Result<()> {
//! use superoffice::entity::Contact;
//! let contacts = client.entity::<Contact>();
//! let mut draft = contacts.default().await?;          // GET /api/v1/Contact/default
//! draft.name = Some("Amadeus AS".into());
//! let saved = contacts.create(&draft).await?;         // POST
//! let id = saved.contact_id.unwrap_or_default();
//! contacts.merge_patch(id, &serde_json::json!({ "Department": "Sales" }), None).await?;
//! # Ok(()) }
//! ```
//!
//! Every write is one [`WriteRequest`] sent by [`Entities::write`]: the operation, query
//! parameters and an optional `If-Unmodified-Since` (the `create`/`update`/`patch`/… methods
//! are shorthands for it). It goes through the runtime like every call: hooks, tenant endpoint,
//! retries (`POST` and `PATCH` never after they may have reached the server), typed errors.
//!
//! ```no_run
//! # async fn demo(client: &superoffice::Client) -> superoffice::Result<()> {
//! use superoffice::entity::{EntityKind, WriteRequest};
//! let saved = client
//!     .entities(EntityKind::Contact)
//!     .write(
//!         &WriteRequest::merge_patch(5, serde_json::json!({ "Department": "Sales" }))
//!             .query("$select", "Name,Department")
//!             .if_unmodified_since(Some(chrono::Utc::now())),
//!     )
//!     .await?;                                         // PATCH /api/v1/Contact/5?%24select=…
//! # Ok(()) }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use futures::Stream;
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::odata::{Query, Row};
use crate::paginate::{self, Source, Strategy};
use crate::{Client, Error, RawRequest, Result};

/// The entities the uniform API covers.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum EntityKind {
    /// Company (`contact` table).
    Contact,
    /// Person.
    Person,
    /// Sale.
    Sale,
    /// Project.
    Project,
    /// Appointment (webhook entity `activity`).
    Appointment,
    /// Document.
    Document,
    /// Ticket (service request).
    Ticket,
    /// Selection.
    Selection,
    /// Product (no GET by id in the REST API).
    Product,
}

/// How an entity disappears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteKind {
    /// Moved to the recycle bin (`DeletedDate` set), restorable, hard-deleted later.
    Soft,
    /// Removed; no tombstone.
    Hard,
    /// Ticket: status set to Deleted (4); still readable.
    Status,
    /// The REST API has no delete for it.
    Unsupported,
}

/// Resolution of an entity's last-modified archive column in filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// A date column: filters compare only the day.
    Day,
    /// A datetime column: `afterTime`/`beforeTime` compare the instant.
    Second,
}

impl EntityKind {
    /// Every kind.
    pub const ALL: [EntityKind; 9] = [
        EntityKind::Contact,
        EntityKind::Person,
        EntityKind::Sale,
        EntityKind::Project,
        EntityKind::Appointment,
        EntityKind::Document,
        EntityKind::Ticket,
        EntityKind::Selection,
        EntityKind::Product,
    ];

    /// The REST name (`/api/v1/{name}`).
    pub fn name(self) -> &'static str {
        match self {
            EntityKind::Contact => "Contact",
            EntityKind::Person => "Person",
            EntityKind::Sale => "Sale",
            EntityKind::Project => "Project",
            EntityKind::Appointment => "Appointment",
            EntityKind::Document => "Document",
            EntityKind::Ticket => "Ticket",
            EntityKind::Selection => "Selection",
            EntityKind::Product => "Product",
        }
    }

    /// The database table (`contact`): foreign keys' `TableName`, webhook `Entity` for most.
    pub fn table(self) -> &'static str {
        match self {
            EntityKind::Contact => "contact",
            EntityKind::Person => "person",
            EntityKind::Sale => "sale",
            EntityKind::Project => "project",
            EntityKind::Appointment => "appointment",
            EntityKind::Document => "document",
            EntityKind::Ticket => "ticket",
            EntityKind::Selection => "selection",
            EntityKind::Product => "product",
        }
    }

    /// The archive provider behind `GET /api/v1/{name}`.
    pub fn list_archive(self) -> &'static str {
        match self {
            EntityKind::Contact => "SimpleContact",
            EntityKind::Person => "Person",
            EntityKind::Sale => "FindSale",
            EntityKind::Project => "FindProject",
            EntityKind::Appointment => "FindAppointment",
            EntityKind::Document => "FindDocument",
            EntityKind::Ticket => "Ticket",
            EntityKind::Selection => "FindSelection",
            EntityKind::Product => "Product",
        }
    }

    /// The primary-key archive column (`contactId`).
    pub fn primary_key(self) -> &'static str {
        match self {
            EntityKind::Contact => "contactId",
            EntityKind::Person => "personId",
            EntityKind::Sale => "saleId",
            EntityKind::Project => "projectId",
            EntityKind::Appointment => "appointmentId",
            EntityKind::Document => "documentId",
            EntityKind::Ticket => "ticketId",
            EntityKind::Selection => "selectionId",
            EntityKind::Product => "productId",
        }
    }

    /// The last-modified archive column (FACTS §3.1).
    pub fn last_modified(self) -> &'static str {
        match self {
            EntityKind::Person => "personUpdatedDate",
            EntityKind::Ticket => "lastChanged",
            _ => "updatedDate",
        }
    }

    /// The created archive column.
    pub fn registered(self) -> &'static str {
        match self {
            EntityKind::Person => "personRegisteredDate",
            EntityKind::Ticket => "createdAt",
            _ => "registeredDate",
        }
    }

    /// How precisely filters on [`EntityKind::last_modified`] compare.
    pub fn last_modified_precision(self) -> Precision {
        match self {
            EntityKind::Ticket => Precision::Second,
            _ => Precision::Day,
        }
    }

    /// The entity's primary-key field in its JSON (`ContactId`).
    pub fn id_field(self) -> &'static str {
        match self {
            EntityKind::Contact => "ContactId",
            EntityKind::Person => "PersonId",
            EntityKind::Sale => "SaleId",
            EntityKind::Project => "ProjectId",
            EntityKind::Appointment => "AppointmentId",
            EntityKind::Document => "DocumentId",
            EntityKind::Ticket => "TicketId",
            EntityKind::Selection => "SelectionId",
            EntityKind::Product => "ProductId",
        }
    }

    /// The webhook `Entity` (`activity` for appointments); `None`: no webhook events exist.
    pub fn webhook_entity(self) -> Option<&'static str> {
        match self {
            EntityKind::Appointment => Some("activity"),
            EntityKind::Selection | EntityKind::Product => None,
            other => Some(other.table()),
        }
    }

    /// The webhook events that announce changes of this entity (FACTS §4.3).
    pub fn webhook_events(self) -> &'static [&'static str] {
        match self {
            EntityKind::Contact => &[
                "contact.created",
                "contact.changed",
                "contact.softdeleted",
                "contact.deleted",
            ],
            EntityKind::Person => &[
                "person.created",
                "person.changed",
                "person.softdeleted",
                "person.deleted",
            ],
            EntityKind::Sale => &["sale.created", "sale.changed", "sale.deleted"],
            EntityKind::Project => &["project.created", "project.changed", "project.deleted"],
            EntityKind::Appointment => {
                &["activity.created", "activity.changed", "activity.deleted"]
            }
            EntityKind::Document => &["document.created", "document.changed", "document.deleted"],
            EntityKind::Ticket => &["ticket.created", "ticket.changed"],
            EntityKind::Selection | EntityKind::Product => &[],
        }
    }

    /// How it is deleted.
    pub fn deletes(self) -> DeleteKind {
        match self {
            EntityKind::Contact | EntityKind::Person => DeleteKind::Soft,
            EntityKind::Ticket => DeleteKind::Status,
            EntityKind::Selection => DeleteKind::Unsupported,
            _ => DeleteKind::Hard,
        }
    }

    /// The recycle-bin archive of soft-deleted rows and its deleted-at column.
    pub fn recycle_archive(self) -> Option<(&'static str, &'static str)> {
        match self {
            EntityKind::Contact => Some(("RecycleContact", "deletedDate")),
            EntityKind::Person => Some(("RecyclePerson", "personDeletedDate")),
            _ => None,
        }
    }

    /// Whether `GET /api/v1/{name}/{id}` exists.
    pub fn supports_get(self) -> bool {
        self != EntityKind::Product
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EntityKind {
    type Err = Error;

    /// Case-insensitive REST name or table name (`contact`, `Contact`, `appointment`).
    fn from_str(s: &str) -> Result<Self> {
        EntityKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = EntityKind::ALL.iter().map(|k| k.name()).collect();
                Error::Config(format!(
                    "unknown entity {s:?}; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// An `If-Modified-Since`/`If-Unmodified-Since` value (HTTP-date, second precision).
fn http_date(at: DateTime<Utc>) -> HeaderValue {
    let system = std::time::SystemTime::UNIX_EPOCH
        + std::time::Duration::from_secs(at.timestamp().max(0) as u64);
    HeaderValue::from_str(&httpdate::fmt_http_date(system))
        .expect("an HTTP date is a valid header value")
}

/// Any entity, as JSON. Obtain with [`Client::entities`].
#[derive(Clone, Copy, Debug)]
pub struct Entities<'a> {
    client: &'a Client,
    kind: EntityKind,
}

impl Client {
    /// The uniform entity API for `kind`, with JSON bodies.
    pub fn entities(&self, kind: EntityKind) -> Entities<'_> {
        Entities { client: self, kind }
    }

    /// The uniform entity API with the generated types of `E`.
    pub fn entity<E: Entity>(&self) -> EntityClient<'_, E> {
        EntityClient {
            inner: self.entities(E::KIND),
            _entity: PhantomData,
        }
    }
}

impl<'a> Entities<'a> {
    /// Which entity.
    pub fn kind(&self) -> EntityKind {
        self.kind
    }

    fn by_id(&self, id: i32) -> String {
        format!("/api/v1/{}/{id}", self.kind.name())
    }

    /// Operation ids for tracing and retry opt-ins, shaped like the generated ones
    /// (`contact_get`). Interned: at most one allocation per entity and verb, ever.
    fn op(&self, verb: &str) -> &'static str {
        static NAMES: std::sync::OnceLock<
            std::sync::Mutex<std::collections::HashMap<String, &'static str>>,
        > = std::sync::OnceLock::new();
        let name = format!("{}_{verb}", self.kind.table());
        let mut names = NAMES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        names
            .entry(name)
            .or_insert_with_key(|n| Box::leak(n.clone().into_boxed_str()))
    }

    async fn json(&self, verb: &str, request: RawRequest) -> Result<Value> {
        let response = self.client.send_raw(self.op(verb), request).await?;
        let bytes = response.bytes().await.map_err(Error::Transport)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            message: e.to_string(),
            excerpt: String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
        })
    }

    /// `GET /api/v1/{Entity}/{id}`.
    pub async fn get(&self, id: i32) -> Result<Value> {
        if !self.kind.supports_get() {
            return Err(Error::InvalidRequest(format!(
                "{} has no GET by id in the REST API",
                self.kind
            )));
        }
        self.json("get", RawRequest::new(Method::GET, self.by_id(id)))
            .await
    }

    /// `GET` with `If-Modified-Since`: `None` when unchanged since `since` (304).
    pub async fn get_if_modified_since(
        &self,
        id: i32,
        since: DateTime<Utc>,
    ) -> Result<Option<Value>> {
        let request = RawRequest::new(Method::GET, self.by_id(id)).header(
            HeaderName::from_static("if-modified-since"),
            http_date(since),
        );
        match self.json("get", request).await {
            Ok(value) => Ok(Some(value)),
            Err(Error::NotModified) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/v1/{Entity}/default`: a new entity pre-filled from preferences.
    pub async fn default(&self) -> Result<Value> {
        self.json(
            "default",
            RawRequest::new(Method::GET, format!("/api/v1/{}/default", self.kind.name())),
        )
        .await
    }

    /// Sends one write (see [`WriteRequest`]); answers the entity the server saved, `None` for
    /// a delete. A change after `if_unmodified_since` is [`Error::PreconditionFailed`], a failed
    /// JSON Patch `test` is [`Error::Conflict`].
    pub async fn write(&self, request: &WriteRequest) -> Result<Option<Value>> {
        if matches!(request.op, WriteOp::Delete(_))
            && self.kind.deletes() == DeleteKind::Unsupported
        {
            return Err(Error::InvalidRequest(format!(
                "{} cannot be deleted through the REST API",
                self.kind
            )));
        }
        let mut raw = RawRequest::new(request.method(), request.path_and_query(self.kind));
        if let Some(at) = request.if_unmodified_since {
            raw = raw.header(
                HeaderName::from_static("if-unmodified-since"),
                http_date(at),
            );
        }
        if let (Some(content_type), Some(body)) = (request.content_type(), request.body()) {
            raw = raw.json(content_type, body)?;
        }
        let verb = request.verb();
        if matches!(request.op, WriteOp::Delete(_)) {
            self.client.send_raw(self.op(verb), raw).await?;
            return Ok(None);
        }
        self.json(verb, raw).await.map(Some)
    }

    /// `POST /api/v1/{Entity}` with a complete body; answers the saved entity.
    pub async fn create(&self, body: &Value) -> Result<Value> {
        self.write_answering(&WriteRequest::post(body.clone()))
            .await
    }

    /// Starts from `/default`, merges `fields` into it (JSON merge patch rules) and POSTs it.
    pub async fn create_from_default(&self, fields: &Value) -> Result<Value> {
        let mut body = self.default().await?;
        merge(&mut body, fields);
        self.create(&body).await
    }

    /// `PUT /api/v1/{Entity}/{id}` (replaces the entity); with `if_unmodified_since`, a change
    /// after that time is [`Error::PreconditionFailed`].
    pub async fn update(
        &self,
        id: i32,
        body: &Value,
        if_unmodified_since: Option<DateTime<Utc>>,
    ) -> Result<Value> {
        self.write_answering(
            &WriteRequest::put(id, body.clone()).if_unmodified_since(if_unmodified_since),
        )
        .await
    }

    /// `PATCH` with JSON Patch operations (`add`, `replace`, `remove`, `test`); a failed `test`
    /// is [`Error::Conflict`].
    pub async fn patch(
        &self,
        id: i32,
        operations: &Value,
        if_unmodified_since: Option<DateTime<Utc>>,
    ) -> Result<Value> {
        self.write_answering(
            &WriteRequest::json_patch(id, operations.clone())
                .if_unmodified_since(if_unmodified_since),
        )
        .await
    }

    /// `PATCH` with a JSON merge patch (`{"Name": "New"}`).
    pub async fn merge_patch(
        &self,
        id: i32,
        patch: &Value,
        if_unmodified_since: Option<DateTime<Utc>>,
    ) -> Result<Value> {
        self.write_answering(
            &WriteRequest::merge_patch(id, patch.clone()).if_unmodified_since(if_unmodified_since),
        )
        .await
    }

    /// `DELETE /api/v1/{Entity}/{id}` (soft for contacts and persons, a status for tickets).
    pub async fn delete(&self, id: i32, if_unmodified_since: Option<DateTime<Utc>>) -> Result<()> {
        self.write(&WriteRequest::delete(id).if_unmodified_since(if_unmodified_since))
            .await
            .map(|_| ())
    }

    /// [`Entities::write`] for the writes that answer the entity.
    async fn write_answering(&self, request: &WriteRequest) -> Result<Value> {
        Ok(self.write(request).await?.unwrap_or(Value::Null))
    }

    /// Rows of the entity's list archive, keyset-paged on the primary key (pages of 1000).
    pub fn list(&self, query: Query) -> impl Stream<Item = Result<Row>> + 'a {
        self.list_with(
            query,
            1000,
            Strategy::Keyset {
                key: self.kind.primary_key().to_string(),
            },
        )
    }

    /// Rows of the entity's list archive with an explicit page size and strategy.
    pub fn list_with(
        &self,
        query: Query,
        page_size: u32,
        strategy: Strategy,
    ) -> impl Stream<Item = Result<Row>> + 'a {
        paginate::rows(
            self.client,
            Source::List(self.kind.name().to_string()),
            query,
            page_size,
            strategy,
        )
    }
}

/// The operation of a [`WriteRequest`].
#[derive(Debug, Clone, PartialEq)]
enum WriteOp {
    Post(Value),
    Put(i32, Value),
    JsonPatch(i32, Value),
    MergePatch(i32, Value),
    Delete(i32),
}

/// One entity write for [`Entities::write`]: the operation with its body, query parameters
/// (percent-encoded into the path) and an optional `If-Unmodified-Since`.
///
/// ```
/// use superoffice::entity::{EntityKind, WriteRequest};
/// let request = WriteRequest::delete(3).query("force", "true");
/// assert_eq!(request.path_and_query(EntityKind::Sale), "/api/v1/Sale/3?force=true");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRequest {
    op: WriteOp,
    query: Vec<(String, String)>,
    if_unmodified_since: Option<DateTime<Utc>>,
}

impl WriteRequest {
    fn new(op: WriteOp) -> Self {
        WriteRequest {
            op,
            query: Vec::new(),
            if_unmodified_since: None,
        }
    }

    /// `POST /api/v1/{Entity}` with a complete body (start from `/default`).
    pub fn post(body: Value) -> Self {
        Self::new(WriteOp::Post(body))
    }

    /// `PUT /api/v1/{Entity}/{id}`: replaces the entity.
    pub fn put(id: i32, body: Value) -> Self {
        Self::new(WriteOp::Put(id, body))
    }

    /// `PATCH /api/v1/{Entity}/{id}` with JSON Patch operations (`application/json-patch+json`).
    pub fn json_patch(id: i32, operations: Value) -> Self {
        Self::new(WriteOp::JsonPatch(id, operations))
    }

    /// `PATCH /api/v1/{Entity}/{id}` with a JSON merge patch (`application/merge-patch+json`).
    pub fn merge_patch(id: i32, patch: Value) -> Self {
        Self::new(WriteOp::MergePatch(id, patch))
    }

    /// `DELETE /api/v1/{Entity}/{id}`.
    pub fn delete(id: i32) -> Self {
        Self::new(WriteOp::Delete(id))
    }

    /// Adds a query parameter (`$select`, …); parameters keep their order.
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// Adds query parameters.
    pub fn queries<K: Into<String>, V: Into<String>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.query
            .extend(pairs.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sends `If-Unmodified-Since` (second precision): a change after `at` is
    /// [`Error::PreconditionFailed`] and nothing is written. `None` sends none.
    pub fn if_unmodified_since(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.if_unmodified_since = at;
        self
    }

    /// The record the write addresses (`None` for a `POST`).
    pub fn id(&self) -> Option<i32> {
        match &self.op {
            WriteOp::Post(_) => None,
            WriteOp::Put(id, _)
            | WriteOp::JsonPatch(id, _)
            | WriteOp::MergePatch(id, _)
            | WriteOp::Delete(id) => Some(*id),
        }
    }

    /// The HTTP method.
    pub fn method(&self) -> Method {
        match &self.op {
            WriteOp::Post(_) => Method::POST,
            WriteOp::Put(..) => Method::PUT,
            WriteOp::JsonPatch(..) | WriteOp::MergePatch(..) => Method::PATCH,
            WriteOp::Delete(_) => Method::DELETE,
        }
    }

    /// The body's content type (`None` for a delete).
    pub fn content_type(&self) -> Option<&'static str> {
        match &self.op {
            WriteOp::Post(_) | WriteOp::Put(..) => Some("application/json"),
            WriteOp::JsonPatch(..) => Some("application/json-patch+json"),
            WriteOp::MergePatch(..) => Some("application/merge-patch+json"),
            WriteOp::Delete(_) => None,
        }
    }

    /// The body (`None` for a delete).
    pub fn body(&self) -> Option<&Value> {
        match &self.op {
            WriteOp::Post(b)
            | WriteOp::Put(_, b)
            | WriteOp::JsonPatch(_, b)
            | WriteOp::MergePatch(_, b) => Some(b),
            WriteOp::Delete(_) => None,
        }
    }

    /// The `If-Unmodified-Since` instant, if any.
    pub fn precondition(&self) -> Option<DateTime<Utc>> {
        self.if_unmodified_since
    }

    /// `/api/v1/{Entity}[/{id}][?query]`, the query form-urlencoded.
    pub fn path_and_query(&self, kind: EntityKind) -> String {
        let base = match self.id() {
            None => format!("/api/v1/{}", kind.name()),
            Some(id) => format!("/api/v1/{}/{id}", kind.name()),
        };
        if self.query.is_empty() {
            return base;
        }
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.query)
            .finish();
        format!("{base}?{encoded}")
    }

    /// The request as text (method and path, `If-Unmodified-Since`, content type, the body
    /// pretty-printed), for dry runs and logs.
    pub fn render(&self, kind: EntityKind) -> String {
        let mut text = format!("{} {}", self.method(), self.path_and_query(kind));
        if let Some(at) = self.if_unmodified_since {
            let date = http_date(at);
            text.push_str("\nIf-Unmodified-Since: ");
            text.push_str(date.to_str().unwrap_or_default());
        }
        if let (Some(content_type), Some(body)) = (self.content_type(), self.body()) {
            text.push_str(&format!(
                "\nContent-Type: {content_type}\n\n{}",
                serde_json::to_string_pretty(body).unwrap_or_default()
            ));
        }
        text
    }

    /// The verb of the operation id (`contact_post`, `contact_merge_patch`, …), shaped like
    /// the generated ones so retry opt-ins name them the same way.
    fn verb(&self) -> &'static str {
        match &self.op {
            WriteOp::Post(_) => "post",
            WriteOp::Put(..) => "put",
            WriteOp::JsonPatch(..) => "patch",
            WriteOp::MergePatch(..) => "merge_patch",
            WriteOp::Delete(_) => "delete",
        }
    }
}

/// JSON merge patch (RFC 7396) of `patch` into `target`.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// An entity with generated types: the read type (`GET`, what `POST`/`PUT`/`PATCH` answer) and
/// the write type (`POST`/`PUT` bodies, `/default`).
pub trait Entity: Send + Sync + 'static {
    /// Which entity.
    const KIND: EntityKind;
    /// What the server answers (`…EntityWithLinks`).
    type Read: DeserializeOwned + Serialize + Send;
    /// What is sent (`…Entity`).
    type Write: DeserializeOwned + Serialize + Send + Sync;
}

/// The uniform entity API with generated types. Obtain with [`Client::entity`].
#[derive(Debug)]
pub struct EntityClient<'a, E> {
    inner: Entities<'a>,
    _entity: PhantomData<fn() -> E>,
}

impl<E> Clone for EntityClient<'_, E> {
    fn clone(&self) -> Self {
        EntityClient {
            inner: self.inner,
            _entity: PhantomData,
        }
    }
}

fn decode<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::Decode {
        message: e.to_string(),
        excerpt: String::new(),
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value)
        .map_err(|e| Error::InvalidRequest(format!("serialising the body: {e}")))
}

impl<'a, E: Entity> EntityClient<'a, E> {
    /// The untyped API underneath.
    pub fn untyped(&self) -> Entities<'a> {
        self.inner
    }

    /// `GET /api/v1/{Entity}/{id}`.
    pub async fn get(&self, id: i32) -> Result<E::Read> {
        decode(self.inner.get(id).await?)
    }

    /// `GET` with `If-Modified-Since`: `None` when unchanged (304).
    pub async fn get_if_modified_since(
        &self,
        id: i32,
        since: DateTime<Utc>,
    ) -> Result<Option<E::Read>> {
        self.inner
            .get_if_modified_since(id, since)
            .await?
            .map(decode)
            .transpose()
    }

    /// `GET /api/v1/{Entity}/default`.
    pub async fn default(&self) -> Result<E::Write> {
        decode(self.inner.default().await?)
    }

    /// `POST` (start from [`EntityClient::default`]).
    pub async fn create(&self, body: &E::Write) -> Result<E::Read> {
        decode(self.inner.create(&encode(body)?).await?)
    }

    /// `/default`, then `fill`, then `POST`.
    pub async fn create_with(&self, fill: impl FnOnce(&mut E::Write)) -> Result<E::Read> {
        let mut body = self.default().await?;
        fill(&mut body);
        self.create(&body).await
    }

    /// `PUT` (replaces the entity).
    pub async fn update(
        &self,
        id: i32,
        body: &E::Write,
        if_unmodified_since: Option<DateTime<Utc>>,
    ) -> Result<E::Read> {
        decode(
            self.inner
                .update(id, &encode(body)?, if_unmodified_since)
                .await?,
        )
    }

    /// `PATCH` with JSON Patch operations.
    pub async fn patch(
        &self,
        id: i32,
        operations: &[crate::types::JsonPatch],
        if_unmodified_since: Option<DateTime<Utc>>,
    ) -> Result<E::Read> {
        decode(
            self.inner
                .patch(id, &encode(&operations)?, if_unmodified_since)
                .await?,
        )
    }

    /// `PATCH` with a JSON merge patch.
    pub async fn merge_patch(
        &self,
        id: i32,
        patch: &Value,
        if_unmodified_since: Option<DateTime<Utc>>,
    ) -> Result<E::Read> {
        decode(
            self.inner
                .merge_patch(id, patch, if_unmodified_since)
                .await?,
        )
    }

    /// `DELETE`.
    pub async fn delete(&self, id: i32, if_unmodified_since: Option<DateTime<Utc>>) -> Result<()> {
        self.inner.delete(id, if_unmodified_since).await
    }

    /// Rows of the list archive, keyset-paged on the primary key.
    pub fn list(&self, query: Query) -> impl Stream<Item = Result<Row>> + 'a {
        self.inner.list(query)
    }
}

/// Converts what the server answered into the write type (for GET → modify → PUT).
pub fn to_write<E: Entity>(read: &E::Read) -> Result<E::Write> {
    let mut value = encode(read)?;
    if let Value::Object(map) = &mut value {
        map.remove("_Links");
    }
    decode(value)
}

macro_rules! entities {
    ($($(#[$doc:meta])* $name:ident: $feature:literal => $read:ident, $write:ident;)*) => {
        $(
            $(#[$doc])*
            #[cfg(any(feature = $feature, feature = "full"))]
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            #[cfg(any(feature = $feature, feature = "full"))]
            impl Entity for $name {
                const KIND: EntityKind = EntityKind::$name;
                type Read = crate::types::$read;
                type Write = crate::types::$write;
            }
        )*
    };
}

entities! {
    /// Company.
    Contact: "contact" => ContactEntityWithLinks, ContactEntity;
    /// Person.
    Person: "person" => PersonEntityWithLinks, PersonEntity;
    /// Sale.
    Sale: "sale" => SaleEntityWithLinks, SaleEntity;
    /// Project.
    Project: "project" => ProjectEntityWithLinks, ProjectEntity;
    /// Appointment.
    Appointment: "appointment" => AppointmentEntityWithLinks, AppointmentEntity;
    /// Document.
    Document: "document" => DocumentEntityWithLinks, DocumentEntity;
    /// Ticket.
    Ticket: "ticket" => TicketEntityWithLinks, TicketEntity;
    /// Selection (no DELETE in the REST API).
    Selection: "selection" => SelectionEntityWithLinks, SelectionEntity;
    /// Product (no GET by id in the REST API).
    Product: "product" => Product, Product;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_parse_and_describe_themselves() {
        assert_eq!(
            "contact".parse::<EntityKind>().unwrap(),
            EntityKind::Contact
        );
        assert_eq!(
            "APPOINTMENT".parse::<EntityKind>().unwrap(),
            EntityKind::Appointment
        );
        assert!(
            "widget"
                .parse::<EntityKind>()
                .unwrap_err()
                .to_string()
                .contains("expected one of")
        );
        assert_eq!(EntityKind::Appointment.webhook_entity(), Some("activity"));
        assert_eq!(EntityKind::Selection.webhook_entity(), None);
        assert_eq!(EntityKind::Person.last_modified(), "personUpdatedDate");
        assert_eq!(
            EntityKind::Ticket.last_modified_precision(),
            Precision::Second
        );
        assert_eq!(
            EntityKind::Ticket.webhook_events(),
            ["ticket.created", "ticket.changed"]
        );
        assert_eq!(
            EntityKind::Contact.recycle_archive(),
            Some(("RecycleContact", "deletedDate"))
        );
        assert_eq!(EntityKind::Selection.deletes(), DeleteKind::Unsupported);
    }

    #[test]
    fn merge_follows_rfc_7396() {
        let mut target = json!({ "a": 1, "b": { "c": 2, "d": 3 }, "e": [1] });
        merge(
            &mut target,
            &json!({ "a": null, "b": { "c": 9 }, "e": [2], "f": "new" }),
        );
        assert_eq!(
            target,
            json!({ "b": { "c": 9, "d": 3 }, "e": [2], "f": "new" })
        );
    }

    #[test]
    fn write_requests_describe_themselves() {
        let at = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let patch = WriteRequest::json_patch(
            5,
            json!([{ "op": "replace", "path": "/Name", "value": "B" }]),
        )
        .query("$select", "Name,Department")
        .if_unmodified_since(Some(at));
        assert_eq!(patch.method(), Method::PATCH);
        assert_eq!(patch.id(), Some(5));
        assert_eq!(patch.precondition(), Some(at));
        assert_eq!(
            patch.path_and_query(EntityKind::Contact),
            "/api/v1/Contact/5?%24select=Name%2CDepartment"
        );
        let text = patch.render(EntityKind::Contact);
        assert!(
            text.starts_with("PATCH /api/v1/Contact/5?%24select=Name%2CDepartment\n"),
            "{text}"
        );
        assert!(text.contains("\nIf-Unmodified-Since: Wed, 21 Oct 2015 07:28:00 GMT\n"));
        assert!(text.contains("\nContent-Type: application/json-patch+json\n\n["));
        assert_eq!(patch.verb(), "patch");

        let post = WriteRequest::post(json!({ "Name": "A" }));
        assert_eq!(post.id(), None);
        assert_eq!(post.path_and_query(EntityKind::Sale), "/api/v1/Sale");
        assert_eq!(post.content_type(), Some("application/json"));
        assert_eq!(
            WriteRequest::merge_patch(2, json!({})).content_type(),
            Some("application/merge-patch+json")
        );
        assert_eq!(
            WriteRequest::merge_patch(2, json!({})).verb(),
            "merge_patch"
        );
        assert_eq!(WriteRequest::put(2, json!({})).method(), Method::PUT);
        let delete = WriteRequest::delete(3).queries([("a", "1"), ("b", "x y")]);
        assert_eq!(delete.body(), None);
        assert_eq!(delete.content_type(), None);
        assert_eq!(
            delete.render(EntityKind::Sale),
            "DELETE /api/v1/Sale/3?a=1&b=x+y"
        );
    }

    #[test]
    fn http_dates_have_second_precision() {
        let at = DateTime::parse_from_rfc3339("2015-10-21T07:28:00.750Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(http_date(at), "Wed, 21 Oct 2015 07:28:00 GMT");
    }
}
