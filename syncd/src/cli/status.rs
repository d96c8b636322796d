//! `syncd status [--json]`: the subscriptions, the supervised loops and the sinks
//! ([`crate::status`] reads them).

use super::Context;
use crate::{Error, Result, status, store};

/// Runs `syncd status`.
pub async fn status(context: &Context, json: bool) -> Result<()> {
    let config = context.config()?;
    let store = store::open_read_only(&config.store)?;
    let names: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
    let report = status::report(store, names).await?;
    if json {
        println!(
            "{}",
            serde_json::to_value(&report).map_err(|source| Error::Encode {
                what: "the status report".into(),
                source,
            })?
        );
        return Ok(());
    }
    let status::Report {
        subscriptions: rows,
        loops,
        sinks,
    } = report;
    println!(
        "{:<20} {:<28} {:>10} {:<22} {:>9} {:>9} {:>6} {:>11} {:>6}",
        "SUBSCRIPTION",
        "STATE",
        "ROWS",
        "LAST SYNC",
        "LAG",
        "NEWEST",
        "ERRORS",
        "QUARANTINED",
        "POLL"
    );
    let human = |seconds: Option<i64>| seconds.map(human_seconds).unwrap_or_else(|| "-".into());
    for row in rows {
        println!(
            "{:<20} {:<28} {:>10} {:<22} {:>9} {:>9} {:>6} {:>11} {:>6}",
            row.subscription,
            row.state,
            row.rows,
            row.last_sync.as_deref().unwrap_or("never"),
            human(row.lag_seconds),
            human(row.newest_change_age_seconds),
            row.errors,
            row.quarantined,
            human(row.poll_interval_seconds.map(|s| s.round() as i64))
        );
    }
    for row in &loops {
        println!("{}", loop_line(row));
    }
    if !sinks.is_empty() {
        println!(
            "{:<20} {:>12} {:>10}  LAST ERROR",
            "SINK", "ACKED SEQ", "LAG"
        );
        for sink in &sinks {
            println!(
                "{:<20} {:>12} {:>10}  {}",
                sink.sink,
                sink.acked_seq,
                sink.lag,
                match (&sink.last_error, &sink.last_error_at) {
                    (Some(e), Some(at)) => format!("{at}: {e}"),
                    (Some(e), None) => e.clone(),
                    _ => "-".into(),
                }
            );
        }
    }
    Ok(())
}

/// How `syncd status` describes a loop, e.g. `loop sync:contacts: restarting (3 restarts, 2
/// failures in a row, last error at …: …)`.
pub fn loop_line(row: &store::loops::LoopRow) -> String {
    use store::loops::LoopState;
    let what = match (row.state, row.failing) {
        (LoopState::Stopped, _) => "stopped",
        (_, 0) => "running",
        (LoopState::Backoff, _) => "restarting (waiting out its backoff)",
        (LoopState::Running, _) => "restarting (started again, not yet healthy)",
    };
    let mut details = vec![format!("{} restarts", row.restarts)];
    if row.failing > 0 {
        details.push(format!("{} failures in a row", row.failing));
    }
    if let Some(error) = &row.last_error {
        details.push(format!(
            "last error at {}: {error}",
            row.last_error_at.as_deref().unwrap_or("?")
        ));
    }
    format!(
        "loop {}: {what} ({}) [as of {}]",
        row.name,
        details.join(", "),
        row.updated_at
    )
}

fn human_seconds(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::loops::{LoopRow, LoopState};

    #[test]
    fn ages_are_shown_in_the_largest_unit_that_keeps_them_readable() {
        let shown: Vec<String> = [0, 119, 120, 7199, 7200, 172_799, 172_800]
            .into_iter()
            .map(human_seconds)
            .collect();
        assert_eq!(shown, ["0s", "119s", "2m", "119m", "2h", "47h", "2d"]);
    }

    #[test]
    fn a_loop_line_says_what_the_loop_is_doing_and_its_last_error() {
        let mut row = LoopRow {
            name: "sync:contacts".into(),
            state: LoopState::Backoff,
            restarts: 3,
            failing: 2,
            last_error: Some("boom".into()),
            last_error_at: Some("2026-12-05T01:00:00Z".into()),
            updated_at: "2026-12-05T01:00:01Z".into(),
        };
        assert_eq!(
            loop_line(&row),
            "loop sync:contacts: restarting (waiting out its backoff) (3 restarts, 2 failures in a row, last error at 2026-12-05T01:00:00Z: boom) [as of 2026-12-05T01:00:01Z]"
        );
        row.state = LoopState::Running;
        row.failing = 0;
        row.last_error = None;
        assert_eq!(
            loop_line(&row),
            "loop sync:contacts: running (3 restarts) [as of 2026-12-05T01:00:01Z]"
        );
        row.state = LoopState::Stopped;
        assert!(
            loop_line(&row).contains(": stopped ("),
            "{}",
            loop_line(&row)
        );
    }
}
