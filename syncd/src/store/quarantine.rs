//! The `quarantine` table: records whose transform failed or ran out of its budget (see
//! [`crate::transform`]). A quarantined record is written in its page's transaction instead of
//! the record, so the page commits and the cursor moves on; a later successful transform of
//! the record removes it. `syncd quarantine retry` queues a targeted refetch
//! (`refetch_queue`) for quarantined records.

use std::collections::BTreeMap;

use rusqlite::{Connection, Transaction, params, params_from_iter};

use super::sql;
use super::types::UtcTime;
use crate::Result;

/// The `refetch_queue.event` of a retry queued by `syncd quarantine retry`.
pub const RETRY_EVENT: &str = "quarantine.retry";

/// One quarantined record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Quarantined {
    /// The subscription.
    pub subscription: String,
    /// The record id.
    pub id: i64,
    /// The record as fetched (the transform's input), JSON text.
    pub json: String,
    /// Why the transform did not produce it (the last time).
    pub error: String,
    /// First failure (UTC).
    pub first_at: String,
    /// Last failure (UTC).
    pub last_at: String,
    /// Failed transforms.
    pub attempts: i64,
}

/// Quarantines a record (or counts one more failed attempt of a quarantined one).
pub fn put(
    tx: &Transaction<'_>,
    subscription: &str,
    id: i64,
    json: &str,
    error: &str,
    now: UtcTime,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO quarantine (subscription, id, json, error, first_at, last_at, attempts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1)
         ON CONFLICT (subscription, id) DO UPDATE SET json = excluded.json, error = excluded.error,
             last_at = excluded.last_at, attempts = quarantine.attempts + 1",
    )
    .map_err(sql)?
    .execute(params![subscription, id, json, error, now])
    .map_err(sql)?;
    Ok(())
}

/// Forgets a subscription's quarantined records: its transform changed and it resyncs, so
/// every record is read and transformed again (and quarantined again if it still fails).
pub fn clear(tx: &Transaction<'_>, subscription: &str) -> Result<usize> {
    tx.execute(
        "DELETE FROM quarantine WHERE subscription = ?1",
        [subscription],
    )
    .map_err(sql)
}

/// Whether the subscription has quarantined records.
pub fn any(conn: &Connection, subscription: &str) -> Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM quarantine WHERE subscription = ?1)")
        .map_err(sql)?
        .query_row([subscription], |r| r.get(0))
        .map_err(sql)
}

/// The stored inputs (`json`) of the quarantined records among `ids`.
pub fn inputs(
    conn: &Connection,
    subscription: &str,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, String>> {
    let mut out = std::collections::HashMap::new();
    if ids.is_empty() || !any(conn, subscription)? {
        return Ok(out);
    }
    let mut statement = conn
        .prepare_cached("SELECT json FROM quarantine WHERE subscription = ?1 AND id = ?2")
        .map_err(sql)?;
    for id in ids {
        let mut rows = statement.query(params![subscription, id]).map_err(sql)?;
        if let Some(row) = rows.next().map_err(sql)? {
            out.insert(*id, row.get(0).map_err(sql)?);
        }
    }
    Ok(out)
}

/// Releases records whose transform succeeded; returns how many were quarantined.
pub fn release(tx: &Transaction<'_>, subscription: &str, ids: &[i64]) -> Result<usize> {
    if ids.is_empty() || !any(tx, subscription)? {
        return Ok(0);
    }
    let mut delete = tx
        .prepare_cached("DELETE FROM quarantine WHERE subscription = ?1 AND id = ?2")
        .map_err(sql)?;
    let mut released = 0;
    for id in ids {
        released += delete.execute(params![subscription, id]).map_err(sql)?;
    }
    Ok(released)
}

/// How many records of a subscription are quarantined.
pub fn count(conn: &Connection, subscription: &str) -> Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM quarantine WHERE subscription = ?1")
        .map_err(sql)?
        .query_row([subscription], |r| r.get(0))
        .map_err(sql)
}

/// Quarantined records per subscription (subscriptions without any are absent).
pub fn counts(conn: &Connection) -> Result<BTreeMap<String, i64>> {
    let mut statement = conn
        .prepare("SELECT subscription, count(*) FROM quarantine GROUP BY subscription")
        .map_err(sql)?;
    let rows = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?;
    rows.collect::<std::result::Result<_, _>>().map_err(sql)
}

fn select(subscription: Option<&str>, ids: &[i64]) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    if let Some(s) = subscription {
        values.push(V::Text(s.to_string()));
        clauses.push(format!("subscription = ?{}", values.len()));
    }
    if !ids.is_empty() {
        let start = values.len();
        values.extend(ids.iter().map(|id| V::Integer(*id)));
        let marks: Vec<String> = (start + 1..=values.len())
            .map(|i| format!("?{i}"))
            .collect();
        clauses.push(format!("id IN ({})", marks.join(", ")));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (filter, values)
}

