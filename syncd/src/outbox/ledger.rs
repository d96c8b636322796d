//! The task ledger in SQLite: intake (with replay and mismatch detection), claiming due tasks in
//! FIFO order per lane, recording outcomes together with their echo rows, start-up recovery,
//! the operator commands and the `outbox` table poller.
//!
//! Every function here runs inside one transaction handed in by [`crate::Store`], so a state
//! change is either fully recorded or not at all.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde_json::{Value, json};

use super::row::{self, Column, Converted, OutboxRow, Stored};
use super::task::{self, NewTask, PublishRequest, REJECTED_PREFIX, Task, TaskState, ts};
use crate::hash;
use crate::store::sql;
use crate::{Config, Error, Result};

macro_rules! columns {
    () => {
        "id, key, tenant, action, entity, record_id, external_key, lane, path, query, payload, \
         payload_hash, if_unmodified_since, ius_source, source, state, attempts, maybe_sent, \
         next_attempt_at, last_attempt_at, result_id, result, conflict, last_error, created_at, \
         updated_at"
    };
}

fn json_column(text: Option<String>) -> Option<Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

fn task_from_row(row: &Row<'_>) -> rusqlite::Result<Task> {
    let state: String = row.get(15)?;
    Ok(Task {
        id: row.get(0)?,
        key: row.get(1)?,
        tenant: row.get(2)?,
        action: row.get(3)?,
        entity: row.get(4)?,
        record_id: row.get(5)?,
        external_key: row.get(6)?,
        lane: row.get(7)?,
        path: json_column(row.get(8)?).unwrap_or(Value::Null),
        query: json_column(row.get(9)?).unwrap_or(Value::Null),
        payload: json_column(row.get(10)?),
        payload_hash: row.get(11)?,
        if_unmodified_since: row.get(12)?,
        ius_source: row.get(13)?,
        source: row.get(14)?,
        state: state.parse().unwrap_or(TaskState::Failed),
        attempts: row.get(16)?,
        maybe_sent: row.get::<_, i64>(17)? != 0,
        next_attempt_at: row.get(18)?,
        last_attempt_at: row.get(19)?,
        result_id: row.get(20)?,
        result: json_column(row.get(21)?),
        conflict: json_column(row.get(22)?),
        last_error: row.get(23)?,
        created_at: row.get(24)?,
        updated_at: row.get(25)?,
    })
}

/// One task by id.
pub fn get(conn: &Connection, id: i64) -> Result<Option<Task>> {
    conn.prepare_cached(concat!("SELECT ", columns!(), " FROM tasks WHERE id = ?1"))
        .map_err(sql)?
        .query_row([id], task_from_row)
        .optional()
        .map_err(sql)
}

/// One task by idempotency key.
pub fn by_key(conn: &Connection, key: &str) -> Result<Option<Task>> {
    conn.prepare_cached(concat!("SELECT ", columns!(), " FROM tasks WHERE key = ?1"))
        .map_err(sql)?
        .query_row([key], task_from_row)
        .optional()
        .map_err(sql)
}

/// Tasks, newest first, optionally of one state.
pub fn list(conn: &Connection, state: Option<TaskState>, limit: i64) -> Result<Vec<Task>> {
    let mut statement = conn
        .prepare(concat!(
            "SELECT ",
            columns!(),
            " FROM tasks WHERE (?1 IS NULL OR state = ?1) ORDER BY id DESC LIMIT ?2"
        ))
        .map_err(sql)?;
    let rows = statement
        .query_map(params![state.map(|s| s.as_str()), limit], task_from_row)
        .map_err(sql)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql)?;
    Ok(rows)
}

/// Number of tasks per state (every state present, zero included).
pub fn counts(conn: &Connection) -> Result<BTreeMap<TaskState, i64>> {
    let mut counts: BTreeMap<TaskState, i64> = TaskState::ALL.iter().map(|s| (*s, 0)).collect();
    let mut statement = conn
        .prepare("SELECT state, count(*) FROM tasks GROUP BY state")
        .map_err(sql)?;
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })
        .map_err(sql)?;
    for row in rows {
        let (state, n) = row.map_err(sql)?;
        if let Ok(state) = state.parse::<TaskState>() {
            counts.insert(state, n);
        }
    }
    Ok(counts)
}

/// What intake did with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    /// A new task.
    Queued(Task),
    /// The key exists with the same request: the stored task.
    Replay(Task),
    /// The key exists with a different request: the stored task (nothing was queued).
    Mismatch(Task),
}

