//! The synced records and the change rows they produce: reading what a subscription holds, and
//! applying a page (records, change rows, echo suppression, cursor, scope, refetch queue,
//! quarantine) in ONE transaction ([`apply`]). Every function is blocking and runs inside a
//! [`crate::Store`] closure on the blocking pool.
//!
//! Which change a row is (`insert`, `update`, nothing) is decided here against the stored hash,
//! inside the transaction that writes it: deciding outside would race with the previous page's
//! commit. The hashes themselves are computed by the caller ([`crate::hash`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use superoffice::SoDateTime;
use superoffice::entity::EntityKind;

use super::runs::Resume;
use super::types::{RecordId, Seq, TableName, UtcTime};
use super::{quarantine, sql};
use crate::feed::Op;
use crate::{Error, Result};

/// Live records of a subscription.
pub fn live_count(conn: &Connection, name: &str) -> Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM records WHERE subscription = ?1 AND deleted_at IS NULL",
        [name],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// What is stored about a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Content hash.
    pub hash: String,
    /// Tombstoned.
    pub deleted: bool,
    /// Source timestamp stored with it.
    pub modified: Option<String>,
}

/// The stored state of `ids`.
pub fn stored(conn: &Connection, name: &str, ids: &[i64]) -> Result<HashMap<i64, Stored>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT hash, deleted_at IS NOT NULL, source_modified FROM records WHERE subscription = ?1 AND id = ?2",
        )
        .map_err(sql)?;
    let mut out = HashMap::with_capacity(ids.len());
    for id in ids {
        let found = statement
            .query_row(params![name, id], |r| {
                Ok(Stored {
                    hash: r.get(0)?,
                    deleted: r.get(1)?,
                    modified: r.get(2)?,
                })
            })
            .optional()
            .map_err(sql)?;
        if let Some(found) = found {
            out.insert(*id, found);
        }
    }
    Ok(out)
}

/// Live ids in `(after, upto]` (`upto = None`: no upper bound), for one parent scope or all.
pub fn live_ids_between(
    conn: &Connection,
    name: &str,
    parent: Option<i64>,
    after: Option<i64>,
    upto: Option<i64>,
) -> Result<Vec<i64>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT id FROM records WHERE subscription = ?1 AND deleted_at IS NULL
               AND id > ?2 AND id <= ?3 AND (?4 IS NULL OR parent_id = ?4) ORDER BY id",
        )
        .map_err(sql)?;
    let ids = statement
        .query_map(
            params![
                name,
                after.unwrap_or(i64::MIN),
                upto.unwrap_or(i64::MAX),
                parent
            ],
            |r| r.get(0),
        )
        .map_err(sql)?
        .collect::<std::result::Result<Vec<i64>, _>>()
        .map_err(sql)?;
    Ok(ids)
}

/// Live children whose parent is not among the parent subscription's live records.
pub fn orphans(conn: &Connection, name: &str, parent_subscription: &str) -> Result<Vec<i64>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT c.id FROM records c WHERE c.subscription = ?1 AND c.deleted_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM records p WHERE p.subscription = ?2 AND p.id = c.parent_id AND p.deleted_at IS NULL)
             ORDER BY c.id",
        )
        .map_err(sql)?;
    let ids = statement
        .query_map(params![name, parent_subscription], |r| r.get(0))
        .map_err(sql)?
        .collect::<std::result::Result<Vec<i64>, _>>()
        .map_err(sql)?;
    Ok(ids)
}

/// Up to `limit` live parent records with id ≥ `from`, in id order: (id, json).
pub fn parents(
    conn: &Connection,
    parent_subscription: &str,
    from: i64,
    limit: usize,
) -> Result<Vec<(i64, String)>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT id, json FROM records WHERE subscription = ?1 AND deleted_at IS NULL AND id >= ?2 ORDER BY id LIMIT ?3",
        )
        .map_err(sql)?;
    let rows = statement
        .query_map(params![parent_subscription, from, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(sql)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// Whether a child scope was fully loaded.
pub fn scope_loaded(conn: &Connection, name: &str, parent: i64) -> Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM scopes WHERE subscription = ?1 AND parent_id = ?2)",
        params![name, parent],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// One record to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upsert {
    /// Primary key.
    pub id: i64,
    /// The JSON stored (after the transform).
    pub json: String,
    /// [`crate::hash::record_hash`] of it.
    pub hash: String,
    /// max(registered, updated) from the archive row.
    pub modified: Option<String>,
    /// [`crate::hash::entity_hash`] of the fetched entity before the transform (entity shape).
    pub entity_hash: Option<String>,
}

