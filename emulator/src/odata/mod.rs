//! OData archive queries: `GET /api/v1/{Entity}` and `GET|POST /api/v1/Archive/{provider}`.
//!
//! A [`Query`] is parsed from `$select`, `$filter`, `$orderBy` (or `$orderby`), `$top` and
//! `$skip`, run against a provider's rows and rendered as the slim envelope
//! `{"odata.metadata":…,"odata.nextLink":null,"value":[{"PrimaryKey":"25","EntityName":"contact",…}]}`.
//!
//! Ordering by the primary key (or no ordering) walks the table's `BTreeMap` from the first key
//! the filter allows and stops after one page, so keyset paging is O(page) at any table size.
//! Other orderings scan and sort; their sorted key list is cached per query until the table
//! changes.

pub mod filter;

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::clock::Ts;
use crate::config::ODataConfig;
use crate::error::SoError;
use crate::foreign::{FK_COLUMNS, FkRow};
use crate::model::{Cell, Column, Cx, Entity, EntityType};
use crate::store::{Db, Stored};
use crate::with_entity;
use filter::{EvalCx, Expr};

/// Which rows a provider lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Live rows of an entity (soft-deleted ones excluded).
    Entity(EntityType),
    /// Soft-deleted contacts or persons.
    Recycle(EntityType),
    /// Foreign keys.
    ForeignKeys,
}

/// An archive provider the emulator implements.
#[derive(Debug, Clone, Copy)]
pub struct Provider {
    /// Provider name as SuperOffice spells it.
    pub name: &'static str,
    /// Rows it lists.
    pub source: Source,
}

/// Every provider, by name.
pub static PROVIDERS: &[Provider] = &[
    Provider {
        name: "SimpleContact",
        source: Source::Entity(EntityType::Contact),
    },
    Provider {
        name: "Person",
        source: Source::Entity(EntityType::Person),
    },
    Provider {
        name: "FindSale",
        source: Source::Entity(EntityType::Sale),
    },
    Provider {
        name: "FindProject",
        source: Source::Entity(EntityType::Project),
    },
    Provider {
        name: "FindAppointment",
        source: Source::Entity(EntityType::Appointment),
    },
    Provider {
        name: "FindDocument",
        source: Source::Entity(EntityType::Document),
    },
    Provider {
        name: "Ticket",
        source: Source::Entity(EntityType::Ticket),
    },
    Provider {
        name: "FindSelection",
        source: Source::Entity(EntityType::Selection),
    },
    Provider {
        name: "RecycleContact",
        source: Source::Recycle(EntityType::Contact),
    },
    Provider {
        name: "RecyclePerson",
        source: Source::Recycle(EntityType::Person),
    },
    Provider {
        name: "ForeignKeys",
        source: Source::ForeignKeys,
    },
];

/// Looks a provider up by name (case-insensitive).
pub fn provider(name: &str) -> Option<Provider> {
    PROVIDERS
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .copied()
}

impl Provider {
    /// The columns of the provider.
    pub fn columns(&self) -> &'static [Column] {
        match self.source {
            Source::Entity(t) | Source::Recycle(t) => with_entity!(t, T => T::columns()),
            Source::ForeignKeys => FK_COLUMNS,
        }
    }

    /// The primary-key column.
    pub fn pk(&self) -> &'static str {
        match self.source {
            Source::Entity(t) | Source::Recycle(t) => t.pk_column(),
            Source::ForeignKeys => "foreignkeyId",
        }
    }

    /// `EntityName` of its rows.
    pub fn entity_name(&self) -> &'static str {
        match self.source {
            Source::Entity(t) | Source::Recycle(t) => t.table(),
            Source::ForeignKeys => "foreignkey",
        }
    }

    /// Columns returned when `$select` is absent.
    pub fn default_select(&self) -> Vec<&'static str> {
        let cols: &[&str] = match self.source {
            Source::Entity(EntityType::Contact) => {
                &["contactId", "name", "department", "updatedDate"]
            }
            Source::Recycle(EntityType::Contact) => &["contactId", "name", "deletedDate"],
            Source::Entity(EntityType::Person) => {
                &["personId", "fullName", "contactId", "personUpdatedDate"]
            }
            Source::Recycle(EntityType::Person) => &["personId", "fullName", "personDeletedDate"],
            Source::Entity(EntityType::Sale) => &["saleId", "heading", "amount", "updatedDate"],
            Source::Entity(EntityType::Project) => &["projectId", "name", "updatedDate"],
            Source::Entity(EntityType::Appointment) => {
                &["appointmentId", "date", "text", "updatedDate"]
            }
            Source::Entity(EntityType::Document) => &["documentId", "subject", "updatedDate"],
            Source::Entity(EntityType::Ticket) => &["ticketId", "title", "lastChanged"],
            Source::Entity(EntityType::Selection) => &["selectionId", "name", "updatedDate"],
            _ => &[
                "foreignkeyId",
                "appName",
                "deviceName",
                "keyName",
                "keyValue",
                "tableName",
                "recordId",
            ],
        };
        cols.to_vec()
    }
}