impl Intake {
    /// The task concerned.
    pub fn task(&self) -> &Task {
        match self {
            Intake::Queued(t) | Intake::Replay(t) | Intake::Mismatch(t) => t,
        }
    }
}

/// The synced copy's last-modified time for a record, if a subscription holds it.
pub fn synced_last_modified(
    conn: &Connection,
    entity: superoffice::entity::EntityKind,
    id: i32,
) -> Result<Option<String>> {
    conn.query_row(
        "SELECT r.source_modified FROM records r JOIN subscriptions s ON s.name = r.subscription
         WHERE (lower(s.entity) = lower(?1) OR lower(s.entity) = lower(?2)) AND r.id = ?3
           AND r.deleted_at IS NULL AND r.source_modified IS NOT NULL
         ORDER BY r.source_modified DESC LIMIT 1",
        params![entity.name(), entity.table(), id],
        |row| row.get::<_, String>(0),
    )
    .optional()
    .map_err(sql)
}

/// Adds a validated task, or reports a replay or a mismatch of its key.
pub fn insert(
    tx: &Transaction<'_>,
    config: &Config,
    new: &NewTask,
    source: &str,
    now: DateTime<Utc>,
) -> Result<Intake> {
    if let Some(existing) = by_key(tx, &new.key)? {
        return Ok(if existing.payload_hash == new.payload_hash {
            Intake::Replay(existing)
        } else {
            Intake::Mismatch(existing)
        });
    }
    let (ius, ius_source) = match (new.if_unmodified_since, new.record_id) {
        (Some(at), _) => (Some(ts(at)), Some("explicit")),
        (None, Some(id))
            if new.action != task::Action::Create
                && config.route(new.entity).use_synced_last_modified =>
        {
            match synced_last_modified(tx, new.entity, id)? {
                Some(text) => match task::parse_instant("source_modified", &text) {
                    Ok(at) => (Some(ts(at)), Some("synced")),
                    Err(_) => (None, None),
                },
                None => (None, None),
            }
        }
        _ => (None, None),
    };
    let now = ts(now);
    tx.execute(
        "INSERT INTO tasks (key, tenant, action, entity, record_id, external_key, lane, path, query,
             payload, payload_hash, if_unmodified_since, ius_source, source, state, next_attempt_at,
             created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'pending', ?15, ?15, ?15)",
        params![
            new.key,
            new.tenant,
            new.action.as_str(),
            new.entity.name(),
            new.record_id,
            new.external_key,
            new.lane(),
            serde_json::to_string(&new.path).unwrap_or_else(|_| "{}".into()),
            serde_json::to_string(&new.query).unwrap_or_else(|_| "{}".into()),
            new.payload.as_ref().map(Value::to_string),
            new.payload_hash,
            ius,
            ius_source,
            source,
            now,
        ],
    )
    .map_err(sql)?;
    let id = tx.last_insert_rowid();
    let task = get(tx, id)?.ok_or_else(|| Error::Store(format!("task {id} vanished")))?;
    Ok(Intake::Queued(task))
}

/// Records a message of a `[[source]]` that cannot become a task as a `dead` task, so it is
/// visible and never lost: `payload` is `{"message": TEXT}` (the message body as text) and
/// `last_error` is `reason`. Its key is `rejected:{reference}` (the stream and stream seq), so
/// a redelivered message is recorded once. Returns the task id (the existing one for a
/// redelivery).
pub fn insert_rejected_message(
    tx: &Transaction<'_>,
    tenant: &str,
    source: &str,
    reference: &str,
    body: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<i64> {
    let key = format!("{REJECTED_PREFIX}{reference}");
    if let Some(task) = by_key(tx, &key)? {
        return Ok(task.id);
    }
    let now = ts(now);
    let payload = serde_json::json!({ "message": body });
    tx.execute(
        "INSERT INTO tasks (key, tenant, action, entity, lane, path, query,
             payload, payload_hash, source, state, next_attempt_at, last_error, created_at, updated_at)
         VALUES (?1, ?2, '', '', ?3, '{}', '{}', ?4, ?5, ?6, 'dead', ?7, ?8, ?7, ?7)",
        params![
            key,
            tenant,
            format!("rejected/{reference}"),
            payload.to_string(),
            hash::sha256_hex(hash::canonical(&payload).as_bytes()),
            source,
            now,
            reason,
        ],
    )
    .map_err(sql)?;
    Ok(tx.last_insert_rowid())
}