/// A record the transform did not produce (see [`PageWrite::quarantine`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Primary key.
    pub id: i64,
    /// The record as fetched (the transform's input), canonical JSON.
    pub json: String,
    /// Why the transform did not produce it.
    pub error: String,
}

/// How own writes (the outbox's `echoes`) are recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoMode {
    /// Entity shape: the fetched entity's hash equals `echoes.entity_hash`.
    Entity,
    /// Row shape: the row's source timestamp is at most `published_at` + 2 s.
    Row,
}

/// Cursor change committed with a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorWrite {
    /// Mid-pass: where to resume.
    Progress(Resume),
    /// The pass completed.
    Finish {
        /// New watermark (max of old and this pass's).
        watermark: Option<String>,
        /// Start of the next incremental window.
        window_from: String,
    },
}

/// Everything one transaction applies.
#[derive(Debug, Clone)]
pub struct PageWrite {
    /// Subscription.
    pub subscription: String,
    /// The entity: its table name labels the change rows (`contact`); `echoes` rows are
    /// matched by table or REST name (`Contact`).
    pub kind: EntityKind,
    /// Child subscriptions: the parent the rows were read for.
    pub parent: Option<i64>,
    /// Records to store.
    pub upserts: Vec<Upsert>,
    /// Records to tombstone.
    pub deletes: Vec<i64>,
    /// Cursor change.
    pub cursor: Option<CursorWrite>,
    /// Mark this child scope loaded.
    pub scope_loaded: Option<i64>,
    /// Refetch-queue rows consumed: (id, event id).
    pub dequeue: Vec<(i64, String)>,
    /// Echo suppression.
    pub echo: Option<EchoMode>,
    /// Every subscription of this entity (this one included): an echo row is deleted once all
    /// of them have recognised it.
    pub echo_peers: Vec<String>,
    /// Count changes no webhook announced since this time (`webhook_events.entity` value,
    /// earliest `received_at`).
    pub unannounced: Option<(&'static str, UtcTime)>,
    /// Set `last_reconcile` (and clear the request flag; `clear_degraded` also lifts the
    /// breaker).
    pub reconciled: bool,
    /// Lift the breaker.
    pub clear_degraded: bool,
    /// Records whose transform failed: quarantined ([`crate::store::quarantine`]) instead of
    /// stored.
    pub quarantine: Vec<Rejected>,
    /// Records whose transform succeeded (stored or skipped): released from quarantine.
    pub transformed: Vec<i64>,
    /// Our clock.
    pub now: UtcTime,
}

impl PageWrite {
    /// A write that changes nothing yet, for `subscription` of `kind`, stamped `now`.
    pub fn new(subscription: String, kind: EntityKind, now: UtcTime) -> PageWrite {
        PageWrite {
            subscription,
            kind,
            parent: None,
            upserts: Vec::new(),
            deletes: Vec::new(),
            cursor: None,
            scope_loaded: None,
            dequeue: Vec::new(),
            echo: None,
            echo_peers: Vec::new(),
            unannounced: None,
            reconciled: false,
            clear_degraded: false,
            quarantine: Vec::new(),
            transformed: Vec::new(),
            now,
        }
    }
}

/// What a transaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// `insert` changes.
    pub inserts: u64,
    /// `update` changes.
    pub updates: u64,
    /// `delete` changes.
    pub deletes: u64,
    /// Changes recognised as our own echoes (stored, not reported).
    pub suppressed: u64,
    /// Changes no webhook announced.
    pub unannounced: u64,
    /// Live records added minus removed.
    pub live_delta: i64,
    /// Quarantined records of the subscription after the transaction, when it changed them.
    pub quarantined: Option<i64>,
    /// The `seq` of the last change row written (`None`: none), for the feed notifier.
    pub last_seq: Option<Seq>,
}

