//! The `loops` table: what the supervisor ([`crate::supervise`]) last said about each
//! long-running loop, for `syncd status` (which reads the database, not the daemon).

use rusqlite::{Connection, Transaction, params};

use super::sql;
use crate::{Error, Result};

/// Where a supervised loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopState {
    /// Running (after a failure: running again, not yet healthy for long enough).
    Running,
    /// Failed; waiting out its backoff before the next start.
    Backoff,
    /// Stopped on purpose (shutdown).
    Stopped,
}

impl LoopState {
    /// The text stored.
    pub fn as_str(self) -> &'static str {
        match self {
            LoopState::Running => "running",
            LoopState::Backoff => "backoff",
            LoopState::Stopped => "stopped",
        }
    }

    fn parse(text: &str) -> Result<LoopState> {
        match text {
            "running" => Ok(LoopState::Running),
            "backoff" => Ok(LoopState::Backoff),
            "stopped" => Ok(LoopState::Stopped),
            other => Err(Error::Corrupt {
                column: "loops.state",
                row: "a loop row".into(),
                problem: format!("unknown value {other:?}"),
            }),
        }
    }
}

/// One row of `loops`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoopRow {
    /// `sync:<subscription>`, `outbox`, …
    pub name: String,
    /// Where it is.
    pub state: LoopState,
    /// Restarts since the daemon started.
    pub restarts: u64,
    /// Failures in a row (0: healthy).
    pub failing: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it happened (UTC).
    pub last_error_at: Option<String>,
    /// When this row was written (UTC).
    pub updated_at: String,
}

/// Forgets the loops of an earlier daemon (at startup).
pub fn clear(tx: &Transaction<'_>) -> Result<()> {
    tx.execute("DELETE FROM loops", []).map_err(sql)?;
    Ok(())
}

/// Writes a loop's row.
pub fn put(tx: &Transaction<'_>, row: &LoopRow) -> Result<()> {
    tx.execute(
        "INSERT INTO loops (name, state, restarts, failing, last_error, last_error_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (name) DO UPDATE SET state = excluded.state, restarts = excluded.restarts,
             failing = excluded.failing, last_error = excluded.last_error,
             last_error_at = excluded.last_error_at, updated_at = excluded.updated_at",
        params![
            row.name,
            row.state.as_str(),
            row.restarts as i64,
            row.failing,
            row.last_error,
            row.last_error_at,
            row.updated_at
        ],
    )
    .map_err(sql)?;
    Ok(())
}

/// Every loop, by name.
pub fn all(conn: &Connection) -> Result<Vec<LoopRow>> {
    let mut statement = conn
        .prepare(
            "SELECT name, state, restarts, failing, last_error, last_error_at, updated_at
             FROM loops ORDER BY name",
        )
        .map_err(sql)?;
    let rows = statement
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, String>(6)?,
            ))
        })
        .map_err(sql)?;
    let mut out = Vec::new();
    for row in rows {
        let (name, state, restarts, failing, last_error, last_error_at, updated_at) =
            row.map_err(sql)?;
        out.push(LoopRow {
            name,
            state: LoopState::parse(&state)?,
            restarts: restarts.max(0) as u64,
            failing,
            last_error,
            last_error_at,
            updated_at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("syncd.db")).unwrap();
        let row = LoopRow {
            name: "sync:contacts".into(),
            state: LoopState::Backoff,
            restarts: 3,
            failing: 2,
            last_error: Some("store: boom".into()),
            last_error_at: Some("2026-12-04T23:00:00Z".into()),
            updated_at: "2026-12-04T23:00:00Z".into(),
        };
        store.write_blocking(|tx| put(tx, &row)).unwrap();
        let mut again = row.clone();
        again.state = LoopState::Running;
        store.write_blocking(|tx| put(tx, &again)).unwrap();
        assert_eq!(store.read_blocking(all).unwrap(), vec![again]);
        store.write_blocking(clear).unwrap();
        assert!(store.read_blocking(all).unwrap().is_empty());
    }
}
