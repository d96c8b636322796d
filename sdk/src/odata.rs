//! OData queries for SuperOffice's list and archive endpoints (FACTS §2.4), and the rows they
//! return.
//!
//! ```
//! use superoffice::odata::{Query, col};
//! use chrono::NaiveDate;
//!
//! let since = NaiveDate::from_ymd_opt(2026, 7, 22).unwrap();
//! let query = Query::new()
//!     .select(["contactId", "name", "updatedDate"])
//!     .filter(col("updatedDate").after(since).and(col("name").begins("O'B")))
//!     .order_by("updatedDate")
//!     .order_by("contactId")
//!     .top(500);
//! assert_eq!(
//!     query.to_pairs(),
//!     [
//!         ("$select".to_string(), "contactId,name,updatedDate".to_string()),
//!         ("$filter".to_string(), "updatedDate after '2026-07-22' and name begins 'O''B'".to_string()),
//!         ("$orderBy".to_string(), "updatedDate,contactId".to_string()),
//!         ("$top".to_string(), "500".to_string()),
//!     ]
//! );
//! ```
//!
//! Date-typed archive columns (`updatedDate`, `registeredDate`, `personUpdatedDate`) compare
//! **only the day**: `updatedDate after '2026-07-22'` cannot tell 09:00 from 17:00, and whether
//! it includes the 22nd is not documented. Incremental readers must overlap by a day and compare
//! exact timestamps themselves. Datetime columns (Ticket `lastChanged`) take
//! [`Col::after_time`] / [`Col::before_time`].

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::SoDateTime;

/// A literal in a filter, quoted and escaped as SuperOffice expects.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// An integer: `42`.
    Int(i64),
    /// A decimal: `4.5`.
    Float(f64),
    /// A string: `'O''Brien'` (single quotes doubled).
    Str(String),
    /// A date: `'2026-07-22'`.
    Date(NaiveDate),
    /// A date-time: `'2026-07-22T15:00:00'`.
    DateTime(NaiveDateTime),
    /// A boolean: `1` or `0`.
    Bool(bool),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Int(v) => write!(f, "{v}"),
            Literal::Float(v) => write!(f, "{v}"),
            Literal::Str(v) => write!(f, "'{}'", v.replace('\'', "''")),
            Literal::Date(v) => write!(f, "'{}'", v.format("%Y-%m-%d")),
            Literal::DateTime(v) => write!(f, "'{}'", v.format("%Y-%m-%dT%H:%M:%S")),
            Literal::Bool(v) => f.write_str(if *v { "1" } else { "0" }),
        }
    }
}

macro_rules! literal_from {
    ($($t:ty => $variant:ident($conv:expr)),* $(,)?) => {
        $(impl From<$t> for Literal {
            fn from(value: $t) -> Self {
                Literal::$variant($conv(value))
            }
        })*
    };
}

literal_from! {
    i32 => Int(i64::from),
    i64 => Int(|v| v),
    u32 => Int(i64::from),
    f64 => Float(|v| v),
    &str => Str(str::to_string),
    String => Str(|v| v),
    &String => Str(String::clone),
    NaiveDate => Date(|v| v),
    NaiveDateTime => DateTime(|v| v),
    DateTime<Utc> => DateTime(|v: DateTime<Utc>| v.naive_utc()),
    SoDateTime => DateTime(|v: SoDateTime| v.to_utc().naive_utc()),
    bool => Bool(|v| v),
}

/// A `$filter` expression. Combine with [`Filter::and`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter(String);

impl Filter {
    /// A filter written by hand (passed through unchanged).
    pub fn raw(text: impl Into<String>) -> Self {
        Filter(text.into())
    }

    /// Both filters (`a and b`).
    pub fn and(self, other: Filter) -> Filter {
        Filter(format!("{} and {}", self.0, other.0))
    }