impl std::ops::AddAssign for Applied {
    fn add_assign(&mut self, o: Applied) {
        self.inserts += o.inserts;
        self.updates += o.updates;
        self.deletes += o.deletes;
        self.suppressed += o.suppressed;
        self.unannounced += o.unannounced;
        self.live_delta += o.live_delta;
        if o.quarantined.is_some() {
            self.quarantined = o.quarantined;
        }
        self.last_seq = self.last_seq.max(o.last_seq);
    }
}

fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    text.parse::<SoDateTime>().ok().map(|d| d.to_utc())
}

/// Applies a page: records, change rows, echoes, cursor, scope and queue, in `tx`.
pub fn apply(tx: &Transaction<'_>, w: &PageWrite) -> Result<Applied> {
    let mut applied = Applied::default();
    let mut change_rows: Vec<ChangeRow<'_>> = Vec::with_capacity(w.upserts.len() + w.deletes.len());
    // The page's time as stored, formatted once (it is bound to every record and change row).
    let now = w.now.text();
    upsert_records(tx, w, &now, &mut applied, &mut change_rows)?;
    tombstone_records(tx, w, &mut applied, &mut change_rows)?;
    applied.last_seq = insert_changes(tx, w, &now, &change_rows)?;
    write_cursor(tx, w)?;
    consume_queue(tx, w)?;
    if w.clear_degraded {
        tx.execute(
            "UPDATE subscriptions SET state = 'active', state_reason = NULL WHERE name = ?1",
            [&w.subscription],
        )
        .map_err(sql)?;
    }
    let released = quarantine::release(tx, &w.subscription, &w.transformed)?;
    for r in &w.quarantine {
        quarantine::put(tx, &w.subscription, r.id, &r.json, &r.error, w.now)?;
    }
    if released > 0 || !w.quarantine.is_empty() {
        applied.quarantined = Some(quarantine::count(tx, &w.subscription)?);
    }
    Ok(applied)
}

/// Stores the page's records: an unchanged hash only refreshes the source timestamp (and
/// parent), a changed one is an `update`, a new or tombstoned record an `insert`; a change
/// recognised as our own echo is stored but gets no change row.
fn upsert_records<'w>(
    tx: &Transaction<'_>,
    w: &'w PageWrite,
    now: &str,
    applied: &mut Applied,
    change_rows: &mut Vec<ChangeRow<'w>>,
) -> Result<()> {
    let before_page = existing_rows(tx, &w.subscription, &w.upserts)?;
    let mut upsert = tx
        .prepare_cached(
            "INSERT INTO records (subscription, id, json, hash, source_modified, first_seen, updated_at, deleted_at, parent_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, NULL, ?7)
             ON CONFLICT (subscription, id) DO UPDATE SET json = excluded.json, hash = excluded.hash,
                 source_modified = excluded.source_modified, updated_at = excluded.updated_at,
                 deleted_at = NULL, parent_id = COALESCE(excluded.parent_id, records.parent_id)",
        )
        .map_err(sql)?;
    let mut touch = tx
        .prepare_cached(
            "UPDATE records SET source_modified = ?3, parent_id = COALESCE(?4, parent_id) WHERE subscription = ?1 AND id = ?2",
        )
        .map_err(sql)?;
    // Per-row echo checks only when this entity has echoes at all.
    let echo = match w.echo {
        Some(mode) if echoes_exist(tx, w)? => Some(mode),
        _ => None,
    };
    let mut new_records: Vec<&Upsert> = Vec::new();
    for u in &w.upserts {
        let stored = before_page.get(&u.id);
        let live = stored.filter(|e| !e.deleted);
        let op = match live {
            Some(e) if e.hash == u.hash => {
                if e.modified != u.modified || (w.parent.is_some() && e.parent != w.parent) {
                    touch
                        .execute(params![w.subscription, u.id, u.modified, w.parent])
                        .map_err(sql)?;
                }
                continue;
            }
            Some(_) => Op::Update,
            None => Op::Insert,
        };
        if stored.is_some() {
            upsert
                .execute(params![
                    w.subscription,
                    u.id,
                    u.json,
                    u.hash,
                    u.modified,
                    now,
                    w.parent
                ])
                .map_err(sql)?;
        } else {
            new_records.push(u);
        }
        if op == Op::Insert {
            applied.live_delta += 1;
        }
        if let Some(mode) = echo
            && echo_consumed(tx, w, u, mode)?
        {
            applied.suppressed += 1;
            continue;
        }
        change_rows.push(ChangeRow {
            id: u.id,
            op,
            hash: Some(u.hash.as_str()),
            previous_hash: live.map(|e| e.hash.clone()),
            record: Some(u.json.as_str()),
        });
        if op == Op::Insert {
            applied.inserts += 1;
        } else {
            applied.updates += 1;
        }
        if let Some((entity, since)) = &w.unannounced
            && !announced(tx, entity, u.id, since)?
        {
            applied.unannounced += 1;
        }
    }
    insert_records(tx, w, now, &new_records)
}