/// A parsed archive query.
#[derive(Debug, Clone)]
pub struct Query {
    /// Output columns: (name as requested, column).
    pub select: Vec<(String, Column)>,
    /// Filter.
    pub filter: Option<Expr>,
    /// Sort keys: (column, descending).
    pub order: Vec<(Column, bool)>,
    /// Page size.
    pub top: usize,
    /// Rows to skip.
    pub skip: usize,
    /// Raw `$filter` and `$orderBy` text (cache key).
    key: String,
}

impl Query {
    /// Parses the OData parameters (`$select`, `$filter`, `$orderBy`/`$orderby`, `$top`,
    /// `$skip`, `$mode`, `$format`) for a provider.
    pub fn parse(
        p: &Provider,
        params: &[(String, String)],
        settings: &ODataConfig,
    ) -> Result<Query, SoError> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if let Some(mode) = get("$mode")
            && !mode.eq_ignore_ascii_case("slim")
        {
            return Err(SoError::bad_request(format!(
                "$mode={mode} is not supported by the emulator; use Slim"
            )));
        }
        if let Some(f) = get("$format")
            && !f.eq_ignore_ascii_case("json")
        {
            return Err(SoError::bad_request(
                "Only $format=json is supported by the emulator",
            ));
        }
        let columns = p.columns();
        let resolve = |name: &str| {
            filter::find_column(columns, name).ok_or_else(|| {
                SoError::bad_request(format!(
                    "Unknown column '{name}' in provider {}. Known columns: {}",
                    p.name,
                    columns
                        .iter()
                        .map(|c| c.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        };
        let select_names: Vec<String> =
            match get("$select").map(str::trim).filter(|s| !s.is_empty()) {
                Some(s) => s
                    .split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect(),
                None => p.default_select().into_iter().map(String::from).collect(),
            };
        let mut select = Vec::new();
        for name in select_names {
            if name.contains('(') || name.contains(':') {
                return Err(SoError::bad_request(format!(
                    "Aggregates and modifiers ('{name}') are not supported by the emulator"
                )));
            }
            let c = resolve(&name)?;
            select.push((name, c));
        }
        let filter_text = get("$filter").unwrap_or("");
        let filter = filter::parse(filter_text, columns)?;
        let order_text = get("$orderBy").unwrap_or("");
        let mut order = Vec::new();
        for part in order_text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let mut words = part.split_whitespace();
            let name = words.next().unwrap_or_default();
            let desc = match words.next().map(str::to_ascii_lowercase).as_deref() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(SoError::bad_request(format!(
                        "Bad sort direction '{other}' in $orderBy"
                    )));
                }
            };
            order.push((resolve(name)?, desc));
        }
        let num = |name: &str| -> Result<Option<usize>, SoError> {
            match get(name).map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(v) => v.parse::<usize>().map(Some).map_err(|_| {
                    SoError::bad_request(format!("{name} must be a non-negative integer"))
                }),
            }
        };
        let top = num("$top")?
            .unwrap_or(settings.default_top as usize)
            .min(settings.max_top as usize);
        let skip = num("$skip")?.unwrap_or(0);
        Ok(Query {
            select,
            filter,
            order,
            top,
            skip,
            key: format!("{filter_text}\u{1}{order_text}"),
        })
    }
}

