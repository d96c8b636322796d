//! A subscription compiled for syncing: which columns to select, how to build the window and
//! scope filters, how to read the primary key, timestamps and delete markers from archive rows
//! and entity documents, and the `{column}` placeholders of child subscriptions.

use std::sync::Arc;

use chrono::{Duration as ChronoDuration, NaiveDate, NaiveDateTime};
use serde_json::{Map, Value};
use superoffice::SoDateTime;
use superoffice::entity::{EntityKind, Precision};
use superoffice::odata::{Filter, Query, Row};
use superoffice::paginate::Source;

use crate::config::{MassDelete, Shape, Subscription};
use crate::transform::{Failure, Limits, Pool, Transform};
use crate::{Error, Result};

/// Ticket base status "Deleted" (FACTS §3.2).
pub const TICKET_STATUS_DELETED: i64 = 4;

/// A subscription ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Subscription name.
    pub name: String,
    /// Tenant name.
    pub tenant: String,
    /// Entity.
    pub kind: EntityKind,
    /// Row or entity.
    pub shape: Shape,
    /// Columns of every archive request: key, last-modified, registered (+ status for
    /// tickets), then the configured ones (row shape).
    pub select: Vec<String>,
    /// Extra `$filter` (may hold placeholders).
    pub filter: Option<Template>,
    /// Extra query parameters (values may hold placeholders).
    pub query: Vec<(String, Template)>,
    /// Archive provider instead of the entity's list endpoint (`path.archive`).
    pub archive: Option<Template>,
    /// Parent subscription.
    pub parent: Option<String>,
    /// jq transform.
    pub transform: Option<Arc<Transform>>,
    /// The transform's budget per record.
    pub transform_limits: Limits,
    /// Rows per page.
    pub page_size: u32,
    /// Overlap of the incremental window, in days.
    pub overlap_days: u32,
    /// Concurrent entity fetches / delete confirmations.
    pub concurrency: usize,
    /// Poll interval.
    pub poll_interval: std::time::Duration,
    /// The longest the poll interval stretches to while webhooks are healthy.
    pub poll_interval_max: std::time::Duration,
    /// Reconcile interval.
    pub reconcile_interval: std::time::Duration,
    /// Mass-delete breaker.
    pub mass_delete: MassDelete,
    /// Webhooks on.
    pub webhooks: bool,
    /// Digest of the settings that shape the stored data.
    pub fingerprint: String,
}

/// A string with `{column}` / `{parent.column}` placeholders filled from a parent record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Column(String),
}

/// How a placeholder value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Inside a `$filter`: strings have `'` doubled (they are quoted by the author).
    Filter,
    /// Query and path values: as is.
    Plain,
}

impl Template {
    /// Parses `text`; `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> std::result::Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("unclosed placeholder in {text:?}")),
                        }
                    }
                    let name = name.trim();
                    let name = name.strip_prefix("parent.").unwrap_or(name).trim();
                    if name.is_empty()
                        || !name
                            .chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == '/')
                    {
                        return Err(format!(
                            "placeholder {{{name}}} in {text:?} is not a column name"
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Column(name.to_string()));
                }
                '}' => return Err(format!("unmatched `}}` in {text:?} (write `}}}}`)")),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// Whether any placeholder occurs.
    pub fn has_placeholders(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Column(_)))
    }

    /// The text with placeholders filled from `parent` (`{id}` is the parent's id unless the
    /// record has an `id` field). Without a parent, placeholders are an error.
    pub fn render(&self, parent: Option<&ParentRecord>, escape: Escape) -> Result<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Column(name) => {
                    let parent = parent.ok_or_else(|| {
                        Error::config(format!(
                            "placeholder {{{name}}} needs `parent = …` on the subscription"
                        ))
                    })?;
                    out.push_str(&parent.value(name, escape)?);
                }
            }
        }
        Ok(out)
    }
}

/// A parent record whose columns fill a child subscription's placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct ParentRecord {
    /// The parent's primary key.
    pub id: i64,
    /// Its stored JSON (after the parent's transform).
    pub json: Map<String, Value>,
    /// The parent subscription (for messages).
    pub subscription: String,
}