/// Tombstones the page's deletes; a record that is not live emits nothing.
fn tombstone_records(
    tx: &Transaction<'_>,
    w: &PageWrite,
    applied: &mut Applied,
    change_rows: &mut Vec<ChangeRow<'_>>,
) -> Result<()> {
    let mut tombstone = tx
        .prepare_cached(
            "UPDATE records SET deleted_at = ?3, updated_at = ?3 WHERE subscription = ?1 AND id = ?2 AND deleted_at IS NULL RETURNING hash",
        )
        .map_err(sql)?;
    for id in &w.deletes {
        let deleted: Option<String> = tombstone
            .query_row(params![w.subscription, id, w.now], |r| r.get(0))
            .optional()
            .map_err(sql)?;
        if let Some(previous) = deleted {
            change_rows.push(ChangeRow {
                id: *id,
                op: Op::Delete,
                hash: None,
                previous_hash: Some(previous),
                record: None,
            });
            applied.deletes += 1;
            applied.live_delta -= 1;
            if let Some((entity, since)) = &w.unannounced
                && !announced(tx, entity, *id, since)?
            {
                applied.unannounced += 1;
            }
        }
    }
    Ok(())
}

/// The cursor, scope and reconcile bookkeeping committed with the page.
fn write_cursor(tx: &Transaction<'_>, w: &PageWrite) -> Result<()> {
    match &w.cursor {
        Some(CursorWrite::Progress(resume)) => {
            let text = serde_json::to_string(resume).map_err(|source| Error::Encode {
                what: "the resume position".into(),
                source,
            })?;
            tx.execute(
                "UPDATE cursors SET resume = ?2 WHERE subscription = ?1",
                params![w.subscription, text],
            )
            .map_err(sql)?;
        }
        Some(CursorWrite::Finish {
            watermark,
            window_from,
        }) => {
            tx.execute(
                "UPDATE cursors SET phase = 'incremental', resume = NULL, watermark = ?2, window_from = ?3, last_success = ?4 WHERE subscription = ?1",
                params![w.subscription, watermark, window_from, w.now],
            )
            .map_err(sql)?;
        }
        None => {}
    }
    if let Some(parent) = w.scope_loaded {
        tx.execute(
            "INSERT OR REPLACE INTO scopes (subscription, parent_id, loaded_at) VALUES (?1, ?2, ?3)",
            params![w.subscription, parent, w.now],
        )
        .map_err(sql)?;
    }
    if w.reconciled {
        tx.execute(
            "UPDATE cursors SET last_reconcile = ?2, reconcile_requested = 0 WHERE subscription = ?1",
            params![w.subscription, w.now],
        )
        .map_err(sql)?;
    }
    Ok(())
}

