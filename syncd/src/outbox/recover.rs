//! Resolving a create that may have been applied without our learning the id: the daemon was
//! killed between the POST and the commit of its answer, or the POST timed out or got a 5xx.
//!
//! The key lookup comes first (the caller did it): a key means the create completed. Without a
//! key, the POST may still have created a record whose key was never stored. Such a record is
//! an *orphan*: registered by our associate (where the archive shows it) since two days before
//! the task was queued, not the result of any task in the ledger, and carrying no key of ours.
//! An orphan whose fields equal the task's payload (every scalar and object field the record
//! shows, compared leniently; arrays and server-maintained fields are ignored) is the task's
//! record and is adopted. No matching orphan: the POST never took effect, and sending it is
//! safe. When the payload has nothing comparable or the search is too large to finish, the task
//! is *in doubt* and goes to `failed` for an operator, rather than risking a duplicate.
//!
//! The caller holds the entity's lock exclusively, so no create of this daemon is between its
//! POST and the commit of its id while the search runs. This module answers what it found
//! (an [`Orphan`]) or an error ([`crate::Error::Api`] for a failed or malformed answer, which
//! the caller retries); it knows nothing of delivery, which calls it.

use chrono::{Duration, NaiveTime};
use futures::TryStreamExt;
use serde_json::{Map, Value};
use superoffice::Client;
use superoffice::entity::{EntityKind, Precision};
use superoffice::odata::{Query, col};

use super::foreign::ForeignKeys;
use super::task::Task;
use crate::{Result, Runtime};

/// Records the search reads at most before giving up (in doubt).
pub const MAX_CANDIDATES: usize = 20_000;
/// Orphans read back at most.
pub const MAX_ORPHANS: usize = 200;

/// What the search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Orphan {
    /// This record is the task's.
    Found(i64),
    /// No record of the task exists: sending is safe.
    Absent,
    /// Cannot tell.
    InDoubt(String),
}

/// Server-maintained fields the comparison skips.
const DERIVED: &[&str] = &[
    "_links",
    "updateddate",
    "createddate",
    "updatedby",
    "createdby",
    "updatedbyworkflow",
    "lastchanged",
    "createdat",
    "tableright",
    "fieldproperties",
];

/// The archive column with the record's creator, where the archive has one.
fn registered_by(kind: EntityKind) -> Option<&'static str> {
    match kind {
        EntityKind::Person => Some("personRegisteredBy"),
        EntityKind::Ticket => Some("createdBy"),
        EntityKind::Product => None,
        _ => Some("registeredBy"),
    }
}

/// Compares a payload value with what the record shows: `Some(true)` equal, `Some(false)`
/// different, `None` nothing comparable.
fn compare(ours: &Value, theirs: &Value) -> Option<bool> {
    match (ours, theirs) {
        (Value::Null, _) | (Value::Array(_), _) => None,
        (Value::Object(a), Value::Object(b)) => compare_objects(a, b),
        (Value::Object(_), _) => Some(false),
        (Value::String(a), Value::String(b)) => Some(a.trim() == b.trim()),
        (Value::Number(a), Value::Number(b)) => Some(a.as_f64() == b.as_f64()),
        (Value::Bool(a), Value::Bool(b)) => Some(a == b),
        (a, Value::Null) => Some(matches!(a, Value::String(s) if s.is_empty())),
        (a, b) => Some(scalar_text(a) == scalar_text(b)),
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.trim().to_string(),
        other => other.to_string(),
    }
}

fn compare_objects(ours: &Map<String, Value>, theirs: &Map<String, Value>) -> Option<bool> {
    let mut compared = 0;
    for (key, value) in ours {
        if DERIVED.contains(&key.to_ascii_lowercase().as_str()) {
            continue;
        }
        let Some((_, other)) = theirs.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) else {
            continue;
        };
        match compare(value, other) {
            Some(false) => return Some(false),
            Some(true) => compared += 1,
            None => {}
        }
    }
    (compared > 0).then_some(true)
}

/// Whether `record` is what POSTing `payload` produced (`None`: nothing comparable).
pub fn matches(kind: EntityKind, payload: &Value, record: &Value) -> Option<bool> {
    let (Value::Object(ours), Value::Object(theirs)) = (payload, record) else {
        return None;
    };
    let mut ours = ours.clone();
    ours.retain(|k, _| !k.eq_ignore_ascii_case(kind.id_field()));
    compare_objects(&ours, theirs)
}

