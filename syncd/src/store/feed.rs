//! Reading the change feed (`changes`, written by [`crate::store::records::apply`]) as
//! [`ChangeEvent`]s: for `syncd changes`, the HTTP feed and the sinks.
//!
//! Sequence numbers only grow. Retention may delete the oldest rows; a reader that asks for
//! changes after a seq older than the oldest kept one would silently skip what was deleted, so
//! [`page_after`] answers [`FeedPage::Gone`] instead (HTTP 410 / `event: reset`).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension};

use crate::feed::{ChangeEvent, Op, Tenants};
use crate::store::sql;
use crate::{Error, Result};

/// The highest seq in the feed (0 when it is empty).
pub fn last_seq(conn: &Connection) -> Result<i64> {
    conn.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| {
        r.get(0)
    })
    .map_err(sql)
}

/// The lowest seq still kept (`None` when the feed is empty).
pub fn oldest_seq(conn: &Connection) -> Result<Option<i64>> {
    conn.query_row("SELECT min(seq) FROM changes", [], |r| r.get(0))
        .optional()
        .map_err(sql)
        .map(Option::flatten)
}

/// Changes with `seq > since`, oldest first, at most `limit`, of one subscription or all.
pub fn changes_after(
    conn: &Connection,
    since: i64,
    subscription: Option<&str>,
    limit: usize,
    tenants: &Tenants,
) -> Result<Vec<ChangeEvent>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT seq, subscription, entity, id, op, at, hash, previous_hash, record FROM changes
             WHERE seq > ?1 AND (?2 IS NULL OR subscription = ?2) ORDER BY seq LIMIT ?3",
        )
        .map_err(sql)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = statement
        .query(rusqlite::params![since, subscription, limit])
        .map_err(sql)?;
    let mut events = Vec::new();
    while let Some(row) = rows.next().map_err(sql)? {
        let seq: i64 = row.get(0).map_err(sql)?;
        let subscription: String = row.get(1).map_err(sql)?;
        let op: String = row.get(4).map_err(sql)?;
        let at: String = row.get(5).map_err(sql)?;
        let record: Option<String> = row.get(8).map_err(sql)?;
        let bad = |column: &'static str, problem: String| Error::Corrupt {
            column,
            row: format!("seq {seq}"),
            problem,
        };
        let op = Op::parse(&op).ok_or_else(|| bad("changes.op", format!("unknown op {op:?}")))?;
        let at = DateTime::parse_from_rfc3339(&at)
            .map_err(|e| bad("changes.at", format!("{at:?} is not RFC 3339: {e}")))?
            .with_timezone(&Utc);
        let record = record
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| bad("changes.record", format!("not JSON: {e}")))?;
        events.push(ChangeEvent {
            seq,
            tenant: tenants.of(&subscription).map(str::to_string),
            subscription,
            entity: row.get(2).map_err(sql)?,
            id: row.get(3).map_err(sql)?,
            op,
            at,
            hash: row.get(6).map_err(sql)?,
            previous_hash: row.get(7).map_err(sql)?,
            record,
        });
    }
    Ok(events)
}

/// What a reader resuming after a seq gets.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedPage {
    /// The next changes (empty: none yet).
    Changes(Vec<ChangeEvent>),
    /// Changes after `since` were deleted by retention: the oldest kept is `oldest`, so
    /// `since + 1 .. oldest` are gone. The reader must start over (e.g. from a full copy).
    Gone {
        /// The seq asked for.
        since: i64,
        /// The oldest seq kept.
        oldest: i64,
    },
}

/// [`changes_after`], refusing to skip: [`FeedPage::Gone`] when `since + 1` is older than the
/// oldest kept change. Both reads run on `conn` in one read transaction.
pub fn page_after(
    conn: &Connection,
    since: i64,
    subscription: Option<&str>,
    limit: usize,
    tenants: &Tenants,
) -> Result<FeedPage> {
    let tx = conn.unchecked_transaction().map_err(sql)?;
    if let Some(oldest) = oldest_seq(&tx)?
        && since + 1 < oldest
    {
        return Ok(FeedPage::Gone { since, oldest });
    }
    let changes = changes_after(&tx, since, subscription, limit, tenants)?;
    tx.finish().map_err(sql)?;
    Ok(FeedPage::Changes(changes))
}

