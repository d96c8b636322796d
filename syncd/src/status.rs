//! What `syncd status` reports, as data: one [`StatusRow`] per subscription, the supervised
//! loops as the daemon last recorded them, one [`SinkRow`] per configured sink. The CLI
//! (`crate::cli::status`) formats it; the demo's progress display and the tests read it too.

use crate::store::{self, Store};
use crate::{Error, Result};

/// Everything `syncd status` shows; `syncd status --json` prints it as one object.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// One row per subscription that has run.
    pub subscriptions: Vec<StatusRow>,
    /// The supervised loops (see [`crate::supervise`]).
    pub loops: Vec<store::loops::LoopRow>,
    /// The configured sinks with their cursors.
    pub sinks: Vec<SinkRow>,
}

/// Reads the whole report: subscriptions, loops, and the sinks named `sinks` (the configured
/// ones, in config order). Runs on the blocking pool.
pub async fn report(store: Store, sinks: Vec<String>) -> Result<Report> {
    tokio::task::spawn_blocking(move || {
        Ok(Report {
            subscriptions: status_rows(&store)?,
            loops: loop_rows(&store)?,
            sinks: sink_rows(&store, &sinks)?,
        })
    })
    .await
    .map_err(|source| Error::Task {
        what: "the status report",
        source,
    })?
}

/// One row of `syncd status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatusRow {
    /// Subscription.
    pub subscription: String,
    /// `active` or `degraded` (with the reason).
    pub state: String,
    /// Live records.
    pub rows: i64,
    /// When the last successful pass ended (UTC).
    pub last_sync: Option<String>,
    /// Seconds since the last successful pass ended: how far behind the local copy may be.
    pub lag_seconds: Option<i64>,
    /// Seconds since the newest source change the copy holds (its `updated` timestamp): on a
    /// quiet tenant this grows although the copy is current.
    pub newest_change_age_seconds: Option<i64>,
    /// Failed passes in the last 24 hours.
    pub errors: i64,
    /// Records in quarantine (their transform failed; `syncd quarantine list`).
    pub quarantined: i64,
    /// The time between polls in force, in seconds: `poll_interval`, or longer while webhooks
    /// are healthy (up to `poll_interval_max`); `None` until the daemon has recorded one.
    pub poll_interval_seconds: Option<f64>,
}

/// Reads the status of every subscription from the store.
pub fn status_rows(store: &Store) -> Result<Vec<StatusRow>> {
    store.read_blocking(|conn| {
        let now = chrono::Utc::now();
        let since = |at: chrono::DateTime<chrono::Utc>| (now - at).num_seconds().max(0);
        let rows: Vec<StatusRow> = store::status::subscriptions(conn)?
            .into_iter()
            .map(|s| {
                // `last_success` is syncd's own UTC text; the watermark is SuperOffice's.
                let lag = s
                    .last_success
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| since(t.to_utc()));
                let newest = s
                    .watermark
                    .as_deref()
                    .and_then(|t| t.parse::<superoffice::SoDateTime>().ok())
                    .map(|t| since(t.to_utc()));
                StatusRow {
                    subscription: s.name,
                    state: if s.reason.is_empty() {
                        s.state
                    } else {
                        format!("{} ({})", s.state, s.reason)
                    },
                    rows: s.rows,
                    lag_seconds: lag,
                    newest_change_age_seconds: newest,
                    last_sync: s.last_success,
                    errors: s.failed_last_day,
                    quarantined: 0,
                    poll_interval_seconds: s.poll_interval_ms.map(|ms| ms as f64 / 1000.0),
                }
            })
            .collect();
        let quarantined = store::quarantine::counts(conn)?;
        Ok(rows
            .into_iter()
            .map(|mut row: StatusRow| {
                row.quarantined = quarantined.get(&row.subscription).copied().unwrap_or(0);
                row
            })
            .collect())
    })
}

/// The supervised loops as the daemon last recorded them (see [`crate::supervise`]).
pub fn loop_rows(store: &Store) -> Result<Vec<store::loops::LoopRow>> {
    store.read_blocking(store::loops::all)
}

/// One row of the sinks section of `syncd status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkRow {
    /// The sink.
    pub sink: String,
    /// Every change up to this seq was acknowledged.
    pub acked_seq: i64,
    /// Changes committed after it.
    pub lag: i64,
    /// The last failure since the cursor last moved.
    pub last_error: Option<String>,
    /// When.
    pub last_error_at: Option<String>,
}

/// The configured sinks (`names`) with their cursors and lag.
pub fn sink_rows(store: &Store, names: &[String]) -> Result<Vec<SinkRow>> {
    store.read_blocking(|conn| {
        let last = store::feed::last_seq(conn)?;
        let cursors = store::sinks::all(conn)?;
        Ok(names
            .iter()
            .map(|name| {
                let cursor = cursors.iter().find(|c| &c.sink == name);
                let acked_seq = cursor.map(|c| c.acked_seq).unwrap_or(0);
                SinkRow {
                    sink: name.clone(),
                    acked_seq,
                    lag: (last - acked_seq).max(0),
                    last_error: cursor.and_then(|c| c.last_error.clone()),
                    last_error_at: cursor.and_then(|c| c.last_error_at.clone()),
                }
            })
            .collect())
    })
}