/// Records an `outbox` row that cannot become a task as a `dead` task, so it is visible and
/// never lost: the whole row as stored is kept in `payload` ([`OutboxRow::raw_json`]), what
/// converts is kept in its column, and `last_error` is `reason` (it names the row and column).
/// Its key is `rejected:outbox row N` (outbox ids are never reused; user keys may not start
/// with `rejected:`), so a retried batch cannot record the row twice.
pub fn insert_rejected(
    tx: &Transaction<'_>,
    tenant: &str,
    row: &OutboxRow,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<i64> {
    let now = ts(now);
    let reference = row.reference();
    let raw = row.raw_json();
    let text = |column: Column| match row.get(column) {
        Stored::Null => None,
        other => Some(other.lossy_text()),
    };
    let record_id = match row.get(Column::RecordId) {
        Stored::Integer(id) => Some(*id),
        _ => None,
    };
    tx.execute(
        "INSERT INTO tasks (key, tenant, action, entity, record_id, external_key, lane, path, query,
             payload, payload_hash, source, state, next_attempt_at, last_error, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '{}', '{}', ?8, ?9, 'outbox', 'dead', ?10, ?11, ?10, ?10)",
        params![
            format!("{REJECTED_PREFIX}{reference}"),
            tenant,
            text(Column::Action).unwrap_or_default(),
            text(Column::Entity).unwrap_or_default(),
            record_id,
            text(Column::ExternalKey),
            format!("rejected/{reference}"),
            raw.to_string(),
            hash::sha256_hex(hash::canonical(&raw).as_bytes()),
            now,
            reason,
        ],
    )
    .map_err(sql)?;
    Ok(tx.last_insert_rowid())
}

/// Claims up to `limit` due tasks of `tenant` that head their lane: they become `in_flight`
/// (attempts + 1) in this transaction. Returned in id order.
pub fn claim(
    tx: &Transaction<'_>,
    tenant: &str,
    limit: usize,
    now: DateTime<Utc>,
) -> Result<Vec<Task>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let now = ts(now);
    let ids: Vec<i64> = {
        let mut statement = tx
            .prepare_cached(
                "SELECT t.id FROM tasks t
                 WHERE t.state = 'pending' AND t.tenant = ?1 AND t.next_attempt_at <= ?2
                   AND NOT EXISTS (SELECT 1 FROM tasks e
                                   WHERE e.lane = t.lane AND e.id < t.id
                                     AND e.state NOT IN ('done', 'skipped'))
                 ORDER BY t.id LIMIT ?3",
            )
            .map_err(sql)?;
        statement
            .query_map(params![tenant, now, limit as i64], |row| row.get(0))
            .map_err(sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql)?
    };
    let mut claimed = Vec::with_capacity(ids.len());
    for id in ids {
        tx.prepare_cached(
            "UPDATE tasks SET state = 'in_flight', attempts = attempts + 1, last_attempt_at = ?2,
                 updated_at = ?2 WHERE id = ?1",
        )
        .map_err(sql)?
        .execute(params![id, now])
        .map_err(sql)?;
        if let Some(task) = get(tx, id)? {
            claimed.push(task);
        }
    }
    Ok(claimed)
}

/// Gives claimed tasks back without an attempt (shutdown before their first call).
pub fn release(tx: &Transaction<'_>, ids: &[i64], now: DateTime<Utc>) -> Result<()> {
    let now = ts(now);
    for id in ids {
        tx.execute(
            "UPDATE tasks SET state = 'pending', attempts = max(attempts - 1, 0), updated_at = ?2
             WHERE id = ?1 AND state = 'in_flight'",
            params![id, now],
        )
        .map_err(sql)?;
    }
    Ok(())
}

/// A create's POST answered with a new id: recorded before anything else happens, so a crash
/// after this point resolves by id, not by search.
pub fn record_posted(tx: &Transaction<'_>, id: i64, record: i64, now: DateTime<Utc>) -> Result<()> {
    tx.prepare_cached(
        "UPDATE tasks SET result_id = ?2, maybe_sent = 1, updated_at = ?3 WHERE id = ?1",
    )
    .map_err(sql)?
    .execute(params![id, record, ts(now)])
    .map_err(sql)?;
    Ok(())
}