    /// The expression text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A column to filter on; see [`col`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Col(String);

/// Starts a filter on an archive column (`col("contactId").gt(100)`).
pub fn col(name: impl Into<String>) -> Col {
    Col(name.into())
}

impl Col {
    fn op(&self, op: &str, value: impl Into<Literal>) -> Filter {
        Filter(format!("{} {op} {}", self.0, value.into()))
    }

    fn list(&self, op: &str, values: impl IntoIterator<Item = impl Into<Literal>>) -> Filter {
        let items: Vec<String> = values.into_iter().map(|v| v.into().to_string()).collect();
        Filter(format!("{} {op} ({})", self.0, items.join(",")))
    }

    /// `eq`.
    pub fn eq(&self, value: impl Into<Literal>) -> Filter {
        self.op("eq", value)
    }
    /// `ne`.
    pub fn ne(&self, value: impl Into<Literal>) -> Filter {
        self.op("ne", value)
    }
    /// `lt`.
    pub fn lt(&self, value: impl Into<Literal>) -> Filter {
        self.op("lt", value)
    }
    /// `le`.
    pub fn le(&self, value: impl Into<Literal>) -> Filter {
        self.op("le", value)
    }
    /// `gt`.
    pub fn gt(&self, value: impl Into<Literal>) -> Filter {
        self.op("gt", value)
    }
    /// `ge`.
    pub fn ge(&self, value: impl Into<Literal>) -> Filter {
        self.op("ge", value)
    }
    /// String starts with (`begins`).
    pub fn begins(&self, prefix: &str) -> Filter {
        self.op("begins", prefix)
    }
    /// String contains (`contains`).
    pub fn contains(&self, part: &str) -> Filter {
        self.op("contains", part)
    }
    /// String equals (`is`).
    pub fn is(&self, value: &str) -> Filter {
        self.op("is", value)
    }
    /// List id among (`oneOf (3,4)`).
    pub fn one_of(&self, values: impl IntoIterator<Item = impl Into<Literal>>) -> Filter {
        self.list("oneOf", values)
    }
    /// List id not among (`notOneOf (3,4)`).
    pub fn not_one_of(&self, values: impl IntoIterator<Item = impl Into<Literal>>) -> Filter {
        self.list("notOneOf", values)
    }
    /// Within a range, bounds included (`between ('a','b')`).
    pub fn between(&self, low: impl Into<Literal>, high: impl Into<Literal>) -> Filter {
        Filter(format!(
            "{} between ({},{})",
            self.0,
            low.into(),
            high.into()
        ))
    }
    /// Date column after a day (`after`; compares the day only).
    pub fn after(&self, day: NaiveDate) -> Filter {
        self.op("after", day)
    }
    /// Date column before a day (`before`; compares the day only).
    pub fn before(&self, day: NaiveDate) -> Filter {
        self.op("before", day)
    }
    /// Date column on a day (`date`).
    pub fn on_date(&self, day: NaiveDate) -> Filter {
        self.op("date", day)
    }
    /// Date column within days (`dateBetween`).
    pub fn date_between(&self, first: NaiveDate, last: NaiveDate) -> Filter {
        Filter(format!(
            "{} dateBetween ({},{})",
            self.0,
            Literal::Date(first),
            Literal::Date(last)
        ))
    }
    /// Datetime column at or after an instant (`afterTime`).
    pub fn after_time(&self, at: impl Into<Literal>) -> Filter {
        self.op("afterTime", at)
    }
    /// Datetime column before an instant (`beforeTime`).
    pub fn before_time(&self, at: impl Into<Literal>) -> Filter {
        self.op("beforeTime", at)
    }
}

/// Sort direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Ascending (the default).
    Asc,
    /// Descending.
    Desc,
}

/// A list/archive query: `$select`, `$filter`, `$orderBy`, `$top`, `$skip` and any other
/// parameter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    select: Vec<String>,
    filter: Option<Filter>,
    order_by: Vec<(String, Order)>,
    top: Option<u32>,
    skip: Option<u32>,
    extra: Vec<(String, String)>,
}

