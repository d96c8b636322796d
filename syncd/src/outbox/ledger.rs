//! The `outbox` table poller, which turns each row into a task or, when it does not convert or
//! validate, into a `dead` task; and (re-exported from [`crate::store::ledger`], below the
//! outbox) what intake did with a request ([`Intake`]) and how a delivery attempt ended
//! ([`Finish`], with its [`Echo`] row).
//!
//! The statements live in [`crate::store::tasks`] (the ledger) and
//! [`crate::store::outbox_rows`] (the `outbox` table); this module decides, the store records.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::row::{self, Column, Converted, OutboxRow, Stored};
use super::task::{self, NewTask, PublishRequest};
pub use crate::store::ledger::{Echo, Finish, Intake};
use crate::store::{outbox_rows, tasks};
use crate::{Config, Error, Result, Store};

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

/// The dead task that records a rejected `outbox` row: the whole row as stored is kept in
/// `payload` ([`OutboxRow::raw_json`]), what converts is kept in its column, and `last_error`
/// is `reason` (it names the row and column). Its key is `rejected:outbox row N` (outbox ids
/// are never reused; user keys may not start with `rejected:`).
pub fn rejected_row(tenant: &str, row: &OutboxRow, reason: &str) -> tasks::Rejected {
    let text = |column: Column| match row.get(column) {
        Stored::Null => None,
        other => Some(other.lossy_text()),
    };
    tasks::Rejected {
        reference: row.reference(),
        tenant: tenant.to_string(),
        source: "outbox".into(),
        action: text(Column::Action).unwrap_or_default(),
        entity: text(Column::Entity).unwrap_or_default(),
        record_id: match row.get(Column::RecordId) {
            Stored::Integer(id) => Some(*id),
            _ => None,
        },
        external_key: text(Column::ExternalKey),
        raw: row.raw_json(),
        reason: reason.to_string(),
    }
}

fn text_map(field: &str, text: Option<String>) -> Result<BTreeMap<String, String>> {
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(BTreeMap::new()),
        Some(text) => {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| Error::invalid(field, format!("not JSON: {e}")))?;
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

/// A row converted and validated, or the `last_error` of its dead task.
fn decide(config: &Config, row: &OutboxRow) -> std::result::Result<NewTask, String> {
    match row.convert() {
        Ok(converted) => validate_row(config, converted).map_err(|error| {
            let text = error.input_text().unwrap_or_else(|| error.to_string());
            row::rejection(row, &text)
        }),
        Err(errors) => Err(row::column_rejection(row, &errors)),
    }
}

/// Moves up to `limit` rows of the `outbox` table into the ledger, in id order, in one
/// transaction. Every column is read as SQLite stored it and converted with an error naming
/// the column ([`super::row`]), so one malformed row never fails the batch: it becomes a
/// `dead` task (see [`rejected_row`]) and the rows after it are taken in the same pass. Each
/// row is deleted in the transaction that records it.
pub async fn poll_outbox(
    store: &Store,
    config: &Config,
    limit: usize,
    now: DateTime<Utc>,
) -> Result<Moved> {
    let config = config.clone();
    store
        .write(move |tx| {
            let tenant = config
                .outbox
                .tenant
                .clone()
                .or_else(|| config.tenants.first().map(|t| t.name.clone()))
                .unwrap_or_default();
            let mut moved = Moved::default();
            for row in outbox_rows::oldest(tx, limit)? {
                let reason = match decide(&config, &row) {
                    Ok(new) => {
                        let synced = new.uses_synced_ius(&config);
                        match tasks::insert(tx, &new, "outbox", synced, now)? {
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
                        }
                    }
                    Err(reason) => Some(reason),
                };
                if let Some(reason) = reason {
                    let task =
                        tasks::insert_rejected(tx, &rejected_row(&tenant, &row, &reason), now)?;
                    tracing::warn!(
                        outbox_row = row.id,
                        task = task.0,
                        %reason,
                        "outbox: a row of the outbox table was rejected (dead task)"
                    );
                    moved.rejected += 1;
                }
                outbox_rows::delete(tx, row.id)?;
            }
            Ok(moved)
        })
        .await
}
