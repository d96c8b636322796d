//! A simulated busy day (issue 13, item 5). SuperOffice's last-modified filters compare days,
//! so polling alone re-reads the day's changes on every poll; with healthy webhooks the poll
//! interval stretches and at most 10 rows are read per row changed. Nothing is lost either way
//! (`simulate` checks the copy and the feed against the emulator).

use std::time::Duration;

use syncd_testkit::lateday::{DayOptions, simulate};

/// A small day: 2,000 edits on 2,000 contacts, 5-minute polls.
fn small_day(webhooks: bool) -> DayOptions {
    DayOptions {
        edits: 2_000,
        seeded: 2_000,
        webhooks,
        ..DayOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_webhooks_stretch_the_polls_and_read_at_most_ten_rows_per_change() {
    let polling = simulate(small_day(false)).await;
    println!("{polling}");
    let webhooks = simulate(small_day(true)).await;
    println!("{webhooks}");

    // Without webhooks: a poll every 5 minutes, each re-reading the day so far.
    assert!(polling.polls >= 280, "{polling}");
    assert_eq!(
        (polling.webhook_runs, polling.webhook_rows),
        (0, 0),
        "{polling}"
    );
    assert!(polling.ratio() > 50.0, "{polling}");
    assert_eq!(polling.final_interval_seconds, 300.0, "{polling}");

    // With webhooks: the refetches read the changes, the polls stretch to the 2 h default.
    assert!(
        webhooks.webhook_runs > 0 && webhooks.webhook_rows > 0,
        "{webhooks}"
    );
    assert!(webhooks.polls <= 20, "{webhooks}");
    assert_eq!(
        Duration::from_secs_f64(webhooks.final_interval_seconds),
        Duration::from_secs(7200),
        "{webhooks}"
    );
    assert!(webhooks.ratio() < polling.ratio(), "{polling}\n{webhooks}");
    assert!(webhooks.ratio() <= 10.0, "{webhooks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_webhook_puts_the_polls_back_to_the_poll_interval_and_loses_nothing() {
    let noon = Duration::from_secs(12 * 3600);
    let day = simulate(DayOptions {
        webhook_stops_at: Some(noon),
        ..small_day(true)
    })
    .await;
    println!("{day}");
    // The first poll after noon finds changes no webhook announced; from then on every poll
    // does, so the afternoon is polled every 5 minutes.
    assert!(day.unannounced > 0, "{day}");
    assert_eq!(day.final_interval_seconds, 300.0, "{day}");
    assert!(day.polls >= 144, "{day}");
}
