//! A subscription's bookkeeping: its `subscriptions` row, its cursor (`cursors`: phase,
//! watermark, next window, the pass in progress, request flags, breaker), and the `runs` rows
//! that record each pass. Every function is blocking and runs inside a [`crate::Store`]
//! closure on the blocking pool.

use chrono::NaiveDateTime;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use superoffice::entity::EntityKind;

use super::records::Applied;
use super::sql;
use super::types::{PassKind, TableName, UtcTime};
use crate::{Error, Result};

/// A pass in progress, as stored in `cursors.resume` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// What kind of pass it is.
    pub kind: PassKind,
    /// The window the pass reads (`None`: everything), as `sync::plan::Window` writes it.
    pub window: Option<String>,
    /// Child subscriptions: scopes of parents below this id are done; this one is in progress.
    pub parent: Option<i64>,
    /// The last primary key committed in the current scope.
    pub after: Option<i64>,
    /// The highest source timestamp committed by this pass so far (SuperOffice's text).
    pub max: Option<String>,
    /// When the pass started (older databases hold a naive UTC text here; it reads the same).
    pub started: UtcTime,
    /// The oldest source timestamp of a row this pass left for the next one (entity shape:
    /// changed too recently to be fetched yet); the next window starts no later than this.
    #[serde(default)]
    pub floor: Option<String>,
}

impl Resume {
    /// When the pass started, as a naive UTC time (what window arithmetic uses).
    pub fn started(&self) -> NaiveDateTime {
        self.started.at().naive_utc()
    }
}

/// What a subscription's cursor says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubState {
    /// The initial load completed once.
    pub incremental: bool,
    /// Highest committed source timestamp (SuperOffice's text).
    pub watermark: Option<String>,
    /// Where the next incremental pass starts.
    pub window_from: Option<String>,
    /// The pass in progress.
    pub resume: Option<Resume>,
    /// Last successful pass.
    pub last_success: Option<UtcTime>,
    /// Last completed reconcile.
    pub last_reconcile: Option<UtcTime>,
    /// `syncd resync` asked for a full reload.
    pub resync_requested: bool,
    /// `syncd reconcile` asked for a reconcile.
    pub reconcile_requested: bool,
    /// Why the breaker holds the subscription, if it does.
    pub degraded: Option<String>,
    /// The server's `$top` cap, when one was seen.
    pub page_cap: Option<u32>,
}

/// How a `runs` row ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// In progress (a process that stopped leaves it; start-up marks it [`RunStatus::Aborted`]).
    Running,
    /// Completed.
    Ok,
    /// Failed (the error is stored).
    Failed,
    /// Stopped by shutdown, or by a process that died.
    Aborted,
    /// Completed, and the mass-delete breaker tripped.
    Degraded,
}

impl RunStatus {
    /// The stored text (also the `status` label of `syncd_runs_total`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Aborted => "aborted",
            RunStatus::Degraded => "degraded",
        }
    }
}

impl rusqlite::ToSql for RunStatus {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for RunStatus {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        [
            RunStatus::Running,
            RunStatus::Ok,
            RunStatus::Failed,
            RunStatus::Aborted,
            RunStatus::Degraded,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(Box::new(super::types::BadValue {
                what: "a run status",
                text: text.to_string(),
            }))
        })
    }
}

/// What a subscription is registered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration<'a> {
    /// Subscription name.
    pub name: &'a str,
    /// The entity it syncs.
    pub kind: EntityKind,
    /// Digest of the settings that shape what is stored (columns, filter, transform, …).
    pub fingerprint: &'a str,
}