/// Removes the refetches the page applied and marks their webhook events processed.
fn consume_queue(tx: &Transaction<'_>, w: &PageWrite) -> Result<()> {
    if w.dequeue.is_empty() {
        return Ok(());
    }
    let mut dequeue = tx
        .prepare_cached(
            "DELETE FROM refetch_queue WHERE subscription = ?1 AND id = ?2 AND event_id = ?3",
        )
        .map_err(sql)?;
    let mut processed = tx
        .prepare_cached(
            "UPDATE webhook_events SET processed_at = ?2 WHERE event_id = ?1 AND processed_at IS NULL",
        )
        .map_err(sql)?;
    for (id, event_id) in &w.dequeue {
        dequeue
            .execute(params![w.subscription, id, event_id])
            .map_err(sql)?;
        processed.execute(params![event_id, w.now]).map_err(sql)?;
    }
    Ok(())
}

/// What a record held before the page (see [`existing_rows`]).
struct Existing {
    hash: String,
    deleted: bool,
    modified: Option<String>,
    parent: Option<i64>,
}

/// Rows per multi-row `INSERT` (fewer statement executions; well under SQLite's variable limit).
const INSERT_CHUNK: usize = 50;

/// `INSERT … VALUES` text for `rows` rows: `row(k)` writes the k-th (0-based) tuple. The
/// values every row shares are numbered parameters bound once per statement.
fn multi_row_insert(head: &str, rows: usize, row: impl Fn(usize) -> String) -> String {
    let mut out = String::with_capacity(head.len() + 48 * rows);
    out.push_str(head);
    for index in 0..rows {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&row(index));
    }
    out
}

/// The statement text for a chunk of `rows`: built once for full chunks (every page but its
/// last chunk), per call otherwise.
fn chunk_text(
    full: &'static std::sync::OnceLock<String>,
    rows: usize,
    build: impl Fn(usize) -> String,
) -> std::borrow::Cow<'static, str> {
    if rows == INSERT_CHUNK {
        std::borrow::Cow::Borrowed(full.get_or_init(|| build(rows)).as_str())
    } else {
        std::borrow::Cow::Owned(build(rows))
    }
}

/// Inserts records that do not exist yet, [`INSERT_CHUNK`] rows per statement; the
/// subscription, the page time and the parent are bound once per statement.
fn insert_records(
    tx: &Transaction<'_>,
    w: &PageWrite,
    now: &str,
    records: &[&Upsert],
) -> Result<()> {
    static FULL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let build = |rows: usize| {
        multi_row_insert(
            "INSERT INTO records (subscription, id, json, hash, source_modified, first_seen, updated_at, deleted_at, parent_id) VALUES ",
            rows,
            |k| {
                let p = 4 + 4 * k;
                format!(
                    "(?1, ?{}, ?{}, ?{}, ?{}, ?2, ?2, NULL, ?3)",
                    p,
                    p + 1,
                    p + 2,
                    p + 3
                )
            },
        )
    };
    for chunk in records.chunks(INSERT_CHUNK) {
        let text = chunk_text(&FULL, chunk.len(), build);
        let mut statement = tx.prepare_cached(&text).map_err(sql)?;
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(3 + chunk.len() * 4);
        values.extend([&w.subscription as &dyn rusqlite::ToSql, &now, &w.parent]);
        for u in chunk {
            values.extend([&u.id as &dyn rusqlite::ToSql, &u.json, &u.hash, &u.modified]);
        }
        statement
            .execute(rusqlite::params_from_iter(values))
            .map_err(sql)?;
    }
    Ok(())
}

/// One change row to append (see `0006_change_content.sql` for the columns).
struct ChangeRow<'a> {
    id: i64,
    op: Op,
    hash: Option<&'a str>,
    previous_hash: Option<String>,
    record: Option<&'a str>,
}

