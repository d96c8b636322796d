//! Retention: deleting old `webhook_events` and `runs` rows (`[retention]` in the config; the
//! daemon's loop is [`crate::sync::retention`]).
//!
//! Each function deletes at most `limit` rows older than a cutoff, so a caller can keep write
//! transactions short and repeat while a full batch was deleted. Timestamps in both tables are
//! our own UTC text (`2026-12-04T23:09:47.123Z`, see [`super::types::UtcTime`]), which sorts like the
//! instant, so the cutoff is compared as text.
//!
//! - A webhook event is deleted only when no `refetch_queue` row still refers to it: its
//!   refetch has been applied (or it was coalesced into a later event), so no change is lost.
//! - A run is deleted only when it has ended (`running` rows are left alone; the start-up
//!   marks those of a stopped process `aborted`, and they age out afterwards).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::sql;
use super::types::UtcTime;
use crate::Result;

/// The text form of our timestamps ([`UtcTime`]).
fn cutoff_text(at: DateTime<Utc>) -> String {
    UtcTime::from(at).text()
}

/// Deletes up to `limit` webhook events received before `older_than` whose refetch is no
/// longer queued. Returns how many were deleted.
pub fn prune_webhook_events(
    conn: &Connection,
    older_than: DateTime<Utc>,
    limit: usize,
) -> Result<usize> {
    conn.execute(
        "DELETE FROM webhook_events WHERE rowid IN (
             SELECT e.rowid FROM webhook_events e
             WHERE e.received_at < ?1
               AND NOT EXISTS (SELECT 1 FROM refetch_queue q WHERE q.event_id = e.event_id)
             LIMIT ?2)",
        params![cutoff_text(older_than), limit as i64],
    )
    .map_err(sql)
}

/// Deletes up to `limit` ended runs started before `older_than`. Returns how many were
/// deleted.
pub fn prune_runs(conn: &Connection, older_than: DateTime<Utc>, limit: usize) -> Result<usize> {
    conn.execute(
        "DELETE FROM runs WHERE id IN (
             SELECT id FROM runs WHERE started_at < ?1 AND status <> 'running' LIMIT ?2)",
        params![cutoff_text(older_than), limit as i64],
    )
    .map_err(sql)
}

/// Deletes up to `limit` change rows recorded before `older_than` whose seq is at most
/// `acked` (the lowest seq every sink acknowledged; `None`: no sink is configured). The newest
/// row is never deleted: `changes.seq` is an `INTEGER PRIMARY KEY` (no AUTOINCREMENT), so an
/// empty table would hand out seqs again that readers and sink msg ids (`{instance}:{seq}`)
/// already saw. Returns how many were deleted.
pub fn prune_changes(
    conn: &Connection,
    older_than: DateTime<Utc>,
    acked: Option<i64>,
    limit: usize,
) -> Result<usize> {
    conn.execute(
        "DELETE FROM changes WHERE seq IN (
             SELECT seq FROM changes
             WHERE at < ?1 AND seq <= ?2 AND seq < (SELECT max(seq) FROM changes)
             ORDER BY seq LIMIT ?3)",
        params![
            cutoff_text(older_than),
            acked.unwrap_or(i64::MAX),
            limit as i64
        ],
    )
    .map_err(sql)
}

