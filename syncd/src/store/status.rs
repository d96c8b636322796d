//! What `syncd status` reads, the flags `syncd resync`/`reconcile` set, and the probe `/readyz`
//! makes.

use rusqlite::{Connection, Transaction};

use super::sql;
use crate::Result;

/// One subscription as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    /// Subscription.
    pub name: String,
    /// `active` or `degraded`.
    pub state: String,
    /// Why it is degraded (empty otherwise).
    pub reason: String,
    /// Live records.
    pub rows: i64,
    /// When the last successful pass ended (syncd's UTC text).
    pub last_success: Option<String>,
    /// The newest source change committed (SuperOffice's text).
    pub watermark: Option<String>,
    /// Failed runs that started in the last 24 hours.
    pub failed_last_day: i64,
    /// The poll interval in force, in milliseconds, as the daemon last recorded it.
    pub poll_interval_ms: Option<i64>,
}

/// Every registered subscription, by name.
pub fn subscriptions(conn: &Connection) -> Result<Vec<SubscriptionRow>> {
    let mut statement = conn
        .prepare(
            "SELECT s.name, s.state, COALESCE(s.state_reason, ''),
                    (SELECT count(*) FROM records r WHERE r.subscription = s.name AND r.deleted_at IS NULL),
                    c.last_success, c.watermark,
                    (SELECT count(*) FROM runs u WHERE u.subscription = s.name AND u.status = 'failed'
                        AND u.started_at >= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 day')),
                    c.poll_interval_ms
             FROM subscriptions s LEFT JOIN cursors c ON c.subscription = s.name ORDER BY s.name",
        )
        .map_err(sql)?;
    let rows = statement
        .query_map([], |row| {
            Ok(SubscriptionRow {
                name: row.get(0)?,
                state: row.get(1)?,
                reason: row.get(2)?,
                rows: row.get(3)?,
                last_success: row.get(4)?,
                watermark: row.get(5)?,
                failed_last_day: row.get(6)?,
                poll_interval_ms: row.get(7)?,
            })
        })
        .map_err(sql)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// Work a subscription's loop picks up on its next pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A full reload (`syncd resync`).
    Resync,
    /// A delete reconciliation (`syncd reconcile`).
    Reconcile,
}

impl Request {
    /// How commands and messages name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Request::Resync => "resync",
            Request::Reconcile => "reconcile",
        }
    }
}

/// Sets the request flag on a subscription's cursor; false when the subscription has no cursor
/// yet (it has not run).
pub fn request(tx: &Transaction<'_>, subscription: &str, request: Request) -> Result<bool> {
    let statement = match request {
        Request::Resync => "UPDATE cursors SET resync_requested = 1 WHERE subscription = ?1",
        Request::Reconcile => "UPDATE cursors SET reconcile_requested = 1 WHERE subscription = ?1",
    };
    Ok(tx.execute(statement, [subscription]).map_err(sql)? > 0)
}

/// Whether the database answers a query (for `/readyz`).
pub fn ping(conn: &Connection) -> Result<()> {
    conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
        .map(|_| ())
        .map_err(sql)
}