/// Appends change rows, [`INSERT_CHUNK`] per statement, in order; returns the `seq` of the
/// last one (`None` when there were none).
fn insert_changes(
    tx: &Transaction<'_>,
    w: &PageWrite,
    now: &str,
    rows: &[ChangeRow<'_>],
) -> Result<Option<Seq>> {
    static FULL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let entity = TableName(w.kind);
    let build = |rows: usize| {
        multi_row_insert(
            "INSERT INTO changes (subscription, entity, id, op, at, hash, previous_hash, record) VALUES ",
            rows,
            |k| {
                let p = 4 + 5 * k;
                format!(
                    "(?1, ?2, ?{}, ?{}, ?3, ?{}, ?{}, ?{})",
                    p,
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4
                )
            },
        )
    };
    for chunk in rows.chunks(INSERT_CHUNK) {
        let text = chunk_text(&FULL, chunk.len(), build);
        let mut statement = tx.prepare_cached(&text).map_err(sql)?;
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(3 + chunk.len() * 5);
        values.extend([&w.subscription as &dyn rusqlite::ToSql, &entity, &now]);
        for row in chunk {
            values.extend([
                &row.id as &dyn rusqlite::ToSql,
                &row.op,
                &row.hash,
                &row.previous_hash,
                &row.record,
            ]);
        }
        statement
            .execute(rusqlite::params_from_iter(values))
            .map_err(sql)?;
    }
    // A multi-row INSERT assigns rowids in order: the last one inserted is the highest.
    Ok((!rows.is_empty()).then(|| Seq(tx.last_insert_rowid())))
}

/// Whether `echoes` holds anything for this entity (one query per page instead of one per
/// record).
fn echoes_exist(tx: &Transaction<'_>, w: &PageWrite) -> Result<bool> {
    tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM echoes WHERE entity IN (?1, ?2))")
        .map_err(sql)?
        .query_row(params![w.kind.table(), w.kind.name()], |r| r.get(0))
        .map_err(sql)
}

/// The stored (hash, deleted, source timestamp, parent) of the records a page upserts: one
/// range query when the ids are dense (keyset pages), point lookups otherwise.
fn existing_rows(
    tx: &Transaction<'_>,
    subscription: &str,
    upserts: &[Upsert],
) -> Result<HashMap<i64, Existing>> {
    let mut out = HashMap::with_capacity(upserts.len());
    let (Some(low), Some(high)) = (
        upserts.iter().map(|u| u.id).min(),
        upserts.iter().map(|u| u.id).max(),
    ) else {
        return Ok(out);
    };
    let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, Existing)> {
        Ok((
            r.get(0)?,
            Existing {
                hash: r.get(1)?,
                deleted: r.get(2)?,
                modified: r.get(3)?,
                parent: r.get(4)?,
            },
        ))
    };
    if (high - low) as u128 <= 4 * upserts.len() as u128 + 16 {
        let mut statement = tx
            .prepare_cached(
                "SELECT id, hash, deleted_at IS NOT NULL, source_modified, parent_id FROM records
                 WHERE subscription = ?1 AND id BETWEEN ?2 AND ?3",
            )
            .map_err(sql)?;
        for row in statement
            .query_map(params![subscription, low, high], map)
            .map_err(sql)?
        {
            let (id, existing) = row.map_err(sql)?;
            out.insert(id, existing);
        }
    } else {
        let mut statement = tx
            .prepare_cached(
                "SELECT id, hash, deleted_at IS NOT NULL, source_modified, parent_id FROM records
                 WHERE subscription = ?1 AND id = ?2",
            )
            .map_err(sql)?;
        for u in upserts {
            if let Some((id, existing)) = statement
                .query_row(params![subscription, u.id], map)
                .optional()
                .map_err(sql)?
            {
                out.insert(id, existing);
            }
        }
    }
    Ok(out)
}