/// Quarantined records, optionally of one subscription and/or with the given ids.
pub fn list(
    conn: &Connection,
    subscription: Option<&str>,
    ids: &[i64],
) -> Result<Vec<Quarantined>> {
    let (filter, values) = select(subscription, ids);
    let mut statement = conn
        .prepare(&format!(
            "SELECT subscription, id, json, error, first_at, last_at, attempts FROM quarantine{filter}
             ORDER BY subscription, id"
        ))
        .map_err(sql)?;
    let rows = statement
        .query_map(params_from_iter(values), |r| {
            Ok(Quarantined {
                subscription: r.get(0)?,
                id: r.get(1)?,
                json: r.get(2)?,
                error: r.get(3)?,
                first_at: r.get(4)?,
                last_at: r.get(5)?,
                attempts: r.get(6)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<std::result::Result<_, _>>().map_err(sql)
}

/// Queues a targeted refetch (`refetch_queue`) for the selected quarantined records; a record
/// already queued (by a webhook) keeps that entry. Returns the records selected.
pub fn requeue(
    tx: &Transaction<'_>,
    subscription: Option<&str>,
    ids: &[i64],
    now: UtcTime,
) -> Result<Vec<(String, i64)>> {
    let selected: Vec<(String, i64)> = list(tx, subscription, ids)?
        .into_iter()
        .map(|q| (q.subscription, q.id))
        .collect();
    let mut queue = tx
        .prepare_cached(
            "INSERT INTO refetch_queue (subscription, id, event_id, event, queued_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (subscription, id) DO NOTHING",
        )
        .map_err(sql)?;
    for (subscription, id) in &selected {
        let event_id = format!("{RETRY_EVENT}:{now}");
        queue
            .execute(params![subscription, id, event_id, RETRY_EVENT, now])
            .map_err(sql)?;
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> UtcTime {
        text.parse().unwrap()
    }

    #[test]
    fn quarantine_counts_attempts_releases_and_requeues() {
        let (t1, t2) = (
            at("2026-12-04T10:00:01.000Z"),
            at("2026-12-04T10:00:02.000Z"),
        );
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("syncd.db")).unwrap();
        store
            .write_blocking(|tx| {
                tx.execute_batch(
                    "INSERT INTO subscriptions (name, entity, created_at) VALUES ('a', 'contact', 'now'), ('b', 'contact', 'now');",
                )
                .map_err(sql)?;
                put(tx, "a", 1, "{\"x\":1}", "jq: x", t1)?;
                put(tx, "a", 1, "{\"x\":2}", "timeout", t2)?;
                put(tx, "a", 2, "{}", "jq: y", t2)?;
                put(tx, "b", 2, "{}", "jq: z", t2)
            })
            .unwrap();
        let a1 = store.read_blocking(|c| list(c, Some("a"), &[1])).unwrap();
        assert_eq!(a1.len(), 1);
        assert_eq!(
            (a1[0].attempts, a1[0].json.as_str(), a1[0].error.as_str()),
            (2, "{\"x\":2}", "timeout")
        );
        assert_eq!(
            (a1[0].first_at.as_str(), a1[0].last_at.as_str()),
            ("2026-12-04T10:00:01.000Z", "2026-12-04T10:00:02.000Z")
        );
        let all = store.read_blocking(counts).unwrap();
        assert_eq!(all.get("a"), Some(&2));
        assert_eq!(all.get("b"), Some(&1));
        assert_eq!(
            store.read_blocking(|c| list(c, None, &[2])).unwrap().len(),
            2
        );

        let queued = store
            .write_blocking(|tx| requeue(tx, Some("a"), &[], at("2026-12-04T10:00:03.000Z")))
            .unwrap();
        assert_eq!(queued, vec![("a".to_string(), 1), ("a".to_string(), 2)]);
        let in_queue: i64 = store
            .read_blocking(|c| {
                c.query_row(
                    "SELECT count(*) FROM refetch_queue WHERE subscription = 'a' AND event = ?1",
                    [RETRY_EVENT],
                    |r| r.get(0),
                )
                .map_err(sql)
            })
            .unwrap();
        assert_eq!(in_queue, 2);

        let released = store
            .write_blocking(|tx| release(tx, "a", &[1, 7]))
            .unwrap();
        assert_eq!(released, 1);
        assert_eq!(store.read_blocking(|c| count(c, "a")).unwrap(), 1);
        let held = store.read_blocking(|c| inputs(c, "a", &[1, 2, 3])).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held.get(&2).map(String::as_str), Some("{}"));
        assert_eq!(
            store.write_blocking(|tx| release(tx, "zzz", &[1])).unwrap(),
            0
        );
    }
}