/// Tasks an earlier run left `in_flight` (it crashed or was killed): back to `pending`, marked
/// `maybe_sent` so their next delivery resolves what the server already has before sending.
pub fn recover_in_flight(tx: &Transaction<'_>, now: DateTime<Utc>) -> Result<Vec<i64>> {
    let ids: Vec<i64> = {
        let mut statement = tx
            .prepare("SELECT id FROM tasks WHERE state = 'in_flight' ORDER BY id")
            .map_err(sql)?;
        statement
            .query_map([], |row| row.get(0))
            .map_err(sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql)?
    };
    let now = ts(now);
    for id in &ids {
        tx.execute(
            "UPDATE tasks SET state = 'pending', maybe_sent = 1, next_attempt_at = ?2,
                 last_error = coalesce(last_error, 'interrupted (the daemon stopped mid-attempt)'),
                 updated_at = ?2
             WHERE id = ?1",
            params![id, now],
        )
        .map_err(sql)?;
    }
    Ok(ids)
}

/// An echo row: what our write left on a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Echo {
    /// Table name (`contact`).
    pub entity: &'static str,
    /// Record id.
    pub id: i64,
    /// Entity hash (`None`: deleted).
    pub hash: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// Delivered.
    Done {
        /// Record created or touched.
        result_id: Option<i64>,
        /// What the write answered.
        result: Option<Value>,
        /// Conflict details when a policy resolved a 412.
        conflict: Option<Value>,
        /// The echo row to upsert in the same transaction.
        echo: Option<Echo>,
    },
    /// Try again at `at`.
    Retry {
        /// Why.
        error: String,
        /// The attempt may have reached the server.
        maybe_sent: bool,
        /// When.
        at: DateTime<Utc>,
    },
    /// Retryable, but the attempts are used up.
    Dead {
        /// Why.
        error: String,
        /// The attempt may have reached the server.
        maybe_sent: bool,
    },
    /// Permanent failure.
    Failed {
        /// Why.
        error: String,
    },
    /// Unresolved conflict; both versions kept.
    Conflict {
        /// Why.
        error: String,
        /// `{ours, theirs, …}`.
        conflict: Value,
    },
}

impl Finish {
    /// The state it leads to.
    pub fn state(&self) -> TaskState {
        match self {
            Finish::Done { .. } => TaskState::Done,
            Finish::Retry { .. } => TaskState::Pending,
            Finish::Dead { .. } => TaskState::Dead,
            Finish::Failed { .. } => TaskState::Failed,
            Finish::Conflict { .. } => TaskState::Conflict,
        }
    }
}

/// Records the outcome of an attempt (and the echo row of a successful write) in one
/// transaction.
pub fn finish(tx: &Transaction<'_>, id: i64, outcome: &Finish, now: DateTime<Utc>) -> Result<()> {
    let now_text = ts(now);
    match outcome {
        Finish::Done {
            result_id,
            result,
            conflict,
            echo,
        } => {
            tx.prepare_cached(
                "UPDATE tasks SET state = 'done', result_id = coalesce(?2, result_id), result = ?3,
                     conflict = coalesce(?4, conflict), last_error = NULL, updated_at = ?5
                 WHERE id = ?1",
            )
            .map_err(sql)?
            .execute(params![
                id,
                result_id,
                result.as_ref().map(Value::to_string),
                conflict.as_ref().map(Value::to_string),
                now_text
            ])
            .map_err(sql)?;
            if let Some(echo) = echo {
                tx.prepare_cached(
                    "INSERT INTO echoes (entity, id, entity_hash, published_at, task_id)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (entity, id) DO UPDATE SET entity_hash = excluded.entity_hash,
                         published_at = excluded.published_at, task_id = excluded.task_id",
                )
                .map_err(sql)?
                .execute(params![echo.entity, echo.id, echo.hash, now_text, id])
                .map_err(sql)?;
            }
        }
        Finish::Retry {
            error,
            maybe_sent,
            at,
        } => {
            tx.execute(
                "UPDATE tasks SET state = 'pending', last_error = ?2, next_attempt_at = ?3,
                     maybe_sent = max(maybe_sent, ?4), updated_at = ?5
                 WHERE id = ?1",
                params![id, error, ts(*at), i64::from(*maybe_sent), now_text],
            )
            .map_err(sql)?;
        }
        Finish::Dead { error, maybe_sent } => {
            tx.execute(
                "UPDATE tasks SET state = 'dead', last_error = ?2, maybe_sent = max(maybe_sent, ?3),
                     updated_at = ?4
                 WHERE id = ?1",
                params![id, error, i64::from(*maybe_sent), now_text],
            )
            .map_err(sql)?;
        }
        Finish::Failed { error } => {
            tx.execute(
                "UPDATE tasks SET state = 'failed', last_error = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, error, now_text],
            )
            .map_err(sql)?;
        }
        Finish::Conflict { error, conflict } => {
            tx.execute(
                "UPDATE tasks SET state = 'conflict', last_error = ?2, conflict = ?3, updated_at = ?4
                 WHERE id = ?1",
                params![id, error, conflict.to_string(), now_text],
            )
            .map_err(sql)?;
        }
    }
    Ok(())
}