/// Registers a subscription and its cursor; a changed fingerprint (columns, filter, transform…)
/// requests a resync (returns `true`). Fails when the stored subscription syncs another entity.
pub fn register(tx: &Transaction<'_>, sub: Registration<'_>, now: UtcTime) -> Result<bool> {
    let existing: Option<(String, Option<String>)> = tx
        .query_row(
            "SELECT entity, fingerprint FROM subscriptions WHERE name = ?1",
            [sub.name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql)?;
    let mut resync = false;
    match existing {
        None => {
            tx.execute(
                "INSERT INTO subscriptions (name, entity, created_at, fingerprint) VALUES (?1, ?2, ?3, ?4)",
                params![sub.name, TableName(sub.kind), now, sub.fingerprint],
            )
            .map_err(sql)?;
        }
        Some((entity, _)) if entity != sub.kind.table() => {
            return Err(Error::config(format!(
                "subscription {:?} synced {entity} before and is now configured for {}; give it a new name (its records stay under the old one)",
                sub.name,
                sub.kind.table()
            )));
        }
        Some((_, fingerprint)) => {
            if fingerprint.as_deref() != Some(sub.fingerprint) {
                tx.execute(
                    "UPDATE subscriptions SET fingerprint = ?2 WHERE name = ?1",
                    params![sub.name, sub.fingerprint],
                )
                .map_err(sql)?;
                resync = fingerprint.is_some();
            }
        }
    }
    tx.execute(
        "INSERT OR IGNORE INTO cursors (subscription) VALUES (?1)",
        [sub.name],
    )
    .map_err(sql)?;
    if resync {
        tx.execute(
            "UPDATE cursors SET resync_requested = 1 WHERE subscription = ?1",
            [sub.name],
        )
        .map_err(sql)?;
    }
    Ok(resync)
}

/// Marks runs a killed process left `running` as `aborted`.
pub fn abort_stale_runs(tx: &Transaction<'_>, now: UtcTime) -> Result<usize> {
    tx.execute(
        "UPDATE runs SET status = 'aborted', ended_at = ?1, error = 'the process stopped during the run' WHERE status = 'running'",
        [now],
    )
    .map_err(sql)
}

/// Reads a subscription's state. A `resume` that does not decode is an error naming the
/// subscription (never read as "no pass in progress", which would restart it silently).
pub fn state(conn: &Connection, name: &str) -> Result<SubState> {
    let (state, resume) = conn
        .query_row(
            "SELECT c.phase, c.watermark, c.window_from, c.resume, c.last_success, c.last_reconcile,
                    c.resync_requested, c.reconcile_requested, s.state, s.state_reason, c.page_cap
             FROM cursors c JOIN subscriptions s ON s.name = c.subscription WHERE c.subscription = ?1",
            [name],
            |r| {
                let resume: Option<String> = r.get(3)?;
                let state: String = r.get(8)?;
                let reason: Option<String> = r.get(9)?;
                Ok((
                    SubState {
                        incremental: r.get::<_, String>(0)? == "incremental",
                        watermark: r.get(1)?,
                        window_from: r.get(2)?,
                        resume: None,
                        last_success: r.get(4)?,
                        last_reconcile: r.get(5)?,
                        resync_requested: r.get::<_, i64>(6)? != 0,
                        reconcile_requested: r.get::<_, i64>(7)? != 0,
                        degraded: (state == "degraded").then(|| reason.unwrap_or_default()),
                        page_cap: r.get(10)?,
                    },
                    resume,
                ))
            },
        )
        .map_err(sql)?;
    let resume = resume
        .map(|text| {
            serde_json::from_str(&text).map_err(|e| Error::Corrupt {
                column: "cursors.resume",
                row: format!("subscription {name:?}"),
                problem: format!("{text:?} does not decode: {e}"),
            })
        })
        .transpose()?;
    Ok(SubState { resume, ..state })
}

/// Remembers the server's `$top` cap.
pub fn set_page_cap(tx: &Transaction<'_>, name: &str, cap: u32) -> Result<()> {
    tx.execute(
        "UPDATE cursors SET page_cap = ?2 WHERE subscription = ?1",
        params![name, cap],
    )
    .map_err(sql)?;
    Ok(())
}

/// Records the poll interval in force (what `syncd status` shows).
pub fn set_poll_interval(
    tx: &Transaction<'_>,
    name: &str,
    interval: std::time::Duration,
) -> Result<()> {
    let ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    tx.execute(
        "UPDATE cursors SET poll_interval_ms = ?2 WHERE subscription = ?1",
        params![name, ms],
    )
    .map_err(sql)?;
    Ok(())
}

/// Starts a `runs` row; returns its id.
pub fn start_run(tx: &Transaction<'_>, name: &str, kind: PassKind, now: UtcTime) -> Result<i64> {
    tx.execute(
        "INSERT INTO runs (subscription, kind, started_at, status) VALUES (?1, ?2, ?3, 'running')",
        params![name, kind, now],
    )
    .map_err(sql)?;
    Ok(tx.last_insert_rowid())
}

/// How a run ended, for [`finish_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// Status.
    pub status: RunStatus,
    /// Rows read.
    pub fetched: u64,
    /// Requests made.
    pub requests: u64,
    /// What the run's transactions did.
    pub applied: Applied,
    /// Why it failed.
    pub error: Option<String>,
}

