//! The task ledger (`tasks`) and the echo rows an outbox write leaves (`echoes`): intake (with
//! replay and mismatch detection), claiming due tasks in FIFO order per lane, recording
//! outcomes together with their echo rows, start-up recovery and the operator commands.
//!
//! Every function runs inside the connection or transaction handed in by [`crate::Store`], so
//! a state change is either fully recorded or not at all. Values are typed: a task's id is a
//! [`TaskId`], its state a [`TaskState`], its action an [`Action`] and its entity an
//! [`EntityKind`] (read back as [`Named`], since the `dead` task of a request rejected at
//! intake keeps the text it held); the SQL conversions of those types live here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde_json::Value;
use superoffice::entity::EntityKind;

use super::ledger::{
    Action, Echo, Finish, Intake, IusSource, Named, NewTask, REJECTED_PREFIX, Task, TaskId,
    TaskState,
};
use super::sql;
use super::types::{RestName, TableName, UtcTime};
use crate::hash;
use crate::{Error, Result};

impl ToSql for TaskId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0))
    }
}

impl FromSql for TaskId {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(TaskId)
    }
}

impl ToSql for Action {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl ToSql for TaskState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for TaskState {
    /// Exactly a stored state name; anything else is an error (the schema's CHECK allows no
    /// other), never a guess.
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        TaskState::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown task state {text:?}").into()))
    }
}

impl ToSql for IusSource {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for IusSource {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "explicit" => Ok(IusSource::Explicit),
            "synced" => Ok(IusSource::Synced),
            other => Err(FromSqlError::Other(
                format!("unknown If-Unmodified-Since source {other:?}").into(),
            )),
        }
    }
}

impl<T: std::str::FromStr + std::fmt::Display> FromSql for Named<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str().map(Named::from)
    }
}

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
        state: row.get(15)?,
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
pub fn get(conn: &Connection, id: TaskId) -> Result<Option<Task>> {
    conn.prepare_cached(concat!("SELECT ", columns!(), " FROM tasks WHERE id = ?1"))
        .map_err(sql)?
        .query_row([id], task_from_row)
        .optional()
        .map_err(sql)
}

fn must_get(conn: &Connection, id: TaskId) -> Result<Task> {
    get(conn, id)?.ok_or_else(|| Error::Corrupt {
        column: "tasks.id",
        row: format!("task {id}"),
        problem: "the task vanished right after it was written".into(),
    })
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
        .query_map(params![state, limit], task_from_row)
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
            Ok((row.get::<_, TaskState>(0)?, row.get::<_, i64>(1)?))
        })
        .map_err(sql)?;
    for row in rows {
        let (state, n) = row.map_err(sql)?;
        counts.insert(state, n);
    }
    Ok(counts)
}

/// Number of tasks in any of `states` (`pending` and `in_flight`: the open ones).
pub fn count_in(conn: &Connection, states: &[TaskState]) -> Result<i64> {
    let mut statement = conn
        .prepare_cached("SELECT count(*) FROM tasks WHERE state = ?1")
        .map_err(sql)?;
    let mut total = 0;
    for state in states {
        total += statement
            .query_row([state], |r| r.get::<_, i64>(0))
            .map_err(sql)?;
    }
    Ok(total)
}

/// Whether any task is `pending` with `next_attempt_at` at or before `now`.
pub fn any_due(conn: &Connection, now: DateTime<Utc>) -> Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM tasks WHERE state = 'pending' AND next_attempt_at <= ?1)",
        [UtcTime::from(now)],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// The earliest `next_attempt_at` of pending tasks.