/// What a row must offer to be listed.
pub trait Row {
    /// Primary key.
    fn pk(&self) -> i32;
    /// One cell.
    fn cell<'a>(&'a self, col: &str, cx: &Cx<'a>) -> Cell<'a>;
}

impl<T: Entity> Row for T {
    fn pk(&self) -> i32 {
        self.id()
    }
    fn cell<'a>(&'a self, col: &str, cx: &Cx<'a>) -> Cell<'a> {
        Entity::cell(self, col, cx)
    }
}

impl Row for FkRow {
    fn pk(&self) -> i32 {
        self.key.id
    }
    fn cell<'a>(&'a self, col: &str, _cx: &Cx<'a>) -> Cell<'a> {
        FkRow::cell(self, col)
    }
}

/// Cached sorted keys: (source, query) → (table version, ids).
type SortEntries = HashMap<(Source, String), (u64, std::sync::Arc<Vec<i32>>)>;

/// Sorted-key cache for orderings other than the primary key.
#[derive(Debug, Default)]
pub struct SortCache {
    entries: Mutex<SortEntries>,
}

impl SortCache {
    fn get(&self, source: Source, key: &str, version: u64) -> Option<std::sync::Arc<Vec<i32>>> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(source, key.to_string()))
            .filter(|(v, _)| *v == version)
            .map(|(_, ids)| ids.clone())
    }

    fn put(&self, source: Source, key: &str, version: u64, ids: std::sync::Arc<Vec<i32>>) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 32 {
            map.clear();
        }
        map.insert((source, key.to_string()), (version, ids));
    }
}

/// Everything a query needs besides the rows.
#[derive(Debug, Clone, Copy)]
pub struct RunCx<'a> {
    /// Filter evaluation context.
    pub eval: EvalCx<'a>,
    /// Sorted-key cache.
    pub cache: &'a SortCache,
    /// `odata.metadata` base (the tenant URL).
    pub tenant_url: &'a str,
    /// Request path and query for `odata.nextLink` (when enabled).
    pub request_url: &'a str,
}

/// Runs a query and renders the slim envelope; also returns the number of rows.
pub fn run(db: &Db, p: &Provider, q: &Query, rcx: &RunCx<'_>) -> (String, usize) {
    let cx = db.cx();
    match p.source {
        Source::Entity(t) => with_entity!(t, T => {
            let table = T::table(db);
            page_of(table.rows(), |r: &T| r.deleted_at().is_none(), p, q, rcx, &cx, table.version())
        }),
        Source::Recycle(t) => with_entity!(t, T => {
            let table = T::table(db);
            page_of(table.rows(), |r: &T| r.deleted_at().is_some(), p, q, rcx, &cx, table.version())
        }),
        Source::ForeignKeys => {
            // `keyValue eq/oneOf …` goes through the value index, as on a real server.
            let indexed = filter::str_candidates(q.filter.as_ref(), "keyValue")
                .map(|values| db.foreign.archive_rows_with_values(&values));
            page_of(
                indexed
                    .as_ref()
                    .unwrap_or_else(|| db.foreign.archive_rows()),
                |_: &FkRow| true,
                p,
                q,
                rcx,
                &cx,
                db.foreign.version(),
            )
        }
    }
}