/// The record ids of `entity` that tasks already own (as `result_id`), among `ids`.
pub fn owned_results(conn: &Connection, entity: &str, ids: &[i64]) -> Result<Vec<i64>> {
    let mut owned = Vec::new();
    let mut statement = conn
        .prepare_cached("SELECT 1 FROM tasks WHERE entity = ?1 AND result_id = ?2 LIMIT 1")
        .map_err(sql)?;
    for id in ids {
        if statement.exists(params![entity, id]).map_err(sql)? {
            owned.push(*id);
        }
    }
    Ok(owned)
}

/// The record id an earlier, delivered task of the same lane produced or touched.
pub fn lane_result(conn: &Connection, lane: &str, before: i64) -> Result<Option<i64>> {
    conn.query_row(
        "SELECT result_id FROM tasks WHERE lane = ?1 AND id < ?2 AND state = 'done'
             AND result_id IS NOT NULL ORDER BY id DESC LIMIT 1",
        params![lane, before],
        |row| row.get(0),
    )
    .optional()
    .map_err(sql)
}

/// What our own latest delivered write before task `before` answered for a record.
pub fn own_last_write(
    conn: &Connection,
    entity: &str,
    record: i64,
    before: i64,
) -> Result<Option<Value>> {
    let text: Option<Option<String>> = conn
        .query_row(
            "SELECT result FROM tasks WHERE entity = ?1 AND result_id = ?2 AND id < ?3
                 AND state = 'done' ORDER BY id DESC LIMIT 1",
            params![entity, record, before],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql)?;
    Ok(json_column(text.flatten()))
}

/// `tasks retry`: a failed, conflicting, dead or skipped task goes back to `pending` with a
/// fresh attempt budget; `overwrite` drops its `If-Unmodified-Since`.
pub fn retry(tx: &Transaction<'_>, id: i64, overwrite: bool, now: DateTime<Utc>) -> Result<Task> {
    let task = get(tx, id)?.ok_or_else(|| Error::Invalid(format!("no task {id}")))?;
    if matches!(
        task.state,
        TaskState::Pending | TaskState::InFlight | TaskState::Done
    ) || task.key.starts_with(REJECTED_PREFIX)
    {
        return Err(Error::Invalid(format!(
            "task {id} is {}{}: nothing to retry",
            task.state,
            if task.key.starts_with(REJECTED_PREFIX) {
                " (rejected at intake; publish it again, corrected)"
            } else {
                ""
            }
        )));
    }
    let now = ts(now);
    tx.execute(
        "UPDATE tasks SET state = 'pending', attempts = 0, next_attempt_at = ?2, updated_at = ?2,
             if_unmodified_since = CASE WHEN ?3 THEN NULL ELSE if_unmodified_since END,
             ius_source = CASE WHEN ?3 THEN NULL ELSE ius_source END
         WHERE id = ?1",
        params![id, now, overwrite],
    )
    .map_err(sql)?;
    get(tx, id)?.ok_or_else(|| Error::Store(format!("task {id} vanished")))
}

/// `tasks skip`: the task will not be delivered; later tasks of its record may go ahead.
pub fn skip(tx: &Transaction<'_>, id: i64, now: DateTime<Utc>) -> Result<Task> {
    let task = get(tx, id)?.ok_or_else(|| Error::Invalid(format!("no task {id}")))?;
    if matches!(
        task.state,
        TaskState::InFlight | TaskState::Done | TaskState::Skipped
    ) {
        return Err(Error::Invalid(format!(
            "task {id} is {}: it cannot be skipped",
            task.state
        )));
    }
    tx.execute(
        "UPDATE tasks SET state = 'skipped', updated_at = ?2 WHERE id = ?1",
        params![id, ts(now)],
    )
    .map_err(sql)?;
    get(tx, id)?.ok_or_else(|| Error::Store(format!("task {id} vanished")))
}

/// `tasks purge`: deletes `done` and `skipped` tasks last changed before `before`. Returns how
/// many. Other states are kept until retried or skipped.
pub fn purge(tx: &Transaction<'_>, before: DateTime<Utc>) -> Result<usize> {
    tx.execute(
        "DELETE FROM tasks WHERE state IN ('done', 'skipped') AND updated_at < ?1",
        [ts(before)],
    )
    .map_err(sql)
}