/// Whether an `echoes` row makes this change our own. A recognised echo is remembered in
/// `echo_seen`; the row is deleted once every subscription of the entity recognised it, or at
/// once when the change is not the echo (someone changed the record after our write).
fn echo_consumed(tx: &Transaction<'_>, w: &PageWrite, u: &Upsert, mode: EchoMode) -> Result<bool> {
    let echo: Option<(Option<String>, UtcTime)> = tx
        .prepare_cached(
            "SELECT entity_hash, published_at FROM echoes WHERE entity IN (?1, ?2) AND id = ?3",
        )
        .map_err(sql)?
        .query_row(params![w.kind.table(), w.kind.name(), u.id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(sql)?;
    let Some((entity_hash, published_at)) = echo else {
        return Ok(false);
    };
    let entity = TableName(w.kind);
    let ours = match mode {
        EchoMode::Entity => entity_hash.is_some() && entity_hash == u.entity_hash,
        EchoMode::Row => match (
            u.modified.as_deref().and_then(parse_instant),
            Some(published_at.at()),
        ) {
            (Some(modified), Some(published)) => {
                modified <= published + chrono::Duration::seconds(2)
            }
            _ => false,
        },
    };
    let consumed = if ours {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO echo_seen (subscription, entity, id, published_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(sql)?
        .execute(params![w.subscription, entity, u.id, published_at])
        .map_err(sql)?;
        let mut seen = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM echo_seen WHERE subscription = ?1 AND entity = ?2 AND id = ?3 AND published_at = ?4)",
            )
            .map_err(sql)?;
        let mut all = true;
        for peer in &w.echo_peers {
            let found: bool = seen
                .query_row(params![peer, entity, u.id, published_at], |r| r.get(0))
                .map_err(sql)?;
            all &= found;
        }
        all
    } else {
        true
    };
    if consumed {
        tx.prepare_cached("DELETE FROM echoes WHERE entity IN (?1, ?2) AND id = ?3")
            .map_err(sql)?
            .execute(params![w.kind.table(), w.kind.name(), u.id])
            .map_err(sql)?;
        tx.prepare_cached("DELETE FROM echo_seen WHERE entity = ?1 AND id = ?2")
            .map_err(sql)?
            .execute(params![entity, u.id])
            .map_err(sql)?;
    }
    Ok(ours)
}

/// Forgets echoes (and their `echo_seen` marks) of `entity` published before `before`: every
/// subscription that could see them has polled since.
pub fn expire_echoes(tx: &Transaction<'_>, kind: EntityKind, before: UtcTime) -> Result<usize> {
    tx.execute(
        "DELETE FROM echo_seen WHERE entity = ?1 AND published_at < ?2",
        params![TableName(kind), before],
    )
    .map_err(sql)?;
    tx.execute(
        "DELETE FROM echoes WHERE entity IN (?1, ?2) AND published_at < ?3",
        params![kind.table(), kind.name(), before],
    )
    .map_err(sql)
}

/// Whether a webhook announced a change of the record since `since`.
fn announced(tx: &Transaction<'_>, entity: &str, id: i64, since: &UtcTime) -> Result<bool> {
    tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM webhook_events WHERE entity = ?1 AND primary_key = ?2 AND received_at >= ?3)",
    )
    .map_err(sql)?
    .query_row(params![entity, id, since], |r| r.get(0))
    .map_err(sql)
}

/// One stored record, as [`all`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Primary key.
    pub id: RecordId,
    /// The stored JSON (canonical).
    pub json: String,
    /// Its hash.
    pub hash: String,
    /// Source timestamp (SuperOffice's text).
    pub modified: Option<String>,
    /// Tombstoned.
    pub deleted: bool,
    /// Child subscriptions: the parent record.
    pub parent: Option<i64>,
}

/// Every record of a subscription (tombstones included), in id order.
pub fn all(conn: &Connection, subscription: &str) -> Result<Vec<Record>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT id, json, hash, source_modified, deleted_at IS NOT NULL, parent_id FROM records
             WHERE subscription = ?1 ORDER BY id",
        )
        .map_err(sql)?;
    let rows = statement
        .query_map([subscription], |r| {
            Ok(Record {
                id: r.get(0)?,
                json: r.get(1)?,
                hash: r.get(2)?,
                modified: r.get(3)?,
                deleted: r.get(4)?,
                parent: r.get(5)?,
            })
        })
        .map_err(sql)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// One change row, as [`changes`] reads it (the feed's full event is