impl ParentRecord {
    fn value(&self, name: &str, escape: Escape) -> Result<String> {
        let found = self
            .json
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v);
        let value = match found {
            Some(v) => v.clone(),
            None if name.eq_ignore_ascii_case("id") => Value::from(self.id),
            None => {
                let keys: Vec<&str> = self.json.keys().map(String::as_str).collect();
                return Err(Error::config(format!(
                    "placeholder {{{name}}}: record {} of parent subscription {:?} has no such column (it has {})",
                    self.id,
                    self.subscription,
                    keys.join(", ")
                )));
            }
        };
        Ok(match value {
            Value::String(s) if escape == Escape::Filter => s.replace('\'', "''"),
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        })
    }
}

/// The lower bound of an incremental window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Date columns: the first day read (inclusive).
    Day(NaiveDate),
    /// Datetime columns (tickets): the first instant read (inclusive).
    Time(NaiveDateTime),
}

impl Window {
    /// As stored in `cursors.window_from`.
    pub fn to_text(self) -> String {
        match self {
            Window::Day(day) => day.format("%Y-%m-%d").to_string(),
            Window::Time(at) => at.format("%Y-%m-%dT%H:%M:%S").to_string(),
        }
    }

    /// Parses [`Window::to_text`].
    pub fn parse(text: &str) -> Option<Window> {
        if text.len() == 10 {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .map(Window::Day)
        } else {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
                .ok()
                .map(Window::Time)
        }
    }
}