pub fn next_due(conn: &Connection) -> Result<Option<UtcTime>> {
    conn.query_row(
        "SELECT min(next_attempt_at) FROM tasks WHERE state = 'pending'",
        [],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// The synced copy's last-modified time for a record, if a subscription holds it.
pub fn synced_last_modified(
    conn: &Connection,
    entity: EntityKind,
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

/// A synced copy's `source_modified` (SuperOffice's offset-less UTC text, or RFC 3339).
fn source_instant(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            text.parse::<superoffice::SoDateTime>()
                .ok()
                .map(|t| t.to_utc())
        })
}

/// Adds a validated task, or reports a replay or a mismatch of its key. With `synced_ius`
/// ([`NewTask::uses_synced_ius`]) the synced record's last-modified time becomes the task's
/// `If-Unmodified-Since`, read in this transaction.
pub fn insert(
    tx: &Transaction<'_>,
    new: &NewTask,
    source: &str,
    synced_ius: bool,
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
        (Some(at), _) => (Some(UtcTime::from(at)), Some(IusSource::Explicit)),
        (None, Some(id)) if synced_ius => match synced_last_modified(tx, new.entity, id)? {
            Some(text) => match source_instant(&text) {
                Some(at) => (Some(UtcTime::from(at)), Some(IusSource::Synced)),
                None => (None, None),
            },
            None => (None, None),
        },
        _ => (None, None),
    };
    let now = UtcTime::from(now);
    tx.execute(
        "INSERT INTO tasks (key, tenant, action, entity, record_id, external_key, lane, path, query,
             payload, payload_hash, if_unmodified_since, ius_source, source, state, next_attempt_at,
             created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'pending', ?15, ?15, ?15)",
        params![
            new.key,
            new.tenant,
            new.action,
            RestName(new.entity),
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
    let id = TaskId(tx.last_insert_rowid());
    Ok(Intake::Queued(must_get(tx, id)?))
}

/// A request rejected at intake, recorded as a `dead` task so it is visible and never lost.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// What it is: `outbox row 17`, or a source's stream and stream seq. The task's key is
    /// `rejected:{reference}` (user keys may not start with `rejected:`), so a retried batch
    /// or a redelivered message is recorded once.
    pub reference: String,
    /// Tenant.
    pub tenant: String,
    /// `outbox`, or the source's name.
    pub source: String,
    /// The action as the request said it (text; empty if it said none that is text).
    pub action: String,
    /// The entity as the request said it.
    pub entity: String,
    /// The record id, if the request held an integer there.
    pub record_id: Option<i64>,
    /// The external key, if the request held text there.
    pub external_key: Option<String>,
    /// The whole request as it arrived (kept in `payload`).
    pub raw: Value,
    /// Why it was rejected (`last_error`).
    pub reason: String,
}

