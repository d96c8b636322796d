//! List the contacts changed since a date with the OData query builder and the paginator.
//!
//! ```sh
//! cargo run -p superoffice --example contacts_changed_since -- 2024-01-31
//! ```
//! `updatedDate` compares only the day (FACTS: the day-precision trap), so the query asks for
//! the day before and the exact timestamps are compared here.

#[path = "common/mod.rs"]
mod common;

use chrono::NaiveDate;
use futures::TryStreamExt;
use superoffice::entity::EntityKind;
use superoffice::odata::{Query, col};
use superoffice::paginate::Strategy;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (client, emulator) = common::connect().await?;
    if let Some(emu) = &emulator {
        // Some edits "by other users" so there is something recent.
        emu.activity(3, 12, 1, Some(emulator::EntityType::Contact));
    }
    let since: NaiveDate = match std::env::args().nth(1) {
        Some(day) => day.parse()?,
        None => chrono::Utc::now().date_naive() - chrono::Duration::days(1),
    };
    let kind = EntityKind::Contact;
    let query = Query::new()
        .select([kind.primary_key(), "name", kind.last_modified()])
        .filter(col(kind.last_modified()).after(since.pred_opt().unwrap_or(since)));
    let rows: Vec<_> = client
        .entities(kind)
        .list_with(
            query,
            500,
            Strategy::Keyset {
                key: kind.primary_key().to_string(),
            },
        )
        .try_collect()
        .await?;
    let since_start = since.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let changed: Vec<_> = rows
        .iter()
        .filter(|row| {
            row.date_time(kind.last_modified())
                .and_then(|d| d.set())
                .is_some_and(|d| d.to_utc() >= since_start)
        })
        .collect();
    println!(
        "{} contacts changed since {since} ({} rows read, pages of 500):",
        changed.len(),
        rows.len()
    );
    for row in changed.iter().take(10) {
        println!(
            "  {:>6}  {:<40} {}",
            row.int(kind.primary_key()).unwrap_or_default(),
            row.str("name").unwrap_or(""),
            row.str(kind.last_modified()).unwrap_or("")
        );
    }
    Ok(())
}
