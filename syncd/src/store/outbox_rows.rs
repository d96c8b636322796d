//! The `outbox` table (the transactional outbox other local programs INSERT into): its rows
//! read exactly as SQLite stored them, and their deletion once the ledger recorded them.
//!
//! Every column is read as a [`ValueRef`] into a [`Stored`] value, whatever its declared
//! type, so a BLOB in a `TEXT` column or text in `record_id` reaches the conversion in
//! [`crate::outbox::row`] (which names the column) instead of failing the whole batch here.
//! [`Stored`] and [`OutboxRow`] are defined here; their conversion rules live in the outbox.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Transaction};

use super::sql;
use crate::Result;

/// A value as SQLite stored it, whatever the column's declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// NULL.
    Null,
    /// INTEGER.
    Integer(i64),
    /// REAL.
    Real(f64),
    /// TEXT, as bytes (SQLite does not check that it is UTF-8).
    Text(Vec<u8>),
    /// BLOB.
    Blob(Vec<u8>),
}

/// One row of the `outbox` table, every column as SQLite stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// `outbox.id`.
    pub id: i64,
    /// The columns of [`crate::outbox::row::Column::ALL`], in that order.
    pub values: [Stored; 9],
    /// `created_at` as stored.
    pub created_at: Stored,
}

impl From<ValueRef<'_>> for Stored {
    fn from(value: ValueRef<'_>) -> Self {
        match value {
            ValueRef::Null => Stored::Null,
            ValueRef::Integer(i) => Stored::Integer(i),
            ValueRef::Real(r) => Stored::Real(r),
            ValueRef::Text(t) => Stored::Text(t.to_vec()),
            ValueRef::Blob(b) => Stored::Blob(b.to_vec()),
        }
    }
}

/// Whether the `outbox` table has rows.
pub fn has_rows(conn: &Connection) -> Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM outbox)", [], |r| r.get(0))
        .map_err(sql)
}

/// How many rows the `outbox` table holds.
pub fn count(conn: &Connection) -> Result<i64> {
    conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .map_err(sql)
}

/// Up to `limit` rows, in id order, every column as stored (the columns of
/// [`crate::outbox::row::Column::ALL`], in that order, then `created_at`).
pub fn oldest(tx: &Transaction<'_>, limit: usize) -> Result<Vec<OutboxRow>> {
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
        .map_err(sql)
}

/// Deletes a row (in the transaction that recorded it in the ledger).
pub fn delete(tx: &Transaction<'_>, id: i64) -> Result<()> {
    tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")
        .map_err(sql)?
        .execute([id])
        .map_err(sql)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::row::Column;

    #[test]
    fn rows_are_read_as_stored_in_id_order_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("syncd.db")).unwrap();
        store
            .write_blocking(|tx| {
                tx.execute_batch(
                    "INSERT INTO outbox (key, action, entity, record_id, payload)
                         VALUES ('a', 'create', 'contact', 'abc', X'0102');
                     INSERT INTO outbox (key, action, entity, record_id, payload)
                         VALUES ('b', 'update', 'contact', 5, '{}');",
                )
                .map_err(sql)
            })
            .unwrap();
        assert!(store.read_blocking(has_rows).unwrap());
        let rows = store.write_blocking(|tx| oldest(tx, 10)).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].get(Column::RecordId),
            &Stored::Text(b"abc".to_vec())
        );
        assert_eq!(rows[0].get(Column::Payload), &Stored::Blob(vec![1, 2]));
        assert_eq!(rows[1].get(Column::RecordId), &Stored::Integer(5));
        assert_eq!(rows[1].get(Column::ExternalKey), &Stored::Null);
        let first = rows[0].id;
        store.write_blocking(|tx| delete(tx, first)).unwrap();
        assert_eq!(store.read_blocking(count).unwrap(), 1);
        let left = store.write_blocking(|tx| oldest(tx, 10)).unwrap();
        assert_eq!(left[0].get(Column::Key), &Stored::Text(b"b".to_vec()));
    }
}