/// What the `outbox` poller did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    /// New tasks.
    pub queued: usize,
    /// Rows whose key and request were already queued.
    pub replays: usize,
    /// Rows recorded as `dead` tasks.
    pub rejected: usize,
}

fn text_map(field: &str, text: Option<String>) -> Result<BTreeMap<String, String>> {
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(BTreeMap::new()),
        Some(text) => {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| Error::Invalid(format!("{field}: not JSON: {e}")))?;
            let request = PublishRequest::from_json(&json!({ field: value }))?;
            Ok(if field == "path" {
                request.path
            } else {
                request.query
            })
        }
    }
}

/// The request of a converted row: `path` and `query` parsed, then validated.
fn validate_row(config: &Config, converted: Converted) -> Result<NewTask> {
    let Converted {
        mut request,
        path,
        query,
    } = converted;
    request.path = text_map("path", path)?;
    request.query = text_map("query", query)?;
    task::validate(config, &request)
}

/// Moves up to `limit` rows of the `outbox` table into the ledger, in id order. Every column
/// is read as SQLite stored it and converted with an error naming the column
/// ([`super::row`]), so one malformed row never fails the batch: it becomes a `dead` task
/// (see [`insert_rejected`]) and the rows after it are taken in the same pass. Each row is
/// deleted in the transaction that records it.
pub fn poll_outbox(
    tx: &Transaction<'_>,
    config: &Config,
    limit: usize,
    now: DateTime<Utc>,
) -> Result<Moved> {
    let rows: Vec<OutboxRow> = {
        let mut statement = tx
            .prepare_cached(
                "SELECT id, key, action, entity, record_id, external_key, path, query, payload,
                        if_unmodified_since, created_at
                 FROM outbox ORDER BY id LIMIT ?1",
            )
            .map_err(sql)?;
        statement
            .query_map([limit as i64], |r| {
                let value = |i: usize| r.get_ref(i).map(Stored::from);
                Ok(OutboxRow {
                    id: r.get(0)?,
                    values: [
                        value(1)?,
                        value(2)?,
                        value(3)?,
                        value(4)?,
                        value(5)?,
                        value(6)?,
                        value(7)?,
                        value(8)?,
                        value(9)?,
                    ],
                    created_at: value(10)?,
                })
            })
            .map_err(sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql)?
    };
    let tenant = config
        .outbox
        .tenant
        .clone()
        .or_else(|| config.tenants.first().map(|t| t.name.clone()))
        .unwrap_or_default();
    let mut moved = Moved::default();
    for row in rows {
        let outcome = match row.convert() {
            Ok(converted) => match validate_row(config, converted) {
                Ok(new) => match insert(tx, config, &new, "outbox", now)? {
                    Intake::Queued(_) => {
                        moved.queued += 1;
                        None
                    }
                    Intake::Replay(_) => {
                        moved.replays += 1;
                        None
                    }
                    Intake::Mismatch(existing) => Some(row::rejection(
                        &row,
                        &format!(
                            "key: {:?} is already used by task {} with a different request",
                            new.key, existing.id
                        ),
                    )),
                },
                Err(Error::Invalid(message)) => Some(row::rejection(&row, &message)),
                Err(other) => Some(row::rejection(&row, &other.to_string())),
            },
            Err(errors) => Some(row::column_rejection(&row, &errors)),
        };
        if let Some(reason) = outcome {
            let task = insert_rejected(tx, &tenant, &row, &reason, now)?;
            tracing::warn!(
                outbox_row = row.id,
                task,
                %reason,
                "outbox: a row of the outbox table was rejected (dead task)"
            );
            moved.rejected += 1;
        }
        tx.execute("DELETE FROM outbox WHERE id = ?1", [row.id])
            .map_err(sql)?;
    }
    Ok(moved)
}

/// Whether the `outbox` table has rows.
pub fn outbox_has_rows(conn: &Connection) -> Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM outbox)", [], |r| r.get(0))
        .map_err(sql)
}

/// The earliest `next_attempt_at` of pending tasks.
pub fn next_due(conn: &Connection) -> Result<Option<String>> {
    conn.query_row(
        "SELECT min(next_attempt_at) FROM tasks WHERE state = 'pending'",
        [],
        |r| r.get(0),
    )
    .map_err(sql)
}