impl Plan {
    /// Compiles a configured subscription; the error names the subscription and the setting.
    pub fn compile(sub: &Subscription) -> Result<Plan> {
        let bad = |key: &str, message: String| {
            Error::config(format!("subscription {:?}: {key}: {message}", sub.name))
        };
        let kind = sub.entity;
        let mut select: Vec<String> = vec![
            kind.primary_key().to_string(),
            kind.last_modified().to_string(),
            kind.registered().to_string(),
        ];
        if kind == EntityKind::Ticket {
            select.push("status".to_string());
        }
        if sub.shape == Shape::Row {
            for column in &sub.columns {
                let column = column.trim();
                if column.is_empty() || column.contains(',') {
                    return Err(bad("columns", format!("{column:?} is not a column name")));
                }
                if !select.iter().any(|c| c.eq_ignore_ascii_case(column)) {
                    select.push(column.to_string());
                }
            }
        } else if !sub.columns.is_empty() {
            return Err(bad(
                "columns",
                "only row-shape subscriptions select columns (shape = \"entity\" stores whole entities)".into(),
            ));
        }
        let filter = sub
            .filter
            .as_deref()
            .map(Template::parse)
            .transpose()
            .map_err(|e| bad("filter", e))?;
        let mut query = Vec::new();
        for (name, value) in &sub.query {
            let template = Template::parse(value).map_err(|e| bad(&format!("query.{name}"), e))?;
            let reserved = ["$select", "$filter", "$orderby", "$top", "$skip"];
            if reserved.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                return Err(bad(
                    &format!("query.{name}"),
                    "syncd sets this parameter itself (use `columns` / `filter`)".into(),
                ));
            }
            query.push((name.clone(), template));
        }
        let mut archive = None;
        for (name, value) in &sub.path {
            if name == "archive" {
                archive = Some(Template::parse(value).map_err(|e| bad("path.archive", e))?);
            } else {
                return Err(bad(
                    &format!("path.{name}"),
                    "unknown path parameter; the only one is `archive` (the archive provider to list from, e.g. \"FindPerson\")".into(),
                ));
            }
        }
        let has_placeholders = filter.as_ref().is_some_and(Template::has_placeholders)
            || query.iter().any(|(_, t)| t.has_placeholders())
            || archive.as_ref().is_some_and(Template::has_placeholders);
        match (&sub.parent, has_placeholders) {
            (None, true) => {
                return Err(bad(
                    "parent",
                    "filter/query/path use {column} placeholders, which need `parent = \"<subscription>\"`".into(),
                ));
            }
            (Some(parent), false) => {
                return Err(bad(
                    "parent",
                    format!(
                        "parent = {parent:?} but no {{column}} placeholder in filter, query or path takes a value from it (e.g. filter = \"contactId eq {{contactId}}\")"
                    ),
                ));
            }
            _ => {}
        }
        let transform = sub
            .transform
            .as_deref()
            .map(Transform::compile)
            .transpose()
            .map_err(|e| bad("transform", e))?
            .map(Arc::new);
        let fingerprint = {
            let described = serde_json::json!({
                "entity": kind.name(),
                "shape": format!("{:?}", sub.shape),
                "select": select,
                "filter": sub.filter,
                "query": sub.query,
                "path": sub.path,
                "parent": sub.parent,
                "transform": sub.transform,
            });
            crate::hash::record_hash(&described)
        };
        Ok(Plan {
            name: sub.name.clone(),
            tenant: sub.tenant.clone(),
            kind,
            shape: sub.shape,
            select,
            filter,
            query,
            archive,
            parent: sub.parent.clone(),
            transform,
            transform_limits: Limits {
                timeout: sub.transform_timeout,
                max_output: sub.transform_max_output,
            },
            page_size: sub.page_size.max(1),
            overlap_days: sub.overlap_days,
            concurrency: sub.concurrency.max(1),
            poll_interval: sub.poll_interval,
            poll_interval_max: sub.poll_interval_max,
            reconcile_interval: sub.reconcile_interval,
            mass_delete: sub.mass_delete,
            webhooks: sub.webhooks && kind.webhook_entity().is_some(),
            fingerprint,
        })
    }

    /// The entity's name in the change feed and `echoes` (`contact`).
    pub fn entity_label(&self) -> &'static str {
        self.kind.table()
    }

    /// Where rows come from for a scope.
    pub fn source(&self, parent: Option<&ParentRecord>) -> Result<Source> {
        Ok(match &self.archive {
            Some(template) => Source::Archive(template.render(parent, Escape::Plain)?),
            None => Source::List(self.kind.name().to_string()),
        })
    }

    /// The base query of a scope: `$select`, the configured filter (and window), extra
    /// parameters. Keyset conditions, `$orderBy` and `$top` are added per page.
    pub fn base_query(
        &self,
        select: &[String],
        parent: Option<&ParentRecord>,
        window: Option<Window>,
    ) -> Result<Query> {
        let mut query = Query::new().select(select.iter().cloned());
        let mut clauses: Vec<String> = Vec::new();
        if let Some(window) = window {
            clauses.push(self.window_clause(window));
        }
        if let Some(filter) = &self.filter {
            clauses.push(format!("({})", filter.render(parent, Escape::Filter)?));
        }
        if !clauses.is_empty() {
            query = query.filter(Filter::raw(clauses.join(" and ")));
        }
        for (name, template) in &self.query {
            query = query.param(name.clone(), template.render(parent, Escape::Plain)?);
        }
        Ok(query)
    }

    /// `(lastModified after D-1 or registered after D-1)`: both columns, because a row that
    /// was never edited carries `0001-01-01` in its last-modified column. `after` on a date
    /// column compares days; whether it includes the given day is undocumented, so the day
    /// before the first wanted day is given (an inclusive server returns one extra day).
    /// Tickets compare instants with `afterTime` (≥).
    pub fn window_clause(&self, window: Window) -> String {
        let (lm, reg) = (self.kind.last_modified(), self.kind.registered());
        match window {
            Window::Day(first) => {
                let before = first.pred_opt().unwrap_or(first);
                let d = before.format("%Y-%m-%d");
                format!("({lm} after '{d}' or {reg} after '{d}')")
            }
            Window::Time(at) => {
                let t = at.format("%Y-%m-%dT%H:%M:%S");
                format!("({lm} afterTime '{t}' or {reg} afterTime '{t}')")
            }
        }
    }

    /// The window the next incremental pass reads, from the highest committed source
    /// timestamp capped by when the pass that produced it started (edits made during a long
    /// pass to rows it had already read are older than its newest row), minus the overlap.
    pub fn next_window(&self, watermark: Option<NaiveDateTime>, started: NaiveDateTime) -> Window {
        let cap = watermark.map_or(started, |w| w.min(started));
        let overlap = ChronoDuration::days(i64::from(self.overlap_days));
        match self.kind.last_modified_precision() {
            Precision::Day => Window::Day(
                cap.date()
                    .checked_sub_signed(overlap)
                    .unwrap_or(NaiveDate::MIN),
            ),
            Precision::Second => Window::Time(
                cap.checked_sub_signed(overlap)
                    .unwrap_or(NaiveDateTime::MIN),
            ),
        }
    }

    /// The primary key of a row.
    pub fn row_id(&self, row: &Row) -> Option<i64> {
        row.int(self.kind.primary_key())
            .or_else(|| row.primary_key())
    }

    /// max(registered, last-modified) of a row, `0001-01-01` counting as unset.
    pub fn row_modified(&self, row: &Row) -> Option<SoDateTime> {
        let updated = row
            .date_time(self.kind.last_modified())
            .and_then(|d| d.set());
        let registered = row.date_time(self.kind.registered()).and_then(|d| d.set());
        match (updated, registered) {
            (Some(u), Some(r)) => Some(if r.to_utc() > u.to_utc() { r } else { u }),
            (u, r) => u.or(r),
        }
    }

    /// [`Plan::row_modified`] as the instant and the text SuperOffice wrote.
    pub fn row_modified_text(&self, row: &Row) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
        let read = |column: &str| {
            let text = row.str(column)?;
            let at = text.parse::<SoDateTime>().ok()?.set()?;
            Some((at.to_utc(), text))
        };
        let newest = match (
            read(self.kind.last_modified()),
            read(self.kind.registered()),
        ) {
            (Some(u), Some(r)) => Some(if r.0 > u.0 { r } else { u }),
            (u, r) => u.or(r),
        };
        newest.map(|(at, text)| (at, text.to_string()))
    }

    /// Whether a row says the record is deleted (tickets: status Deleted).
    pub fn row_deleted(&self, row: &Row) -> bool {
        self.kind == EntityKind::Ticket && row.get("status").is_some_and(status_is_deleted)
    }

    /// The JSON a row-shape subscription stores (before the transform): the selected columns.
    pub fn row_json(&self, row: Row) -> Value {
        let mut map = row.into_map();
        map.remove("PrimaryKey");
        map.remove("EntityName");
        Value::Object(map)
    }

    /// Applies the transform on the transform pool within its budget: `Ok(None)` when it says
    /// to skip the record.
    pub async fn transform(&self, value: Value) -> std::result::Result<Option<Value>, Failure> {
        match &self.transform {
            Some(t) => Pool::global().run(t, value, self.transform_limits).await,
            None => Ok(Some(value)),
        }
    }
}