impl Query {
    /// An empty query.
    pub fn new() -> Self {
        Query::default()
    }

    /// Adds columns to `$select`.
    pub fn select<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.select.extend(columns.into_iter().map(Into::into));
        self
    }

    /// Sets `$filter`, or adds to it with `and`.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(match self.filter.take() {
            Some(existing) => existing.and(filter),
            None => filter,
        });
        self
    }

    /// Adds an ascending `$orderBy` key.
    pub fn order_by(mut self, column: impl Into<String>) -> Self {
        self.order_by.push((column.into(), Order::Asc));
        self
    }

    /// Adds a descending `$orderBy` key.
    pub fn order_by_desc(mut self, column: impl Into<String>) -> Self {
        self.order_by.push((column.into(), Order::Desc));
        self
    }

    /// Replaces the `$orderBy` keys.
    pub fn set_order_by(mut self, keys: Vec<(String, Order)>) -> Self {
        self.order_by = keys;
        self
    }

    /// `$top`.
    pub fn top(mut self, top: u32) -> Self {
        self.top = Some(top);
        self
    }

    /// `$skip`.
    pub fn skip(mut self, skip: u32) -> Self {
        self.skip = Some(skip);
        self
    }

    /// Any other parameter (`$entities`, `$context`, `$jsonSafe`, …).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// The `$select` columns.
    pub fn selected(&self) -> &[String] {
        &self.select
    }

    /// The `$filter`, if any.
    pub fn current_filter(&self) -> Option<&Filter> {
        self.filter.as_ref()
    }

    /// The `$top`, if set.
    pub fn current_top(&self) -> Option<u32> {
        self.top
    }

    /// The parameters as name/value pairs, in a stable order.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        if !self.select.is_empty() {
            pairs.push(("$select".into(), self.select.join(",")));
        }
        if let Some(filter) = &self.filter {
            pairs.push(("$filter".into(), filter.0.clone()));
        }
        if !self.order_by.is_empty() {
            let keys: Vec<String> = self
                .order_by
                .iter()
                .map(|(c, o)| match o {
                    Order::Asc => c.clone(),
                    Order::Desc => format!("{c} desc"),
                })
                .collect();
            pairs.push(("$orderBy".into(), keys.join(",")));
        }
        if let Some(top) = self.top {
            pairs.push(("$top".into(), top.to_string()));
        }
        if let Some(skip) = self.skip {
            pairs.push(("$skip".into(), skip.to_string()));
        }
        pairs.extend(self.extra.iter().cloned());
        pairs
    }

    /// The URL query string (`$select=…&$filter=…`), percent-encoded.
    pub fn to_query_string(&self) -> String {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.to_pairs() {
            serializer.append_pair(&name, &value);
        }
        serializer.finish()
    }
}

/// One row of an OData answer: `PrimaryKey`, `EntityName` and the selected columns, with
/// typed accessors that tolerate SuperOffice's habit of sending numbers and booleans as strings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row(pub Map<String, Value>);

impl Row {
    /// `PrimaryKey` (a string in Slim mode, a number in Full mode).
    pub fn primary_key(&self) -> Option<i64> {
        self.int("PrimaryKey")
    }

    /// `EntityName` (`contact`, …).
    pub fn entity_name(&self) -> Option<&str> {
        self.str("EntityName")
    }