/// Records a [`Rejected`] request as a `dead` task; a second call for the same reference
/// returns the existing task's id and records nothing.
pub fn insert_rejected(
    tx: &Transaction<'_>,
    rejected: &Rejected,
    now: DateTime<Utc>,
) -> Result<TaskId> {
    let key = format!("{REJECTED_PREFIX}{}", rejected.reference);
    if let Some(task) = by_key(tx, &key)? {
        return Ok(task.id);
    }
    tx.execute(
        "INSERT INTO tasks (key, tenant, action, entity, record_id, external_key, lane, path, query,
             payload, payload_hash, source, state, next_attempt_at, last_error, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '{}', '{}', ?8, ?9, ?10, 'dead', ?11, ?12, ?11, ?11)",
        params![
            key,
            rejected.tenant,
            rejected.action,
            rejected.entity,
            rejected.record_id,
            rejected.external_key,
            format!("rejected/{}", rejected.reference),
            rejected.raw.to_string(),
            hash::sha256_hex(hash::canonical(&rejected.raw).as_bytes()),
            rejected.source,
            UtcTime::from(now),
            rejected.reason,
        ],
    )
    .map_err(sql)?;
    Ok(TaskId(tx.last_insert_rowid()))
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
) -> Result<TaskId> {
    let rejected = Rejected {
        reference: reference.to_string(),
        tenant: tenant.to_string(),
        source: source.to_string(),
        action: String::new(),
        entity: String::new(),
        record_id: None,
        external_key: None,
        raw: serde_json::json!({ "message": body }),
        reason: reason.to_string(),
    };
    insert_rejected(tx, &rejected, now)
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
    let now = UtcTime::from(now);
    let ids: Vec<TaskId> = {
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
pub fn release(tx: &Transaction<'_>, ids: &[TaskId], now: DateTime<Utc>) -> Result<()> {
    let now = UtcTime::from(now);
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
pub fn record_posted(
    tx: &Transaction<'_>,
    id: TaskId,
    record: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    tx.prepare_cached(
        "UPDATE tasks SET result_id = ?2, maybe_sent = 1, updated_at = ?3 WHERE id = ?1",
    )
    .map_err(sql)?
    .execute(params![id, record, UtcTime::from(now)])
    .map_err(sql)?;
    Ok(())
}

/// Tasks an earlier run left `in_flight` (it crashed or was killed): back to `pending`, marked
/// `maybe_sent` so their next delivery resolves what the server already has before sending.
pub fn recover_in_flight(tx: &Transaction<'_>, now: DateTime<Utc>) -> Result<Vec<TaskId>> {
    let ids: Vec<TaskId> = {
        let mut statement = tx
            .prepare("SELECT id FROM tasks WHERE state = 'in_flight' ORDER BY id")
            .map_err(sql)?;
        statement
            .query_map([], |row| row.get(0))
            .map_err(sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql)?
    };
    let now = UtcTime::from(now);
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

/// Whether any task is `in_flight`.
pub fn any_in_flight(conn: &Connection) -> Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM tasks WHERE state = 'in_flight')",
        [],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// Records the echo row `task`'s write left on a record (replacing an older one of the same
/// record), so that the subscriptions store the change it causes without reporting it.
pub fn record_echo(
    tx: &Transaction<'_>,
    echo: &Echo,
    task: TaskId,
    now: DateTime<Utc>,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO echoes (entity, id, entity_hash, published_at, task_id)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (entity, id) DO UPDATE SET entity_hash = excluded.entity_hash,
             published_at = excluded.published_at, task_id = excluded.task_id",
    )
    .map_err(sql)?
    .execute(params![
        TableName(echo.entity),
        echo.id,
        echo.hash,
        UtcTime::from(now),
        task
    ])
    .map_err(sql)?;
    Ok(())
}

/// Records the outcome of an attempt (and the echo row of a successful write) in one
/// transaction.
pub fn finish(
    tx: &Transaction<'_>,
    id: TaskId,
    outcome: &Finish,
    now: DateTime<Utc>,
) -> Result<()> {
    let now_text = UtcTime::from(now);
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
                record_echo(tx, echo, id, now)?;
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
                params![
                    id,
                    error,
                    UtcTime::from(*at),
                    i64::from(*maybe_sent),
                    now_text
                ],
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

/// An echo row as stored: the entity hash (`None`: deleted) and the task that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoRow {
    /// `entity_hash`.
    pub hash: Option<String>,
    /// `task_id`.
    pub task_id: Option<TaskId>,
}

/// The echo row of a record.
pub fn echo(conn: &Connection, entity: EntityKind, id: i64) -> Result<Option<EchoRow>> {
    conn.query_row(
        "SELECT entity_hash, task_id FROM echoes WHERE entity = ?1 AND id = ?2",
        params![TableName(entity), id],
        |r| {
            Ok(EchoRow {
                hash: r.get(0)?,
                task_id: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(sql)
}

/// The record ids of `entity` that tasks already own (as `result_id`), among `ids`.
pub fn owned_results(conn: &Connection, entity: EntityKind, ids: &[i64]) -> Result<Vec<i64>> {
    let mut owned = Vec::new();
    let mut statement = conn
        .prepare_cached("SELECT 1 FROM tasks WHERE entity = ?1 AND result_id = ?2 LIMIT 1")
        .map_err(sql)?;
    for id in ids {
        if statement
            .exists(params![RestName(entity), id])
            .map_err(sql)?
        {
            owned.push(*id);
        }
    }
    Ok(owned)
}

/// The record id an earlier, delivered task of the same lane produced or touched.
pub fn lane_result(conn: &Connection, lane: &str, before: TaskId) -> Result<Option<i64>> {
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
    entity: EntityKind,
    record: i64,
    before: TaskId,
) -> Result<Option<Value>> {
    let text: Option<Option<String>> = conn
        .query_row(
            "SELECT result FROM tasks WHERE entity = ?1 AND result_id = ?2 AND id < ?3
                 AND state = 'done' ORDER BY id DESC LIMIT 1",
            params![RestName(entity), record, before],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql)?;
    Ok(json_column(text.flatten()))
}

/// `tasks retry`: a failed, conflicting, dead or skipped task goes back to `pending` with a
/// fresh attempt budget ([`Task::check_retry`]); `overwrite` drops its
/// `If-Unmodified-Since`.
pub fn retry(
    tx: &Transaction<'_>,
    id: TaskId,
    overwrite: bool,
    now: DateTime<Utc>,
) -> Result<Task> {
    let task = get(tx, id)?.ok_or_else(|| Error::NoTask(id))?;
    task.check_retry()?;
    tx.execute(
        "UPDATE tasks SET state = 'pending', attempts = 0, next_attempt_at = ?2, updated_at = ?2,
             if_unmodified_since = CASE WHEN ?3 THEN NULL ELSE if_unmodified_since END,
             ius_source = CASE WHEN ?3 THEN NULL ELSE ius_source END
         WHERE id = ?1",
        params![id, UtcTime::from(now), overwrite],
    )
    .map_err(sql)?;
    must_get(tx, id)
}

/// `tasks skip`: the task will not be delivered ([`Task::check_skip`]); later tasks of its
/// record may go ahead.
pub fn skip(tx: &Transaction<'_>, id: TaskId, now: DateTime<Utc>) -> Result<Task> {
    let task = get(tx, id)?.ok_or_else(|| Error::NoTask(id))?;
    task.check_skip()?;
    tx.execute(
        "UPDATE tasks SET state = 'skipped', updated_at = ?2 WHERE id = ?1",
        params![id, UtcTime::from(now)],
    )
    .map_err(sql)?;
    must_get(tx, id)
}

/// `tasks purge`: deletes `done` and `skipped` tasks last changed before `before`. Returns how
/// many. Other states are kept until retried or skipped.
pub fn purge(tx: &Transaction<'_>, before: DateTime<Utc>) -> Result<usize> {
    tx.execute(
        "DELETE FROM tasks WHERE state IN ('done', 'skipped') AND updated_at < ?1",
        [UtcTime::from(before)],
    )
    .map_err(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_columns_round_trip_and_unknown_text_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("syncd.db")).unwrap();
        let rejected = Rejected {
            reference: "outbox row 3".into(),
            tenant: "t".into(),
            source: "outbox".into(),
            action: "frobnicate".into(),
            entity: "contact".into(),
            record_id: Some(7),
            external_key: None,
            raw: serde_json::json!({ "outbox_row": { "id": 3 } }),
            reason: "outbox row 3: column action: bad".into(),
        };
        let now = Utc::now();
        let id = store
            .write_blocking(|tx| insert_rejected(tx, &rejected, now))
            .unwrap();
        let again = store
            .write_blocking(|tx| insert_rejected(tx, &rejected, now))
            .unwrap();
        assert_eq!(id, again, "a reference is recorded once");
        let task = store.read_blocking(|c| get(c, id)).unwrap().unwrap();
        assert_eq!(task.state, TaskState::Dead);
        assert_eq!(task.action, Named::Other("frobnicate".into()));
        // Not the canonical spelling (`Contact`): kept as the text it was.
        assert_eq!(task.entity, Named::Other("contact".into()));
        assert!(task.action().is_err() && task.entity().is_err());
        let err = store
            .write_blocking(|tx| retry(tx, id, false, now))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rejected at intake"), "{err}");
        let counts = store.read_blocking(counts).unwrap();
        assert_eq!(counts[&TaskState::Dead], 1);
        assert_eq!(counts[&TaskState::Pending], 0);
        assert_eq!(
            store
                .read_blocking(|c| count_in(c, &[TaskState::Dead, TaskState::Pending]))
                .unwrap(),
            1
        );
    }

    #[test]
    fn an_unknown_state_is_an_error_not_a_guess() {
        assert!(TaskState::column_result(ValueRef::Text(b"in_flight")).is_ok());
        assert!(TaskState::column_result(ValueRef::Text(b"lost")).is_err());
        assert!(TaskState::column_result(ValueRef::Integer(1)).is_err());
        assert_eq!(
            IusSource::column_result(ValueRef::Text(b"synced")).unwrap(),
            IusSource::Synced
        );
        assert!(IusSource::column_result(ValueRef::Text(b"guessed")).is_err());
        assert_eq!(
            Named::<Action>::column_result(ValueRef::Text(b"upsert")).unwrap(),
            Named::Known(Action::Upsert)
        );
        assert_eq!(
            Named::<EntityKind>::column_result(ValueRef::Text(b"Person")).unwrap(),
            Named::Known(EntityKind::Person)
        );
    }
}