/// [`crate::store::feed::changes_after`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Sequence number.
    pub seq: Seq,
    /// Subscription.
    pub subscription: String,
    /// Record id.
    pub id: RecordId,
    /// What happened.
    pub op: Op,
    /// Hash after the change (`None` for deletes).
    pub hash: Option<String>,
}

/// The change rows of one subscription or all, in `seq` order. An unknown `op` is an error
/// naming the row.
pub fn changes(conn: &Connection, subscription: Option<&str>) -> Result<Vec<Change>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT seq, subscription, id, op, hash FROM changes
             WHERE (?1 IS NULL OR subscription = ?1) ORDER BY seq",
        )
        .map_err(sql)?;
    let rows = statement
        .query_map([subscription], |r| {
            Ok((
                r.get::<_, Seq>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get::<_, String>(3)?,
                r.get(4)?,
            ))
        })
        .map_err(sql)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql)?;
    rows.into_iter()
        .map(|(seq, subscription, id, op, hash)| {
            let op = Op::parse(&op).ok_or_else(|| Error::Corrupt {
                column: "changes.op",
                row: format!("seq {seq}"),
                problem: format!("unknown op {op:?}"),
            })?;
            Ok(Change {
                seq,
                subscription,
                id,
                op,
                hash,
            })
        })
        .collect()
}

/// How many `echoes` rows (own writes not yet recognised by every subscription) are kept.
pub fn echo_count(conn: &Connection) -> Result<i64> {
    conn.query_row("SELECT count(*) FROM echoes", [], |r| r.get(0))
        .map_err(sql)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::runs::{Registration, register};

    fn upsert(id: i64, json: &str) -> Upsert {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        let (json, hash) = crate::hash::canonical_text_and_hash(&value);
        Upsert {
            id,
            json,
            hash,
            modified: Some("2026-12-04 10:00:00".into()),
            entity_hash: None,
        }
    }

    #[test]
    fn a_page_inserts_updates_skips_unchanged_and_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("syncd.db")).unwrap();
        let now = UtcTime::now();
        store
            .write_blocking(|tx| {
                register(
                    tx,
                    Registration {
                        name: "contacts",
                        kind: EntityKind::Contact,
                        fingerprint: "f",
                    },
                    now,
                )
                .map(|_| ())
            })
            .unwrap();
        let page = |upserts: Vec<Upsert>, deletes: Vec<i64>| {
            let mut w = PageWrite::new("contacts".into(), EntityKind::Contact, now);
            w.upserts = upserts;
            w.deletes = deletes;
            store.write_blocking(move |tx| apply(tx, &w)).unwrap()
        };
        let first = page(
            vec![upsert(1, r#"{"a":1}"#), upsert(2, r#"{"a":2}"#)],
            vec![],
        );
        assert_eq!((first.inserts, first.live_delta), (2, 2));
        let second = page(
            vec![upsert(1, r#"{"a":1}"#), upsert(2, r#"{"a":3}"#)],
            vec![1, 99],
        );
        assert_eq!(
            (second.inserts, second.updates, second.deletes),
            (0, 1, 1),
            "unchanged 1 emits nothing; 99 was never stored"
        );
        let changes = store
            .read_blocking(|c| changes(c, Some("contacts")))
            .unwrap();
        let ops: Vec<(i64, Op)> = changes.iter().map(|c| (c.id.get(), c.op)).collect();
        assert_eq!(
            ops,
            [
                (1, Op::Insert),
                (2, Op::Insert),
                (2, Op::Update),
                (1, Op::Delete)
            ]
        );
        assert_eq!(second.last_seq, Some(changes[3].seq));
        assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
        let records = store.read_blocking(|c| all(c, "contacts")).unwrap();
        assert_eq!(records.len(), 2);
        assert!(records[0].deleted && !records[1].deleted);
        assert_eq!(records[1].json, r#"{"a":3}"#);
        assert_eq!(
            store.read_blocking(|c| live_count(c, "contacts")).unwrap(),
            1
        );
        assert_eq!(store.read_blocking(echo_count).unwrap(), 0);
    }
}