/// Whether an entity document says the record is deleted: `Deleted: true`, a set
/// `DeletedDate`, or a ticket whose `BaseStatus` is Deleted.
pub fn entity_deleted(kind: EntityKind, entity: &Value) -> bool {
    let Value::Object(map) = entity else {
        return false;
    };
    let get = |name: &str| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    if get("Deleted").is_some_and(|v| v.as_bool() == Some(true)) {
        return true;
    }
    if get("DeletedDate")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<SoDateTime>().ok())
        .is_some_and(|d| !d.is_unset())
    {
        return true;
    }
    kind == EntityKind::Ticket && get("BaseStatus").is_some_and(status_is_deleted)
}

fn status_is_deleted(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_i64() == Some(TICKET_STATUS_DELETED),
        Value::String(s) => {
            let s = s.trim();
            s.eq_ignore_ascii_case("deleted") || s == "4"
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn plan(extra: &str) -> Result<Plan> {
        let text = format!(
            "[[tenant]]\nname = \"t\"\nenvironment = \"http://127.0.0.1:9\"\ncustomer_id = \"C\"\nauth = \"static\"\ntoken = {{ value = \"x\" }}\n\n[[subscription]]\nname = \"contacts\"\nentity = \"contact\"\ncolumns = [\"name\"]\n\n[[subscription]]\nname = \"s\"\n{extra}\n"
        );
        let config = Config::parse(&text, "t.toml", &BTreeMap::new())?;
        Plan::compile(&config.subscriptions[1])
    }

    #[test]
    fn selects_key_timestamps_and_columns() {
        let p = plan("entity = \"contact\"\ncolumns = [\"name\", \"contactId\", \"department\"]")
            .unwrap();
        assert_eq!(
            p.select,
            [
                "contactId",
                "updatedDate",
                "registeredDate",
                "name",
                "department"
            ]
        );
        let t = plan("entity = \"ticket\"").unwrap();
        assert_eq!(t.select, ["ticketId", "lastChanged", "createdAt", "status"]);
    }

    #[test]
    fn windows_cover_both_timestamps_and_overlap() {
        let p = plan("entity = \"contact\"").unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 7, 22).unwrap();
        assert_eq!(
            p.window_clause(Window::Day(day)),
            "(updatedDate after '2026-07-21' or registeredDate after '2026-07-21')"
        );
        let w = day.and_hms_opt(15, 4, 5).unwrap();
        let started = w + ChronoDuration::hours(2);
        assert_eq!(
            p.next_window(Some(w), started),
            Window::Day(NaiveDate::from_ymd_opt(2026, 7, 21).unwrap())
        );
        // A long pass: the cap is its start.
        assert_eq!(
            p.next_window(Some(w), w - ChronoDuration::days(3)),
            Window::Day(NaiveDate::from_ymd_opt(2026, 7, 18).unwrap())
        );
        let t = plan("entity = \"ticket\"\noverlap_days = 0").unwrap();
        assert_eq!(t.next_window(Some(w), started), Window::Time(w));
        assert_eq!(
            t.window_clause(Window::Time(w)),
            "(lastChanged afterTime '2026-07-22T15:04:05' or createdAt afterTime '2026-07-22T15:04:05')"
        );
        for window in [Window::Day(day), Window::Time(w)] {
            assert_eq!(Window::parse(&window.to_text()), Some(window));
        }
    }

    #[test]
    fn rows_give_key_modified_and_ticket_deletes() {
        let p = plan("entity = \"contact\"").unwrap();
        let row = |v: Value| Row(v.as_object().unwrap().clone());
        let r = row(
            json!({"PrimaryKey": "7", "contactId": 7, "updatedDate": "0001-01-01T00:00:00", "registeredDate": "2024-03-05T10:00:00"}),
        );
        assert_eq!(p.row_id(&r), Some(7));
        assert_eq!(
            p.row_modified(&r).unwrap().to_string(),
            "2024-03-05T10:00:00"
        );
        let r = row(
            json!({"contactId": 7, "updatedDate": "2024-03-06T09:00:00", "registeredDate": "2024-03-05T10:00:00"}),
        );
        assert_eq!(
            p.row_modified(&r).unwrap().to_string(),
            "2024-03-06T09:00:00"
        );
        let t = plan("entity = \"ticket\"").unwrap();
        assert!(t.row_deleted(&row(json!({"ticketId": 1, "status": "Deleted"}))));
        assert!(t.row_deleted(&row(json!({"ticketId": 1, "status": 4}))));
        assert!(!t.row_deleted(&row(json!({"ticketId": 1, "status": "Active"}))));
        assert!(entity_deleted(
            EntityKind::Ticket,
            &json!({"BaseStatus": "Deleted"})
        ));
        assert!(entity_deleted(
            EntityKind::Contact,
            &json!({"DeletedDate": "2024-01-01T00:00:00"})
        ));
        assert!(!entity_deleted(
            EntityKind::Contact,
            &json!({"DeletedDate": "0001-01-01T00:00:00"})
        ));
    }

    #[test]
    fn child_placeholders_come_from_the_parent() {
        let p = plan(
            "entity = \"person\"\nparent = \"contacts\"\nfilter = \"contactId eq {contactId} and lastName begins '{parent.name}'\"",
        )
        .unwrap();
        let parent = ParentRecord {
            id: 12,
            json: json!({"contactId": 12, "name": "O'Brien"})
                .as_object()
                .unwrap()
                .clone(),
            subscription: "contacts".into(),
        };
        let query = p
            .base_query(
                &p.select,
                Some(&parent),
                Some(Window::Day(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap())),
            )
            .unwrap();
        let filter = query.current_filter().unwrap().as_str().to_string();
        assert!(
            filter.ends_with("and (contactId eq 12 and lastName begins 'O''Brien')"),
            "{filter}"
        );
        let err = plan("entity = \"person\"\nfilter = \"contactId eq {contactId}\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("parent"), "{err}");
        let err = plan("entity = \"person\"\nparent = \"contacts\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("placeholder"), "{err}");
        let err = plan("entity = \"person\"\npath = { provider = \"x\" }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("path.provider"), "{err}");
        assert!(Template::parse("a {b").is_err());
        assert!(Template::parse("a } b").is_err());
        assert_eq!(
            Template::parse("{{x}}")
                .unwrap()
                .render(None, Escape::Plain)
                .unwrap(),
            "{x}"
        );
    }
}
