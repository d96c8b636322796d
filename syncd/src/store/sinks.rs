//! Sink cursors and the instance id (migration `0007_sinks`; the sinks are [`crate::sink`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::sql;
use crate::Result;

/// The acknowledged seq of `sink` (0: nothing acknowledged yet).
pub fn acked_seq(conn: &Connection, sink: &str) -> Result<i64> {
    Ok(conn
        .query_row(
            "SELECT acked_seq FROM sink_cursors WHERE sink = ?1",
            [sink],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map_err(sql)?
        .unwrap_or(0))
}

/// Records that every change up to `seq` was acknowledged by `sink`. The cursor never moves
/// back: a lower `seq` than the stored one is ignored (returns the stored one).
pub fn set_acked_seq(conn: &Connection, sink: &str, seq: i64) -> Result<i64> {
    conn.execute(
        "INSERT INTO sink_cursors (sink, acked_seq, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (sink) DO UPDATE SET acked_seq = max(acked_seq, excluded.acked_seq),
                                          updated_at = excluded.updated_at,
                                          last_error = NULL, last_error_at = NULL",
        params![sink, seq, super::types::UtcTime::now()],
    )
    .map_err(sql)?;
    acked_seq(conn, sink)
}

/// Records the last failure of `sink` (cleared by the next [`set_acked_seq`]).
pub fn set_error(conn: &Connection, sink: &str, error: &str) -> Result<()> {
    let now = super::types::UtcTime::now();
    conn.execute(
        "INSERT INTO sink_cursors (sink, acked_seq, updated_at, last_error, last_error_at)
         VALUES (?1, 0, ?2, ?3, ?2)
         ON CONFLICT (sink) DO UPDATE SET last_error = excluded.last_error,
                                          last_error_at = excluded.last_error_at",
        params![sink, now, error],
    )
    .map_err(sql)?;
    Ok(())
}

/// One row of `sink_cursors`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Cursor {
    /// The sink's name.
    pub sink: String,
    /// Every change up to this seq was acknowledged.
    pub acked_seq: i64,
    /// When it last moved.
    pub updated_at: String,
    /// The last failure since then, if any.
    pub last_error: Option<String>,
    /// When.
    pub last_error_at: Option<String>,
}

/// Every stored cursor, by name.
pub fn all(conn: &Connection) -> Result<Vec<Cursor>> {
    let mut stmt = conn
        .prepare("SELECT sink, acked_seq, updated_at, last_error, last_error_at FROM sink_cursors ORDER BY sink")
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Cursor {
                sink: r.get(0)?,
                acked_seq: r.get(1)?,
                updated_at: r.get(2)?,
                last_error: r.get(3)?,
                last_error_at: r.get(4)?,
            })
        })
        .map_err(sql)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// The instance id stored with this database, generated (16 random hex digits) on first use.
pub fn instance_id(conn: &Connection) -> Result<String> {
    if let Some(id) = conn
        .query_row(
            "SELECT instance_id FROM instance WHERE singleton = 1",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map_err(sql)?
    {
        return Ok(id);
    }
    let id = format!("{:016x}", rand::random::<u64>());
    conn.execute(
        "INSERT INTO instance (singleton, instance_id, created_at) VALUES (1, ?1, ?2)",
        params![id, super::types::UtcTime::now()],
    )
    .map_err(sql)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_only_move_forward_and_the_instance_id_is_stable_per_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("syncd.db")).unwrap();
        let id = store.write_blocking(|tx| instance_id(tx)).unwrap();
        assert_eq!(id.len(), 16);
        assert_eq!(store.write_blocking(|tx| instance_id(tx)).unwrap(), id);
        assert_eq!(store.read_blocking(|c| acked_seq(c, "nats")).unwrap(), 0);
        assert_eq!(
            store
                .write_blocking(|tx| set_acked_seq(tx, "nats", 7))
                .unwrap(),
            7
        );
        assert_eq!(
            store
                .write_blocking(|tx| set_acked_seq(tx, "nats", 3))
                .unwrap(),
            7
        );
        store
            .write_blocking(|tx| set_error(tx, "nats", "down"))
            .unwrap();
        let rows = store.read_blocking(all).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].sink.as_str(), rows[0].acked_seq), ("nats", 7));
        assert_eq!(rows[0].last_error.as_deref(), Some("down"));
        store
            .write_blocking(|tx| set_acked_seq(tx, "nats", 8))
            .unwrap();
        assert_eq!(store.read_blocking(all).unwrap()[0].last_error, None);
        let other = tempfile::tempdir().unwrap();
        let fresh = crate::store::open(&other.path().join("syncd.db")).unwrap();
        assert_ne!(fresh.write_blocking(|tx| instance_id(tx)).unwrap(), id);
    }
}