/// Searches for the record an interrupted POST of `task` left without a key.
pub(crate) async fn find_orphan(
    runtime: &Runtime,
    keys: &ForeignKeys,
    client: &Client,
    task: &Task,
    kind: EntityKind,
    payload: &Value,
    principal: Option<i64>,
) -> Result<Orphan> {
    if !kind.supports_get() {
        return Ok(Orphan::InDoubt(format!(
            "{kind} records cannot be read back to compare"
        )));
    }
    if matches(kind, payload, payload).is_none() {
        return Ok(Orphan::InDoubt(
            "the payload has no field a record could be recognised by".into(),
        ));
    }
    let queued = task.created_at.at();
    let since = (queued - Duration::days(2)).date_naive();
    let mut filter = match kind.last_modified_precision() {
        Precision::Second => col(kind.registered()).after_time(since.and_time(NaiveTime::MIN)),
        Precision::Day => col(kind.registered()).after(since),
    };
    if let (Some(column), Some(associate)) = (registered_by(kind), principal) {
        filter = filter.and(col(column).eq(associate));
    }
    let query = Query::new().select([kind.primary_key()]).filter(filter);
    let mut candidates: Vec<i64> = Vec::new();
    {
        let mut rows = std::pin::pin!(client.entities(kind).list(query));
        while let Some(row) = rows.try_next().await? {
            // A row without its id could be the orphan: an error (retried), never "absent".
            let Some(id) = row.int(kind.primary_key()).or_else(|| row.primary_key()) else {
                return Err(superoffice::Error::Decode {
                    message: format!(
                        "orphan search: the {kind} list answered a row without `{}`",
                        kind.primary_key()
                    ),
                    excerpt: Value::Object(row.into_map())
                        .to_string()
                        .chars()
                        .take(512)
                        .collect(),
                }
                .into());
            };
            candidates.push(id);
            if candidates.len() > MAX_CANDIDATES {
                return Ok(Orphan::InDoubt(format!(
                    "more than {MAX_CANDIDATES} {kind} records were created since {since}"
                )));
            }
        }
    }
    let entity = kind;
    let ids = candidates.clone();
    let owned = runtime
        .store
        .read(move |conn| crate::store::tasks::owned_results(conn, entity, &ids))
        .await?;
    candidates.retain(|id| !owned.contains(id));
    if candidates.is_empty() {
        return Ok(Orphan::Absent);
    }
    let keyed = keys.keyed_records(client, kind, &candidates).await?;
    candidates.retain(|id| !keyed.contains(id));
    if candidates.len() > MAX_ORPHANS {
        return Ok(Orphan::InDoubt(format!(
            "{} {kind} records without a key were created since {since}",
            candidates.len()
        )));
    }
    // Newest first: an interrupted POST is among the latest records.
    candidates.sort_unstable_by(|a, b| b.cmp(a));
    for id in candidates {
        let Ok(id32) = i32::try_from(id) else {
            continue;
        };
        let record = match client.entities(kind).get(id32).await {
            Ok(record) => record,
            Err(superoffice::Error::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        if matches(kind, payload, &record) == Some(true) {
            return Ok(Orphan::Found(id));
        }
    }
    Ok(Orphan::Absent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_match_their_payload_leniently() {
        let payload = json!({ "Name": "Amadeus AS ", "Department": "", "Category": { "Id": 3 }, "Phones": [{ "Value": "1" }], "ContactId": 0 });
        let record = json!({
            "ContactId": 17, "Name": "Amadeus AS", "Department": null,
            "Category": { "Id": 3, "Value": "Customer" }, "Phones": [], "UpdatedDate": "x",
        });
        assert_eq!(matches(EntityKind::Contact, &payload, &record), Some(true));
        let other = json!({ "ContactId": 18, "Name": "Amadeus AB", "Category": { "Id": 3 } });
        assert_eq!(matches(EntityKind::Contact, &payload, &other), Some(false));
        assert_eq!(
            matches(EntityKind::Contact, &json!({ "Phones": [] }), &record),
            None,
            "arrays alone are not comparable"
        );
        assert_eq!(
            matches(
                EntityKind::Contact,
                &json!({ "Number1": 5 }),
                &json!({ "Number1": "5" })
            ),
            Some(true)
        );
    }
}