    /// The raw value of a column.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.0.get(column)
    }

    /// A column as an integer (number, or numeric string; fractions are truncated).
    pub fn int(&self, column: &str) -> Option<i64> {
        match self.0.get(column)? {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.trunc() as i64)
            }),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .ok()
                .or_else(|| s.trim().parse::<f64>().ok().map(|f| f.trunc() as i64)),
            _ => None,
        }
    }

    /// A column as text (numbers and booleans are not converted).
    pub fn str(&self, column: &str) -> Option<&str> {
        self.0.get(column)?.as_str()
    }

    /// A column as a date-time (ISO strings, with or without offset).
    pub fn date_time(&self, column: &str) -> Option<SoDateTime> {
        self.str(column)?.parse().ok()
    }

    /// A column as a boolean (`true`/`false`, `"True"`/`"False"`, `1`/`0`).
    pub fn bool(&self, column: &str) -> Option<bool> {
        match self.0.get(column)? {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => n.as_i64().map(|v| v != 0),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(true),
                "false" | "0" | "no" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// The underlying map.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_operator_renders() {
        let day = NaiveDate::from_ymd_opt(2020, 5, 28).unwrap();
        let at = day.and_hms_opt(15, 0, 0).unwrap();
        let cases = [
            (col("contactId").eq(5), "contactId eq 5"),
            (col("contactId").ne(5), "contactId ne 5"),
            (col("contactId").lt(5), "contactId lt 5"),
            (col("contactId").le(5), "contactId le 5"),
            (col("contactId").gt(5), "contactId gt 5"),
            (col("contactId").ge(5), "contactId ge 5"),
            (col("name").begins("Am"), "name begins 'Am'"),
            (col("name").contains("O'Brien"), "name contains 'O''Brien'"),
            (col("name").is("x"), "name is 'x'"),
            (col("category").one_of([3, 4]), "category oneOf (3,4)"),
            (col("category").not_one_of([3]), "category notOneOf (3)"),
            (col("name").between("a", "m"), "name between ('a','m')"),
            (
                col("updatedDate").after(day),
                "updatedDate after '2020-05-28'",
            ),
            (
                col("updatedDate").before(day),
                "updatedDate before '2020-05-28'",
            ),
            (
                col("updatedDate").on_date(day),
                "updatedDate date '2020-05-28'",
            ),
            (
                col("updatedDate").date_between(day, day),
                "updatedDate dateBetween ('2020-05-28','2020-05-28')",
            ),
            (
                col("lastChanged").after_time(at),
                "lastChanged afterTime '2020-05-28T15:00:00'",
            ),
            (
                col("lastChanged").before_time(at),
                "lastChanged beforeTime '2020-05-28T15:00:00'",
            ),
            (col("active").eq(true), "active eq 1"),
            (col("a").eq(1).and(col("b").eq("x")), "a eq 1 and b eq 'x'"),
        ];
        for (filter, expected) in cases {
            assert_eq!(filter.as_str(), expected);
        }
    }

    #[test]
    fn query_strings_are_encoded() {
        let query = Query::new()
            .select(["contactId"])
            .filter(col("name").begins("A&B"))
            .order_by_desc("contactId")
            .skip(10);
        let text = query.to_query_string();
        assert_eq!(
            text,
            "%24select=contactId&%24filter=name+begins+%27A%26B%27&%24orderBy=contactId+desc&%24skip=10"
        );
        let twice = Query::new().filter(col("a").eq(1)).filter(col("b").eq(2));
        assert_eq!(
            twice.current_filter().unwrap().as_str(),
            "a eq 1 and b eq 2"
        );
    }

    #[test]
    fn row_accessors_tolerate_strings() {
        let row = Row(
            json!({ "PrimaryKey": "25", "EntityName": "contact", "n": 3.7, "s": "12", "flag": "True", "f2": 0, "when": "2024-03-05T00:00:00", "nothing": null })
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(row.primary_key(), Some(25));
        assert_eq!(row.entity_name(), Some("contact"));
        assert_eq!(row.int("n"), Some(3));
        assert_eq!(row.int("s"), Some(12));
        assert_eq!(row.bool("flag"), Some(true));
        assert_eq!(row.bool("f2"), Some(false));
        assert_eq!(
            row.date_time("when").unwrap().to_string(),
            "2024-03-05T00:00:00"
        );
        assert_eq!(row.int("nothing"), None);
        assert_eq!(row.str("missing"), None);
    }
}