/// Ends a `runs` row.
pub fn finish_run(tx: &Transaction<'_>, run: i64, end: &RunEnd, now: UtcTime) -> Result<()> {
    tx.execute(
        "UPDATE runs SET ended_at = ?2, status = ?3, fetched = ?4, inserts = ?5, updates = ?6, deletes = ?7, error = ?8, requests = ?9 WHERE id = ?1",
        params![
            run,
            now,
            end.status,
            end.fetched as i64,
            end.applied.inserts as i64,
            end.applied.updates as i64,
            end.applied.deletes as i64,
            end.error,
            end.requests as i64
        ],
    )
    .map_err(sql)?;
    Ok(())
}

/// Puts the subscription under the breaker. A pending reconcile request is consumed (it is
/// what tripped), so only a new `syncd reconcile` applies the deletes.
pub fn degrade(tx: &Transaction<'_>, name: &str, reason: &str, now: UtcTime) -> Result<()> {
    tx.execute(
        "UPDATE subscriptions SET state = 'degraded', state_reason = ?2 WHERE name = ?1",
        params![name, reason],
    )
    .map_err(sql)?;
    tx.execute(
        "UPDATE cursors SET reconcile_requested = 0, last_reconcile = ?2 WHERE subscription = ?1",
        params![name, now],
    )
    .map_err(sql)?;
    Ok(())
}

/// `syncd resync`: start over (records stay; unchanged ones emit nothing), forget loaded
/// child scopes, lift the breaker, and reconcile after the reload.
pub fn reset_for_resync(tx: &Transaction<'_>, name: &str) -> Result<()> {
    tx.execute(
        "UPDATE cursors SET phase = 'initial', resume = NULL, window_from = NULL, resync_requested = 0, reconcile_requested = 1 WHERE subscription = ?1",
        [name],
    )
    .map_err(sql)?;
    tx.execute("DELETE FROM scopes WHERE subscription = ?1", [name])
        .map_err(sql)?;
    tx.execute(
        "UPDATE subscriptions SET state = 'active', state_reason = NULL WHERE name = ?1",
        [name],
    )
    .map_err(sql)?;
    Ok(())
}

/// One `runs` row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Row id (grows).
    pub id: i64,
    /// Subscription.
    pub subscription: String,
    /// Kind of pass.
    pub kind: PassKind,
    /// Started (our clock).
    pub started_at: UtcTime,
    /// Ended (`None` while running).
    pub ended_at: Option<UtcTime>,
    /// Status.
    pub status: RunStatus,
    /// Rows read.
    pub fetched: i64,
    /// Requests made.
    pub requests: i64,
    /// `insert` changes.
    pub inserts: i64,
    /// `update` changes.
    pub updates: i64,
    /// `delete` changes.
    pub deletes: i64,
    /// Why it failed.
    pub error: Option<String>,
}

/// The `runs` rows with `id > after`, of one subscription or all, in id order (for status
/// views, tests and benches).
pub fn runs_after(conn: &Connection, subscription: Option<&str>, after: i64) -> Result<Vec<Run>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT id, subscription, kind, started_at, ended_at, status, fetched, requests,
                    inserts, updates, deletes, error
             FROM runs WHERE id > ?1 AND (?2 IS NULL OR subscription = ?2) ORDER BY id",
        )
        .map_err(sql)?;
    let rows = statement
        .query_map(params![after, subscription], |r| {
            Ok(Run {
                id: r.get(0)?,
                subscription: r.get(1)?,
                kind: r.get(2)?,
                started_at: r.get(3)?,
                ended_at: r.get(4)?,
                status: r.get(5)?,
                fetched: r.get(6)?,
                requests: r.get(7)?,
                inserts: r.get(8)?,
                updates: r.get(9)?,
                deletes: r.get(10)?,
                error: r.get(11)?,
            })
        })
        .map_err(sql)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// Every `runs` row, in id order.