fn page_of<R: Row>(
    rows: &BTreeMap<i32, R>,
    include: impl Fn(&R) -> bool,
    p: &Provider,
    q: &Query,
    rcx: &RunCx<'_>,
    cx: &Cx<'_>,
    version: u64,
) -> (String, usize) {
    let pk = p.pk();
    let matches = |r: &R| {
        include(r)
            && q.filter
                .as_ref()
                .is_none_or(|f| filter::eval(f, &|c| r.cell(c, cx), &rcx.eval))
    };
    let pk_order = match q.order.as_slice() {
        [] => Some(false),
        [(c, desc)] if c.name == pk => Some(*desc),
        _ => None,
    };
    let mut page: Vec<&R> = Vec::with_capacity(q.top.min(4096));
    if let Some(desc) = pk_order {
        let (lo, hi) = filter::pk_bounds(q.filter.as_ref(), pk);
        let lo = lo.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        let hi = hi.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        if lo <= hi && q.top > 0 {
            let range = rows.range(lo..=hi).map(|(_, r)| r);
            let it: Box<dyn Iterator<Item = &R>> = if desc {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
            page.extend(it.filter(|r| matches(r)).skip(q.skip).take(q.top));
        }
    } else {
        let ids = match rcx.cache.get(p.source, &q.key, version) {
            Some(ids) => ids,
            None => {
                let ids = std::sync::Arc::new(sorted_ids(rows, &matches, q, cx));
                rcx.cache.put(p.source, &q.key, version, ids.clone());
                ids
            }
        };
        page.extend(
            ids.iter()
                .skip(q.skip)
                .take(q.top)
                .filter_map(|id| rows.get(id)),
        );
    }
    (render(&page, p, q, rcx, cx), page.len())
}

#[derive(Debug, PartialEq, PartialOrd)]
enum Key {
    Null,
    Num(f64),
    Text(String),
}

fn sort_key(c: Cell<'_>) -> Key {
    match c {
        Cell::Null => Key::Null,
        Cell::Int(i) => Key::Num(i as f64),
        Cell::Dec(d) => Key::Num(d),
        Cell::Bool(b) => Key::Num(if b { 1.0 } else { 0.0 }),
        Cell::Time(t) => Key::Num(t.0 as f64),
        Cell::Str(s) | Cell::Item(_, s) => Key::Text(s.to_lowercase()),
    }
}

fn sorted_ids<R: Row>(
    rows: &BTreeMap<i32, R>,
    matches: &dyn Fn(&R) -> bool,
    q: &Query,
    cx: &Cx<'_>,
) -> Vec<i32> {
    let mut keyed: Vec<(Vec<Key>, i32)> = rows
        .values()
        .filter(|r| matches(r))
        .map(|r| {
            let keys = q
                .order
                .iter()
                .map(|(c, _)| sort_key(r.cell(c.name, cx)))
                .collect();
            (keys, r.pk())
        })
        .collect();
    keyed.sort_by(|(a, ida), (b, idb)| {
        for (i, (_, desc)) in q.order.iter().enumerate() {
            let o = a[i].partial_cmp(&b[i]).unwrap_or(Ordering::Equal);
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        ida.cmp(idb)
    });
    keyed.into_iter().map(|(_, id)| id).collect()
}

fn render<R: Row>(page: &[&R], p: &Provider, q: &Query, rcx: &RunCx<'_>, cx: &Cx<'_>) -> String {
    let mut out = String::with_capacity(64 + page.len() * (40 + q.select.len() * 32));
    out.push_str("{\"odata.metadata\":");
    push_json_str(
        &mut out,
        &format!("{}/api/v1/archive/$metadata", rcx.tenant_url),
    );
    out.push_str(",\"odata.nextLink\":");
    let full = q.top > 0 && page.len() == q.top;
    if rcx.eval.settings.next_link && full {
        push_json_str(&mut out, &next_link(rcx.request_url, q.skip + q.top));
    } else {
        out.push_str("null");
    }
    out.push_str(",\"value\":[");
    for (i, r) in page.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"PrimaryKey\":\"{}\",\"EntityName\":\"{}\"",
            r.pk(),
            p.entity_name()
        );
        for (name, c) in &q.select {
            out.push(',');
            push_json_str(&mut out, name);
            out.push(':');
            push_cell(&mut out, r.cell(c.name, cx), cx.utc);
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

fn next_link(request_url: &str, skip: usize) -> String {
    let (path, query) = request_url.split_once('?').unwrap_or((request_url, ""));
    let mut parts: Vec<String> = query
        .split('&')
        .filter(|kv| {
            !kv.is_empty()
                && !kv.to_ascii_lowercase().starts_with("%24skip=")
                && !kv.to_ascii_lowercase().starts_with("$skip=")
        })
        .map(String::from)
        .collect();
    parts.push(format!("$skip={skip}"));
    format!("{path}?{}", parts.join("&"))
}

fn push_cell(out: &mut String, c: Cell<'_>, utc: bool) {
    match c {
        Cell::Null => out.push_str("null"),
        Cell::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Cell::Dec(d) => {
            if d.is_finite() {
                let _ = write!(out, "{d}");
            } else {
                out.push_str("null");
            }
        }
        Cell::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Cell::Str(s) => push_json_str(out, &s),
        Cell::Item(_, label) => push_json_str(out, &label),
        Cell::Time(t) => {
            out.push('"');
            t.write_iso(out, utc && !t.is_min());
            out.push('"');
        }
    }
}

/// Appends a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A convenience for callers that evaluate against "now".
pub fn eval_cx(settings: &ODataConfig, now: Ts, associate: i32) -> EvalCx<'_> {
    EvalCx {
        settings,
        now,
        associate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn query(db: &Db, provider_name: &str, pairs: &[(&str, &str)]) -> serde_json::Value {
        let settings = ODataConfig::default();
        let p = provider(provider_name).unwrap();
        let q = Query::parse(&p, &params(pairs), &settings).unwrap();
        let cache = SortCache::default();
        let rcx = RunCx {
            eval: eval_cx(&settings, Ts::from_parts(2026, 1, 1, 0, 0, 0), 1),
            cache: &cache,
            tenant_url: "http://x/app1/Cust1",
            request_url: "/x",
        };
        serde_json::from_str(&run(db, &p, &q, &rcx).0).unwrap()
    }

    fn db() -> Db {
        let mut db = Db::new(3);
        db.seed(
            EntityType::Contact,
            200,
            Ts::from_parts(2025, 1, 1, 0, 0, 0),
            0.05,
        );
        db
    }

    #[test]
    fn keyset_pages_walk_the_primary_key() {
        let db = db();
        let v = query(
            &db,
            "SimpleContact",
            &[
                ("$select", "contactId,name"),
                ("$filter", "contactId gt 10"),
                ("$top", "5"),
            ],
        );
        let ids: Vec<&str> = v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["PrimaryKey"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["11", "12", "13", "14", "15"]);
        assert_eq!(v["value"][0]["EntityName"], "contact");
        assert_eq!(v["value"][0]["contactId"], 11);
        assert!(v["odata.nextLink"].is_null());
        let v = query(
            &db,
            "SimpleContact",
            &[
                ("$orderby", "contactId desc"),
                ("$top", "2"),
                ("$skip", "1"),
            ],
        );
        assert_eq!(v["value"][0]["PrimaryKey"], "199");
    }

    #[test]
    fn general_orderings_sort_with_pk_tiebreak() {
        let db = db();
        let v = query(
            &db,
            "SimpleContact",
            &[
                ("$select", "name,category"),
                ("$orderBy", "category desc,name"),
                ("$top", "1000"),
            ],
        );
        let rows = v["value"].as_array().unwrap();
        assert_eq!(rows.len(), 200);
        let keys: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                (
                    r["category"].as_str().unwrap().to_lowercase(),
                    r["name"].as_str().unwrap().to_lowercase(),
                )
            })
            .collect();
        for w in keys.windows(2) {
            assert!(
                w[0].0 > w[1].0 || (w[0].0 == w[1].0 && w[0].1 <= w[1].1),
                "{w:?}"
            );
        }
    }

    #[test]
    fn top_is_clamped_and_unknown_columns_rejected() {
        let db = db();
        let settings = ODataConfig {
            max_top: 10,
            ..ODataConfig::default()
        };
        let p = provider("simplecontact").unwrap();
        let q = Query::parse(&p, &params(&[("$top", "500")]), &settings).unwrap();
        assert_eq!(q.top, 10);
        assert!(Query::parse(&p, &params(&[("$select", "nosuch")]), &settings).is_err());
        assert!(Query::parse(&p, &params(&[("$mode", "Full")]), &settings).is_err());
        let v = query(&db, "SimpleContact", &[]);
        assert_eq!(v["value"].as_array().unwrap().len(), 200);
        assert!(v["value"][0].get("updatedDate").is_some());
    }
}