/// How many changes the feed holds per op, in the order insert, update, delete (ops without
/// changes are left out). A row with an unknown op is an error naming it.
pub fn counts_by_op(conn: &Connection) -> Result<Vec<(Op, i64)>> {
    let mut statement = conn
        .prepare_cached("SELECT op, count(*) FROM changes GROUP BY op")
        .map_err(sql)?;
    let rows = statement
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(sql)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql)?;
    let mut counts = rows
        .into_iter()
        .map(|(op, n)| {
            Op::parse(&op)
                .map(|op| (op, n))
                .ok_or_else(|| Error::Corrupt {
                    column: "changes.op",
                    row: "a change".into(),
                    problem: format!("unknown op {op:?}"),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    counts.sort_by_key(|(op, _)| match op {
        Op::Insert => 0,
        Op::Update => 1,
        Op::Delete => 2,
    });
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store;

    fn insert(conn: &Connection, sub: &str, id: i64, op: &str, record: Option<&str>) {
        conn.execute(
            "INSERT INTO changes (subscription, entity, id, op, at, hash, previous_hash, record)
             VALUES (?1, 'contact', ?2, ?3, '2026-12-04T23:40:58.120Z', 'h', NULL, ?4)",
            rusqlite::params![sub, id, op, record],
        )
        .unwrap();
    }

    #[test]
    fn the_migration_fills_old_content_only_where_the_stored_hash_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("syncd.db");
        let before = store::MIGRATIONS
            .iter()
            .position(|m| m.contains("ADD COLUMN record"))
            .unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &store::MIGRATIONS[..before] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch(&format!(
                "INSERT INTO subscriptions (name, entity, created_at) VALUES ('a', 'contact', 'then');
                 INSERT INTO records (subscription, id, json, hash, first_seen, updated_at)
                     VALUES ('a', 1, '{{\"n\":2}}', 'h2', 'then', 'then');
                 INSERT INTO changes (subscription, entity, id, op, at, hash) VALUES
                     ('a', 'contact', 1, 'insert', '2026-12-04T23:40:58.120Z', 'h1'),
                     ('a', 'contact', 1, 'update', '2026-12-04T23:40:58.120Z', 'h2'),
                     ('a', 'contact', 1, 'delete', '2026-12-04T23:40:58.120Z', NULL);
                 PRAGMA user_version = {before};"
            ))
            .unwrap();
        }
        let store = store::open(&path).unwrap();
        let events = store
            .read_blocking(|c| changes_after(c, 0, None, 10, &Tenants::default()))
            .unwrap();
        let content: Vec<_> = events
            .iter()
            .map(|e| (e.op, e.record.clone(), e.previous_hash.clone()))
            .collect();
        assert_eq!(
            content,
            [
                (Op::Insert, None, None),
                (Op::Update, Some(serde_json::json!({"n": 2})), None),
                (Op::Delete, None, None),
            ]
        );
    }

    #[test]
    fn changes_come_in_order_with_content_tenant_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::open(&dir.path().join("syncd.db")).unwrap();
        store
            .write_blocking(|tx| {
                insert(tx, "a", 1, "insert", Some(r#"{"n":1}"#));
                insert(tx, "b", 2, "insert", Some(r#"{"n":2}"#));
                insert(tx, "a", 1, "delete", None);
                Ok(())
            })
            .unwrap();
        let tenants: Tenants = [("a".to_string(), "t1".to_string())].into_iter().collect();
        let all = store
            .read_blocking(|c| changes_after(c, 0, None, 10, &tenants))
            .unwrap();
        assert_eq!(
            all.iter().map(|e| (e.seq, e.op)).collect::<Vec<_>>(),
            [(1, Op::Insert), (2, Op::Insert), (3, Op::Delete)]
        );
        assert_eq!(all[0].tenant.as_deref(), Some("t1"));
        assert_eq!(all[1].tenant, None, "b is not configured");
        assert_eq!(all[0].record, Some(serde_json::json!({"n": 1})));
        assert_eq!(all[2].record, None);
        let a = store
            .read_blocking(|c| changes_after(c, 1, Some("a"), 10, &tenants))
            .unwrap();
        assert_eq!(a.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
        let limited = store
            .read_blocking(|c| changes_after(c, 0, None, 2, &tenants))
            .unwrap();
        assert_eq!(limited.len(), 2);
        assert_eq!(store.read_blocking(last_seq).unwrap(), 3);
    }

    #[test]
    fn a_reader_behind_the_oldest_kept_change_is_told_and_a_bad_row_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::open(&dir.path().join("syncd.db")).unwrap();
        let tenants = Tenants::default();
        assert_eq!(
            store
                .read_blocking(|c| page_after(c, 0, None, 10, &tenants))
                .unwrap(),
            FeedPage::Changes(vec![])
        );
        store
            .write_blocking(|tx| {
                for id in 1..=4 {
                    insert(tx, "a", id, "insert", Some("{}"));
                }
                tx.execute("DELETE FROM changes WHERE seq <= 2", [])
                    .map_err(sql)?;
                Ok(())
            })
            .unwrap();
        let page = |since| {
            store
                .read_blocking(|c| page_after(c, since, None, 10, &tenants))
                .unwrap()
        };
        assert_eq!(
            page(1),
            FeedPage::Gone {
                since: 1,
                oldest: 3
            }
        );
        match page(2) {
            FeedPage::Changes(events) => assert_eq!(events.len(), 2),
            other => panic!("{other:?}"),
        }
        store
            .write_blocking(|tx| {
                tx.execute("UPDATE changes SET record = 'not json' WHERE seq = 4", [])
                    .map_err(sql)?;
                Ok(())
            })
            .unwrap();
        let err = store
            .read_blocking(|c| changes_after(c, 0, None, 10, &tenants))
            .unwrap_err()
            .to_string();
        assert!(err.contains("seq 4") && err.contains("record"), "{err}");
    }

    #[test]
    fn counts_by_op_counts_each_op_and_rejects_an_unknown_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::open(&dir.path().join("syncd.db")).unwrap();
        assert_eq!(store.read_blocking(counts_by_op).unwrap(), []);
        store
            .write_blocking(|tx| {
                insert(tx, "a", 1, "delete", None);
                insert(tx, "a", 2, "insert", Some("{}"));
                insert(tx, "b", 3, "insert", Some("{}"));
                insert(tx, "a", 2, "update", Some("{}"));
                Ok(())
            })
            .unwrap();
        assert_eq!(
            store.read_blocking(counts_by_op).unwrap(),
            [(Op::Insert, 2), (Op::Update, 1), (Op::Delete, 1)]
        );
        store
            .write_blocking(|tx| {
                // The schema's CHECK keeps such rows out; a damaged or foreign file may not.
                tx.execute_batch("PRAGMA ignore_check_constraints = ON")
                    .map_err(sql)?;
                insert(tx, "a", 4, "upsert", None);
                Ok(())
            })
            .unwrap();
        let err = store.read_blocking(counts_by_op).unwrap_err().to_string();
        assert!(err.contains("unknown op \"upsert\""), "{err}");
    }
}