/// The lowest acknowledged seq over `sinks` (`None` when there are none).
pub fn min_acked(conn: &Connection, sinks: &[String]) -> Result<Option<i64>> {
    let mut min = None;
    for sink in sinks {
        let acked = super::sinks::acked_seq(conn, sink)?;
        min = Some(min.map_or(acked, |m: i64| m.min(acked)));
    }
    Ok(min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn count(store: &crate::Store, table: &str) -> Vec<String> {
        let sql_text = match table {
            "webhook_events" => "SELECT event_id FROM webhook_events ORDER BY event_id",
            _ => "SELECT subscription || ':' || status FROM runs ORDER BY id",
        };
        store
            .read_blocking(|c| {
                let mut s = c.prepare(sql_text).map_err(sql)?;
                let rows = s
                    .query_map([], |r| r.get::<_, String>(0))
                    .map_err(sql)?
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(sql)?;
                Ok(rows)
            })
            .unwrap()
    }

    #[test]
    fn old_processed_rows_are_pruned_and_new_or_queued_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("syncd.db")).unwrap();
        let now = Utc::now();
        let old = cutoff_text(now - TimeDelta::days(8));
        let new = cutoff_text(now - TimeDelta::hours(1));
        store
            .write_blocking(|tx| {
                tx.execute(
                    "INSERT INTO subscriptions (name, entity, created_at) VALUES ('s', 'contact', ?1)",
                    [&old],
                )
                .map_err(sql)?;
                for (id, at, processed) in [
                    ("old-done", &old, true),
                    ("old-done-2", &old, true),
                    ("old-queued", &old, false),
                    ("new-done", &new, true),
                ] {
                    tx.execute(
                        "INSERT INTO webhook_events (event_id, received_at, event, entity, primary_key, body, processed_at, outcome)
                         VALUES (?1, ?2, 'contact.changed', 'contact', 1, '{}', ?3, 'queued')",
                        params![id, at, processed.then_some(at)],
                    )
                    .map_err(sql)?;
                }
                tx.execute(
                    "INSERT INTO refetch_queue (subscription, id, event_id, event, queued_at) VALUES ('s', 1, 'old-queued', 'contact.changed', ?1)",
                    [&old],
                )
                .map_err(sql)?;
                for (at, status) in [(&old, "ok"), (&old, "failed"), (&old, "running"), (&new, "ok")] {
                    tx.execute(
                        "INSERT INTO runs (subscription, kind, started_at, status) VALUES ('s', 'poll', ?1, ?2)",
                        params![at, status],
                    )
                    .map_err(sql)?;
                }
                Ok(())
            })
            .unwrap();
        let cutoff = now - TimeDelta::days(7);

        // At most `limit` per call.
        let first = store
            .write_blocking(|tx| prune_webhook_events(tx, cutoff, 1))
            .unwrap();
        assert_eq!(first, 1);
        let second = store
            .write_blocking(|tx| prune_webhook_events(tx, cutoff, 100))
            .unwrap();
        assert_eq!(second, 1);
        assert_eq!(count(&store, "webhook_events"), ["new-done", "old-queued"]);
        let again = store
            .write_blocking(|tx| prune_webhook_events(tx, cutoff, 100))
            .unwrap();
        assert_eq!(again, 0);

        let runs = store
            .write_blocking(|tx| prune_runs(tx, cutoff, 100))
            .unwrap();
        assert_eq!(runs, 2);
        assert_eq!(count(&store, "runs"), ["s:running", "s:ok"]);

        // Once its refetch is applied (the queue row is gone), the old event goes too.
        store
            .write_blocking(|tx| {
                tx.execute("DELETE FROM refetch_queue", []).map_err(sql)?;
                Ok(())
            })
            .unwrap();
        let last = store
            .write_blocking(|tx| prune_webhook_events(tx, cutoff, 100))
            .unwrap();
        assert_eq!(last, 1);
        assert_eq!(count(&store, "webhook_events"), ["new-done"]);
    }

    #[test]
    fn the_prunes_use_the_received_and_started_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("syncd.db")).unwrap();
        let plans: Vec<String> = store
            .read_blocking(|c| {
                let mut out = Vec::new();
                for q in [
                    "EXPLAIN QUERY PLAN SELECT rowid FROM webhook_events WHERE received_at < 'x'",
                    "EXPLAIN QUERY PLAN SELECT id FROM runs WHERE started_at < 'x' AND status <> 'running'",
                ] {
                    let mut s = c.prepare(q).map_err(sql)?;
                    let detail = s
                        .query_map([], |r| r.get::<_, String>(3))
                        .map_err(sql)?
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(sql)?
                        .join("; ");
                    out.push(detail);
                }
                Ok(out)
            })
            .unwrap();
        assert!(plans[0].contains("webhook_events_by_received"), "{plans:?}");
        assert!(plans[1].contains("runs_by_started"), "{plans:?}");
    }

    #[test]
    fn changes_are_pruned_only_when_acked_by_every_sink_and_never_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("syncd.db")).unwrap();
        let now = Utc::now();
        let old = cutoff_text(now - TimeDelta::days(100));
        store
            .write_blocking(|tx| {
                for id in 1..=5 {
                    tx.execute(
                        "INSERT INTO changes (subscription, entity, id, op, at, hash) VALUES ('s', 'contact', ?1, 'insert', ?2, 'h')",
                        params![id, old],
                    )
                    .map_err(sql)?;
                }
                Ok(())
            })
            .unwrap();
        let seqs = |store: &crate::Store| {
            store
                .read_blocking(|c| {
                    let mut s = c
                        .prepare("SELECT seq FROM changes ORDER BY seq")
                        .map_err(sql)?;
                    let v = s
                        .query_map([], |r| r.get::<_, i64>(0))
                        .map_err(sql)?
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(sql)?;
                    Ok(v)
                })
                .unwrap()
        };
        let cutoff = now - TimeDelta::days(90);
        let sinks = vec!["a".to_string(), "b".to_string()];
        store
            .write_blocking(|tx| {
                super::super::sinks::set_acked_seq(tx, "a", 5)?;
                super::super::sinks::set_acked_seq(tx, "b", 2)
            })
            .unwrap();
        // Sink b acknowledged up to 2: only 1 and 2 go.
        let n = store
            .write_blocking(|tx| {
                let acked = min_acked(tx, &sinks)?;
                prune_changes(tx, cutoff, acked, 100)
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(seqs(&store), vec![3, 4, 5]);
        // Not yet old enough: nothing.
        let early = now - TimeDelta::days(200);
        assert_eq!(
            store
                .write_blocking(|tx| prune_changes(tx, early, None, 100))
                .unwrap(),
            0
        );
        // Everything acknowledged (or no sink): all but the newest row.
        store
            .write_blocking(|tx| super::super::sinks::set_acked_seq(tx, "b", 5))
            .unwrap();
        let n = store
            .write_blocking(|tx| {
                let acked = min_acked(tx, &sinks)?;
                prune_changes(tx, cutoff, acked, 100)
            })
            .unwrap();
        assert_eq!(n, 2, "3 and 4; 5 is the newest");
        assert_eq!(
            store
                .write_blocking(|tx| prune_changes(tx, cutoff, None, 100))
                .unwrap(),
            0
        );
        assert_eq!(seqs(&store), vec![5]);
        // So the next change gets a new seq, never one handed out before.
        store
            .write_blocking(|tx| {
                tx.execute(
                    "INSERT INTO changes (subscription, entity, id, op, at, hash) VALUES ('s', 'contact', 9, 'insert', ?1, 'h')",
                    [&old],
                )
                .map_err(sql)
            })
            .unwrap();
        assert_eq!(seqs(&store), vec![5, 6]);
    }
}