pub fn all_runs(conn: &Connection) -> Result<Vec<Run>> {
    runs_after(conn, None, i64::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, crate::Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("syncd.db")).unwrap();
        (dir, store)
    }

    fn contacts(fingerprint: &str) -> Registration<'_> {
        Registration {
            name: "contacts",
            kind: EntityKind::Contact,
            fingerprint,
        }
    }

    #[test]
    fn register_creates_once_and_a_changed_fingerprint_requests_a_resync() {
        let (_dir, store) = store();
        let now = UtcTime::now();
        let first = store
            .write_blocking(|tx| register(tx, contacts("a"), now))
            .unwrap();
        assert!(!first, "a new subscription needs no resync");
        let same = store
            .write_blocking(|tx| register(tx, contacts("a"), now))
            .unwrap();
        assert!(!same);
        let changed = store
            .write_blocking(|tx| register(tx, contacts("b"), now))
            .unwrap();
        assert!(changed);
        let state = store.read_blocking(|c| state(c, "contacts")).unwrap();
        assert!(state.resync_requested);
        let other = store.write_blocking(|tx| {
            register(
                tx,
                Registration {
                    kind: EntityKind::Person,
                    ..contacts("b")
                },
                now,
            )
        });
        let err = other.unwrap_err().to_string();
        assert!(err.contains("synced contact before"), "{err}");
    }

    #[test]
    fn runs_start_finish_and_stale_ones_are_aborted() {
        let (_dir, store) = store();
        let now = UtcTime::now();
        let (a, b) = store
            .write_blocking(|tx| {
                let a = start_run(tx, "s", PassKind::Poll, now)?;
                let b = start_run(tx, "s", PassKind::Reconcile, now)?;
                finish_run(
                    tx,
                    a,
                    &RunEnd {
                        status: RunStatus::Ok,
                        fetched: 5,
                        requests: 2,
                        applied: Applied {
                            inserts: 3,
                            ..Applied::default()
                        },
                        error: None,
                    },
                    now,
                )?;
                Ok((a, b))
            })
            .unwrap();
        let aborted = store
            .write_blocking(|tx| abort_stale_runs(tx, now))
            .unwrap();
        assert_eq!(aborted, 1);
        let runs = store.read_blocking(all_runs).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(
            (runs[0].id, runs[0].kind, runs[0].status, runs[0].inserts),
            (a, PassKind::Poll, RunStatus::Ok, 3)
        );
        assert_eq!((runs[0].fetched, runs[0].requests), (5, 2));
        assert_eq!(runs[0].ended_at, Some(now));
        assert_eq!(
            (runs[1].id, runs[1].status, runs[1].kind),
            (b, RunStatus::Aborted, PassKind::Reconcile)
        );
        assert_eq!(
            store
                .read_blocking(|c| runs_after(c, Some("s"), a))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn an_undecodable_resume_is_an_error_not_a_fresh_start() {
        let (_dir, store) = store();
        store
            .write_blocking(|tx| {
                register(tx, contacts("a"), UtcTime::now())?;
                tx.execute("UPDATE cursors SET resume = '{\"kind\":\"sometimes\"}'", [])
                    .map_err(sql)?;
                Ok(())
            })
            .unwrap();
        let err = store
            .read_blocking(|c| state(c, "contacts"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("contacts") && err.contains("resume"), "{err}");
    }

    #[test]
    fn a_resume_written_with_a_naive_start_still_reads() {
        let (_dir, store) = store();
        store
            .write_blocking(|tx| {
                register(tx, contacts("a"), UtcTime::now())?;
                tx.execute(
                    r#"UPDATE cursors SET resume = '{"kind":"poll","window":"2026-12-01","parent":null,"after":41,"max":null,"started":"2026-12-04T23:09:47"}'"#,
                    [],
                )
                .map_err(sql)?;
                Ok(())
            })
            .unwrap();
        let resume = store
            .read_blocking(|c| state(c, "contacts"))
            .unwrap()
            .resume
            .unwrap();
        assert_eq!(resume.kind, PassKind::Poll);
        assert_eq!(resume.after, Some(41));
        assert_eq!(resume.started.text(), "2026-12-04T23:09:47.000Z");
        assert_eq!(resume.floor, None);
    }
}
